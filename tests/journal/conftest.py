"""Journal fixtures: the same tests run on SQLite (the default) and on a real, throwaway PostgreSQL.

The PostgreSQL cluster is started once per test process with the server binaries Debian's
``postgresql`` package installs (initdb, pg_ctl). PostgreSQL refuses to run as root, so under root the
cluster runs as ``nobody`` in a temporary directory that user owns. Each test gets a database of its
own, so tests never see each other's rows.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from control_api.journal.store import Journal
from tests.conftest import require

POSTGRES_HINT = "install Debian's `postgresql` package (it ships initdb and pg_ctl)"
UNPRIVILEGED_UID = UNPRIVILEGED_GID = 65534  # nobody / nogroup
# Not UTC on purpose: the server hands timestamps back in its own zone, and the journal must still
# give the rest of the service UTC (a zone with a half-hour offset makes any slip obvious).
SERVER_TIMEZONE = "Asia/Kolkata"
START_ATTEMPTS = 3


def postgres_bin_dir() -> Path | None:
    """Where initdb and pg_ctl live: on PATH, else Debian's versioned directory (not on PATH there)."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def psycopg_importable() -> bool:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return True


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class PostgresCluster:
    bin_dir: Path
    root: Path
    port: int
    run_as: list[str]

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sockets"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.run_as, *args], cwd=self.root, capture_output=True, text=True, timeout=60, env=_server_env()
        )

    def server_log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no server log)"

    def create_database(self) -> str:
        import psycopg

        name = f"journal_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _server_env() -> dict[str, str]:
    # A plain locale: the cluster must not depend on which locales the machine happens to generate.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}


def _run_as_unprivileged_user(root: Path) -> list[str]:
    if os.geteuid() != 0:
        return []
    os.chown(root, UNPRIVILEGED_UID, UNPRIVILEGED_GID)
    return ["setpriv", f"--reuid={UNPRIVILEGED_UID}", f"--regid={UNPRIVILEGED_GID}", "--clear-groups"]


def _start(cluster: PostgresCluster) -> subprocess.CompletedProcess:
    server_options = " ".join(
        [
            "-h 127.0.0.1",
            f"-p {cluster.port}",
            f"-k {cluster.socket_dir}",
            f"-c timezone={SERVER_TIMEZONE}",
            # A throwaway cluster: durability costs time and buys nothing here.
            "-c fsync=off",
            "-c synchronous_commit=off",
            "-c full_page_writes=off",
        ]
    )
    return cluster.run(
        str(cluster.bin_dir / "pg_ctl"),
        "start",
        "-D",
        str(cluster.data_dir),
        "-l",
        str(cluster.log_file),
        "-w",
        "-t",
        "30",
        "-o",
        server_options,
    )


@pytest.fixture(scope="session")
def postgres_cluster():
    bin_dir = postgres_bin_dir()
    require(bin_dir is not None, "PostgreSQL server (initdb, pg_ctl)", POSTGRES_HINT)
    require(psycopg_importable(), "the psycopg driver", "run `scripts/python-env.sh` (psycopg[binary] is a dependency)")

    # Not under pytest's tmp dir: its parents are private to root, and the server runs as nobody.
    root = Path(tempfile.mkdtemp(prefix="mlops-journal-pg-"))
    run_as = _run_as_unprivileged_user(root)
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
        cluster = PostgresCluster(bin_dir=bin_dir, root=root, port=free_loopback_port(), run_as=run_as)
        started = _start(cluster)
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
