"""kube-proxy for LoadBalancer Services, and the pool of their external addresses.

``LoadBalancerPool`` hands out loopback addresses from 127.0.1.1-127.0.1.254 (the project's local
target uses 127.0.0.N). Other processes run simulators too, so allocations are recorded in a JSON file
under an exclusive flock, entries of dead processes are dropped, and an address is taken only when
every Service port can be bound on it; the bound sockets are handed to the proxy, so nothing can take
the address:port between the check and the use.

``KubeProxy`` listens on address:port for each Service port and forwards every accepted TCP
connection to one ready endpoint (pod IP : resolved targetPort), picked at random with equal
probability, as kube-proxy's default iptables mode does (its chain gives endpoint i of n the
probability 1/(n-i) in turn, so each is chosen with 1/n). Round robin (IPVS ``rr``) would give the
same shares, but two clients interleaving their connections could then see biased subsequences.
With no ready endpoint the connection is closed at once
(kube-proxy rejects traffic to a Service without endpoints). One accept thread per port, two pump
threads per connection, at most ``MAX_CONNECTIONS`` connections per listener.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import random
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.simulator.kube.dns import pid_alive

POOL_FIRST = ipaddress.IPv4Address("127.0.1.1")
POOL_LAST = ipaddress.IPv4Address("127.0.1.254")
MAX_CONNECTIONS = 64

Endpoints = Callable[[], list[tuple[str, int]]]


class PoolExhausted(Exception):
    pass


class LoadBalancerPool:
    def __init__(
        self,
        cluster_id: str,
        *,
        state_path: Path = Path("/tmp/mlops-sim-lb-pool.json"),
        lock_path: Path = Path("/tmp/mlops-sim-lb-pool.lock"),
    ) -> None:
        self.cluster_id = cluster_id
        self.state_path = state_path
        self.lock_path = lock_path

    @contextmanager
    def _state(self) -> Iterator[dict]:
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                try:
                    state = json.loads(self.state_path.read_text())
                except (FileNotFoundError, json.JSONDecodeError):
                    state = {}
                state = {ip: owner for ip, owner in state.items() if pid_alive(owner.get("pid", 0))}
                yield state
                self.state_path.write_text(json.dumps(state))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def allocate(self, ports: list[int]) -> tuple[str, dict[int, socket.socket]]:
        """A free address and listening sockets bound to each of ``ports`` on it."""
        with self._state() as state:
            for number in range(int(POOL_FIRST), int(POOL_LAST) + 1):
                address = str(ipaddress.IPv4Address(number))
                if address in state:
                    continue
                sockets = bind_all(address, ports)
                if sockets is None:
                    continue
                state[address] = {"pid": os.getpid(), "cluster": self.cluster_id}
                return address, sockets
        raise PoolExhausted("no free loopback address in 127.0.1.1-127.0.1.254")

    def rebind(self, address: str, ports: list[int]) -> dict[int, socket.socket] | None:
        return bind_all(address, ports)

    def release(self, address: str) -> None:
        with self._state() as state:
            if state.get(address, {}).get("cluster") == self.cluster_id:
                del state[address]


def bind_all(address: str, ports: list[int]) -> dict[int, socket.socket] | None:
    sockets: dict[int, socket.socket] = {}
    try:
        for port in ports:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sockets[port] = listener
            listener.bind((address, port))
            listener.listen(64)
    except OSError:
        for listener in sockets.values():
            listener.close()
        return None
    return sockets


class _Listener:
    def __init__(self, listener: socket.socket, endpoints: Endpoints) -> None:
        self.listener = listener
        self.endpoints = endpoints
        self._pick = random.Random()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._closed = threading.Event()
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept_loop, daemon=True, name="kube-proxy-accept")
        self.thread.start()

    def _accept_loop(self) -> None:
        self.listener.settimeout(0.2)
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            targets = self.endpoints()
            if not targets or not self._slots.acquire(blocking=False):
                client.close()
                continue
            target = self._pick.choice(targets)
            threading.Thread(target=self._forward, args=(client, target), daemon=True, name="kube-proxy-conn").start()

    def _forward(self, client: socket.socket, target: tuple[str, int]) -> None:
        try:
            try:
                upstream = socket.create_connection(target, timeout=5)
            except OSError:
                client.close()
                return
            upstream.settimeout(None)
            with self._lock:
                self._connections.update({client, upstream})
            pump = threading.Thread(target=_pump, args=(upstream, client), daemon=True, name="kube-proxy-pump")
            pump.start()
            _pump(client, upstream)
            pump.join()
            with self._lock:
                self._connections.difference_update({client, upstream})
        finally:
            self._slots.release()

    def close(self) -> None:
        self._closed.set()
        self.listener.close()
        self.thread.join(timeout=2)
        with self._lock:
            for connection in list(self._connections):
                with suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()


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
        with suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


class KubeProxy:
    def __init__(self) -> None:
        self._listeners: dict[str, list[_Listener]] = {}
        self._lock = threading.Lock()

    def serve(
        self, key: str, sockets: dict[int, socket.socket], endpoints_for_port: Callable[[int], Endpoints]
    ) -> None:
        """Forward each listening socket (by Service port) to that port's endpoints."""
        self.stop(key)
        with self._lock:
            self._listeners[key] = [_Listener(listener, endpoints_for_port(port)) for port, listener in sockets.items()]

    def stop(self, key: str) -> None:
        with self._lock:
            listeners = self._listeners.pop(key, [])
        for listener in listeners:
            listener.close()

    def close(self) -> None:
        for key in list(self._listeners):
            self.stop(key)
