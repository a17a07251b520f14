"""Authentication fails closed, and the service's own files are private from their first byte.

Once a key has existed, ``auth.mode=auto`` requires keys for good (the journal remembers it, so
deleting or emptying the keys file cannot reopen the API); a keys file that is missing or unreadable
makes every protected route answer 503, never open and never 500.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from control_api.api import security
from control_api.api.security import add_key
from control_api.journal.store import Journal
from tests.support.control import assert_error_format, make_settings

PROTECTED = [
    ("get", "/mlops/deployments"),
    ("get", "/mlops/models"),
    ("get", "/mlops/status"),
    ("post", "/mlops/deploy"),
    ("post", "/mlops/models/x/rollback"),
    ("delete", "/mlops/models/x/deployment"),
]


@pytest.fixture
def keyed(tmp_path, venv_cache, make_client):
    """A service in auth.mode=auto whose keys file holds one admin key, created with create-key's code."""
    data = tmp_path / "data"
    key = add_key(make_settings(data, venv_cache), "first", "admin")
    client = make_client(data_dir=data, auth={"failed_auth_burst": 100})  # these tests send many refused requests
    client.key = key
    client.keys_file = client.app.state.services.settings.api_keys_file()
    return client


def assert_refused_everywhere(client, status: int, code: str, headers: dict | None = None) -> None:
    for method, path in PROTECTED:
        response = getattr(client, method)(path, headers=headers or {})
        error = assert_error_format(response, status, code)
        if status == 503:
            assert "API keys" in error["message"], error
    assert client.get("/health").status_code == 200


def test_keys_file_removed_answers_503_not_open(keyed):
    assert_error_format(keyed.get("/mlops/deployments"), 401, "unauthorized")
    assert keyed.get("/mlops/deployments", headers={"X-API-Key": keyed.key}).status_code == 200
    keyed.keys_file.unlink()
    assert_refused_everywhere(keyed, 503, "auth_unavailable")
    assert_refused_everywhere(keyed, 503, "auth_unavailable", {"X-API-Key": keyed.key})


def test_keys_file_removed_stays_closed_after_a_restart(keyed, make_client):
    data = keyed.app.state.services.settings.data_dir
    keyed.keys_file.unlink()
    restarted = make_client(data_dir=data, auth={"failed_auth_burst": 100})
    assert_refused_everywhere(restarted, 503, "auth_unavailable")


def test_keys_file_emptied_leaves_no_key_valid_and_the_api_closed(keyed):
    keyed.keys_file.write_text("[]")
    assert_refused_everywhere(keyed, 401, "unauthorized")
    assert_refused_everywhere(keyed, 401, "unauthorized", {"X-API-Key": keyed.key})


@pytest.mark.parametrize(
    "corruption", ["{not json", '{"name": "x"}', '[{"name": "x", "role": "god", "key_hash": "y"}]', "directory"]
)
def test_corrupt_keys_file_answers_503_not_500(keyed, corruption):
    keyed.keys_file.unlink()
    if corruption == "directory":
        keyed.keys_file.mkdir()
    else:
        keyed.keys_file.write_text(corruption)
    assert_refused_everywhere(keyed, 503, "auth_unavailable", {"X-API-Key": keyed.key})


def test_repaired_keys_file_works_again(keyed):
    keyed.keys_file.write_text("{not json")
    assert_error_format(keyed.get("/mlops/deployments", headers={"X-API-Key": keyed.key}), 503, "auth_unavailable")
    settings = keyed.app.state.services.settings
    keyed.keys_file.unlink()
    new = add_key(settings, "second", "reader", journal=keyed.app.state.services.journal)
    assert keyed.get("/mlops/deployments", headers={"X-API-Key": new}).status_code == 200


def test_keys_created_is_recorded_in_the_journal(tmp_path, venv_cache):
    settings = make_settings(tmp_path / "d", venv_cache)
    add_key(settings, "first", "admin")
    journal = Journal(settings.journal_url())
    try:
        assert journal.flag(security.KEYS_CREATED_FLAG) == "1"
    finally:
        journal.close()


def test_open_until_the_first_key_then_closed_for_good(make_client):
    client = make_client()
    assert client.get("/mlops/deployments").status_code == 200  # auto, no key ever: open (loopback use)
    settings = client.app.state.services.settings
    key = add_key(settings, "first", "admin", journal=client.app.state.services.journal)
    assert_error_format(client.get("/mlops/deployments"), 401)
    assert client.get("/mlops/deployments", headers={"X-API-Key": key}).status_code == 200


def test_keys_file_is_written_atomically_and_private_from_the_first_byte(tmp_path, venv_cache, monkeypatch):
    """The new file is complete and 0600 before it takes the keys file's name; a reader never sees a
    partial or world-readable file."""
    settings = make_settings(tmp_path / "d", venv_cache)
    path = settings.api_keys_file()
    add_key(settings, "first", "admin")
    seen = []
    real_replace = os.replace

    def observing_replace(source, target, *args, **kwargs):
        st = os.stat(source)
        seen.append((stat.S_IMODE(st.st_mode), json.loads(Path(source).read_text()), json.loads(path.read_text())))
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(security.os, "replace", observing_replace)
    os.umask(0o022)
    add_key(settings, "second", "reader")
    assert len(seen) == 1
    mode, staged, current = seen[0]
    assert mode == 0o600
    assert [k["name"] for k in staged] == ["first", "second"]
    assert [k["name"] for k in current] == ["first"]  # the old file stayed whole until the swap
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".api-keys")] == []


def test_data_files_are_private_when_created(make_client, tmp_path):
    previous = os.umask(0o022)
    try:
        client = make_client(data_dir=tmp_path / "private")
        services = client.app.state.services
        services.journal.ping()
        services.mlflow.ping()
        _ = services.gitops  # creates the embedded bare repository
    finally:
        os.umask(previous)
    data = services.settings.data_path
    assert stat.S_IMODE((data / "journal.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "mlflow" / "mlflow.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "gitops.git").stat().st_mode) == 0o700
