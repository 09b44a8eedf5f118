"""Panning and zooming a whole slide from its pyramid, without Kivy: what is visible, which
tiles to show, and a tile cache bounded in bytes.

The view is a level-0 point at the widget's top-left corner and a scale (screen pixels per
level-0 pixel). For a scale s the level shown is the finest whose downsample is at most 1/s
(so a screen pixel never shows fewer than one level pixel, overview to 40x alike), and only
the level's `TILE`-pixel tiles that intersect the widget are asked for. Tiles come from the
slide (`appliance.slides.Slide.read_region`, which decodes only the file tiles they touch) and
stay in an LRU cache up to a byte budget: panning back is free, memory stays bounded whatever
the slide's size.

The region being annotated is drawn from its own stored pixels (`RegionPixels`), not from the
slide: what the expert marks is exactly what is scored and trained on, and a control composed
on a region (synthetic cells placed on it) shows its composite at every zoom level, through
the same tiles and cache, like any region (docs/supervision.md).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from appliance.slides import Slide, SlideInfo

__all__ = [
    "CACHE_BYTES",
    "TILE",
    "RegionPixels",
    "SlideViewport",
    "TileCache",
    "TileKey",
    "read_tile",
]

TILE = 512  # screen tiles, in pixels of their level
CACHE_BYTES = 192 * 2**20  # 256 RGB tiles of 512²: four full screens of a 1920×1200 tablet
MAX_SCALE = 4.0  # 4 screen pixels per level-0 pixel: 160x on a 40x scan, cells fill the screen


@dataclass(frozen=True, order=True)
class TileKey:
    """A tile of a level: column and row in `TILE` steps of that level's pixels."""

    level: int
    col: int
    row: int


@dataclass
class SlideViewport:
    """The visible part of a slide in a widget of `size` (width, height) screen pixels."""

    info: SlideInfo
    size: tuple[float, float]
    x: float = 0.0  # level-0 point at the widget's top-left corner
    y: float = 0.0
    scale: float = 1.0  # screen pixels per level-0 pixel

    def fit(self) -> None:
        """The whole slide, centred (the overview)."""
        w, h = self.size
        self.scale = min(w / self.info.width, h / self.info.height)
        self.x = (self.info.width - w / self.scale) / 2
        self.y = (self.info.height - h / self.scale) / 2

    @property
    def min_scale(self) -> float:
        """Zooming out stops at half the overview."""
        w, h = self.size
        return min(w / self.info.width, h / self.info.height) / 2

    def to_slide(self, sx: float, sy: float) -> tuple[float, float]:
        """Level-0 point under widget point (sx, sy) (origin top-left, y down)."""
        return self.x + sx / self.scale, self.y + sy / self.scale

    def to_screen(self, x: float, y: float) -> tuple[float, float]:
        """Widget point (origin top-left, y down) of level-0 point (x, y)."""
        return (x - self.x) * self.scale, (y - self.y) * self.scale

    def zoom_about(self, factor: float, sx: float, sy: float) -> None:
        """Multiply the scale by `factor`, keeping the slide point under (sx, sy) in place."""
        px, py = self.to_slide(sx, sy)
        self.scale = min(MAX_SCALE, max(self.min_scale, self.scale * factor))
        self.x, self.y = px - sx / self.scale, py - sy / self.scale

    def centre_on(self, x: float, y: float, scale: float) -> None:
        """Show level-0 point (x, y) in the middle at `scale`."""
        w, h = self.size
        self.scale = min(MAX_SCALE, max(self.min_scale, scale))
        self.x, self.y = x - w / 2 / self.scale, y - h / 2 / self.scale

    def pan(self, dx: float, dy: float) -> None:
        """Move the picture by (dx, dy) screen pixels (a finger drag)."""
        self.x -= dx / self.scale
        self.y -= dy / self.scale

    def level(self) -> int:
        """The finest level whose downsample is at most one level-0 pixel per screen pixel."""
        want = 1.0 / self.scale
        best = 0
        for k, d in enumerate(self.info.level_downsamples):
            if d <= want * 1.0001:
                best = k
        return best

    def visible_tiles(self) -> list[TileKey]:
        """Tiles of the current level that intersect the widget, row by row."""
        level = self.level()
        d = self.info.level_downsamples[level]
        lw, lh = self.info.level_dimensions[level]
        w, h = self.size
        x0, y0 = max(self.x, 0.0) / d, max(self.y, 0.0) / d
        x1 = min(self.x + w / self.scale, self.info.width) / d
        y1 = min(self.y + h / self.scale, self.info.height) / d
        if x1 <= x0 or y1 <= y0:
            return []
        cols = range(int(x0 // TILE), min(int(np.ceil(x1 / TILE)), -(-lw // TILE)))
        rows = range(int(y0 // TILE), min(int(np.ceil(y1 / TILE)), -(-lh // TILE)))
        return [TileKey(level, c, r) for r in rows for c in cols]

    def tile_rect(self, key: TileKey) -> tuple[float, float, float, float]:
        """Where a tile goes: widget (left, top, width, height), y down, clipped at the slide."""
        d = self.info.level_downsamples[key.level]
        lw, lh = self.info.level_dimensions[key.level]
        tw, th = min(TILE, lw - key.col * TILE), min(TILE, lh - key.row * TILE)
        left, top = self.to_screen(key.col * TILE * d, key.row * TILE * d)
        return left, top, tw * d * self.scale, th * d * self.scale


def read_tile(slide: Slide, key: TileKey) -> np.ndarray:
    """One tile's RGB pixels (at most `TILE`², less at the level's right and bottom edges)."""
    d = slide.info.level_downsamples[key.level]
    lw, lh = slide.info.level_dimensions[key.level]
    tw, th = min(TILE, lw - key.col * TILE), min(TILE, lh - key.row * TILE)
    x, y = round(key.col * TILE * d), round(key.row * TILE * d)
    return slide.read_region(x, y, tw, th, key.level)


class TileCache:
    """Tiles by key, least recently used dropped first beyond `budget` bytes; thread-safe (the
    viewer reads tiles on a worker thread and shows them on the UI thread)."""

    def __init__(self, load: Callable[[TileKey], np.ndarray], budget: int = CACHE_BYTES) -> None:
        self._load = load
        self.budget = budget
        self._tiles: OrderedDict[TileKey, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def peek(self, key: TileKey) -> np.ndarray | None:
        """The cached tile, or None (never loads)."""
        with self._lock:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
                self.hits += 1
            return tile

    def get(self, key: TileKey) -> np.ndarray:
        """The tile, loaded (outside the lock) when it is not cached."""
        tile = self.peek(key)
        if tile is not None:
            return tile
        tile = self._load(key)
        with self._lock:
            self.misses += 1
            if key not in self._tiles:
                self._tiles[key] = tile
                self.bytes += tile.nbytes
            while self.bytes > self.budget and len(self._tiles) > 1:
                _, old = self._tiles.popitem(last=False)
                self.bytes -= old.nbytes
        return tile

    def __contains__(self, key: TileKey) -> bool:
        with self._lock:
            return key in self._tiles

    def __len__(self) -> int:
        with self._lock:
            return len(self._tiles)


class RegionPixels:
    """A region's own pixels (its stored original, level 0 at (x, y)) painted over the slide's
    tiles at every level, downsampled (area averaging, as pyramids are made) for coarser ones.

    Every region is drawn this way, ordinary or control, so nothing in how a region looks,
    loads or is cached depends on whether its pixels are the slide's own or a composite.
    """

    def __init__(self, pixels: np.ndarray, x: int, y: int, info: SlideInfo) -> None:
        rgb = np.asarray(pixels)
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=2)
        self.pixels = np.ascontiguousarray(rgb[..., :3]).astype(np.uint8, copy=False)
        self.x, self.y, self.info = x, y, info
        self._levels: dict[int, tuple[int, int, np.ndarray]] = {}
        self._lock = threading.Lock()

    def at_level(self, level: int) -> tuple[int, int, np.ndarray]:
        """(left, top, pixels) of the region in `level`'s own pixel coordinates (cached: at
        most 4/3 of the region's size over all levels)."""
        with self._lock:
            found = self._levels.get(level)
        if found is not None:
            return found
        d = self.info.level_downsamples[level]
        h, w = self.pixels.shape[:2]
        left, top = round(self.x / d), round(self.y / d)
        right = max(round((self.x + w) / d), left + 1)
        bottom = max(round((self.y + h) / d), top + 1)
        size = (right - left, bottom - top)
        pix: np.ndarray = self.pixels
        if size != (w, h):
            pix = cv2.resize(self.pixels, size, interpolation=cv2.INTER_AREA)
        with self._lock:
            self._levels[level] = (left, top, pix)
        return left, top, pix

    def paint(self, tile: np.ndarray, level: int, left: int, top: int) -> np.ndarray:
        """`tile` (a level's pixels with top-left (left, top) in that level) with the region's
        pixels where they overlap; the tile itself is returned when they do not."""
        rl, rt, pix = self.at_level(level)
        th, tw = tile.shape[:2]
        x0, y0 = max(left, rl), max(top, rt)
        x1, y1 = min(left + tw, rl + pix.shape[1]), min(top + th, rt + pix.shape[0])
        if x1 <= x0 or y1 <= y0:
            return tile
        out = tile.copy()
        out[y0 - top : y1 - top, x0 - left : x1 - left] = pix[y0 - rt : y1 - rt, x0 - rl : x1 - rl]
        return out

    def paint_tile(self, tile: np.ndarray, key: TileKey) -> np.ndarray:
        """A viewer tile (`read_tile`) with the region painted on it."""
        return self.paint(tile, key.level, key.col * TILE, key.row * TILE)
