"""Downloads from the lab server: streamed to disk, resumed where a failed run stopped, and
never fetched twice once complete."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path

import pytest

from appliance.store.check import check_project
from appliance.sync.blobs import BlobChannel
from appliance.sync.client import sync_project
from appliance.sync.http import LabHttp
from tests.lab.conftest import add_work, tablet


def recording(monkeypatch) -> list[tuple[str, str, int]]:
    """(path, Range header, status) of every blob GET the tablets send."""
    seen: list[tuple[str, str, int]] = []
    real_once = LabHttp.once

    def once(self, method, path, body=None, headers=None, into=None):
        reply = real_once(self, method, path, body, headers, into)
        if method == "GET" and "/blobs/" in path:
            seen.append((path, (headers or {}).get("Range", ""), reply.status))
        return reply

    monkeypatch.setattr(LabHttp, "once", once)
    return seen


def test_a_download_is_streamed_to_disk(tmp_path: Path, lab) -> None:
    """A 24 MiB blob arrives with a Python heap peak of a few MiB (before: the whole body)."""
    code, _ = lab.store.create_enrollment("P", "tablet", "t")
    token, _ = lab.store.redeem(code, None)
    http = LabHttp(lab.url, token)
    channel = BlobChannel(http, "/api/v1/projects/P")
    blob = tmp_path / "big.bin"
    blob.write_bytes(os.urandom(24 << 20))
    sha = hashlib.sha256(blob.read_bytes()).hexdigest()
    channel.upload(sha, blob)
    tracemalloc.start()
    try:
        channel.download(sha, tmp_path / "got.part")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        http.close()
    assert (tmp_path / "got.part").read_bytes() == blob.read_bytes()
    assert peak < 6 << 20, peak


def test_a_partial_download_resumes_where_it_stopped(tmp_path: Path, lab, monkeypatch) -> None:
    a = tablet(tmp_path / "a", lab, "P", "tab-a")
    add_work(a, tmp_path / "ia", 1, 1, seed=1)
    sync_project(a)
    rec = a.images()[0]
    data = rec.path.read_bytes()
    b = tablet(tmp_path / "b", lab, "P", "tab-b")
    part = b.root / ".sync-downloads" / f"{rec.sha256}.part"
    part.parent.mkdir()
    part.write_bytes(data[: len(data) // 2])  # what a run cut mid-download left
    seen = recording(monkeypatch)
    sync_project(b)
    assert [(r, s) for _, r, s in seen] == [(f"bytes={len(data) // 2}-", 206)]
    assert b.find_image(rec.sha256).path.read_bytes() == data
    assert not part.exists() and check_project(b.root).problems == 0


def test_blobs_a_failed_run_fetched_are_not_fetched_again(tmp_path: Path, lab, monkeypatch):
    a = tablet(tmp_path / "a", lab, "P", "tab-a")
    add_work(a, tmp_path / "ia", 3, 2, seed=2)
    sync_project(a)
    b = tablet(tmp_path / "b", lab, "P", "tab-b")
    from appliance.errors import ApplianceError
    from appliance.store import oplog

    def fail(*_args, **_kw):
        raise ApplianceError("disk full")

    monkeypatch.setattr(oplog, "apply_remote", fail)
    with pytest.raises(ApplianceError, match="disk full"):
        sync_project(b)
    monkeypatch.undo()
    seen = recording(monkeypatch)
    report = sync_project(b)
    assert len(seen) == 3 and all(status == 416 for _, _, status in seen)  # no byte again
    assert report.pulled_ops == 5 and b.status()["images"] == 3
    assert check_project(b.root).problems == 0
