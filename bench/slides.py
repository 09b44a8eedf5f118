"""Slide viewing benchmark: tile latency (cold / cached), pan frame time, peak memory.

Run: `.venv/bin/python bench/slides.py [--width 100000 --height 80000] [--frames 200]`
(`--small` runs a 20,000 × 16,000 slide). The slide is a pyramidal BigTIFF written sparsely by
tifffile (`testkit.slides.write_sparse_slide`: glass tiles empty, a block of tissue tiles in
the middle), read through the same code the tablet uses (`appliance.slides.open_slide`,
`appliance.session.slide_view`). The measured process does only this, in a child process,
so its peak RSS (VmHWM) is the viewer's own. A "frame" is what the viewer does per redraw
without Kivy: choose the level, list the visible tiles of a 1920×1200 screen, fetch each from
the cache (reading the missing ones). The cached figure is a pan frame whose tiles are all
cached; the cold figure reads one 512² tile from the file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._machine import table  # noqa: E402

SCREEN = (1920, 1200)


def measure(path: Path, frames: int) -> dict[str, float]:
    """Runs in the child: open, overview, zoom to 1:1, pan; timings and peak memory."""
    from appliance.session.slide_view import SlideViewport, TileCache, read_tile
    from appliance.slides import open_slide

    t = time.perf_counter()
    slide = open_slide(path)
    opened = time.perf_counter() - t
    cache = TileCache(lambda key: read_tile(slide, key))
    vp = SlideViewport(slide.info, SCREEN)
    vp.fit()
    t = time.perf_counter()
    for key in vp.visible_tiles():
        cache.get(key)
    overview = time.perf_counter() - t
    cx, cy = slide.info.width / 2, slide.info.height / 2
    vp.centre_on(cx, cy, 1.0)
    cold: list[float] = []
    for key in vp.visible_tiles():
        t = time.perf_counter()
        cache.get(key)
        cold.append(time.perf_counter() - t)
    cached: list[float] = []
    pan: list[float] = []
    for i in range(frames):  # pan right and back over the tissue: new tiles, then cached ones
        step = 40 if (i // (frames // 4 or 1)) % 2 == 0 else -40
        vp.pan(-step, 0)
        t = time.perf_counter()
        keys = vp.visible_tiles()
        hits = [cache.peek(k) for k in keys]
        all_cached = all(h is not None for h in hits)
        for key, hit in zip(keys, hits, strict=True):
            if hit is None:
                cache.get(key)
        (cached if all_cached else pan).append(time.perf_counter() - t)
    upload = []
    for _ in range(20):  # cached tiles coming (back) on screen: each needs its texture bytes
        t = time.perf_counter()
        for key in vp.visible_tiles():
            tile = cache.peek(key)
            assert tile is not None
            np.ascontiguousarray(tile[::-1]).tobytes()  # what the viewer hands to a texture
        upload.append(time.perf_counter() - t)
    with open("/proc/self/status") as fh:
        hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM"))
    return {
        "open_ms": opened * 1e3,
        "overview_ms": overview * 1e3,
        "cold_tile_ms_median": float(np.median(cold)) * 1e3,
        "cold_tile_ms_p95": float(np.percentile(cold, 95)) * 1e3,
        "cached_frame_ms_median": float(np.median(cached)) * 1e3 if cached else float("nan"),
        "cached_frame_ms_p99": float(np.percentile(cached, 99)) * 1e3 if cached else float("nan"),
        "loading_frame_ms_median": float(np.median(pan)) * 1e3 if pan else float("nan"),
        "cached_frames": len(cached),
        "upload_ms_median": float(np.median(upload)) * 1e3,
        "tiles_cached": len(cache),
        "cache_mb": cache.bytes / 2**20,
        "peak_rss_mb": hwm / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=100_000)
    parser.add_argument("--height", type=int, default=80_000)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--small", action="store_true", help="a 20,000 × 16,000 slide")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.frames)))
        return
    width, height = (20_000, 16_000) if args.small else (args.width, args.height)
    from testkit.slides import write_sparse_slide

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.tif"
        t = time.perf_counter()
        write_sparse_slide(path, width, height, tile=512, tissue_tiles=400)
        written = time.perf_counter() - t
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(path), "--frames", str(args.frames)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        size_mb = path.stat().st_size / 2**20
    rows = [
        (
            "slide",
            f"{width} × {height}, {size_mb:.0f} MB on disk (written in {written:.1f} s)",
            "",
            "",
        ),
        ("open (header checks)", f"{r['open_ms']:.1f} ms", "", ""),
        ("overview (coarsest level, cold)", f"{r['overview_ms']:.1f} ms", "", ""),
        (
            "tile read, cold, median / p95",
            f"{r['cold_tile_ms_median']:.1f} / {r['cold_tile_ms_p95']:.1f} ms",
            "",
            "",
        ),
        (
            "frame of cached tiles all new on screen (texture bytes), median",
            f"{r['upload_ms_median']:.1f} ms",
            "≤ 50 ms",
            "met" if r["upload_ms_median"] <= 50 else "MISSED",
        ),
        (
            f"pan frame, all tiles cached, median / p99 ({r['cached_frames']} frames)",
            f"{r['cached_frame_ms_median']:.2f} / {r['cached_frame_ms_p99']:.2f} ms",
            "≤ 50 ms",
            "met" if r["cached_frame_ms_p99"] <= 50 else "MISSED",
        ),
        ("pan frame reading new tiles, median", f"{r['loading_frame_ms_median']:.1f} ms", "", ""),
        (
            "tiles cached at the end",
            f"{r['tiles_cached']} ({r['cache_mb']:.0f} MB)",
            "≤ 192 MB",
            "",
        ),
        (
            "peak memory (VmHWM of the viewing process)",
            f"{r['peak_rss_mb']:.0f} MB",
            "≤ 400 MB",
            "met" if r["peak_rss_mb"] <= 400 else "MISSED",
        ),
    ]
    print(table("Slide viewing", rows))


if __name__ == "__main__":
    main()
