"""Journal fixtures: the same tests run on SQLite (the default) and on a real, throwaway PostgreSQL.

The PostgreSQL cluster (tests/fixtures_postgres.py) is started once per test process; each test gets a
database of its own, so tests never see each other's rows.
"""

from __future__ import annotations

import pytest

from control_api.journal.store import Journal


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'journal.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def journal(journal_url):
    store = Journal(journal_url)
    yield store
    store.close()
