"""Store benchmark: label save latency, import throughput, `status` on 100,000 images.

Run: `.venv/bin/python bench/store.py [--quick]`. Prints a Markdown table with the machine.
Baselines measured in the same run: saving the same label as zlib-compressed raw pixels
(what a naive store would do) and `status` without the indexes the schema provides.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.importer import import_paths
from appliance.labels import Label, encode_instances
from appliance.session.overview import overview
from appliance.store import Project
from appliance.store import db as dbm
from appliance.sync.client import status_line
from bench._machine import table
from testkit.synthetic import make_instances


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q))


def bench_save(root: Path, n: int) -> tuple[list[float], list[float]]:
    project = Project.create(root / "save", ["cell"])
    tifffile.imwrite(root / "big.tif", np.zeros((2048, 2048), np.uint16))
    import_paths(project, [root / "big.tif"])
    image_id = project.images()[0].id
    label = Label(make_instances((2048, 2048), 500))
    ours, naive = [], []
    for _ in range(n):
        t = time.perf_counter()
        project.save_label(image_id, label, author="bench", source="manual")
        ours.append(time.perf_counter() - t)
    for _ in range(n):
        t = time.perf_counter()
        blob = zlib.compress(label.instances.tobytes(), 6)
        with project.transaction():
            project.db.execute(
                "INSERT INTO outbox (kind, ref, created) VALUES (?, ?, ?)",
                ("bench", str(len(blob)), dbm.utcnow()),
            )
        naive.append(time.perf_counter() - t)
    project.close()
    return ours, naive


def bench_import(root: Path, n: int) -> float:
    src = root / "tiffs"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        tifffile.imwrite(src / f"img{i}.tif", rng.integers(0, 65535, (512, 512), dtype=np.uint16))
    project = Project.create(root / "imp", ["cell"])
    t = time.perf_counter()
    summary = import_paths(project, [src])
    dt = time.perf_counter() - t
    assert len(summary.imported) == n
    project.close()
    return n / dt


def fill(project: Project, n: int) -> None:
    """`n` image rows (no files) and a label on every third image, written directly."""
    rows = [
        (
            f"{i:064x}",
            f"img{i}.tif",
            f"images/x/{i}.tif",
            512,
            512,
            1,
            "uint16",
            f"seq{i // 1000}",
            i % 1000,
            "2026-01-01",
        )
        for i in range(n)
    ]
    enc = encode_instances(Label.empty((1, 1)).instances)
    with project.transaction():
        project.db.executemany(
            "INSERT INTO images (sha256, name, blob, height, width, channels, dtype, sequence, "
            "frame, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        project.db.executemany(
            "INSERT INTO labels (uid, image_id, author, source, created, n_instances, instances, "
            "classes) VALUES (?, ?, 'a', 'manual', 'x', 0, ?, '{}')",
            [(uuid.uuid4().hex, i + 1, enc) for i in range(0, n, 3)],
        )


def bench_status(root: Path, n: int) -> tuple[float, float]:
    project = Project.create(root / "status", ["cell"])
    fill(project, n)
    times = []
    for _ in range(7):
        t = time.perf_counter()
        project.status()
        times.append(time.perf_counter() - t)
    project.db.execute("DROP INDEX images_sequence")
    project.db.execute("DROP INDEX labels_image")
    base = []
    for _ in range(3):
        t = time.perf_counter()
        project.status()
        base.append(time.perf_counter() - t)
    project.close()
    return float(np.median(times)), float(np.median(base))


def bench_home(root: Path, n: int) -> dict[str, float]:
    """Seconds per project for Home's two lines and per status-line refresh, before and now.

    Before: Home opened the project twice (`Project.open`: integrity check, migrations) and
    the annotate status line listed every labelled image once a second.
    """
    path = root / "home"
    with Project.create(path, ["cell"]) as project:
        fill(project, n)

    def before() -> None:
        with Project.open(path) as project:
            project.status()
        with Project.open(path) as project:
            status_line(project)

    with Project.open(path) as project:
        listed = _best(lambda: len(project.labeled_image_ids()), 5)
        counted = _best(project.labeled_image_count, 5)
    return {
        "home_before": _best(before, 3),
        "home_now": _best(lambda: overview(path), 3),
        "status_before": listed,
        "status_now": counted,
    }


def _best(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of `repeat` calls (the least disturbed by other load)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    args = ap.parse_args()
    n_save, n_import, n_status = (20, 100, 20_000) if args.quick else (100, 1000, 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ours, naive = bench_save(root, n_save)
        ips = bench_import(root, n_import)
        status_s, status_base = bench_status(root, n_status)
        home = bench_home(root, n_status)
    rows = [
        (
            "label save 2048² / 500 inst, median",
            f"{_pct(ours, 50):.1f} ms",
            "≤ 10 ms",
            f"{np.median(naive) / np.median(ours):.1f}× faster than zlib raw pixels "
            f"({_pct(naive, 50):.1f} ms)",
        ),
        ("label save, p99", f"{_pct(ours, 99):.1f} ms", "", ""),
        (f"import {n_import} × 512² uint16 TIFF", f"{ips:.0f} images/s", "", ""),
        (
            f"status on {n_status} images",
            f"{status_s * 1e3:.1f} ms",
            "≤ 200 ms",
            f"{status_base / status_s:.1f}× vs. no indexes ({status_base * 1e3:.1f} ms)",
        ),
        (
            f"Home row of a project of {n_status} images",
            f"{home['home_now'] * 1e3:.0f} ms",
            "",
            f"was {home['home_before'] * 1e3:.0f} ms (opened twice, integrity check each time)",
        ),
        (
            "annotate status line, labelled images counted",
            f"{home['status_now'] * 1e3:.1f} ms",
            "",
            f"was {home['status_before'] * 1e3:.1f} ms (every labelled id listed, once a second)",
        ),
    ]
    print(table("store benchmark", rows))


if __name__ == "__main__":
    main()
