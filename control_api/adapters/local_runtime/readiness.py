"""The manifest's readiness probe, run by Docker as each replica's healthcheck.

The replicas behind a Service (of one Deployment, or of a stable and a canary one) share one network
namespace and one SO_REUSEPORT listening group, so a connection to the container port reaches
whichever replica the kernel picks. The probe makes sure it
is talking to its own replica: it connects, waits until the connection is accepted, and looks up the
accepted socket in /proc (which lists only the container's own processes). If another replica took
it, the probe closes it and connects again from another source port, which the kernel hashes to a
possibly different replica; after a few dozen attempts without reaching its own, the probe fails.
Once connected to its own replica, it sends the readiness request and passes on 2xx/3xx.

``FETCH_SCRIPT`` reaches its own replica the same way and prints the body of any GET (the runtime's
``replica_get`` runs it with ``docker exec``, e.g. to read each model server's own /metrics).

They are Python scripts using only os, socket, sys and time, so any image with ``python3`` can run
them (the model images and the test images do).
"""

from __future__ import annotations

# Arguments: port, path. Ends with ``connection``: a socket accepted by this container's own replica.
_OWN_REPLICA = r"""
import os, socket, sys, time
port, path = int(sys.argv[1]), sys.argv[2]


def own_sockets():
    inodes = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir("/proc/%s/fd" % pid):
                target = os.readlink("/proc/%s/fd/%s" % (pid, fd))
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            pass
    return inodes


def server_side_inode(client_port):
    # The accepted socket: local port = the probed port, remote port = the probe's own port.
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if (int(fields[1].rsplit(":", 1)[1], 16) == port and int(fields[2].rsplit(":", 1)[1], 16) == client_port
                    and fields[9] != "0"):
                return fields[9]
    return None


def connect_to_own_replica():
    for _ in range(48):
        connection = socket.create_connection(("127.0.0.1", port), timeout=2)
        client_port = connection.getsockname()[1]
        deadline = time.monotonic() + 1
        inode = server_side_inode(client_port)
        while inode is None and time.monotonic() < deadline:
            time.sleep(0.01)
            inode = server_side_inode(client_port)
        if inode is not None and inode in own_sockets():
            return connection
        connection.close()
    sys.exit("connections to port %d never reached this replica" % port)


connection = connect_to_own_replica()
connection.sendall(("GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n" % path).encode())
"""

PROBE_SCRIPT = (
    _OWN_REPLICA
    + r"""
status_line = connection.recv(128).split(b"\r\n", 1)[0]
code = int(status_line.split(b" ")[1])
sys.exit(0 if 200 <= code < 400 else "readiness probe answered %d" % code)
"""
)

# HTTP/1.0 without keep-alive: the server closes the connection after the body, so read to the end.
FETCH_SCRIPT = (
    _OWN_REPLICA
    + r"""
connection.settimeout(30)
chunks = []
while True:
    chunk = connection.recv(65536)
    if not chunk:
        break
    chunks.append(chunk)
head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
code = int(head.split(b"\r\n", 1)[0].split(b" ")[1])
if not 200 <= code < 300:
    sys.exit("GET %s answered %d: %s" % (path, code, body[:200].decode("utf-8", "replace")))
sys.stdout.buffer.write(body)
"""
)


def fetch_command(port: int, path: str) -> list[str]:
    """The ``docker exec`` command printing the body of ``GET path`` from the container's own replica."""
    return ["python3", "-I", "-S", "-c", FETCH_SCRIPT, str(port), path]


# Docker 20.10 has one interval for the whole life of a container (no separate start interval), and a
# deploy should not wait a manifest's whole period (often 5-10 s) before its first check.
PROBE_INTERVAL_NS = 1_000_000_000
# Generous: on a loaded machine starting Python alone can take seconds, and a timeout counts as a failure.
PROBE_TIMEOUT_NS = 10_000_000_000


def healthcheck(port: int, path: str, failure_threshold: int) -> dict:
    """Docker's healthcheck config running the readiness probe against ``port`` and ``path``."""
    return {
        "test": ["CMD", "python3", "-I", "-S", "-c", PROBE_SCRIPT, str(port), path],
        "interval": PROBE_INTERVAL_NS,
        "timeout": PROBE_TIMEOUT_NS,
        "retries": max(1, failure_threshold),
        "start_period": 0,
    }
