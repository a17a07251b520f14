"""The manifest's readiness probe, run by Docker as each replica's healthcheck.

Replicas of a workload share one network namespace and one SO_REUSEPORT listening group, so an HTTP
request to the container port may be answered by any of them: a probe alone cannot tell a new replica
from an old one that is already serving. The probe therefore checks two things from inside the
replica: that one of the replica's own processes holds a listening socket on the port (found through
/proc, which shows only the container's own processes), and that the readiness path answers 2xx/3xx
on that port. The model server binds only once its model is loaded when it shares a port
(REUSE_PORT=1), so a replica that holds a socket in the group is one that can serve.

It is a Python script with no imports beyond the standard library's os, socket and sys, so any
image with ``python3`` can run it (the model images and the test images do).
"""

from __future__ import annotations

PROBE_SCRIPT = r"""
import os, socket, sys
port, path = int(sys.argv[1]), sys.argv[2]
own = set()
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        for fd in os.listdir("/proc/%s/fd" % pid):
            target = os.readlink("/proc/%s/fd/%s" % (pid, fd))
            if target.startswith("socket:["):
                own.add(target[8:-1])
    except OSError:
        pass
listening = False
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        with open(table) as handle:
            rows = handle.read().splitlines()[1:]
    except OSError:
        continue
    for row in rows:
        fields = row.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] in own:
            listening = True
if not listening:
    sys.exit("no process of this container listens on port %d" % port)
connection = socket.create_connection(("127.0.0.1", port), timeout=2)
connection.sendall(("GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n" % path).encode())
status_line = connection.recv(128).split(b"\r\n", 1)[0]
code = int(status_line.split(b" ")[1])
sys.exit(0 if 200 <= code < 400 else "readiness probe answered %d" % code)
"""

# Docker 20.10 has one interval for the whole life of a container (no separate start interval), and a
# deploy should not wait a manifest's whole period (often 5-10 s) before its first check.
PROBE_INTERVAL_NS = 1_000_000_000
PROBE_TIMEOUT_NS = 3_000_000_000


def healthcheck(port: int, path: str, failure_threshold: int) -> dict:
    """Docker's healthcheck config running the readiness probe against ``port`` and ``path``."""
    return {
        "test": ["CMD", "python3", "-I", "-S", "-c", PROBE_SCRIPT, str(port), path],
        "interval": PROBE_INTERVAL_NS,
        "timeout": PROBE_TIMEOUT_NS,
        "retries": max(1, failure_threshold),
        "start_period": 0,
    }
