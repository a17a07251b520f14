"""Init process of the training sandbox (stdlib only; run as ``python -I -S sandbox_init.py``).

The control service starts it through ``unshare --pid --mount --ipc [--net] --fork --kill-child``, so it
runs as root and as PID 1 of fresh PID, mount and IPC (and usually network) namespaces. It reads its
configuration as JSON on stdin, then:

1. builds a new root filesystem on a tmpfs: the system directories (``/usr``, ``/etc``, ...) and the
   virtual environment read-only, the script's working directory (a size-limited tmpfs holding a copy
   of the script) and the tracking door's socket folder read-write (never the MLflow store: its database
   and artifact folders stay out of reach), a fresh ``/proc`` of the new PID namespace, a minimal
   ``/dev``, and small tmpfs ``/tmp`` and ``/dev/shm``. Nothing else of the host is visible: no home
   directories (``~/.aws``, ``~/.docker``, git credentials), no Docker socket, no service data (journal,
   API keys);
2. brings up loopback when the network namespace is new (it has no other interface);
3. when a tracking door is configured, listens on 127.0.0.1:<free port> and forks a forwarder, running
   as the sandbox uid in the new root, that relays each connection to the door's Unix socket (the
   service's MLflow-compatible endpoint for this run only); the script's ``MLFLOW_TRACKING_URI`` and
   ``MLFLOW_REGISTRY_URI`` then name that port;
4. forks the script: chroot into the new root, drop to the sandbox uid/gid with no supplementary
   groups, ``no_new_privs``, umask 007, rlimits, exec;
5. reaps every process of the namespace until the script itself exits, writes the script's raw wait
   status to the status fd (``exit <status>``, or ``error <message>`` when set-up failed) and exits.
   The kernel then kills whatever the script left behind in the namespace, detached processes included.
"""

import contextlib
import ctypes
import json
import os
import resource
import signal
import socket
import sys
from typing import NotRequired, TypedDict

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
# statvfs f_flag bits kept when a bind mount is remounted (mount(2) refuses to drop some of them).
ST_KEEP = 8 | 1024 | 2048 | 4096  # noexec, noatime, nodiratime, relatime
PR_SET_NO_NEW_PRIVS = 38
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom")


class DoorConfig(TypedDict):
    socket: str  # the tracking door's Unix socket
    env: list[str]  # variables the init points at its forwarded loopback port


class InitConfig(TypedDict):
    """The JSON the service writes on stdin (see ``init_config`` in ``sandbox.py``)."""

    root: str
    uid: int
    gid: int
    read_only: list[str]
    read_write: list[str]
    tmp_bytes: int
    shm_bytes: int
    loopback: bool
    cwd: str
    argv: list[str]
    env: dict[str, str]
    limits: dict[str, int | list[int]]
    status_fd: int
    workdir_bytes: int | None
    door: DoorConfig | None
    probe: NotRequired[bool]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    if _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source or fstype} on {target}: {os.strerror(err)}")


def bind(source: str, target: str, read_only: bool) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            open(target, "a").close()
    mount(source, target, None, MS_BIND | MS_REC)
    kept = os.statvfs(target).f_flag & ST_KEEP
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | kept | (MS_RDONLY if read_only else 0))


def covered(path: str, bound: list[str] | tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in bound)


def build_root(cfg: InitConfig) -> None:
    root = cfg["root"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            os.symlink(os.readlink(path), root + path)
        elif os.path.isdir(path):
            bind(path, root + path, True)

    dev = root + "/dev"
    os.mkdir(dev)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
    for name in DEVICES:
        open(dev + "/" + name, "a").close()
        mount("/dev/" + name, dev + "/" + name, None, MS_BIND)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, dev + "/" + name)
    os.mkdir(dev + "/shm")
    mount("tmpfs", dev + "/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode=1777,size={cfg['shm_bytes']:d}")

    os.mkdir(root + "/proc")
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)

    # /tmp: a small tmpfs (TMPDIR points to the working directory, for big temporary files). Mounted
    # before the bind mounts below, since the service's own paths may lie under /tmp.
    os.mkdir(root + "/tmp")
    mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={cfg['tmp_bytes']:d}")

    # Parents first; a path inside one already bound the same way (or read-write) needs no mount.
    bound_ro: list[str] = []
    bound_rw: list[str] = []
    paths = [(p, True) for p in cfg["read_only"]] + [(p, False) for p in cfg["read_write"]]
    for path, read_only in sorted(paths, key=lambda item: (len(item[0]), item[1])):
        if (
            covered(path, bound_rw)
            or (read_only and covered(path, bound_ro))
            or (covered(path, SYSTEM_DIRS) and read_only)
        ):
            continue
        if not os.path.exists(path):
            continue
        bind(path, root + path, read_only)
        (bound_ro if read_only else bound_rw).append(path)
    workdir_bytes = cfg.get("workdir_bytes")
    if workdir_bytes:
        workdir_on_tmpfs(cfg, workdir_bytes)


def workdir_on_tmpfs(cfg: InitConfig, workdir_bytes: int) -> None:
    """The working directory is a tmpfs of ``workdir_bytes`` holding a copy of what the service put
    there (the script): what the script writes is bounded, and vanishes with the namespace."""
    import shutil

    source, target = cfg["cwd"], cfg["root"] + cfg["cwd"]
    os.makedirs(target, exist_ok=True)
    mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0700,size={workdir_bytes:d}")
    for dirpath, _dirnames, filenames in os.walk(source):
        relative = os.path.relpath(dirpath, source)
        here = os.path.normpath(os.path.join(target, relative))
        os.makedirs(here, exist_ok=True)
        for name in filenames:
            shutil.copyfile(os.path.join(dirpath, name), os.path.join(here, name), follow_symlinks=False)
    for dirpath, _dirnames, filenames in os.walk(target):
        for path in [dirpath, *(os.path.join(dirpath, n) for n in filenames)]:
            os.lchown(path, cfg["uid"], cfg["gid"])


def loopback_up() -> None:
    import fcntl
    import struct

    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def become_sandbox_user(cfg: InitConfig) -> None:
    os.chroot(cfg["root"])
    os.chdir(cfg["cwd"])
    os.setgroups([])
    os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
    os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


def open_door_port(cfg: InitConfig, door: DoorConfig) -> socket.socket:
    """Listen on a free loopback port for the script's MLflow client; point its tracking URIs there."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    url = f"http://127.0.0.1:{listener.getsockname()[1]:d}"
    for name in door["env"]:
        cfg["env"][name] = url
    return listener


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((sink, 1), (source, 0)):  # SHUT_WR on the sink, SHUT_RD on the source
            with contextlib.suppress(OSError):
                sock.shutdown(how)


def forward_door(door: DoorConfig, cfg: InitConfig, listener: socket.socket, status_fd: int) -> None:
    """In a forked child, as the sandbox user: relay every connection on the port to the door's socket."""
    import threading

    try:
        os.close(status_fd)
        become_sandbox_user(cfg)
        while True:
            client, _ = listener.accept()
            door_connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                door_connection.connect(door["socket"])
            except OSError:
                client.close()
                door_connection.close()
                continue
            for source, sink in ((client, door_connection), (door_connection, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()
    except BaseException as exc:
        try:
            os.write(2, f"[mlops sandbox] tracking forwarder stopped: {exc}\n".encode())
        finally:
            os._exit(126)


def start_script(cfg: InitConfig, status_fd: int, listener: socket.socket | None) -> None:
    """In the forked child: enter the new root, become the sandbox user, exec the script."""
    try:
        os.close(status_fd)
        if listener is not None:
            listener.close()
        become_sandbox_user(cfg)
        os.umask(0o007)
        for name, value in cfg["limits"].items():
            # A limit is either one number (soft and hard) or a [soft, hard] pair.
            soft, hard = value if isinstance(value, list) else (value, value)
            resource.setrlimit(getattr(resource, name), (soft, hard))
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        os.execve(cfg["argv"][0], cfg["argv"], cfg["env"])
    except BaseException as exc:
        try:
            os.write(2, f"[mlops sandbox] could not start the script: {exc}\n".encode())
        finally:
            os._exit(126)


def main() -> int:
    cfg: InitConfig = json.loads(sys.stdin.buffer.read())
    status_fd = cfg["status_fd"]
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    try:
        build_root(cfg)
        if cfg.get("loopback"):
            loopback_up()
        if cfg.get("probe"):
            os.write(status_fd, b"ok\n")
            return 0
        door = cfg.get("door")
        listener = open_door_port(cfg, door) if door else None
        if door and listener is not None and os.fork() == 0:
            forward_door(door, cfg, listener, status_fd)
        child = os.fork()
    except Exception as exc:
        os.write(status_fd, f"error {exc}\n".encode())
        return 125
    if child == 0:
        start_script(cfg, status_fd, listener)
    if listener is not None:
        listener.close()
    # PID 1 of the namespace: reap everything (orphans are re-parented here) until the script exits.
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue
        if pid == child:
            os.write(status_fd, f"exit {status:d}\n".encode())
            return 0


if __name__ == "__main__":
    sys.exit(main())
