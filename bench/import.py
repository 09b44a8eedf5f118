"""Import benchmark: peak memory on hostile and large TIFFs, time of a 2,000-frame time-lapse.

Run: `.venv/bin/python bench/import.py [--baseline DIR] [--cap SECONDS]`. Each figure is one
`appliance import` in a fresh process, its peak RSS read from /proc/self/status (VmHWM). With
`--baseline DIR` (a checkout of an older version, e.g. `git archive main | tar -x -C DIR`), the
same imports run with that code in the same run, capped at `--cap` seconds each, and the ratio
is printed. Goals from the robust-core issue: each peak <= 400 MB, the time-lapse <= 30 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._machine import PEAK_RSS, table

HERE = Path(__file__).resolve().parents[1]


def planar_bomb(folder: Path) -> Path:
    """A small planar RGB TIFF whose tags declare 3×20000×20000 (a 1.2 GB decode)."""
    path = folder / "planar.tif"
    tifffile.imwrite(
        path, np.zeros((3, 64, 64), np.uint8), photometric="rgb", planarconfig="separate"
    )
    with tifffile.TiffFile(path, mode="r+") as tif:
        tif.pages[0].tags["ImageLength"].overwrite(20000)
        tif.pages[0].tags["ImageWidth"].overwrite(20000)
    return path


def sparse(folder: Path) -> Path:
    path = folder / "sparse.tif"
    with open(path, "wb") as fh:
        fh.truncate(2 << 30)
    return path


def pages_8192(folder: Path) -> Path:
    """16 pages of 8192² uint8, zlib-compressed (a 1 GiB decode, a small file)."""
    path = folder / "big16.tif"
    page = np.zeros((8192, 8192), np.uint8)
    page[::64] = 200
    with tifffile.TiffWriter(path) as tw:
        for k in range(16):
            page[0, 0] = k  # distinct pages
            tw.write(page, compression="zlib")
    return path


def timelapse(folder: Path) -> Path:
    path = folder / "timelapse.tif"
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 4000, (2000, 256, 256), np.uint16)
    tifffile.imwrite(path, frames, imagej=True, metadata={"axes": "TYX"})
    return path


CASES: list[tuple[str, Callable[[Path], Path], str]] = [
    ("planar 3×20000² TIFF (refused)", planar_bomb, "refused, ≤ 400 MB"),
    ("2 GiB sparse file (refused)", sparse, "refused, ≤ 400 MB"),
    ("16-page 8192² TIFF", pages_8192, "≤ 400 MB"),
    ("2,000-page 256² time-lapse", timelapse, "≤ 30 s, ≤ 400 MB"),
]


def run_import(code: Path, project: Path, path: Path, cap: float) -> tuple[float, float, str]:
    """(peak MB, seconds, outcome) of one `appliance import` using the code in `code`."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    subprocess.run(
        [sys.executable, "-m", "appliance", "init", str(project), "--classes", "a"],
        env=env,
        check=True,
        capture_output=True,
    )
    start = time.perf_counter()
    try:
        res = subprocess.run(
            [sys.executable, "-c", PEAK_RSS, "import", str(project), str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=cap,
            cwd=code,
        )
    except subprocess.TimeoutExpired:
        return float("nan"), cap, f"not finished after {cap:.0f} s"
    seconds = time.perf_counter() - start
    peak = int(res.stderr.split("peak_kb")[-1]) / 1024 if "peak_kb" in res.stderr else float("nan")
    first = (res.stdout.splitlines() or [""])[0]
    outcome = "refused" if res.returncode != 0 and "imported 0" in first else first
    if "Traceback" in res.stderr:
        outcome = "traceback: " + res.stderr.strip().splitlines()[-2][:60]
    return peak, seconds, outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="checkout of the code to compare with")
    parser.add_argument("--cap", type=float, default=120, help="seconds per baseline import")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        for title, make, goal in CASES:
            folder = tmpdir / make.__name__
            folder.mkdir()
            path = make(folder)
            peak, secs, outcome = run_import(HERE, folder / "proj", path, 600)
            value = f"{peak:.0f} MB, {secs:.1f} s, {outcome}"
            verdict = "—"
            if args.baseline:
                b_peak, b_secs, b_out = run_import(args.baseline, folder / "base", path, args.cap)
                value += f" (baseline {b_peak:.0f} MB, {b_secs:.1f} s, {b_out})"
                verdict = f"peak ×{peak / b_peak:.2f}, time ×{secs / b_secs:.2f}"
            rows.append((title, value, goal, verdict))
            print(f"{title}: {value}", file=sys.stderr)
    load = os.getloadavg()
    print(table(f"Import (load average {load[0]:.1f})", rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
