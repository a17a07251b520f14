"""Real external systems that a fault test can take down and bring back on the same address.

* ``GitDaemon``: ``git daemon`` serving a bare GitOps repo over git://. Armed, it dies (its whole
  process group, SIGKILL) at an exact moment of a push: when the push connects (``at-push``), or
  right after the pushed ref was written but before the client heard so (``after-update``).
* ``RegistryProcess``: a ``docker-registry`` on a fixed loopback port, optionally with htpasswd auth.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.support.ports import free_port
from tests.support.processes import stop_process_group
from tests.support.registry import REGISTRY_BINARY


def _kill_group(proc: subprocess.Popen | None, sig: int = signal.SIGKILL) -> None:
    stop_process_group(proc, sig)


def _git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


class GitDaemon:
    """A bare repo behind ``git daemon`` on 127.0.0.1:<port>; ``arm(point)`` makes the next push kill it."""

    POINTS = ("at-push", "after-update")

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root / "repos"
        self.ctl = root / "ctl"
        self.repo = self.base / "gitops.git"
        self.port = free_port()
        self.url = f"git://127.0.0.1:{self.port}/gitops.git"
        self.proc: subprocess.Popen | None = None
        self.ctl.mkdir(parents=True)
        self.base.mkdir(parents=True)
        _git("init", "--quiet", "--bare", "--initial-branch=main", str(self.repo))
        # The daemon's access hook sees every connection with the service it asks for; a push asks for
        # receive-pack. The server dies the way a crashed host does: every process, no goodbye.
        self.access_hook = self.ctl / "access-hook"
        # Only once the branch exists: the first push of a new remote is the service seeding it.
        self._write_hook(
            self.access_hook,
            f'test "$1" = receive-pack'
            f" && git --git-dir='{self.repo}' rev-parse -q --verify refs/heads/main >/dev/null",
            "at-push",
        )
        # reference-transaction "committed": the ref moved on disk, the client's report is not sent yet.
        # Not for the seed push, which creates the branch (old value all zeros).
        self._write_hook(
            self.repo / "hooks" / "reference-transaction",
            'updates=$(cat); test "$1" = committed && ! echo "$updates" | grep -q "^0\\{40\\} "',
            "after-update",
        )

    def _write_hook(self, path: Path, condition: str, point: str) -> None:
        armed = self.ctl / f"armed-{point}"
        path.write_text(
            "#!/bin/sh\n"
            f"if {condition} && [ -e '{armed}' ]; then\n"
            f"  rm -f '{armed}'\n"
            f"  kill -KILL -$(cat '{self.ctl / 'pgid'}')\n"
            "  sleep 5\n"
            "fi\n"
            "exit 0\n"
        )
        path.chmod(0o755)

    def start(self, timeout: float = 30) -> GitDaemon:
        with open(self.root / "daemon.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    "git",
                    "daemon",
                    "--reuseaddr",
                    "--export-all",
                    "--enable=receive-pack",
                    "--informative-errors",
                    f"--base-path={self.base}",
                    "--listen=127.0.0.1",
                    f"--port={self.port}",
                    f"--access-hook={self.access_hook}",
                    str(self.base),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (self.ctl / "pgid").write_text(str(self.proc.pid))
        deadline = time.monotonic() + timeout
        while True:
            probe = subprocess.run(["git", "ls-remote", self.url], capture_output=True, timeout=10)
            if probe.returncode == 0:
                return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"git daemon did not start: {(self.root / 'daemon.log').read_text()[-2000:]}")
            time.sleep(0.1)

    def arm(self, point: str) -> None:
        assert point in self.POINTS, point
        (self.ctl / f"armed-{point}").touch()

    def armed(self, point: str) -> bool:
        return (self.ctl / f"armed-{point}").exists()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        _kill_group(self.proc)


class RegistryProcess:
    """``docker-registry serve`` on 127.0.0.1:<port> with its own storage; ``htpasswd`` turns on basic auth."""

    def __init__(self, root: Path, port: int | None = None, htpasswd_line: str | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.htpasswd_line = htpasswd_line
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20) -> RegistryProcess:
        auth = ""
        if self.htpasswd_line:
            (self.root / "htpasswd").write_text(self.htpasswd_line + "\n")
            auth = f"auth:\n  htpasswd:\n    realm: mlops-faults\n    path: {self.root / 'htpasswd'}\n"
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n" + auth
        )
        with open(self.root / "registry.log", "ab") as log:
            self.proc = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"http://{self.host}/v2/", timeout=1).status_code in (200, 401):
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("registry did not start: " + (self.root / "registry.log").read_text()[-2000:])
            time.sleep(0.1)

    def stop(self) -> None:
        _kill_group(self.proc, signal.SIGTERM)
