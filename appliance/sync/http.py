"""A small HTTP client for the lab server: standard library only, with bounded retries.

Transient failures (connection refused or cut at any byte, timeouts, 5xx, 429) are retried
with exponential backoff and full jitter, bounded both in attempts and in total time, so a
flaky network slows sync down but never loses or duplicates anything (every request the
client retries is idempotent or checked by the caller). Other statuses are the caller's to
handle or become one-line `ApplianceError`s.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import ssl
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from appliance.errors import ApplianceError
from appliance.security.tls import check_transport, client_context

__all__ = ["REVOKED_HEADER", "LabError", "LabHttp", "Reply", "Retry", "Revoked", "Truncated"]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
IDLE_REOPEN = 2.0  # seconds; servers close idle keep-alive connections after about 5
TRANSIENT = (OSError, http.client.HTTPException, socket.timeout)


REVOKED_HEADER = "x-appliance-revoked"  # the lab's answer to a token it has revoked


class LabError(ApplianceError):
    """The lab server refused a request, or could not be reached within the retry budget."""


class Revoked(LabError):
    """The lab revoked this device: the tablet locks what it holds (docs/security.md)."""


@dataclass
class Retry:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base·2ⁿ))."""

    attempts: int = 8
    base: float = 0.2
    cap: float = 10.0
    deadline: float = 300.0  # seconds for one request including its retries
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        return self.rng.uniform(0, min(self.cap, self.base * 2**attempt))


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise LabError(f"lab server sent a non-JSON reply (status {self.status})") from exc


class LabHttp:
    """One keep-alive connection to the server, reopened after any failure."""

    def __init__(
        self,
        server: str,
        token: str | None = None,
        retry: Retry | None = None,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        *,
        ca: str | None = None,
        insecure: bool = False,
    ) -> None:
        parts = urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ApplianceError(f"lab server address {server!r} must look like https://host:port")
        check_transport(server, insecure)
        self.ca, self.insecure = ca, insecure  # the pinned lab CA (PEM); plain HTTP allowed
        self.server = server.rstrip("/")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.token = token
        self.retry = retry or Retry()
        self.timeout = timeout
        self.sleep = sleep
        self._conn: http.client.HTTPConnection | None = None
        self._used = 0.0

    def clone(self) -> LabHttp:
        """Another connection to the same server with the same token and retry policy."""
        return LabHttp(
            self.server,
            self.token,
            self.retry,
            self.timeout,
            self.sleep,
            ca=self.ca,
            insecure=self.insecure,
        )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is not None and time.monotonic() - self._used > IDLE_REOPEN:
            self.close()  # the server may have dropped an idle keep-alive connection
        if self._conn is None:
            if self.scheme == "https":
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=client_context(self.ca)
                )
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def once(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict | None = None,
        into: BinaryIO | None = None,
    ) -> Reply:
        """One attempt; any transport failure closes the connection and propagates.

        With `into`, a 200 or 206 reply's body is streamed into that file (a 200 replaces what
        it held) instead of memory, and a body cut short raises `Truncated`."""
        hdrs = {"Accept": "application/json"}
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        hdrs.update(headers or {})
        try:
            conn = self._connection()
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            if into is not None and resp.status in (200, 206):
                data = b""
                _stream(resp, into, restart=resp.status == 200)
            else:
                data = resp.read()
            self._used = time.monotonic()
            reply = Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
            if resp.will_close:
                self.close()
            if not _complete(method, reply):
                raise Truncated(f"{method} {path}: reply cut in its headers")
            return reply
        except BaseException:
            self.close()
            raise

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        json_body: Any = None,
        headers: dict | None = None,
        ok: Collection[int] = (200,),
        need: Collection[str] = (),
        into: BinaryIO | None = None,
    ) -> Reply:
        """Send with retries; return the reply when its status is in `ok`, else raise.

        `need` names headers a successful (2xx) reply must carry; one without them was cut
        short in its headers (http.client takes an early end of the headers for their end)
        and is retried. With `into` (a GET of a file), the body is appended to that file and
        every attempt asks only for the bytes after what it holds (`Range`), so a cut
        connection resumes where it stopped.
        """
        hdrs = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode()
            hdrs["Content-Type"] = "application/json"
        start = time.monotonic()
        problem = ""
        attempt = 0
        for attempt in range(max(1, self.retry.attempts)):
            if attempt:
                wait = self.retry.delay(attempt - 1)
                if time.monotonic() - start + wait > self.retry.deadline:
                    break
                self.sleep(wait)
            if into is not None:
                hdrs.pop("Range", None)
                if into.tell():
                    hdrs["Range"] = f"bytes={into.tell()}-"
            try:
                reply = self.once(method, path, body, hdrs, into)
            except ssl.SSLCertVerificationError as exc:  # not transient: never retried
                raise LabError(
                    f"lab server {self.server}: its certificate is not the lab's "
                    f"({exc.verify_message}); someone may be between this device and the lab"
                ) from exc
            except TRANSIENT as exc:
                problem = f"{type(exc).__name__}: {exc}".strip(": ")
                continue
            if reply.status in ok:
                if 200 <= reply.status < 300 and any(h not in reply.headers for h in need):
                    problem = "reply cut in its headers"
                    continue
                return reply
            if reply.status in RETRY_STATUSES:
                problem = f"status {reply.status}"
                continue
            if reply.headers.get(REVOKED_HEADER):
                raise Revoked(f"lab server {self.server}: this device was revoked by the lab")
            raise LabError(
                f"lab server {self.server}: {method} {path.split('?')[0]} refused "
                f"({reply.status} {_detail(reply)})"
            )
        raise LabError(
            f"lab server {self.server} unreachable after {attempt + 1} attempts "
            f"({problem or 'timed out'})"
        )


class Truncated(http.client.HTTPException):
    """A reply whose headers ended early: its length is unknown, so its body cannot be trusted."""


def _stream(resp: http.client.HTTPResponse, into: BinaryIO, restart: bool) -> None:
    """Copy a reply's body into a file in 1 MiB pieces; a short body raises `Truncated`
    (http.client ends reading at a closed connection without saying so)."""
    if restart:
        into.seek(0)
        into.truncate()
    length = resp.getheader("content-length")
    got = 0
    while piece := resp.read(1 << 20):
        into.write(piece)
        got += len(piece)
    into.flush()
    if length is None or got != int(length):
        raise Truncated(f"reply body cut after {got} bytes")


def _complete(method: str, reply: Reply) -> bool:
    """Replies with a body must say its length (the lab server always does), so a cut in the
    headers is never mistaken for a short, complete body."""
    if method == "HEAD" or reply.status in (204, 304):
        return True
    return "content-length" in reply.headers or "chunked" in reply.headers.get(
        "transfer-encoding", ""
    )


def _detail(reply: Reply) -> str:
    try:
        detail = json.loads(reply.body).get("detail", "")
    except (ValueError, AttributeError):
        detail = reply.body[:200].decode("utf-8", "replace")
    return str(detail)[:300]
