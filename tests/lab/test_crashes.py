"""Crashes and clocks: the server killed mid-upload, a tablet killed mid-sync, tablet clocks
off by days. Real processes, real SIGKILL, loopback only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.importer import import_paths
from appliance.store import Project, oplog
from appliance.store import db as dbm
from appliance.sync import client as sync_client
from appliance.sync.client import sync_project
from appliance.sync.http import LabHttp, Retry
from export.lab.serve import LabServer
from export.lab.store import LabStore
from tests.lab.conftest import add_work, free_port, label_for, make_config, tablet, write_images

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def big_image(folder: Path, megabytes: int, seed: int) -> Path:
    """A random 16-bit PNG of about `megabytes` MB (noise does not compress)."""
    folder.mkdir(parents=True, exist_ok=True)
    side = int((megabytes * 1e6 / 2) ** 0.5)
    img = np.random.default_rng(seed).integers(0, 65535, (side, side), dtype=np.uint16)
    path = folder / f"big{seed}.png"
    cv2.imwrite(str(path), img)
    return path


def partial_upload(root: Path) -> int:
    parts = list((root / "uploads").glob("*.part"))
    return max((p.stat().st_size for p in parts), default=0)


def wait_for(cond, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.005)
    raise AssertionError("condition not met in time")


def start_server(root: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "export.lab.cli",
            "serve",
            str(root),
            "--port",
            str(port),
            "--insecure",
        ],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    wait_for(lambda: _up(port), timeout=60)
    return proc


def _up(port: int) -> bool:
    try:
        return LabHttp(f"http://127.0.0.1:{port}").once("GET", "/api/v1/health").status == 200
    except OSError:
        return False


@pytest.mark.slow
def test_server_killed_mid_upload_resumes_after_restart(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "lab"
    root.mkdir()
    store = LabStore(make_config(root, None).database_url)
    code, _ = store.create_enrollment("P", "tablet", "t")
    store.close()
    port = free_port()
    server = start_server(root, port)
    project = Project.create(tmp_path / "t", ["n"])
    import_paths(project, [big_image(tmp_path / "img", 4, 1)])
    sync_client.enroll(project, f"http://127.0.0.1:{port}", code, "t")
    size = project.images()[0].path.stat().st_size
    offsets: list[int] = []
    real_once = LabHttp.once

    def logging_once(self, method, path, body=None, headers=None, into=None):
        if method == "PATCH":
            offsets.append(int(headers["Upload-Offset"]))
        elif method == "POST" and path.endswith("/uploads"):
            offsets.append(0)  # a creation carries the first chunk
        return real_once(self, method, path, body, headers, into)

    monkeypatch.setattr(LabHttp, "once", logging_once)
    result: list[object] = []
    retry = Retry(attempts=200, base=0.05, cap=0.5, deadline=120)
    worker = threading.Thread(
        target=lambda: result.append(sync_project(project, retry=retry, chunk=64 << 10))
    )
    try:
        worker.start()
        wait_for(lambda: partial_upload(root) > size // 4)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        at_kill = partial_upload(root)
        assert 0 < at_kill < size
        server = start_server(root, port)
        worker.join(timeout=120)
        assert result, "sync did not finish after the restart"
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
    assert offsets.count(0) == 1, "the upload started over instead of resuming"
    assert any(at_kill - (64 << 10) <= o <= at_kill for o in offsets[1:])
    store = LabStore(make_config(root, None).database_url)
    try:
        server_ops = {op.uid for op in store.pull_ops(1, 0, 1000)}
        assert server_ops == set(oplog.operation_uids(project.db))
        assert store.has_blob(1, project.images()[0].sha256)
    finally:
        store.close()
        project.close()


@pytest.mark.slow
def test_tablet_killed_mid_sync_resumes_and_duplicates_nothing(tmp_path: Path) -> None:
    with LabServer(make_config(tmp_path / "lab", None)) as lab:
        project = tablet(tmp_path / "t", lab, "P", "t")
        import_paths(project, [big_image(tmp_path / "img", 6, 2)])
        add_work(project, tmp_path / "small", 5, 30, seed=3)
        project.close()
        cmd = [sys.executable, "-m", "appliance", "sync", str(tmp_path / "t"), "--chunk-kb", "64"]
        kills = 0
        for delay in (0.0, 0.3, 0.8):  # kills at different points of the upload and push
            proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            wait_for(lambda p=proc: partial_upload(tmp_path / "lab") > 0 or p.poll() is not None)
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(timeout=30)
        assert kills >= 1
        done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        with Project.open(tmp_path / "t") as project:
            uids = oplog.operation_uids(project.db)
            assert oplog.pending_count(project.db) == 0
        server = [op.uid for op in lab.store.pull_ops(1, 0, 10_000)]
        assert len(server) == len(set(server)) == len(uids) and set(server) == set(uids)


def test_tablet_clocks_three_days_apart_change_nothing(
    tmp_path: Path, lab: LabServer, monkeypatch
) -> None:
    tabs = [tablet(tmp_path / f"t{i}", lab, "P", f"t{i}") for i in range(2)]
    shared = write_images(tmp_path / "shared", 1, seed=5)
    for i, (t, days) in enumerate(zip(tabs, (3, -3), strict=True)):
        skewed = datetime.now(timezone.utc) + timedelta(days=days)
        stamp = lambda s=skewed: s.isoformat(timespec="milliseconds")  # noqa: E731
        monkeypatch.setattr(dbm, "utcnow", stamp)
        monkeypatch.setattr(oplog, "utcnow", stamp)
        add_work(t, tmp_path / f"i{i}", 2, 3, seed=i)
        import_paths(t, shared)
        img = t.find_image(shared[0].name)
        t.save_label(img.id, label_for(t, img.id, i), author=f"a{i}", source="manual")
    monkeypatch.undo()
    # the tablet 3 days behind syncs last, so its work gets the higher sequence numbers
    for t in (tabs[0], tabs[1], tabs[0]):
        sync_project(t)
    server = lab.store.pull_ops(1, 0, 1000)
    assert [op.seq for op in server] == sorted(op.seq for op in server)
    created = [op.payload["created"] for op in server if op.kind == "label.saved"]
    assert created != sorted(created)  # server order is arrival, not the tablets' clocks
    for t in tabs:
        assert set(oplog.operation_uids(t.db)) == {op.uid for op in server}
        t.close()
    assert len(lab.store.conflicts(1)) == 1


def test_abandoned_uploads_are_swept(tmp_path: Path) -> None:
    from export.lab.app import sweep_uploads
    from export.lab.blobs import FileBlobStore

    with LabServer(make_config(tmp_path / "lab", None)) as lab:
        code, _ = lab.store.create_enrollment("P", "tablet", "t")
        token, dev = lab.store.redeem(code, None)
        http = LabHttp(lab.url, token)
        reply = http.request(
            "POST",
            "/api/v1/projects/P/uploads",
            body=b"half",
            headers={
                "Upload-Length": "8",
                "Upload-Metadata": "sha256 " + _b64("ab" * 32),
                "Content-Type": "application/offset+octet-stream",
            },
            ok=(201,),
        )
        http.close()
        parts = list((tmp_path / "lab" / "uploads").glob("*.part"))
        assert len(parts) == 1
        blobs = FileBlobStore(tmp_path / "lab")
        assert sweep_uploads(lab.store, blobs, 3600) == 0  # young: kept
        assert sweep_uploads(lab.store, blobs, 0) == 1
        assert not parts[0].exists()
        assert (
            lab.store.upload(dev.project_id, dev.id, reply.headers["location"].rsplit("/", 1)[1])
            is None
        )


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()
