"""Slide viewport maths and the tile cache, without a screen."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.session.slide_view import TILE, SlideViewport, TileCache, TileKey
from appliance.slides import SlideInfo

INFO = SlideInfo(
    name="wide.tif",
    width=100_000,
    height=80_000,
    level_dimensions=((100_000, 80_000), (25_000, 20_000), (6_250, 5_000), (1_562, 1_250)),
    level_downsamples=(1.0, 4.0, 16.0, 64.0),
    mpp=0.25,
    vendor=None,
)


def test_fit_shows_the_whole_slide_from_the_coarsest_level() -> None:
    vp = SlideViewport(INFO, (1920, 1200))
    vp.fit()
    assert vp.scale == pytest.approx(1200 / 80_000)
    assert vp.level() == 3
    tiles = vp.visible_tiles()
    assert {t.level for t in tiles} == {3} and len(tiles) == 4 * 3  # 1562×1250 in 512 tiles


@pytest.mark.parametrize(
    ("scale", "level"), [(1.0, 0), (0.5, 0), (0.25, 1), (0.2, 1), (1 / 16, 2), (1 / 20, 2), (2, 0)]
)
def test_level_is_the_finest_not_finer_than_the_screen(scale: float, level: int) -> None:
    vp = SlideViewport(INFO, (1920, 1200), scale=scale)
    assert vp.level() == level


def test_full_resolution_asks_only_for_the_tiles_on_screen() -> None:
    vp = SlideViewport(INFO, (1920, 1200))
    vp.centre_on(50_000, 40_000, 1.0)
    tiles = vp.visible_tiles()
    assert {t.level for t in tiles} == {0}
    assert len(tiles) <= (1920 // TILE + 2) * (1200 // TILE + 2)
    for key in tiles:  # every tile returned overlaps the widget
        left, top, w, h = vp.tile_rect(key)
        assert left < 1920 and top < 1200 and left + w > 0 and top + h > 0


def test_zoom_keeps_the_point_under_the_fingers_and_pan_moves_the_picture() -> None:
    vp = SlideViewport(INFO, (1920, 1200))
    vp.fit()
    before = vp.to_slide(700, 300)
    vp.zoom_about(8.0, 700, 300)
    assert vp.to_slide(700, 300) == pytest.approx(before)
    x, y = vp.to_slide(100, 100)
    vp.pan(50, -20)
    assert vp.to_slide(150, 80) == pytest.approx((x, y))


def test_edges_and_outside_the_slide() -> None:
    vp = SlideViewport(INFO, (1920, 1200))
    vp.centre_on(99_900, 79_900, 1.0)
    keys = vp.visible_tiles()
    assert max(k.col for k in keys) == -(-100_000 // TILE) - 1
    _, _, w, h = vp.tile_rect(max(keys))
    assert (w, h) == (100_000 % TILE, 80_000 % TILE)
    vp.centre_on(500_000, 500_000, 1.0)
    assert vp.visible_tiles() == []


def test_cache_stays_within_its_byte_budget_least_recent_out() -> None:
    loads: list[TileKey] = []

    def load(key: TileKey) -> np.ndarray:
        loads.append(key)
        return np.zeros((TILE, TILE, 3), np.uint8)

    size = TILE * TILE * 3
    cache = TileCache(load, budget=3 * size)
    keys = [TileKey(0, c, 0) for c in range(5)]
    for key in keys[:3]:
        cache.get(key)
    cache.get(keys[0])  # recently used: stays
    cache.get(keys[3])  # evicts keys[1]
    assert keys[0] in cache and keys[1] not in cache and cache.bytes == 3 * size
    assert cache.peek(keys[1]) is None and cache.peek(keys[2]) is not None
    assert (cache.hits, cache.misses, len(loads)) == (2, 4, 4)


def test_viewing_a_100k_by_80k_slide_stays_under_400_mb(tmp_path) -> None:
    """docs/slides.md's memory promise: open, overview, 1:1, pan, in a process of its own
    (bench/slides.py's measuring child), peak RSS (VmHWM) at most 400 MB."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from testkit.slides import write_sparse_slide

    root = Path(__file__).resolve().parents[1]
    path = tmp_path / "wide.tif"
    write_sparse_slide(path, 100_000, 80_000, tile=512, tissue_tiles=400)
    out = subprocess.run(
        [sys.executable, str(root / "bench" / "slides.py"), "--child", str(path), "--frames", "80"],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["tiles_cached"] > 0 and figures["cached_frames"] > 0
    assert figures["peak_rss_mb"] <= 400, figures
