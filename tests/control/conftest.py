"""Control-service tests: the fixtures (make_client, client, venv_cache) live in tests/fixtures_control.py
and the helpers in tests/support/control.py."""
