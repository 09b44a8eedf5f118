"""A TCP proxy on 127.0.0.1 that cuts connections at random byte offsets and delays traffic.

Each accepted connection draws its fate from the proxy's seeded generator: pass through, or be
cut after a random number of bytes in one direction (request or response, so a cut can land
before the server saw a request, in the middle of a body, or after the server acted but before
the reply arrived). Every chunk may be delayed a little; with two tablets syncing at once this
reorders their requests at the server. (Bytes within one TCP stream cannot be reordered: TCP
itself guarantees their order, so reordering is between connections.)
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time


class FaultProxy:
    def __init__(
        self,
        upstream: tuple[str, int],
        seed: int,
        cut_probability: float = 0.3,
        max_cut_bytes: int = 6000,
        max_delay: float = 0.003,
        max_connections: int = 5000,
    ) -> None:
        self.upstream = upstream
        self.rng = random.Random(seed)
        self.cut_probability = cut_probability
        self.max_cut_bytes = max_cut_bytes
        self.max_delay = max_delay
        self.max_connections = max_connections
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.cuts = 0
        self.faults = True
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _plan(self) -> tuple[int | None, int | None, float]:
        with self._lock:
            self.connections += 1
            if not self.faults or self.rng.random() >= self.cut_probability:
                return None, None, self.rng.uniform(0, self.max_delay)
            self.cuts += 1
            at = self.rng.randint(0, self.max_cut_bytes)
            if self.rng.random() < 0.5:
                return at, None, self.rng.uniform(0, self.max_delay)
            return None, at, self.rng.uniform(0, self.max_delay)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.connections >= self.max_connections:  # bounded: refuse beyond the budget
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            up_cut, down_cut, delay = self._plan()
            pair = (client, server)
            threading.Thread(
                target=self._pump, args=(client, server, up_cut, delay, pair), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(server, client, down_cut, delay, pair), daemon=True
            ).start()

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        cut: int | None,
        delay: float,
        pair: tuple[socket.socket, socket.socket],
    ) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                if delay:
                    time.sleep(delay * self.rng.random())
                if cut is not None and sent + len(data) >= cut:
                    dst.sendall(data[: cut - sent])
                    self._kill(pair)
                    return
                dst.sendall(data)
                sent += len(data)
        except OSError:
            self._kill(pair)

    @staticmethod
    def _kill(pair: tuple[socket.socket, socket.socket]) -> None:
        for s in pair:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._closed = True
        self.listener.close()
