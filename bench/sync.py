"""Sync benchmark: 200 images (512², 16-bit) and 1,000 label versions pushed to a lab server
over loopback; blob throughput; an idle sync with nothing to do.

Run: `.venv/bin/python bench/sync.py [--images 200 --versions 1000]`. The lab server runs
as its own process (`appliance-lab serve`, SQLite), as in a lab. Baseline measured in the same
run: the same bytes through a plain loopback TCP socket (the ceiling any HTTP upload can reach).
Goals (issue 15): idle sync <= 200 ms, blobs >= 50 MB/s.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.importer import import_paths
from appliance.labels import Label
from appliance.store import Project
from appliance.sync.blobs import BlobChannel
from appliance.sync.client import enroll, sync_project
from appliance.sync.http import LabHttp
from bench._machine import table
from export.lab.app import LabConfig
from export.lab.store import LabStore
from testkit.synthetic import make_instances

ROOT = Path(__file__).resolve().parents[1]


def raw_tcp_mbps(nbytes: int) -> float:
    """Loopback ceiling: send `nbytes` through one TCP connection to a reading thread."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def sink() -> None:
        conn, _ = server.accept()
        while conn.recv(1 << 20):
            pass
        conn.close()

    reader = threading.Thread(target=sink)
    reader.start()
    client = socket.create_connection(server.getsockname())
    chunk = os.urandom(1 << 20)
    t0 = time.perf_counter()
    for _ in range(nbytes // len(chunk)):
        client.sendall(chunk)
    client.close()
    reader.join()
    server.close()
    return nbytes / (time.perf_counter() - t0) / 1e6


def start_server(root: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
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
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if LabHttp(url).once("GET", "/api/v1/health").status == 200:
                return proc, url
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("lab server did not start")


def code(root: Path, project: str, role: str = "tablet") -> str:
    store = LabStore(LabConfig(root).database_url)
    try:
        return store.create_enrollment(project, role, f"bench-{role}")[0]
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--versions", type=int, default=1000)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        folder = tmp_path / "images"
        folder.mkdir()
        rng = np.random.default_rng(0)
        for i in range(args.images):
            img = rng.integers(0, 65535, (args.size, args.size), dtype=np.uint16)
            tifffile.imwrite(folder / f"img{i:04d}.tif", img)
        project = Project.create(tmp_path / "tablet", ["cell"])
        import_paths(project, [folder])
        ids = [r.id for r in project.images()]
        labels = [Label(make_instances((args.size, args.size), 30, seed=s)) for s in range(20)]
        for k in range(args.versions):
            image_id = ids[k % len(ids)]
            parent = project.latest_label(image_id)
            project.save_label(
                image_id,
                labels[k % len(labels)],
                author="bench",
                source="manual",
                parent_id=parent.id if parent else None,
            )
        blob_bytes = sum(r.path.stat().st_size for r in project.images())

        lab_root = tmp_path / "lab"
        lab_root.mkdir()
        server, url = start_server(lab_root)
        try:
            enroll(project, url, code(lab_root, "bench"), "bench")
            t0 = time.perf_counter()
            report = sync_project(project)
            full = time.perf_counter() - t0
            idle = []
            for _ in range(20):
                t0 = time.perf_counter()
                sync_project(project)
                idle.append(time.perf_counter() - t0)
            # blobs: a second tablet with the same images (no labels) syncs into another lab
            # project, so every blob travels again (4 uploads at once, as sync does)
            other = Project.create(tmp_path / "tablet2", ["cell"])
            import_paths(other, [folder])
            enroll(other, url, code(lab_root, "bench2"), "bench2")
            t0 = time.perf_counter()
            blob_report = sync_project(other)
            blob_s = time.perf_counter() - t0
            # and one blob after the other on one connection, for comparison
            token = (
                LabHttp(url)
                .request("POST", "/api/v1/enroll", json_body={"code": code(lab_root, "bench3")})
                .json()["token"]
            )
            http = LabHttp(url, token)
            channel = BlobChannel(http, "/api/v1/projects/bench3")
            t0 = time.perf_counter()
            for r in project.images():
                channel.upload(r.sha256, r.path)
            serial_s = time.perf_counter() - t0
            http.close()
            other.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
        raw = raw_tcp_mbps(max(blob_bytes, 64 << 20))
        project.close()
    blob_mbps = blob_report.uploaded_bytes / blob_s / 1e6
    serial_mbps = blob_bytes / serial_s / 1e6
    total_mb = report.uploaded_bytes / 1e6
    idle_ms = statistics.median(idle) * 1e3
    rows = [
        (
            f"first sync: {args.images} images ({total_mb:.0f} MB) + {args.versions} label "
            f"versions ({report.pushed_ops} operations)",
            f"{full:.2f} s",
            "-",
            f"{total_mb / full:.0f} MB/s overall",
        ),
        (
            f"blobs: sync of {blob_report.uploaded_blobs} images without labels "
            "(4 uploads at once, sha256 verified, fsync)",
            f"{blob_mbps:.0f} MB/s",
            ">= 50 MB/s",
            f"{blob_mbps / 50:.2f}× goal; {blob_mbps / raw:.3f}× raw TCP",
        ),
        (
            "blobs one after the other on one connection",
            f"{serial_mbps:.0f} MB/s",
            "-",
            f"{serial_mbps / raw:.3f}× raw TCP",
        ),
        ("raw loopback TCP, same bytes (baseline)", f"{raw:.0f} MB/s", "-", "ceiling"),
        (
            "idle sync, nothing to do (median of 20)",
            f"{idle_ms:.0f} ms",
            "<= 200 ms",
            f"{idle_ms / 200:.2f}× budget (max {max(idle) * 1e3:.0f} ms)",
        ),
    ]
    print(table("Sync over loopback (lab server as its own process, SQLite)", rows))


if __name__ == "__main__":
    main()
