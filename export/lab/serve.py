"""Running the lab server: in the foreground (`appliance-lab serve`) or in a thread (tests,
benchmarks), always on uvicorn."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from export.lab.app import LabConfig, create_app
from export.lab.tls import TlsFiles

START_TIMEOUT_S = 60.0


class LabServer:
    """A lab server on a socket bound before start, so port 0 gives a free port at once."""

    def __init__(
        self,
        config: LabConfig,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TlsFiles | None = None,
    ) -> None:
        """`tls`: serve HTTPS with these files (and the CA at /api/v1/ca); None: plain HTTP,
        which tablets accept only on loopback or with --insecure."""
        if tls is not None:
            config.tls_ca = tls.ca_pem
        self.tls = tls
        self.app, self.store = create_app(config)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()[:2]
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_keep_alive=5,
                ssl_certfile=str(tls.certfile) if tls else None,
                ssl_keyfile=str(tls.keyfile) if tls else None,
            )
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def serve_forever(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.store.close()

    def start(self) -> LabServer:
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self._thread.start()
        # generous: only a server that never starts waits this long (a loaded 2-core CI
        # machine starts it in far less, but can take seconds)
        end = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if time.monotonic() > end or not self._thread.is_alive():
                raise RuntimeError(f"lab server did not start within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sock.close()
        self.store.close()

    def __enter__(self) -> LabServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
