"""The lab server's HTTP API (FastAPI on uvicorn), under /api/v1.

Every endpoint below `/projects/{project}` authorises the device's token for that project
(another project's name is 403, another project's upload or blob id is 404), is rate-limited
per token, and every request body is size-limited before it is read. Operations are
idempotent by id; blobs arrive through the core of the tus protocol (create, HEAD offset,
PATCH) and are kept only when their bytes hash to the announced sha256.
"""

import base64
import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appliance.bundles.archive import BundleError
from appliance.errors import ApplianceError
from appliance.security.tls import CA_PATH
from appliance.sync.http import REVOKED_HEADER
from export.lab.blobs import BlobStore, FileBlobStore, HashMismatch
from export.lab.keys import lab_signing_key, signed_copy
from export.lab.page import render_page
from export.lab.page_auth import register_page
from export.lab.store import Device, InvalidOperation, LabStore, MissingBlob
from export.lab.wire import (
    PROJECT_RE,
    SHA_RE,
    UPLOAD_RE,
    BlobRef,
    EnrollIn,
    Hashes,
    OpsIn,
)

TUS_VERSION = "1.0.0"
MAX_BUCKETS = 10_000  # rate-limit buckets kept per limiter
ANONYMOUS_BODY = 16 << 10  # bytes read from a request without a device token (enrollment)


@dataclass
class LabConfig:
    """Where the server keeps its data and the limits it enforces."""

    root: Path
    database: str | None = None  # SQLAlchemy URL; default SQLite file in root
    max_json_bytes: int = 8 << 20
    max_chunk_bytes: int = 32 << 20
    max_blob_bytes: int = 2 << 30
    max_slide_bytes: int = 32 << 30  # a slide file (announced as one, named by slide.added)
    max_project_bytes: int = 200 << 30
    max_ops_per_request: int = 1000
    max_open_uploads: int = 256  # unfinished uploads per device
    upload_max_age_s: float = 7 * 24 * 3600  # unfinished uploads older than this are removed
    rate_per_second: float = 500.0  # per device token
    rate_burst: int = 1000
    enroll_per_minute: int = 10  # per client address: codes cannot be guessed by brute force
    page_key: str | None = None  # the lab page's key; None: no page
    tls_ca: str | None = None  # PEM of the CA tablets pin (served at /api/v1/ca); None: no TLS
    blob_store: BlobStore | None = field(default=None, repr=False)

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{Path(self.root) / 'lab.db'}"


class RateLimiter:
    """Token buckets keyed by token hash or client address."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if key not in self._buckets and len(self._buckets) >= MAX_BUCKETS:
                self._evict(now)
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1, now)
            return True

    def _evict(self, now: float) -> None:
        """Bounded memory: forget buckets that have refilled (forgetting them changes
        nothing), then the longest idle half; never all at once, so a flood of new keys
        cannot hand a busy key a fresh burst."""
        full = [k for k, (n, t) in self._buckets.items() if n + (now - t) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= MAX_BUCKETS:
            by_age = sorted(self._buckets, key=lambda k: self._buckets[k][1])
            for k in by_age[: len(by_age) // 2]:
                del self._buckets[k]


class BodyLimit:
    """Refuse bodies over the limit with 413: by Content-Length up front, else while reading
    (chunked bodies are buffered up to the limit, so the application never sees a part).

    Requests to a project are authenticated before a byte of their body is read: without a
    token of a live device they get 401 at once, so nobody without a token can make the
    server hold a connection and memory for a large body. Other paths (enrollment) read at
    most `ANONYMOUS_BODY` bytes."""

    def __init__(
        self, app: ASGIApp, json_limit: int, chunk_limit: int, known: Callable[[str], bool]
    ) -> None:
        self.app, self.json_limit, self.chunk_limit = app, json_limit, chunk_limit
        self.known = known

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if scope["path"].startswith("/api/v1/projects/"):
            auth = headers.get(b"authorization", b"").decode("latin-1")
            token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
            if not token or len(auth) > 200 or not await run_in_threadpool(self.known, token):
                await self.app(scope, _no_body, send)  # answers 401 (or 429) without reading
                return
            uploading = scope["method"] == "PATCH" or (
                scope["method"] == "POST" and scope["path"].endswith("/uploads")
            )
            limit = self.chunk_limit if uploading else self.json_limit
        else:
            limit = min(self.json_limit, ANONYMOUS_BODY)
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _too_large(send, limit)
            return
        body = bytearray()
        while True:  # buffer the body (at most `limit` bytes) before the app sees any of it
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await _too_large(send, limit)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _no_body(message: Any = None) -> Message:
    """The request's body as seen by a handler that refuses it before reading: none."""
    return {"type": "http.request", "body": b"", "more_body": False}


async def _too_large(send: Send, limit: int) -> None:
    body = f'{{"detail":"request body over the limit of {limit} bytes"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})


ProjectName = Annotated[str, PathParam(pattern=PROJECT_RE)]


def create_app(config: LabConfig) -> tuple[ASGIApp, LabStore]:
    """The ASGI application (body limits around FastAPI) and its store (close it after use)."""
    Path(config.root).mkdir(parents=True, exist_ok=True)
    store = LabStore(config.database_url)
    blobs: BlobStore = config.blob_store or FileBlobStore(Path(config.root))
    limiter = RateLimiter(config.rate_per_second, config.rate_burst)
    signer = lab_signing_key(Path(config.root))
    enroll_limiter = RateLimiter(config.enroll_per_minute / 60.0, config.enroll_per_minute)
    failures = RateLimiter(config.rate_per_second, config.rate_burst)  # per client address
    app = FastAPI(
        title="Annotation appliance lab server", docs_url=None, redoc_url=None, openapi_url=None
    )

    seen: dict[int, float] = {}

    def authenticated(request: Request) -> Device:
        """The live device whose token the request carries. Each device has its own request
        budget, looked up only after its token is known, so made-up tokens never touch a
        real device's budget; failed attempts are limited per client address."""
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        found = store.device_for_token(token) if token and len(auth) <= 200 else None
        if found is None or found.revoked:
            client = request.client.host if request.client else "?"
            if not failures.allow(client):
                raise HTTPException(429, "too many failed attempts", {"Retry-After": "60"})
            if found is not None:  # revoked: the tablet learns it and locks its projects
                raise HTTPException(
                    401,
                    "this device was revoked",
                    {"WWW-Authenticate": "Bearer", REVOKED_HEADER: "1"},
                )
            raise HTTPException(401, "unknown or revoked token", {"WWW-Authenticate": "Bearer"})
        if not limiter.allow(f"device:{found.id}"):
            raise HTTPException(429, "too many requests", {"Retry-After": "1"})
        return found

    def device(request: Request, project: ProjectName) -> Device:
        found = authenticated(request)
        if found.project != project:
            raise HTTPException(403, "this device is not enrolled in that project")
        now = time.monotonic()
        if now - seen.get(found.id, -1e9) > 60:  # "last sync" on the lab page, one write a minute
            seen[found.id] = now
            store.touch(found.id)
        return found

    Dev = Annotated[Device, Depends(device)]

    def need_role(dev: Device, role: str) -> None:
        if dev.role != role:
            raise HTTPException(403, f"only a {role} may do this")

    @app.exception_handler(ApplianceError)
    async def _user_error(_request: Request, exc: ApplianceError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(request: Request) -> dict[str, Any]:
        """The API description, for enrolled devices only (it maps every endpoint)."""
        authenticated(request)
        return app.openapi()

    @app.get("/api/v1/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(CA_PATH)
    def lab_ca() -> PlainTextResponse:
        """The CA tablets pin; public, and checked by them against the enrollment code."""
        if config.tls_ca is None:
            raise HTTPException(404, "this lab server does not serve TLS")
        return PlainTextResponse(config.tls_ca, media_type="application/x-pem-file")

    @app.post("/api/v1/enroll")
    def enroll(request: Request, body: EnrollIn) -> dict[str, Any]:
        client = request.client.host if request.client else "?"
        if not enroll_limiter.allow(client):
            raise HTTPException(429, "too many enrollment attempts", {"Retry-After": "60"})
        redeemed = store.redeem(body.code, body.name, body.token)
        if redeemed is None:
            raise HTTPException(401, "unknown, used or expired enrollment code")
        token, dev = redeemed
        return {
            "token": token,
            "device_id": dev.id,
            "project": dev.project,
            "role": dev.role,
            "lab_key": signer.public.to_text(),  # the tablet pins it: bundles signed by it
        }

    @app.post("/api/v1/projects/{project}/ops")
    def push_ops(dev: Dev, body: OpsIn) -> dict[str, Any]:
        need_role(dev, "tablet")
        if len(body.ops) > config.max_ops_per_request:
            raise HTTPException(413, f"at most {config.max_ops_per_request} operations a request")
        for op in body.ops:  # only a slide may be larger than the limit for other blobs
            big = op.blob and blobs.has(op.blob) and blobs.size(op.blob) > config.max_blob_bytes
            if big and op.kind != "slide.added":
                raise HTTPException(
                    422, f"operation {op.uid} ({op.kind[:40]}): its blob is over the limit"
                )
        ops = [op.model_dump() for op in body.ops]
        try:
            accepted = store.push_ops(dev.project_id, dev.id, ops, held_blob)
        except MissingBlob as exc:
            raise HTTPException(409, f"blob {exc.args[0]} must be uploaded first") from exc
        except InvalidOperation as exc:
            raise HTTPException(422, str(exc)) from exc
        return {"accepted": [{"uid": uid, "seq": seq} for uid, seq in accepted]}

    def held_blob(sha256: str) -> Path | bytes | None:
        """A held blob for the operation check: its file, or its bytes from a store without
        local files."""
        if not blobs.has(sha256):
            return None
        return blobs.path(sha256) or b"".join(blobs.read(sha256))

    @app.get("/api/v1/projects/{project}/ops")
    def pull_ops(
        dev: Dev,
        after: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    ) -> dict[str, Any]:
        ops = store.pull_ops(dev.project_id, after, limit)
        return {
            "ops": [op.to_wire() for op in ops],
            "last": ops[-1].seq if ops else after,
            "more": len(ops) == limit,
        }

    @app.post("/api/v1/projects/{project}/blobs/missing")
    def missing(dev: Dev, body: Hashes) -> dict[str, list[str]]:
        return {"missing": store.missing_blobs(dev.project_id, body.hashes)}

    @app.get("/api/v1/projects/{project}/blobs/{sha256}")
    def get_blob(
        dev: Dev, sha256: Annotated[str, PathParam(pattern=SHA_RE)], request: Request
    ) -> Response:
        """The blob, or with `Range: bytes=N-` its bytes from N on (206): a download cut
        short resumes instead of starting over. Other range forms get the whole blob."""
        if not store.has_blob(dev.project_id, sha256) or not blobs.has(sha256):
            raise HTTPException(404, "no such blob in this project")
        size = blobs.size(sha256)
        match = re.fullmatch(r"bytes=(\d{1,15})-", request.headers.get("range", ""))
        if match is None:
            return StreamingResponse(
                blobs.read(sha256),
                media_type="application/octet-stream",
                headers={"Content-Length": str(size), "Accept-Ranges": "bytes"},
            )
        start = int(match.group(1))
        if start >= size:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        return StreamingResponse(
            blobs.read(sha256, start=start),
            status_code=206,
            media_type="application/octet-stream",
            headers={
                "Content-Length": str(size - start),
                "Content-Range": f"bytes {start}-{size - 1}/{size}",
            },
        )

    @app.post("/api/v1/projects/{project}/uploads", status_code=201)
    async def create_upload(dev: Dev, request: Request, project: ProjectName) -> Response:
        """tus creation, with the creation-with-upload extension: a body (application/offset+
        octet-stream) is the first chunk, so a small blob travels in one request."""
        length_header = request.headers.get("upload-length", "")
        if not length_header.isdigit():
            raise HTTPException(400, "Upload-Length header required")
        length = int(length_header)
        metadata = _metadata(request.headers.get("upload-metadata", ""))
        sha = metadata.get("sha256", "")
        if not re.match(SHA_RE, sha):
            raise HTTPException(400, "Upload-Metadata must carry the blob's sha256")
        limit = config.max_slide_bytes if metadata.get("kind") == "slide" else config.max_blob_bytes
        if length > limit:
            raise HTTPException(413, f"blob over the limit of {limit} bytes")
        data = await request.body()
        if data and request.headers.get("content-type") != "application/offset+octet-stream":
            raise HTTPException(415, "Content-Type must be application/offset+octet-stream")
        return await run_in_threadpool(_create, dev, project, sha, length, data)

    last_sweep = [-float("inf")]

    def stored_bytes(project_id: int) -> int:
        """What a project holds on the server's disk: its blobs and the bytes its unfinished
        uploads received so far. Every chunk is checked against the quota before it is
        written, so no device (nor many uploads at once) can store more than the quota."""
        partial = sum(blobs.offset(u) for u in store.open_uploads(project_id))
        return store.project_bytes(project_id) + partial

    def _create(dev: Device, project: str, sha: str, length: int, data: bytes) -> Response:
        if time.monotonic() - last_sweep[0] > 3600:  # at most hourly, and at the first upload
            last_sweep[0] = time.monotonic()
            sweep_uploads(store, blobs, config.upload_max_age_s)
        if stored_bytes(dev.project_id) + length > config.max_project_bytes:
            raise HTTPException(413, "project storage quota exceeded")
        if len(data) == length:  # the whole blob in one request: no partial state to keep
            if hashlib.sha256(data).hexdigest() != sha:
                raise HTTPException(422, f"uploaded bytes do not hash to {sha}")
            blobs.put(sha, data)
            store.add_blob(dev.project_id, sha, length)
            upload_id, offset = secrets.token_hex(16), length  # already complete: HEAD is 404
        else:
            if len(store.open_uploads(dev.project_id, dev.id)) >= config.max_open_uploads:
                raise HTTPException(
                    429, "too many unfinished uploads from this device", {"Retry-After": "60"}
                )
            upload_id = store.add_upload(dev.project_id, dev.id, sha, length)
            offset = _append(dev, upload_id, sha, length, 0, data) if data else 0
        return Response(
            status_code=201,
            headers={
                "Location": f"/api/v1/projects/{project}/uploads/{upload_id}",
                "Upload-Offset": str(offset),
                "Tus-Resumable": TUS_VERSION,
            },
        )

    UploadId = Annotated[str, PathParam(pattern=UPLOAD_RE)]

    @app.head("/api/v1/projects/{project}/uploads/{upload_id}")
    def upload_offset(dev: Dev, upload_id: UploadId) -> Response:
        found = store.upload(dev.project_id, dev.id, upload_id)
        if found is None:
            raise HTTPException(404, "no such upload in this project")
        return Response(
            status_code=200,
            headers={
                "Upload-Offset": str(blobs.offset(upload_id)),
                "Upload-Length": str(found[1]),
                "Tus-Resumable": TUS_VERSION,
                "Cache-Control": "no-store",
            },
        )

    @app.patch("/api/v1/projects/{project}/uploads/{upload_id}")
    async def upload_patch(dev: Dev, upload_id: UploadId, request: Request) -> Response:
        if request.headers.get("content-type") != "application/offset+octet-stream":
            raise HTTPException(415, "Content-Type must be application/offset+octet-stream")
        offset_header = request.headers.get("upload-offset", "")
        if not offset_header.isdigit():
            raise HTTPException(400, "Upload-Offset header required")
        data = await request.body()
        return await run_in_threadpool(_patch, dev, upload_id, int(offset_header), data)

    def _patch(dev: Device, upload_id: str, offset: int, data: bytes) -> Response:
        found = store.upload(dev.project_id, dev.id, upload_id)
        if found is None:
            raise HTTPException(404, "no such upload in this project")
        sha, length = found
        current = blobs.offset(upload_id)
        if offset != current:
            raise HTTPException(409, f"offset {offset} is not the upload's offset {current}")
        new = _append(dev, upload_id, sha, length, offset, data)
        return Response(
            status_code=204, headers={"Upload-Offset": str(new), "Tus-Resumable": TUS_VERSION}
        )

    def _append(
        dev: Device, upload_id: str, sha: str, length: int, offset: int, data: bytes
    ) -> int:
        """Store `data` at `offset`; at the announced length verify the hash and keep the blob."""
        if offset + len(data) > length:
            raise HTTPException(413, "more bytes than the announced Upload-Length")
        if stored_bytes(dev.project_id) + len(data) > config.max_project_bytes:
            blobs.discard(upload_id)  # it can never finish within the quota
            store.drop_upload(upload_id)
            raise HTTPException(413, "project storage quota exceeded")
        new = blobs.append(upload_id, offset, data)
        if new == length:
            if stored_bytes(dev.project_id) > config.max_project_bytes:  # chunks in a race
                blobs.discard(upload_id)
                store.drop_upload(upload_id)
                raise HTTPException(413, "project storage quota exceeded")
            try:
                size = blobs.commit(upload_id, sha)
            except HashMismatch as exc:
                store.drop_upload(upload_id)
                raise HTTPException(422, f"uploaded bytes do not hash to {sha}") from exc
            store.finish_upload(dev.project_id, upload_id, sha, size)
        return new

    @app.get("/api/v1/projects/{project}/models")
    def list_models(dev: Dev) -> dict[str, Any]:
        return {"models": store.models(dev.project_id)}

    @app.post("/api/v1/projects/{project}/models")
    def push_model(dev: Dev, body: BlobRef) -> dict[str, Any]:
        need_role(dev, "workstation")
        path = _held(dev, body.sha256)
        from appliance.bundles.model_bundle import read_model_bundle

        try:
            bundle = read_model_bundle(path)
            sha, signed = signed_copy(path, signer)  # tablets install only what the lab signed
        except BundleError as exc:
            raise HTTPException(422, f"not a valid model bundle: {exc}") from exc
        blobs.put(sha, signed)
        store.add_blob(dev.project_id, sha, len(signed))
        summary = {
            "job_id": bundle.job_id,
            "models": [
                {"id": m.id, "role": m.role, "name": m.name, "metrics": m.metrics}
                for m in bundle.models
            ],
        }
        store.add_model(dev.project_id, dev.id, bundle.id, sha, summary)
        return {"bundle_id": bundle.id}

    @app.get("/api/v1/projects/{project}/jobs")
    def list_jobs(dev: Dev) -> dict[str, Any]:
        need_role(dev, "workstation")
        return {"jobs": store.jobs(dev.project_id)}

    @app.post("/api/v1/projects/{project}/jobs")
    def push_job(dev: Dev, body: BlobRef) -> dict[str, str]:
        need_role(dev, "tablet")
        path = _held(dev, body.sha256)
        from appliance.bundles.training_job import read_training_job

        try:
            job = read_training_job(path)
        except BundleError as exc:
            raise HTTPException(422, f"not a valid training-job bundle: {exc}") from exc
        store.add_job(dev.project_id, dev.id, body.sha256)
        return {"job_id": job.id}

    def _held(dev: Device, sha256: str) -> Path:
        path = blobs.path(sha256)
        if not store.has_blob(dev.project_id, sha256) or path is None:
            raise HTTPException(404, "no such blob in this project; upload it first")
        return path

    @app.get("/api/v1/projects/{project}/conflicts")
    def conflicts(dev: Dev) -> dict[str, Any]:
        return {"conflicts": store.conflicts(dev.project_id)}

    register_page(app, config.page_key, lambda: render_page(store.overview(), store.devices()))

    def live(token: str) -> bool:
        found = store.device_for_token(token)
        return found is not None and not found.revoked

    wrapped = BodyLimit(app, config.max_json_bytes, config.max_chunk_bytes, live)
    return wrapped, store


def sweep_uploads(store: LabStore, blobs: BlobStore, max_age_s: float) -> int:
    """Remove unfinished uploads older than `max_age_s`, records and partial bytes; how many."""
    stale = store.stale_uploads(max_age_s)
    for upload_id in stale:
        blobs.discard(upload_id)
        store.drop_upload(upload_id)
    return len(stale)


def _metadata(header: str) -> dict[str, str]:
    """tus Upload-Metadata: comma-separated `key base64(value)` pairs."""
    out = {}
    for pair in header.split(","):
        key, _, value = pair.strip().partition(" ")
        try:
            out[key] = base64.b64decode(value, validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            continue
    return out
