"""Reading microscopy images without losing their dtype, and converting them for display.

Images keep the dtype they were stored with (8/16-bit integers, float); display and model input
are separate conversions. Before anything is decoded, the header is read to refuse decompression
bombs: a 100000×100000 PNG would otherwise allocate tens of gigabytes.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import tifffile

from appliance.errors import ApplianceError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "check_pixels",
    "page_shapes",
    "percentile_normalise",
    "read_file",
    "read_image",
    "sniff_format",
    "to_display",
    "write_tiff",
]

DEFAULT_MAX_PIXELS = 2**28
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

# Decoding errors are reported by us, one line each, not by OpenCV on stderr.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def sniff_format(data: bytes) -> str | None:
    """The format by magic bytes, never by file name (a text file named .tif is not a TIFF)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if data.startswith(b"BM"):
        return "bmp"
    return None


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ValueError("PNG header is truncated")
    w, h = struct.unpack(">II", data[16:24])
    return h, w


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        seg_len = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return h, w
        i += 2 + seg_len
    raise ValueError("JPEG has no frame header")


def _bmp_size(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise ValueError("BMP header is truncated")
    w, h = struct.unpack("<ii", data[18:26])
    return abs(h), abs(w)


def _tiff_pages(data: bytes) -> list[tuple[int, ...]]:
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        return [tuple(p.shape) for p in tif.pages]


def page_shapes(data: bytes, name: str = "image") -> list[tuple[int, ...]]:
    """Shapes of the frames in `data` from the header alone (one entry unless multi-page TIFF)."""
    fmt = sniff_format(data)
    if fmt is None:
        raise ApplianceError(f"{name}: not a PNG, JPEG, TIFF or BMP image")
    try:
        if fmt == "tiff":
            return _tiff_pages(data)
        return [{"png": _png_size, "jpeg": _jpeg_size, "bmp": _bmp_size}[fmt](data)]
    except ApplianceError:
        raise
    except Exception as exc:
        raise ApplianceError(f"{name}: unreadable {fmt.upper()} header ({exc})") from None


def check_pixels(shape: tuple[int, ...], name: str, max_pixels: int) -> None:
    """Refuse a frame of `shape` ((H, W) or (H, W, C)) above `max_pixels` before decoding it.

    Raises
    ------
    ApplianceError
        Naming `name` and the size (decompression-bomb guard).
    """
    h, w = int(shape[0]), int(shape[1]) if len(shape) > 1 else 1
    if h * w > max_pixels:
        raise ApplianceError(
            f"{name}: {w}×{h} pixels exceeds the limit of {max_pixels} (decompression-bomb guard)"
        )
    if h == 0 or w == 0:
        raise ApplianceError(f"{name}: image has no pixels")


def read_file(path: Path, label: str | None = None) -> bytes:
    """The bytes of an image file; unreadable and empty files are user errors."""
    label = label or str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ApplianceError(f"{label}: cannot read ({exc.strerror})") from None
    if not data:
        raise ApplianceError(f"{label}: file is empty")
    return data


def read_image(
    source: Path | str | bytes,
    *,
    page: int | None = None,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode one frame, keeping its dtype: H×W for grey, H×W×3 (RGB order) for colour.

    Alpha channels are dropped, single-channel colour axes squeezed. Raises `ApplianceError`
    naming the file for anything that is not a complete, supported image.
    """
    if isinstance(source, bytes):
        data, label = source, name or "image"
        if not data:
            raise ApplianceError(f"{label}: file is empty")
    else:
        label = name or str(source)
        data = read_file(Path(source), label)
    shapes = page_shapes(data, label)
    index = page or 0
    if not 0 <= index < len(shapes):
        raise ApplianceError(f"{label}: has {len(shapes)} page(s), page {index} requested")
    check_pixels(shapes[index], label, max_pixels)
    if sniff_format(data) == "tiff":
        img = _decode_tiff(data, index, label)
    else:
        img = _decode_cv2(data, label)
    return _canonical(img, label)


def _decode_tiff(data: bytes, page: int, label: str) -> np.ndarray:
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            return tif.pages[page].asarray()
    except Exception as exc:
        raise ApplianceError(f"{label}: corrupt TIFF ({exc})") from None


def _check_complete(data: bytes, fmt: str, label: str) -> None:
    """Catch truncation ourselves: libpng and libjpeg would print to stderr or decode garbage."""
    if fmt == "png":
        pos = 8
        while pos + 12 <= len(data):
            (length,) = struct.unpack(">I", data[pos : pos + 4])
            kind = data[pos + 4 : pos + 8]
            end = pos + 12 + length
            if end > len(data):
                break
            if zlib.crc32(data[pos + 4 : end - 4]) != struct.unpack(">I", data[end - 4 : end])[0]:
                raise ApplianceError(f"{label}: corrupt PNG (bad checksum in {kind!r} chunk)")
            if kind == b"IEND":
                return
            pos = end
        raise ApplianceError(f"{label}: truncated PNG (no end chunk)")
    if fmt == "jpeg" and b"\xff\xd9" not in data[-64:]:
        raise ApplianceError(f"{label}: truncated JPEG (no end-of-image marker)")


def _decode_cv2(data: bytes, label: str) -> np.ndarray:
    _check_complete(data, sniff_format(data) or "", label)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ApplianceError(f"{label}: corrupt or truncated image data")
    if img.ndim == 3:
        code = cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB
        img = cv2.cvtColor(img, code)
    return img


def _canonical(img: np.ndarray, label: str) -> np.ndarray:
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if img.ndim == 3 and img.shape[0] in (3, 4) and img.shape[2] not in (3, 4):
        img = np.moveaxis(img[:3], 0, -1)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ApplianceError(f"{label}: unsupported image layout {img.shape}")
    if img.dtype == np.bool_:
        img = img.astype(np.uint8)
    return np.ascontiguousarray(img)


def _percentiles(channel: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """Exact percentiles through a histogram for integer images (fast on 16-bit)."""
    if channel.dtype in (np.uint8, np.uint16):
        hist = np.bincount(channel.ravel(), minlength=256)
        cdf = np.cumsum(hist) / channel.size
        lo = int(np.searchsorted(cdf, low / 100.0))
        hi = int(np.searchsorted(cdf, high / 100.0))
        return float(lo), float(hi)
    sample = channel.ravel()[:: max(1, channel.size // 1_000_000)]
    lo, hi = np.percentile(sample, [low, high])
    return float(lo), float(hi)


def percentile_normalise(img: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Per-channel float32 in [0, 1] between the `low` and `high` percentiles.

    The workstation trains on exactly this function's output and the tablet feeds it to the
    models, so both sides agree on the input scale.

    Parameters
    ----------
    img : numpy.ndarray
        (H, W) or (H, W, C); uint8, uint16, float32 or any other numeric dtype.
    low, high : float
        Percentiles (0..100) mapped to 0 and 1; values beyond them are clipped. A constant
        channel becomes 0.

    Returns
    -------
    numpy.ndarray
        float32, same shape as `img`.

    Examples
    --------
    >>> percentile_normalise(np.array([[0, 100], [200, 400]], np.uint16), 0, 100).tolist()
    [[0.0, 0.25], [0.5, 1.0]]
    """
    img = np.asarray(img)
    chans = img[..., None] if img.ndim == 2 else img
    out = np.empty(chans.shape, np.float32)
    for c in range(chans.shape[-1]):
        ch = chans[..., c]
        lo, hi = _percentiles(ch, low, high)
        scale = 1.0 / (hi - lo) if hi > lo else 0.0
        np.clip((ch.astype(np.float32) - lo) * scale, 0.0, 1.0, out=out[..., c])
    return out[..., 0] if img.ndim == 2 else out


def to_display(img: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """8-bit view of any image (16-bit aware); the stored pixels are never changed.

    Parameters
    ----------
    img : numpy.ndarray
        (H, W) or (H, W, C), any numeric dtype.
    low, high : float
        Percentiles stretched to 0 and 255 (see `percentile_normalise`).

    Returns
    -------
    numpy.ndarray
        uint8, same shape as `img` (`img` itself when it is uint8 and no stretch is asked).
    """
    img = np.asarray(img)
    if img.dtype == np.uint8 and low <= 0 and high >= 100:
        return img
    return (percentile_normalise(img, low, high) * 255.0 + 0.5).astype(np.uint8)


def write_tiff(path: Path, img: np.ndarray) -> None:
    """Lossless TIFF with the array's own dtype (used by the virtual microscope and exports)."""
    tifffile.imwrite(path, img, compression="zlib")
