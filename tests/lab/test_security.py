"""Security: every endpoint refuses missing and revoked tokens and other projects' ids (BOLA);
enrollment codes work once; bodies, blobs and projects are size-limited; uploaded bytes must
match their hash; path-like ids never reach the file system."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import threading
from pathlib import Path

import pytest

from appliance.sync.http import LabHttp
from export.lab.serve import LabServer
from tests.lab.conftest import make_config
from tests.lab.crafted import image_op, label_op, model_op, png

SHA = "ab" * 32
UPLOAD = "cd" * 16


def endpoints(project: str, sha: str = SHA, upload: str = UPLOAD) -> list[tuple[str, str, dict]]:
    """(method, path, json body) for every endpoint below /projects/{project}."""
    base = f"/api/v1/projects/{project}"
    return [
        ("GET", f"{base}/ops?after=0", {}),
        ("POST", f"{base}/ops", {"ops": []}),
        ("POST", f"{base}/blobs/missing", {"hashes": [sha]}),
        ("GET", f"{base}/blobs/{sha}", {}),
        ("POST", f"{base}/uploads", {}),
        ("HEAD", f"{base}/uploads/{upload}", {}),
        ("PATCH", f"{base}/uploads/{upload}", {}),
        ("GET", f"{base}/models", {}),
        ("POST", f"{base}/models", {"sha256": sha}),
        ("GET", f"{base}/jobs", {}),
        ("POST", f"{base}/jobs", {"sha256": sha}),
        ("GET", f"{base}/conflicts", {}),
    ]


def call(
    lab: LabServer,
    token: str | None,
    method: str,
    path: str,
    body: dict | bytes = b"",
    headers: dict | None = None,
) -> http.client.HTTPResponse | tuple[int, dict, bytes]:
    h = LabHttp(lab.url, token)
    try:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        hdrs = {"Content-Type": "application/json"} if isinstance(body, dict) else {}
        hdrs.update(headers or {})
        r = h.once(method, path, data or None, hdrs)
        return r.status, r.headers, r.body
    finally:
        h.close()


def device(lab: LabServer, project: str, role: str = "tablet") -> tuple[str, int]:
    code, _ = lab.store.create_enrollment(project, role, f"{project}-{role}")
    token, dev = lab.store.redeem(code, None)
    return token, dev.id


def upload(lab: LabServer, token: str, project: str, data: bytes, sha: str | None = None) -> int:
    sha = sha or hashlib.sha256(data).hexdigest()
    status, headers, _ = call(
        lab,
        token,
        "POST",
        f"/api/v1/projects/{project}/uploads",
        headers={
            "Upload-Length": str(len(data)),
            "Upload-Metadata": "sha256 " + base64.b64encode(sha.encode()).decode(),
        },
    )
    assert status == 201, status
    status, _, _ = call(
        lab,
        token,
        "PATCH",
        headers["location"],
        data,
        {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
    )
    return status


@pytest.fixture
def small_lab(tmp_path: Path, database: str | None):
    config = make_config(
        tmp_path / "lab",
        database,
        max_json_bytes=64 << 10,
        max_chunk_bytes=128 << 10,
        max_blob_bytes=256 << 10,
        max_project_bytes=300 << 10,
        max_ops_per_request=50,
    )
    with LabServer(config) as server:
        yield server


def test_no_token_and_revoked_token_are_refused_everywhere(small_lab: LabServer) -> None:
    token, dev_id = device(small_lab, "A")
    for method, path, body in endpoints("A"):
        assert call(small_lab, None, method, path, body)[0] == 401, (method, path)
        assert call(small_lab, "made-up-token", method, path, body)[0] == 401, (method, path)
    assert call(small_lab, token, "GET", "/api/v1/projects/A/ops")[0] == 200
    assert small_lab.store.revoke(dev_id)
    for method, path, body in endpoints("A"):
        assert call(small_lab, token, method, path, body)[0] == 401, (method, path)


def test_another_projects_ids_are_refused_on_every_endpoint(small_lab: LabServer) -> None:
    token_a, _ = device(small_lab, "A")
    token_b, _ = device(small_lab, "B")
    ws_b, _ = device(small_lab, "B", "workstation")
    data = png(seed=1)
    sha = hashlib.sha256(data).hexdigest()
    assert upload(small_lab, token_a, "A", data) == 204
    status, headers, _ = call(
        small_lab,
        token_a,
        "POST",
        "/api/v1/projects/A/uploads",
        headers={
            "Upload-Length": "10",
            "Upload-Metadata": "sha256 " + base64.b64encode(SHA.encode()).decode(),
        },
    )
    upload_a = headers["location"].rsplit("/", 1)[1]
    op = image_op("a" * 32, sha)
    assert call(small_lab, token_a, "POST", "/api/v1/projects/A/ops", {"ops": [op]})[0] == 200
    # B's tokens on A's paths: 403 everywhere
    for token in (token_b, ws_b):
        for method, path, body in endpoints("A", sha, upload_a):
            assert call(small_lab, token, method, path, body)[0] == 403, (method, path)
    # A's ids on B's own paths: not found, never A's data
    for token in (token_b, ws_b):
        for method, path, body in endpoints("B", sha, upload_a):
            status, _, reply = call(small_lab, token, method, path, body)
            assert data not in reply
            if method == "GET" and "/blobs/" in path:
                assert status == 404
            if "/uploads/" in path:
                assert status in (404, 415, 400), (method, path, status)
    assert (
        call(small_lab, token_b, "POST", "/api/v1/projects/B/blobs/missing", {"hashes": [sha]})[2]
        == json.dumps({"missing": [sha]}).replace(" ", "").encode()
    )
    assert (
        call(
            small_lab, token_b, "POST", "/api/v1/projects/B/ops", {"ops": [dict(op, uid="b" * 32)]}
        )[0]
        == 409
    )  # A's blob is not B's
    assert call(small_lab, ws_b, "POST", "/api/v1/projects/B/models", {"sha256": sha})[0] == 404
    assert json.loads(call(small_lab, token_b, "GET", "/api/v1/projects/B/ops")[2])["ops"] == []
    # the same operation id in B is B's own operation, not a replay of A's
    assert (
        call(small_lab, token_b, "POST", "/api/v1/projects/B/ops", {"ops": [model_op("a" * 32)]})[0]
        == 200
    )
    a_ops = json.loads(call(small_lab, token_a, "GET", "/api/v1/projects/A/ops")[2])["ops"]
    assert [o["blob"] for o in a_ops] == [sha]


def test_operations_other_tablets_could_not_apply_are_refused(small_lab: LabServer) -> None:
    token, _ = device(small_lab, "A")
    data = png(seed=2)
    sha = hashlib.sha256(data).hexdigest()
    assert upload(small_lab, token, "A", data) == 204

    def push(*ops: dict) -> int:
        return call(small_lab, token, "POST", "/api/v1/projects/A/ops", {"ops": list(ops)})[0]

    other = "0" * 64
    assert push(label_op("l" * 32, sha)) == 422  # its image was never sent
    assert push(label_op("l" * 32, sha), image_op("i" * 32, sha)) == 422  # image after label
    assert push(image_op("i" * 32, sha), label_op("m" * 32, sha, parent="p" * 32)) == 422
    assert push(image_op("i" * 32, sha), label_op("m" * 32, sha, source="guess")) == 422
    assert push(image_op("i" * 32, sha), label_op("m" * 32, sha, classes="[1")) == 422
    assert push(label_op("m" * 32, sha, instances="<script>")) == 422
    assert push(dict(image_op("i" * 32, sha), ref=f"{other}:")) == 422  # ref is not its blob
    assert push({**model_op("k" * 32), "kind": "image.deleted"}) == 422
    assert json.loads(call(small_lab, token, "GET", "/api/v1/projects/A/ops")[2])["ops"] == []
    assert (
        push(
            image_op("i" * 32, sha),
            label_op("m" * 32, sha),
            label_op("n" * 32, sha, parent="m" * 32),
        )
        == 200
    )
    assert push(label_op("o" * 32, sha, parent="n" * 32)) == 200  # parent from an earlier push


def test_roles_are_enforced(small_lab: LabServer) -> None:
    tab, _ = device(small_lab, "A")
    ws, _ = device(small_lab, "A", "workstation")
    assert call(small_lab, ws, "POST", "/api/v1/projects/A/ops", {"ops": []})[0] == 403
    assert call(small_lab, tab, "GET", "/api/v1/projects/A/jobs")[0] == 403
    assert call(small_lab, tab, "POST", "/api/v1/projects/A/models", {"sha256": SHA})[0] == 403


def test_enrollment_code_works_once_even_when_raced(small_lab: LabServer) -> None:
    code, _ = small_lab.store.create_enrollment("A", "tablet", "t")
    results: list[int] = []

    def redeem() -> None:
        results.append(call(small_lab, None, "POST", "/api/v1/enroll", {"code": code})[0])

    threads = [threading.Thread(target=redeem) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == [200] + [401] * 5
    assert call(small_lab, None, "POST", "/api/v1/enroll", {"code": code})[0] == 401
    assert call(small_lab, None, "POST", "/api/v1/enroll", {"code": "WRONG-CODE"})[0] == 401


def test_enrollment_attempts_are_rate_limited(tmp_path: Path) -> None:
    with LabServer(make_config(tmp_path / "lab", None, enroll_per_minute=5)) as lab:
        codes = [
            call(lab, None, "POST", "/api/v1/enroll", {"code": f"GUESS-{i:04d}"})[0]
            for i in range(8)
        ]
    assert codes[:5] == [401] * 5 and codes[5:] == [429] * 3


def test_requests_are_rate_limited_per_token(tmp_path: Path) -> None:
    # one request back per 100 s: a slow machine taking seconds per request refills nothing
    # (at 1 per second a loaded CI machine got tokens back between the requests)
    config = make_config(tmp_path / "lab", None, rate_per_second=0.01, rate_burst=3)
    with LabServer(config) as lab:
        token, _ = device(lab, "A")
        statuses = [call(lab, token, "GET", "/api/v1/projects/A/ops")[0] for _ in range(5)]
    assert statuses == [200] * 3 + [429] * 2


def test_oversized_bodies_and_quotas_are_refused(small_lab: LabServer) -> None:
    token, _ = device(small_lab, "A")
    big = {"hashes": [SHA] * 2000}  # ~140 KB of JSON > 64 KiB
    assert call(small_lab, token, "POST", "/api/v1/projects/A/blobs/missing", big)[0] == 413
    # without Content-Length (chunked): refused while reading
    conn = http.client.HTTPConnection("127.0.0.1", small_lab.port, timeout=10)
    conn.putrequest("POST", "/api/v1/projects/A/blobs/missing")
    conn.putheader("Authorization", f"Bearer {token}")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    payload = json.dumps(big).encode()
    try:
        for i in range(0, len(payload), 8192):
            part = payload[i : i + 8192]
            conn.send(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        conn.send(b"0\r\n\r\n")
    except OSError:
        pass  # the server may close as soon as it has refused
    assert conn.getresponse().status == 413
    conn.close()
    ops = [model_op(f"{i:032x}") for i in range(51)]
    assert call(small_lab, token, "POST", "/api/v1/projects/A/ops", {"ops": ops})[0] == 413
    meta = "sha256 " + base64.b64encode(SHA.encode()).decode()
    status = call(
        small_lab,
        token,
        "POST",
        "/api/v1/projects/A/uploads",
        headers={"Upload-Length": str(300 << 10), "Upload-Metadata": meta},
    )[0]
    assert status == 413  # over the blob limit
    assert upload(small_lab, token, "A", b"x" * (200 << 10)) == 413  # PATCH over chunk limit
    first = b"y" * (120 << 10)
    status, headers, _ = call(
        small_lab,
        token,
        "POST",
        "/api/v1/projects/A/uploads",
        headers={
            "Upload-Length": str(len(first)),
            "Upload-Metadata": "sha256 "
            + base64.b64encode(hashlib.sha256(first).hexdigest().encode()).decode(),
        },
    )
    for off in range(0, len(first), 100 << 10):
        assert (
            call(
                small_lab,
                token,
                "PATCH",
                headers["location"],
                first[off : off + (100 << 10)],
                {"Upload-Offset": str(off), "Content-Type": "application/offset+octet-stream"},
            )[0]
            == 204
        )
    second = b"z" * (200 << 10)
    status = call(
        small_lab,
        token,
        "POST",
        "/api/v1/projects/A/uploads",
        headers={"Upload-Length": str(len(second)), "Upload-Metadata": meta},
    )[0]
    assert status == 413  # the project's quota (300 KiB) would be exceeded


def test_blob_whose_bytes_do_not_match_its_hash_is_refused(small_lab: LabServer) -> None:
    token, _ = device(small_lab, "A")
    claimed = hashlib.sha256(b"the real bytes").hexdigest()
    assert upload(small_lab, token, "A", b"other bytes!!!", sha=claimed) == 422
    whole = {  # the whole blob in the creation request (creation-with-upload)
        "Upload-Length": "14",
        "Upload-Metadata": "sha256 " + base64.b64encode(claimed.encode()).decode(),
        "Content-Type": "application/offset+octet-stream",
    }
    status = call(small_lab, token, "POST", "/api/v1/projects/A/uploads", b"other bytes!!!", whole)
    assert status[0] == 422
    _status, _, body = call(
        small_lab, token, "POST", "/api/v1/projects/A/blobs/missing", {"hashes": [claimed]}
    )
    assert json.loads(body) == {"missing": [claimed]}
    assert not list(
        (Path(small_lab.store.url.removeprefix("sqlite:///")).parent / "blobs").rglob("*")
    ) or small_lab.store.url.startswith("postgresql")
    assert call(small_lab, token, "GET", f"/api/v1/projects/A/blobs/{claimed}")[0] == 404


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/projects/../ops",
        "/api/v1/projects/..%2F..%2Fetc/ops",
        "/api/v1/projects/A%2F..%2FB/ops",
        "/api/v1/projects/.hidden/ops",
        "/api/v1/projects/A/blobs/..%2F..%2Flab.db",
        "/api/v1/projects/A/blobs/" + "../" * 20 + "lab.db",
        "/api/v1/projects/A/uploads/..%2F..%2Fpage.key",
    ],
)
def test_path_like_ids_are_refused(small_lab: LabServer, path: str) -> None:
    token, _ = device(small_lab, "A")
    for method in ("GET", "HEAD", "PATCH"):
        status, _, body = call(
            small_lab,
            token,
            method,
            path,
            headers={"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        )
        assert status in (403, 404, 405, 422), (method, path, status)
        assert b"page-key" not in body and b"SQLite" not in body
    bad_op = {"uid": "../../etc/passwd", "kind": "label.saved", "ref": "x", "payload": {}}
    assert call(small_lab, token, "POST", "/api/v1/projects/A/ops", {"ops": [bad_op]})[0] == 422


def test_lab_page_needs_its_key_in_a_header_or_cookie(small_lab: LabServer) -> None:
    assert call(small_lab, None, "GET", "/lab")[0] == 401
    assert call(small_lab, None, "GET", "/lab", headers={"X-Lab-Key": "wrong"})[0] == 401
    status, _, body = call(small_lab, None, "GET", "/lab", headers={"X-Lab-Key": "page-key"})
    assert status == 200 and b"Lab server" in body
    # never in the URL: it would land in logs, history and Referer headers
    status, _, body = call(small_lab, None, "GET", "/lab?key=page-key")
    assert status == 401 and b"refused" in body
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, headers, _ = call(small_lab, None, "POST", "/lab/login", b"key=page-key", form)
    cookie = headers["set-cookie"]
    assert status == 303 and "httponly" in cookie.lower() and "page-key" not in cookie
    session = {"Cookie": cookie.split(";")[0]}
    assert call(small_lab, None, "GET", "/lab", headers=session)[0] == 200
    assert call(small_lab, None, "POST", "/lab/login", b"key=wrong", form)[0] == 401


def raw_request(lab: LabServer, head: str) -> bytes:
    """Send only a request's head (no body) and read what comes back within 5 s."""
    import socket

    with socket.create_connection(("127.0.0.1", lab.port), timeout=5) as sock:
        sock.sendall(head.encode())
        try:
            return sock.recv(4096)
        except TimeoutError:
            return b""


def test_unauthenticated_bodies_are_refused_before_they_are_read(small_lab: LabServer) -> None:
    """A PATCH declaring 30 MB without a valid token is answered 401 at once, while its body
    is still unsent (before: the server waited for the whole body)."""
    token, _ = device(small_lab, "A")
    path = f"/api/v1/projects/A/uploads/{UPLOAD}"
    for auth in ("", "Authorization: Bearer made-up-token\r\n"):
        head = (
            f"PATCH {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {30 << 20}\r\n"
            "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n\r\n"
        )
        assert raw_request(small_lab, head).startswith(b"HTTP/1.1 401"), auth
    # enrollment has no token: it reads a few KiB at most
    head = f"POST /api/v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Length: {1 << 20}\r\n\r\n"
    assert raw_request(small_lab, head).startswith(b"HTTP/1.1 413")
    # a device's own requests still carry bodies up to the limits
    assert (
        call(small_lab, token, "POST", "/api/v1/projects/A/blobs/missing", {"hashes": []})[0] == 200
    )


def test_the_api_description_needs_a_token(small_lab: LabServer) -> None:
    token, _ = device(small_lab, "A")
    assert call(small_lab, None, "GET", "/openapi.json")[0] == 401
    assert call(small_lab, "made-up", "GET", "/openapi.json")[0] == 401
    status, _, body = call(small_lab, token, "GET", "/openapi.json")
    assert status == 200 and "/api/v1/projects/{project}/ops" in json.loads(body)["paths"]


def test_a_device_cannot_touch_another_devices_upload(small_lab: LabServer) -> None:
    first, _ = device(small_lab, "A")
    second, _ = device(small_lab, "A")
    data = b"q" * 1000
    sha = hashlib.sha256(data).hexdigest()
    status, headers, _ = call(
        small_lab,
        first,
        "POST",
        "/api/v1/projects/A/uploads",
        headers={
            "Upload-Length": str(len(data)),
            "Upload-Metadata": "sha256 " + base64.b64encode(sha.encode()).decode(),
        },
    )
    assert status == 201
    url = headers["location"]
    patch = {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    assert call(small_lab, second, "HEAD", url)[0] == 404
    assert call(small_lab, second, "PATCH", url, b"evil bytes", patch)[0] == 404
    assert call(small_lab, first, "HEAD", url)[1]["upload-offset"] == "0"  # untouched
    assert call(small_lab, first, "PATCH", url, data, patch)[0] == 204


def test_made_up_tokens_never_refill_a_devices_budget(tmp_path: Path, monkeypatch) -> None:
    """Before: over 10,000 made-up tokens cleared every bucket, a real device's included."""
    from export.lab import app as lab_app

    monkeypatch.setattr(lab_app, "MAX_BUCKETS", 20)
    config = make_config(tmp_path / "lab", None, rate_per_second=0.001, rate_burst=3)
    with LabServer(config) as lab:
        token, _ = device(lab, "A")
        statuses = [call(lab, token, "GET", "/api/v1/projects/A/ops")[0] for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        for i in range(50):  # more made-up tokens than buckets
            call(lab, f"made-up-{i}", "GET", "/api/v1/projects/A/ops")
        assert call(lab, token, "GET", "/api/v1/projects/A/ops")[0] == 429


def test_a_lost_enrollment_reply_does_not_burn_the_code(tmp_path: Path, lab, monkeypatch) -> None:
    """The server enrolls the tablet but the reply is lost: the client's retry (same code,
    same proposed token) gets the same device, and the tablet syncs with it."""
    from appliance.store import Project
    from appliance.sync.client import enroll, sync_project
    from tests.lab.conftest import fast_retry

    code, _ = lab.store.create_enrollment("A", "tablet", "t")
    real_once = LabHttp.once
    lost: list[str] = []

    def lose_first_reply(self, method, path, body=None, headers=None, into=None):
        reply = real_once(self, method, path, body, headers, into)
        if path.endswith("/enroll") and not lost:
            lost.append(path)
            raise ConnectionResetError("reply lost")
        return reply

    monkeypatch.setattr(LabHttp, "once", lose_first_reply)
    project = Project.create(tmp_path / "t", ["nucleus"])
    assert enroll(project, lab.url, code, "t", retry=fast_retry()) == "A"
    assert lost and len(lab.store.devices()) == 1
    sync_project(project, retry=fast_retry())
    # the same code with another token is still refused: only the device itself can retry
    assert call(lab, None, "POST", "/api/v1/enroll", {"code": code, "token": "x" * 43})[0] == 401
    assert len(lab.store.devices()) == 1
    project.close()


def test_a_rerun_after_every_reply_was_lost_enrolls_with_the_same_code(
    tmp_path: Path, lab, monkeypatch
) -> None:
    """Every retry of one run loses its reply and the command fails; the expert runs it again
    with the same code: the proposed token was kept (owner-only, outside the project), so
    the server recognises the device instead of refusing a burnt code."""
    from appliance.errors import ApplianceError
    from appliance.store import Project
    from appliance.sync.client import enroll, sync_project
    from tests.lab.conftest import fast_retry

    code, _ = lab.store.create_enrollment("A", "tablet", "t")
    real_once = LabHttp.once

    def lose_every_reply(self, method, path, body=None, headers=None, into=None):
        reply = real_once(self, method, path, body, headers, into)
        if path.endswith("/enroll"):
            raise ConnectionResetError("reply lost")
        return reply

    project = Project.create(tmp_path / "t", ["nucleus"])
    with monkeypatch.context() as m:
        m.setattr(LabHttp, "once", lose_every_reply)
        with pytest.raises((ApplianceError, OSError)):
            enroll(project, lab.url, code, "t", retry=fast_retry())
    assert len(lab.store.devices()) == 1  # the server did enroll it
    assert enroll(project, lab.url, code, "t", retry=fast_retry()) == "A"
    assert len(lab.store.devices()) == 1
    sync_project(project, retry=fast_retry())
    project.close()
