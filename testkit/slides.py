"""Real pyramidal slide files written by tifffile, for tests and benchmarks.

`write_ome_pyramid` writes an OME-TIFF whose reduced levels are SubIFDs (as bfconvert and
QuPath write them); `write_svs` lays out an Aperio file as a ScanScope does (tiled baseline
with the Aperio ImageDescription, stripped thumbnail, tiled reduced levels, label and macro);
`write_scn` a Leica SCN (BigTIFF, the SCN XML on the first page: a macro image of the whole
glass, then the scanned area's pyramid);
`write_sparse_slide` writes a slide of any size in seconds: glass tiles are left empty (byte
count 0) and only a few tissue tiles hold pixels;
`write_ndpi` a Hamamatsu NDPI: classic TIFF whose IFDs have NDPI's 64-bit layout, one JPEG
strip per pyramid level, the Hamamatsu private tags.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import tifffile

__all__ = [
    "tissue_image",
    "write_ndpi",
    "write_ome_pyramid",
    "write_scn",
    "write_sparse_slide",
    "write_svs",
]

GLASS = 236


def tissue_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """RGB uint8: bright glass with pink-purple tissue blobs and dark nuclei."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), GLASS, np.uint8)
    for _ in range(6):
        c = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (
            int(rng.integers(width // 10, width // 4)),
            int(rng.integers(height // 10, height // 4)),
        )
        cv2.ellipse(img, c, axes, float(rng.uniform(0, 180)), 0, 360, (214, 150, 190), -1)
    for _ in range(height * width // 4000):
        c = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        if img[c[1], c[0], 0] != GLASS:
            cv2.circle(img, c, int(rng.integers(3, 7)), (90, 50, 140), -1)
    return img


def _levels(img: np.ndarray, n: int, factor: int) -> list[np.ndarray]:
    out = [img]
    for _ in range(n - 1):
        prev = out[-1]
        size = (max(1, prev.shape[1] // factor), max(1, prev.shape[0] // factor))
        out.append(cv2.resize(prev, size, interpolation=cv2.INTER_AREA))
    return out


def write_ome_pyramid(
    path: Path, img: np.ndarray, levels: int = 3, tile: int = 256, mpp: float = 0.5
) -> None:
    """OME-TIFF pyramid, reduced levels (factor 2) as SubIFDs of the full-resolution page;
    deflate-compressed, so what is read back equals `img` exactly."""
    pyramid = _levels(img, levels, 2)
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tif:
        meta = {"axes": "YXS", "PhysicalSizeX": mpp, "PhysicalSizeY": mpp}
        opts = {"tile": (tile, tile), "photometric": "rgb", "compression": "zlib"}
        tif.write(pyramid[0], subifds=levels - 1, metadata=meta, **opts)
        for level in pyramid[1:]:
            tif.write(level, subfiletype=1, metadata=None, **opts)


def write_svs(path: Path, img: np.ndarray, mpp: float = 0.25, tile: int = 256) -> None:
    """Aperio SVS layout (JPEG tiles, the ScanScope's description) with one reduced level (4x)."""
    h, w = img.shape[:2]
    head = f"Aperio Image Library v12.0.15 \r\n{w}x{h} [0,0 {w}x{h}] ({tile}x{tile}) JPEG/RGB Q=70"
    desc = f"{head}|AppMag = 40|StripeWidth = 2040|ScanScope ID = CS2|MPP = {mpp:.4f}"
    level1 = _levels(img, 2, 4)[1]
    thumb = _levels(img, 2, 16)[1]
    opts = {"photometric": "rgb", "compression": "jpeg", "metadata": None}
    with tifffile.TiffWriter(path) as tif:
        tif.write(img, tile=(tile, tile), description=desc, **opts)
        tif.write(thumb, description=f"{head}\r\n-> {thumb.shape[1]}x{thumb.shape[0]}", **opts)
        tif.write(level1, tile=(tile, tile), description=f"{head}\r\n-> reduced", **opts)
        tif.write(thumb[:64, :64], subfiletype=1, description="label", **opts)
        tif.write(thumb, subfiletype=9, description="macro", **opts)


def write_scn(path: Path, img: np.ndarray, nm_per_px: int = 500, tile: int = 256) -> None:
    """Leica SCN: collection XML, a macro image (the whole glass, 1/5 size), and the scanned
    area (`img`, with one reduced level, 2x) placed 1000 × 700 px from the glass corner."""
    h, w = img.shape[:2]
    half = _levels(img, 2, 2)[1]
    macro = _levels(img, 2, 5)[1]
    glass_w, glass_h = 2 * w * nm_per_px, 2 * h * nm_per_px
    settings = (
        "<scanSettings><objectiveSettings><objective>20</objective></objectiveSettings>"
        "<illuminationSettings><numericalAperture>0.4</numericalAperture>"
        "<illuminationSource>brightfield</illuminationSource></illuminationSettings>"
        "</scanSettings>"
    )
    device = '<device model="Leica SCN400;Leica SCN" version="1.5.1.10804 2012/05/10"/>'
    xml = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<scn xmlns="http://www.leica-microsystems.com/scn/2010/10/01">'
        f'<collection name="case" uuid="c1" sizeX="{glass_w}" sizeY="{glass_h}">'
        '<image name="macro" uuid="i1"><creationDate>2026-01-01T00:00:00Z</creationDate>'
        f'{device}<pixels sizeX="{macro.shape[1]}" sizeY="{macro.shape[0]}">'
        f'<dimension sizeX="{macro.shape[1]}" sizeY="{macro.shape[0]}" r="0" ifd="0"/></pixels>'
        f'<view sizeX="{glass_w}" sizeY="{glass_h}" offsetX="0" offsetY="0" spacingZ="0"/>'
        f"{settings}</image>"
        '<image name="area" uuid="i2"><creationDate>2026-01-01T00:00:00Z</creationDate>'
        f'{device}<pixels sizeX="{w}" sizeY="{h}">'
        f'<dimension sizeX="{w}" sizeY="{h}" r="0" ifd="1"/>'
        f'<dimension sizeX="{half.shape[1]}" sizeY="{half.shape[0]}" r="1" ifd="2"/></pixels>'
        f'<view sizeX="{w * nm_per_px}" sizeY="{h * nm_per_px}" offsetX="{1000 * nm_per_px}" '
        f'offsetY="{700 * nm_per_px}" spacingZ="0"/>{settings}</image>'
        "</collection></scn>"
    )
    opts = {"photometric": "rgb", "compression": "jpeg", "metadata": None}
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(macro, description=xml, **opts)
        tif.write(img, tile=(tile, tile), **opts)
        tif.write(half, tile=(tile, tile), **opts)


def write_sparse_slide(
    path: Path, width: int, height: int, tile: int = 512, tissue_tiles: int = 64, seed: int = 0
) -> None:
    """A pyramidal BigTIFF of `width` × `height` (levels 4x apart down to 2048 px or less)
    whose glass tiles are empty (byte count 0; they read as zeros) and whose middle block of
    `tissue_tiles` tiles per level holds tissue, JPEG-coded as a scanner's. The first tile is
    written as glass (tifffile takes the dtype from an iterator's first item)."""
    patch = tissue_image(tile, tile, seed)
    glass = np.full_like(patch, GLASS)
    w, h, level = width, height, 0
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        while True:
            nx, ny = -(-w // tile), -(-h // tile)
            side = max(1, int(np.sqrt(tissue_tiles)))
            bx, by = nx // 2 - side // 2, ny // 2 - side // 2
            rows, cols = range(by, by + side), range(bx, bx + side)
            tiles = (
                patch if r in rows and c in cols else (glass if r == c == 0 else None)
                for r in range(ny)
                for c in range(nx)
            )
            tif.write(
                tiles,
                shape=(h, w, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                photometric="rgb",
                compression="jpeg",
                subfiletype=1 if level else 0,
                metadata=None,
            )
            if max(w, h) <= 2048:
                break
            w, h, level = max(1, w // 4), max(1, h // 4), level + 1


def write_ndpi(
    path: Path, img: np.ndarray, mpp: float = 0.46, levels: int = 3, lens: float = 20.0
) -> None:
    """A Hamamatsu NDPI as the scanners lay it out, small: a little-endian classic TIFF
    (version 42) whose IFDs use NDPI's 64-bit extension (after the 12-byte tag entries an
    8-byte offset of the next IFD, then 4 high bytes per entry; the first IFD's offset is 8
    bytes too), one JPEG strip per pyramid level (4x apart), resolution in pixels per cm, and
    the private tags tifffile and OpenSlide recognise NDPI by: Make "Hamamatsu", 65420
    FileFormat, 65421 SourceLens (the objective), 65422/65423 offsets from the slide centre.

    tifffile writes the pages as a classic TIFF; their IFDs are then rewritten in NDPI's
    layout at the end of the file (pixel data and tag values stay where they are, the file
    is far below 4 GB, so every high part is zero). Real scanners also write McuStarts
    (65426, restart-marker offsets that make a strip readable piece by piece) and a macro
    image; this file has neither, so its levels must stay under the untiled-level limit of
    `appliance.slides`.
    """
    tags = [
        (271, "s", 0, "Hamamatsu", True),  # Make
        (272, "s", 0, "C13210", True),  # Model
        (65420, "I", 1, 1, True),  # FileFormat
        (65421, "f", 1, lens, True),  # SourceLens: the objective's magnification
        (65422, "i", 1, 0, True),  # XOffsetFromSlideCentre (nm)
        (65423, "i", 1, 0, True),  # YOffsetFromSlideCentre (nm)
    ]
    classic = path.with_name(path.name + ".classic")
    with tifffile.TiffWriter(classic, bigtiff=False) as tif:
        for k, level in enumerate(_levels(img, levels, 4)):
            per_cm = 1e4 / (mpp * 4**k)
            tif.write(
                level,
                photometric="rgb",
                compression="jpeg",
                rowsperstrip=level.shape[0],
                resolution=(per_cm, per_cm),
                resolutionunit="CENTIMETER",
                extratags=tags,
                metadata=None,
            )
    data = bytearray(classic.read_bytes())
    classic.unlink()
    entries, offset = [], struct.unpack_from("<I", data, 4)[0]
    assert offset == 8  # the first classic IFD follows the header: its bytes may be reused
    while offset:
        n = struct.unpack_from("<H", data, offset)[0]
        entries.append(bytes(data[offset : offset + 2 + 12 * n]))
        offset = struct.unpack_from("<I", data, offset + 2 + 12 * n)[0]
    data += bytes(-len(data) % 8)
    sizes = [len(ifd) + 8 + 4 * ((len(ifd) - 2) // 12) for ifd in entries]
    starts = [len(data) + sum(sizes[:k]) for k in range(len(entries))]
    for k, ifd in enumerate(entries):
        n = (len(ifd) - 2) // 12
        following = starts[k + 1] if k + 1 < len(starts) else 0
        data += ifd + struct.pack("<Q", following) + bytes(4 * n)
    struct.pack_into("<Q", data, 4, starts[0])  # NDPI's 8-byte offset of the first IFD
    path.write_bytes(bytes(data))
