"""Load-balancer hostnames resolvable through /etc/hosts.

A cloud load balancer publishes a DNS name (``status.loadBalancer.ingress[].hostname``); the
simulator makes such a name resolve on this machine by adding an /etc/hosts line pointing at the
loopback address kube-proxy listens on. Several processes run simulators at once, so every edit
takes an exclusive flock on a lock file, rewrites the file in place (/etc/hosts may be a bind mount,
which cannot be replaced by a rename), and touches only lines tagged with this cluster's id:
``<ip> <hostname> # mlops-sim <cluster-uuid> pid=<pid>``. Lines whose owning process is gone (a
crashed test run) are removed by the next simulator that edits the file.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TAG = "# mlops-sim"
_LINE = re.compile(r"#\s*mlops-sim\s+(\S+)\s+pid=(\d+)\s*$")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class HostsFile:
    def __init__(
        self, cluster_id: str, *, path: Path = Path("/etc/hosts"), lock_path: Path = Path("/tmp/mlops-sim-hosts.lock")
    ) -> None:
        self.cluster_id = cluster_id
        self.path = path
        self.lock_path = lock_path

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _rewrite(self, keep_line) -> None:
        with open(self.path, "r+") as hosts:
            lines = hosts.read().splitlines(keepends=True)
            kept = [line for line in lines if keep_line(line)]
            if kept != lines:
                hosts.seek(0)
                hosts.write("".join(kept))
                hosts.truncate()

    @staticmethod
    def _stale(line: str) -> bool:
        match = _LINE.search(line)
        return bool(match) and not pid_alive(int(match.group(2)))

    def add(self, address: str, hostname: str) -> None:
        with self._locked():
            self._rewrite(lambda line: not self._stale(line))
            with open(self.path, "r+") as hosts:
                content = hosts.read()
                prefix = "" if not content or content.endswith("\n") else "\n"
                hosts.write(f"{prefix}{address} {hostname} {TAG} {self.cluster_id} pid={os.getpid()}\n")

    def remove(self, hostname: str) -> None:
        with self._locked():
            self._rewrite(lambda line: not (self._ours(line) and hostname in line.split("#", 1)[0].split()))

    def remove_all(self) -> None:
        with self._locked():
            self._rewrite(lambda line: not self._ours(line) and not self._stale(line))

    def _ours(self, line: str) -> bool:
        match = _LINE.search(line)
        return bool(match) and match.group(1) == self.cluster_id
