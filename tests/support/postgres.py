"""A throwaway PostgreSQL cluster run with the server binaries Debian's ``postgresql`` package installs.

PostgreSQL refuses to run as root, so under root the cluster runs as ``nobody`` in a temporary
directory that user owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

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
            [*self.run_as, *args], cwd=self.root, capture_output=True, text=True, timeout=60, env=server_env()
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


def server_env() -> dict[str, str]:
    # A plain locale: the cluster must not depend on which locales the machine happens to generate.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}


def run_as_unprivileged_user(root: Path) -> list[str]:
    if os.geteuid() != 0:
        return []
    os.chown(root, UNPRIVILEGED_UID, UNPRIVILEGED_GID)
    return ["setpriv", f"--reuid={UNPRIVILEGED_UID}", f"--regid={UNPRIVILEGED_GID}", "--clear-groups"]


def start_cluster(cluster: PostgresCluster) -> subprocess.CompletedProcess:
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
