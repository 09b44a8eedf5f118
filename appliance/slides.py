"""Whole-slide images (SVS, NDPI, SCN, pyramidal TIFF, OME-TIFF pyramids), read by region.

A scanner's slide is 10^9-10^10 pixels: it is never decoded whole. `open_slide` checks
everything the file declares from its header alone (tifffile reads tags, not pixels) before
any pixel is read: level-0 size, a pyramid whose coarsest level fits an overview, level sizes
shrinking, tiles of sane size, and every tile's bytes lying inside the file (a truncated copy
from a USB stick is refused at once, not halfway through an annotation session). Pixels come
through tiffslide (tifffile and zarr underneath, pure Python, no native OpenSlide), which
decodes only the tiles a region touches.

Coordinates are level-0 pixels, origin at the top-left corner, as QuPath's.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
import tifffile

from appliance.errors import ApplianceError

__all__ = [
    "MAX_OVERVIEW_PIXELS",
    "MAX_REGION_SIDE",
    "MAX_SLIDE_SIDE",
    "MAX_TILE_SIDE",
    "REGION_ORIGINS",
    "SLIDE_SUFFIXES",
    "Slide",
    "SlideInfo",
    "is_slide",
    "open_slide",
    "tissue_regions",
]

SLIDE_SUFFIXES = (".svs", ".ndpi", ".scn")  # always slides; a .tif(f) is one when pyramidal
MAX_SLIDE_SIDE = 2**18  # 262,144 px: twice the widest scan (a 75 mm slide at 0.25 µm/px)
MAX_OVERVIEW_PIXELS = 2**24  # the coarsest level must fit the overview (4096² px, 48 MB RGB)
MAX_TILE_SIDE = 4096  # larger tiles (or strips) would make one read decode a large area
MAX_REGION_SIDE = 4096  # a region is one task on the tablet: 4096² px at 40x is ~1 mm²
REGION_ORIGINS = ("lab", "tissue", "expert")  # who picked a region
OME = (".ome.tif", ".ome.tiff", ".ome.tf2", ".ome.tf8", ".ome.btf")
_UNTILED_PIXELS = 2**26  # an untiled level up to this size (8k²) is read whole, once, at most


@dataclass(frozen=True)
class SlideInfo:
    """What the header declares, checked: level sizes (W, H), downsamples, µm per pixel."""

    name: str
    width: int
    height: int
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    mpp: float | None
    vendor: str | None

    @property
    def levels(self) -> int:
        """Number of pyramid levels (level 0 is full resolution)."""
        return len(self.level_dimensions)


def is_slide(path: Path) -> bool:
    """Whether a file is a whole-slide image: a scanner format by name, or a TIFF whose first
    page has SubIFDs or whose first image series is a pyramid (so it goes to `open_slide`,
    not the plain-image importer)."""
    suffix = Path(path).suffix.lower()
    if suffix in SLIDE_SUFFIXES:
        return True
    if suffix not in (".tif", ".tiff"):
        return False
    try:
        with warnings.catch_warnings(), tifffile.TiffFile(path) as tif:
            warnings.simplefilter("ignore")
            if "SubIFDs" in tif.pages.first.tags:  # reduced levels hang off the first page,
                return True  # even when they are broken (then `open_slide` says so)
            return bool(tif.series) and len(tif.series[0].levels) > 1
    except Exception:  # an unreadable TIFF is the plain importer's to report
        return False


def _mpp(tif: tifffile.TiffFile, vendor_mpp: object) -> float | None:
    if isinstance(vendor_mpp, (int, float)) and vendor_mpp > 0:
        return float(vendor_mpp)
    if tif.is_ome and tif.ome_metadata:
        m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tif.ome_metadata)
        unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
        if m and (unit is None or unit.group(1) in ("µm", "um")):
            value = float(m.group(1))
            return value if value > 0 else None
    return None


def _level_size(series: tifffile.TiffPageSeries) -> tuple[int, int]:
    """(width, height) a series (or level) declares."""
    shape = dict(zip(series.axes, series.shape, strict=True))
    return int(shape.get("X", 0)), int(shape.get("Y", 0))


def _check_pages(levels: list[tifffile.TiffPageSeries], name: str, file_size: int) -> None:
    """Every level's tiles lie inside the file and have sane sizes (header only)."""
    for k, level in enumerate(levels):
        for page in level.pages:
            if page is None:
                raise ApplianceError(f"{name}: pyramid level {k} is declared but missing")
            keyframe = page.keyframe
            if keyframe is None:
                raise ApplianceError(f"{name}: pyramid level {k} has no readable page")
            if keyframe.is_tiled:
                if max(keyframe.tilelength, keyframe.tilewidth) > MAX_TILE_SIDE:
                    raise ApplianceError(
                        f"{name}: level {k} has {keyframe.tilewidth}×{keyframe.tilelength} "
                        f"tiles (at most {MAX_TILE_SIDE})"
                    )
            elif keyframe.imagewidth * keyframe.imagelength > _UNTILED_PIXELS:
                raise ApplianceError(
                    f"{name}: level {k} ({keyframe.imagewidth}×{keyframe.imagelength}) is not "
                    "tiled, so reading any part of it would decode all of it"
                )
            offsets = np.asarray(page.dataoffsets, np.int64)
            counts = np.asarray(page.databytecounts, np.int64)
            used = counts > 0  # sparse writers leave empty tiles at offset 0, count 0
            if offsets.size and bool(np.any(offsets[used] + counts[used] > file_size)):
                missing = int(np.count_nonzero(offsets[used] + counts[used] > file_size))
                raise ApplianceError(
                    f"{name}: truncated: {missing} tiles of level {k} lie past the end of "
                    f"the file ({file_size} bytes)"
                )


def _check_side(w: int, h: int, name: str) -> None:
    if w < 1 or h < 1:
        raise ApplianceError(f"{name}: level 0 declares {w}×{h} pixels")
    if max(w, h) > MAX_SLIDE_SIDE:
        raise ApplianceError(
            f"{name}: declares {w}×{h} pixels, more than {MAX_SLIDE_SIDE} on a side "
            "(no scanner makes such a slide)"
        )


def _check_levels(dims: list[tuple[int, int]], name: str) -> None:
    _check_side(*dims[0], name)
    for k in range(1, len(dims)):
        (pw, ph), (cw, ch) = dims[k - 1], dims[k]
        if not (0 < cw <= pw and 0 < ch <= ph) or (cw, ch) == (pw, ph):
            raise ApplianceError(
                f"{name}: pyramid level {k} ({cw}×{ch}) is not smaller than level {k - 1} "
                f"({pw}×{ph})"
            )
    lw, lh = dims[-1]
    if lw * lh > MAX_OVERVIEW_PIXELS:
        raise ApplianceError(
            f"{name}: missing pyramid levels: the coarsest level is {lw}×{lh}, more than "
            f"{MAX_OVERVIEW_PIXELS} pixels, so an overview would decode too much"
        )


class Slide:
    """An open, checked slide; read regions and tiles by level. Close it (or use `with`)."""

    def __init__(
        self, path: Path, info: SlideInfo, handle: Any, files: ExitStack | None = None
    ) -> None:
        self.path = path
        self.info = info
        self._slide = handle
        self._files = files  # the open file objects of a sealed slide (closed with it)

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the file handle."""
        self._slide.close()
        if self._files is not None:
            self._files.close()

    def read_region(self, x: int, y: int, width: int, height: int, level: int = 0) -> np.ndarray:
        """RGB uint8 pixels (height, width, 3) of a level, its top-left corner at level-0
        coordinates (x, y); parts beyond the slide are zero (black).

        Only the tiles the region touches are decoded. A tile the file cannot decode is one
        `ApplianceError` naming the slide.
        """
        if not 0 <= level < self.info.levels:
            raise ApplianceError(f"{self.path}: no pyramid level {level}")
        if width < 1 or height < 1 or width * height > MAX_OVERVIEW_PIXELS:
            raise ApplianceError(f"{self.path}: a region of {width}×{height} cannot be read")
        try:
            arr = self._slide.read_region(
                (int(x), int(y)), level, (int(width), int(height)), as_array=True, padding=True
            )
        except ApplianceError:
            raise
        except Exception as exc:  # codec and zarr errors alike: the tile bytes are bad
            raise ApplianceError(
                f"{self.path}: cannot decode the region at ({x}, {y}) level {level} ({exc})"
            ) from exc
        return _rgb(np.asarray(arr))

    def overview(self) -> np.ndarray:
        """The coarsest level whole (bounded by `MAX_OVERVIEW_PIXELS`)."""
        w, h = self.info.level_dimensions[-1]
        return self.read_region(0, 0, w, h, self.info.levels - 1)


def _rgb(arr: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: RGBA drops alpha, grey repeats."""
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.dtype != np.uint8:
        raise ApplianceError(f"slides are read as 8-bit RGB; this one is {arr.dtype}")
    return np.ascontiguousarray(arr)


def open_slide(path: Path | str, opener: Callable[[], BinaryIO] | None = None) -> Slide:
    """Open a slide after checking its header; one `ApplianceError` naming the file and the
    problem for anything unreadable, hostile or unsupported.

    `opener` gives seekable file objects on the slide's bytes instead of the file at `path`
    (a stored slide of an encrypted project: `Project.open_original`); tifffile and tiffslide
    read from them region by region, so a sealed slide is never decrypted whole.
    """
    import tiffslide  # imported here: `appliance --help` stays fast

    path = Path(path)
    name = str(path)  # every message names the file as given
    files = ExitStack()
    try:
        if opener is None:
            file_size = path.stat().st_size
            check_src: Any = path
            slide_src: Any = path
            named: str | None = None
        else:
            named = path.name  # a file object has no name tifffile could use
            check_src = files.enter_context(opener())
            file_size = check_src.seek(0, 2)
            check_src.seek(0)
            slide_src = files.enter_context(opener())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with tifffile.TiffFile(check_src, name=named) as tif:
                if not tif.series:
                    raise ApplianceError(f"{name}: no image in this TIFF")
                for series in tif.series:  # every image's declared size, before any reader
                    _check_side(*_level_size(series), name)
                handle = tiffslide.TiffSlide(
                    slide_src, tifffile_options={"name": named} if named else None
                )
                props = handle.properties
                index = int(props.get("tiffslide.series-index") or 0)
                levels = tif.series[index].levels
                dims = [(int(w), int(h)) for w, h in handle.level_dimensions]
                if len(dims) != len(levels):
                    handle.close()
                    raise ApplianceError(f"{name}: the pyramid levels are inconsistent")
                try:
                    _check_levels(dims, name)
                    _check_pages(levels, name, file_size)
                except ApplianceError:
                    handle.close()
                    raise
                mpp = _mpp(tif, props.get("tiffslide.mpp-x"))
    except ApplianceError:
        files.close()
        raise
    except OSError as exc:
        files.close()
        raise ApplianceError(f"{name}: cannot read ({exc.strerror or exc})") from exc
    except Exception as exc:  # tifffile and tiffslide raise many types for bad headers
        files.close()
        raise ApplianceError(f"{name}: not a readable slide ({_one_line(exc)})") from exc
    vendor = props.get("tiffslide.vendor")
    info = SlideInfo(
        name=path.name,
        width=dims[0][0],
        height=dims[0][1],
        level_dimensions=tuple((w, h) for w, h in dims),
        level_downsamples=tuple(float(d) for d in handle.level_downsamples),
        mpp=mpp,
        vendor=str(vendor) if vendor else ("ome" if path.name.lower().endswith(OME) else None),
    )
    return Slide(path, info, handle, files if opener is not None else None)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


def tissue_regions(
    overview: np.ndarray, info: SlideInfo, side: int, limit: int
) -> list[tuple[int, int, int, int]]:
    """Up to `limit` square regions (x, y, side, side) at level 0 that are mostly tissue.

    Tissue is what is darker than the glass: Otsu's threshold on the overview's grey levels
    (stained tissue absorbs, the empty slide does not); black is never tissue (areas a Leica
    SCN did not scan, padding), and a region must not reach into it. Tiles of the level-0
    grid that are at least half tissue are candidates; when there are more than `limit`,
    evenly spaced ones along the grid are kept, so the regions spread over the whole section.
    """
    grey = cv2.cvtColor(np.ascontiguousarray(overview), cv2.COLOR_RGB2GRAY)
    scanned = overview.max(axis=2) >= 16  # black is no tissue: unscanned glass (SCN), padding
    values = grey[scanned]
    if values.size == 0 or float(values.std()) < 2.0:  # empty or uniform: nothing to find
        return []
    level, _ = cv2.threshold(values.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    tissue = (grey <= level) & scanned
    scale_x = overview.shape[1] / info.width
    scale_y = overview.shape[0] / info.height
    found = []
    for y in range(0, info.height - side + 1, side):
        for x in range(0, info.width - side + 1, side):
            y0, y1 = int(y * scale_y), max(int((y + side) * scale_y), int(y * scale_y) + 1)
            x0, x1 = int(x * scale_x), max(int((x + side) * scale_x), int(x * scale_x) + 1)
            if tissue[y0:y1, x0:x1].mean() >= 0.5 and scanned[y0:y1, x0:x1].all():
                found.append((x, y, side, side))
    if len(found) <= limit:
        return found
    picks = np.linspace(0, len(found) - 1, limit).round().astype(int)
    return [found[i] for i in picks]
