"""Init process of the training sandbox (stdlib only; run as ``python -I -S sandbox_init.py``).

The control service starts it through ``unshare --pid --mount --ipc [--net] --fork --kill-child``, so it
runs as root and as PID 1 of fresh PID, mount and IPC (and usually network) namespaces. It reads its
configuration as JSON on stdin, then:

1. builds a new root filesystem on a tmpfs: the system directories (``/usr``, ``/etc``, ...) and the
   virtual environment read-only, the script's working directory (a size-limited tmpfs holding a copy
   of the script) and the tracking door's socket folder read-write (never the MLflow store: its database and artifact folders stay out of reach), a
   fresh ``/proc`` of the new PID namespace, a minimal ``/dev``, and small tmpfs ``/tmp`` and ``/dev/shm``.
   Nothing else of the host is visible: no home directories (``~/.aws``, ``~/.docker``, git
   credentials), no Docker socket, no service data (journal, API keys);
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

import ctypes
import json
import os
import resource
import signal
import sys

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

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _b(value):
    return None if value is None else os.fsencode(value)


def mount(source, target, fstype, flags, data=None):
    if _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "mount %s on %s: %s" % (source or fstype, target, os.strerror(err)))


def bind(source, target, read_only):
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            open(target, "a").close()
    mount(source, target, None, MS_BIND | MS_REC)
    kept = os.statvfs(target).f_flag & ST_KEEP
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | kept | (MS_RDONLY if read_only else 0))


def covered(path, bound):
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in bound)


def build_root(cfg):
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
    mount("tmpfs", dev + "/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=%d" % cfg["shm_bytes"])

    os.mkdir(root + "/proc")
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)

    # /tmp: a small tmpfs (TMPDIR points to the working directory, for big temporary files). Mounted
    # before the bind mounts below, since the service's own paths may lie under /tmp.
    os.mkdir(root + "/tmp")
    mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=%d" % cfg["tmp_bytes"])

    # Parents first; a path inside one already bound the same way (or read-write) needs no mount.
    bound_ro, bound_rw = [], []
    paths = [(p, True) for p in cfg["read_only"]] + [(p, False) for p in cfg["read_write"]]
    for path, read_only in sorted(paths, key=lambda item: (len(item[0]), item[1])):
        if (
            covered(path, bound_rw)
            or (read_only and covered(path, bound_ro))
            or (covered(path, SYSTEM_DIRS)
            and read_only)
        ):
            continue
        if not os.path.exists(path):
            continue
        bind(path, root + path, read_only)
        (bound_ro if read_only else bound_rw).append(path)
    if cfg.get("workdir_bytes"):
        workdir_on_tmpfs(cfg)


def workdir_on_tmpfs(cfg):
    """The working directory is a tmpfs of ``workdir_bytes`` holding a copy of what the service put
    there (the script): what the script writes is bounded, and vanishes with the namespace."""
    import shutil

    source, target = cfg["cwd"], cfg["root"] + cfg["cwd"]
    os.makedirs(target, exist_ok=True)
    mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700,size=%d" % cfg["workdir_bytes"])
    for dirpath, dirnames, filenames in os.walk(source):
        relative = os.path.relpath(dirpath, source)
        here = os.path.normpath(os.path.join(target, relative))
        os.makedirs(here, exist_ok=True)
        for name in filenames:
            shutil.copyfile(os.path.join(dirpath, name), os.path.join(here, name), follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(target):
        for path in [dirpath] + [os.path.join(dirpath, n) for n in filenames]:
            os.lchown(path, cfg["uid"], cfg["gid"])


def loopback_up():
    import fcntl
    import socket
    import struct

    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def become_sandbox_user(cfg):
    os.chroot(cfg["root"])
    os.chdir(cfg["cwd"])
    os.setgroups([])
    os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
    os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


def open_door_port(cfg):
    """Listen on a free loopback port for the script's MLflow client; point its tracking URIs there."""
    import socket

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    url = "http://127.0.0.1:%d" % listener.getsockname()[1]
    for name in cfg["door"]["env"]:
        cfg["env"][name] = url
    return listener


def _pump(source, sink):
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
            try:
                sock.shutdown(how)
            except OSError:
                pass


def forward_door(cfg, listener, status_fd):
    """In a forked child, as the sandbox user: relay every connection on the port to the door's socket."""
    import socket
    import threading

    try:
        os.close(status_fd)
        become_sandbox_user(cfg)
        while True:
            client, _ = listener.accept()
            door = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                door.connect(cfg["door"]["socket"])
            except OSError:
                client.close()
                door.close()
                continue
            for source, sink in ((client, door), (door, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()
    except BaseException as exc:
        try:
            os.write(2, ("[mlops sandbox] tracking forwarder stopped: %s\n" % (exc,)).encode())
        finally:
            os._exit(126)


def start_script(cfg, status_fd, listener):
    """In the forked child: enter the new root, become the sandbox user, exec the script."""
    try:
        os.close(status_fd)
        if listener is not None:
            listener.close()
        become_sandbox_user(cfg)
        os.umask(0o007)
        for name, value in cfg["limits"].items():
            resource.setrlimit(getattr(resource, name), tuple(value) if isinstance(value, list) else (value, value))
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        os.execve(cfg["argv"][0], cfg["argv"], cfg["env"])
    except BaseException as exc:
        try:
            os.write(2, ("[mlops sandbox] could not start the script: %s\n" % (exc,)).encode())
        finally:
            os._exit(126)


def main():
    cfg = json.loads(sys.stdin.buffer.read())
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
        listener = open_door_port(cfg) if cfg.get("door") else None
        if listener is not None and os.fork() == 0:
            forward_door(cfg, listener, status_fd)
        child = os.fork()
    except Exception as exc:
        os.write(status_fd, ("error %s\n" % (exc,)).encode())
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
            os.write(status_fd, ("exit %d\n" % status).encode())
            return 0


if __name__ == "__main__":
    sys.exit(main())
