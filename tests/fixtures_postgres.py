"""PostgreSQL fixtures shared by test folders: one throwaway cluster per test process, a database per test."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.support.availability import require
from tests.support.ports import free_port
from tests.support.postgres import (
    POSTGRES_HINT,
    START_ATTEMPTS,
    UNPRIVILEGED_GID,
    UNPRIVILEGED_UID,
    PostgresCluster,
    postgres_bin_dir,
    psycopg_importable,
    run_as_unprivileged_user,
    start_cluster,
)


@pytest.fixture(scope="session")
def postgres_cluster():
    bin_dir = postgres_bin_dir()
    require(bin_dir is not None, "PostgreSQL server (initdb, pg_ctl)", POSTGRES_HINT)
    require(psycopg_importable(), "the psycopg driver", "run `scripts/python-env.sh` (psycopg[binary] is a dependency)")

    # Not under pytest's tmp dir: its parents are private to root, and the server runs as nobody.
    root = Path(tempfile.mkdtemp(prefix="mlops-journal-pg-"))
    run_as = run_as_unprivileged_user(root)
    cluster = PostgresCluster(bin_dir=bin_dir, root=root, port=0, run_as=run_as)
    (root / "sockets").mkdir()
    if run_as:
        os.chown(root / "sockets", UNPRIVILEGED_UID, UNPRIVILEGED_GID)

    initdb = cluster.run(
        str(bin_dir / "initdb"),
        "-D",
        str(cluster.data_dir),
        "-U",
        "postgres",
        "--auth=trust",
        "--no-locale",
        "-E",
        "UTF8",
        "--no-sync",
    )
    if initdb.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed ({initdb.returncode}):\n{initdb.stdout}\n{initdb.stderr}", pytrace=False)

    started = None
    for _ in range(START_ATTEMPTS):  # the free port can be taken between probing and binding
        cluster = PostgresCluster(bin_dir=bin_dir, root=root, port=free_port(), run_as=run_as)
        started = start_cluster(cluster)
        if started.returncode == 0:
            break
    if started is None or started.returncode != 0:
        log = cluster.server_log()
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed:\n{started.stdout}\n{started.stderr}\n{log}", pytrace=False)

    try:
        yield cluster
    finally:
        cluster.run(str(bin_dir / "pg_ctl"), "stop", "-D", str(cluster.data_dir), "-m", "fast", "-w", "-t", "30")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_cluster):
    """A fresh, empty database on the session's cluster, dropped after the test."""
    database = postgres_cluster.create_database()
    yield postgres_cluster.url(database)
    postgres_cluster.drop_database(database)
