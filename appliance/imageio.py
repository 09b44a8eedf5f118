"""Reading microscopy images without losing their dtype, and converting them for display.

Images keep the dtype they were stored with (8/16-bit integers, float); display and model input
are separate conversions. Before anything is decoded, the header is read lazily (Pillow for
PNG/JPEG/BMP, tifffile for TIFF, both from an open file, never the whole file in memory) and
every declared size is checked, to refuse decompression bombs: a 100000×100000 PNG would
otherwise allocate tens of gigabytes. A multi-page TIFF is read one page at a time.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import tifffile
from PIL import Image

from appliance.errors import ApplianceError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "UNSUPPORTED_SUFFIXES",
    "Frame",
    "Probe",
    "check_pixels",
    "check_values",
    "iter_frames",
    "percentile_normalise",
    "probe",
    "read_image",
    "sniff_format",
    "to_display",
    "write_tiff",
]

DEFAULT_MAX_PIXELS = 2**28
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
# Recognised by magic bytes and reported (never silently skipped) when found in a folder.
UNSUPPORTED_SUFFIXES = (".gif", ".webp")
MAX_PAGES = 100_000
# A PNG/JPEG/BMP file is never much larger than its pixels; the slack covers metadata chunks.
FILE_SLACK_BYTES = 64 << 20
_PHOTOMETRIC_RGB = 2


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
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


@dataclass(frozen=True)
class Frame:
    """One importable 2-D frame declared by a file's header (nothing decoded yet)."""

    page: int | None  # TIFF page index when the file holds several frames, else None
    height: int
    width: int
    channels: int  # 1 (grey) or 3 (colour)


@dataclass(frozen=True)
class Probe:
    """What a file's header declares: its format, frames and a note for the import summary."""

    format: str
    frames: list[Frame]
    note: str | None = None


def check_pixels(shape: tuple[int, ...], name: str, max_pixels: int) -> None:
    """Refuse a declared height×width over `max_pixels` (or with no pixels) before decoding."""
    h, w = int(shape[0]), int(shape[1]) if len(shape) > 1 else 1
    if h * w > max_pixels:
        raise ApplianceError(
            f"{name}: {w}×{h} pixels exceeds the limit of {max_pixels} (decompression-bomb guard)"
        )
    if h == 0 or w == 0:
        raise ApplianceError(f"{name}: image has no pixels")


@contextmanager
def _opened(source: Path | bytes | BinaryIO, label: str) -> Iterator[BinaryIO]:
    """A binary file object on a path, on bytes or an open seekable file (a sealed original:
    `Project.open_original`); unreadable, special and empty files refused."""
    if not isinstance(source, (bytes, Path)):
        if _size(source) == 0:
            raise ApplianceError(f"{label}: file is empty")
        yield source
        return
    if isinstance(source, bytes):
        if not source:
            raise ApplianceError(f"{label}: file is empty")
        yield io.BytesIO(source)
        return
    try:
        if not Path(source).exists():
            raise ApplianceError(f"{label}: no such file")
        if not Path(source).is_file():  # a FIFO or device would block or never end
            raise ApplianceError(f"{label}: not a regular file")
        fh = open(source, "rb")  # noqa: SIM115 (closed by the `with` below)
    except OSError as exc:
        raise ApplianceError(f"{label}: cannot read ({exc.strerror})") from exc
    with fh:
        if os.fstat(fh.fileno()).st_size == 0:
            raise ApplianceError(f"{label}: file is empty")
        yield fh


def _size(fh: BinaryIO) -> int:
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(0)
    return size


def probe(source: Path | bytes, name: str | None = None) -> Probe:
    """Frames declared by the header of `source` (a path or bytes), without decoding pixels."""
    label = name or (str(source) if not isinstance(source, bytes) else "image")
    with _opened(source, label) as fh:
        return _probe(fh, label)


def _probe(fh: BinaryIO, label: str) -> Probe:
    fmt = sniff_format(fh.read(16))
    fh.seek(0)
    if fmt in ("gif", "webp"):
        raise ApplianceError(f"{label}: {fmt.upper()} images are not supported (convert to PNG)")
    if fmt is None:
        raise ApplianceError(f"{label}: not a PNG, JPEG, TIFF or BMP image")
    try:
        if fmt == "tiff":
            return _probe_tiff(fh, label)
        return _probe_pillow(fh, fmt, label)
    except ApplianceError:
        raise
    except Exception as exc:  # the libraries raise many types for one cause: a broken header
        raise ApplianceError(
            f"{label}: unreadable {fmt.upper()} header ({_one_line(exc)})"
        ) from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _probe_pillow(fh: BinaryIO, fmt: str, label: str) -> Probe:
    """Pillow reads only the header on open. Its bomb error (at twice `Image.MAX_IMAGE_PIXELS`)
    becomes our one-line guard message; our own `max_pixels` check follows in `check_pixels`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(fh) as im:
                w, h = im.size
                channels = (
                    1 if im.mode in ("1", "L", "P", "I", "F") or im.mode.startswith("I;") else 3
                )
                if fmt == "png":
                    _verify_png(im, label)
        except Image.DecompressionBombError as exc:
            raise ApplianceError(
                f"{label}: declared size exceeds the decompression-bomb guard"
            ) from exc
    if fmt == "jpeg":
        _check_jpeg_end(fh, label)
    return Probe(fmt, [Frame(None, h, w, channels)])


def _verify_png(im: Image.Image, label: str) -> None:
    """Pillow's verify walks every chunk, streamed: checksums and a missing end are caught."""
    try:
        im.verify()
    except Exception as exc:
        raise ApplianceError(f"{label}: truncated or corrupt PNG ({_one_line(exc)})") from exc


def _check_jpeg_end(fh: BinaryIO, label: str) -> None:
    """What Pillow's verify does not do for JPEG: a truncated stream decodes to grey padding
    through libjpeg, with only a warning, so the end-of-image marker is checked here."""
    size = _size(fh)
    fh.seek(max(0, size - 64))
    if b"\xff\xd9" not in fh.read(64):
        raise ApplianceError(f"{label}: truncated JPEG (no end-of-image marker)")
    fh.seek(0)


def _probe_tiff(fh: BinaryIO, label: str) -> Probe:
    """Each page is one frame, its height and width taken from the page's own tags; samples
    of one page are colour only for RGB photometry. Z planes, time points and channels stored
    as pages (ImageJ, OME, plain multi-page) become a sequence of frames, never colour."""
    with tifffile.TiffFile(fh) as tif:
        frames = []
        for index, page in enumerate(tif.pages):
            if index >= MAX_PAGES:
                raise ApplianceError(f"{label}: more than {MAX_PAGES} pages")
            frames.append(_tiff_frame(page, index, label))
        axes = _series_axes(tif)
    if not frames:
        raise ApplianceError(f"{label}: TIFF has no pages")
    if len(frames) == 1:
        return Probe("tiff", [Frame(None, frames[0].height, frames[0].width, frames[0].channels)])
    note = f"{len(frames)} planes"
    if axes and set(axes) - set("YXSI"):
        note = f"{axes} stack: {len(frames)} planes imported as a sequence"
    return Probe("tiff", frames, note)


def _tiff_frame(item: tifffile.TiffPage | tifffile.TiffFrame, index: int, label: str) -> Frame:
    # a TiffFrame shares its key page's tags: tifffile decodes it with the key page's size
    page = item.keyframe if isinstance(item, tifffile.TiffFrame) else item
    if page is None:
        raise ApplianceError(f"{label}: page {index} has no readable header")
    if page.imagedepth > 1:
        raise ApplianceError(f"{label}: page {index} is a volume tile (depth {page.imagedepth})")
    samples = page.samplesperpixel
    if samples == 1:
        channels = 1
    elif samples in (3, 4) and page.photometric == _PHOTOMETRIC_RGB:
        channels = 3
    else:
        raise ApplianceError(
            f"{label}: page {index} has {samples} samples per pixel that are not RGB "
            "(save channels as separate pages)"
        )
    return Frame(index, int(page.imagelength), int(page.imagewidth), channels)


def _series_axes(tif: tifffile.TiffFile) -> str:
    try:
        return str(tif.series[0].axes) if tif.series else ""
    except Exception:  # series metadata is optional; frames come from the pages alone
        return ""


def read_image(
    source: Path | str | bytes | BinaryIO,
    *,
    page: int | None = None,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode one frame, keeping its dtype: H×W for grey, H×W×3 (RGB order) for colour.

    Alpha channels are dropped. Raises `ApplianceError` naming the file for anything that is
    not a complete, supported image, before allocating anything larger than the header allows.
    """
    src = Path(source) if isinstance(source, str) else source
    label = name or (str(source) if isinstance(source, (str, Path)) else "image")
    with _opened(src, label) as fh:
        found = _probe(fh, label)
        fh.seek(0)
        index = page or 0
        if not 0 <= index < len(found.frames):
            raise ApplianceError(
                f"{label}: has {len(found.frames)} page(s), page {index} requested"
            )
        frame = found.frames[index]
        check_pixels((frame.height, frame.width), label, max_pixels)
        if found.format == "tiff":
            img = _decode_tiff(fh, index, label)
        else:
            img = _decode_cv2(fh, frame, label)
    return check_values(_canonical(img, label), label)


def iter_frames(
    path: Path, name: str, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Iterator[tuple[Frame, np.ndarray]]:
    """Every frame of one file decoded in turn from one open handle (one page in memory)."""
    with _opened(path, name) as fh:
        found = _probe(fh, name)
        for frame in found.frames:
            check_pixels((frame.height, frame.width), name, max_pixels)
        fh.seek(0)
        if found.format != "tiff":
            yield (
                found.frames[0],
                check_values(_canonical(_decode_cv2(fh, found.frames[0], name), name), name),
            )
            return
        with tifffile.TiffFile(fh) as tif:
            for frame, page in zip(found.frames, tif.pages, strict=True):
                img = _as_array(page, name)
                yield frame, check_values(_canonical(img, name), name)


def _decode_tiff(fh: BinaryIO, page: int, label: str) -> np.ndarray:
    with tifffile.TiffFile(fh) as tif:
        return _as_array(tif.pages[page], label)


def _as_array(page: tifffile.TiffPage | tifffile.TiffFrame, label: str) -> np.ndarray:
    try:
        return page.asarray()
    except Exception as exc:
        raise ApplianceError(f"{label}: corrupt TIFF ({_one_line(exc)})") from exc


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV's decoders warn on stderr; we report decode errors ourselves, one line each.
    Only for the call: the level is restored, so other users of OpenCV keep their logging."""
    old = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(old)


def _decode_cv2(fh: BinaryIO, frame: Frame, label: str) -> np.ndarray:
    """OpenCV decodes what Pillow cannot keep: 16-bit colour PNG stays 16-bit."""
    size = _size(fh)
    if size > frame.height * (frame.width * 8 + 1) + FILE_SLACK_BYTES:  # RGBA16, filters
        raise ApplianceError(
            f"{label}: {size} bytes is far more than {frame.width}×{frame.height} pixels need"
        )
    data = np.empty(size, np.uint8)  # read into one buffer: no copy of a large file
    data = data[: fh.readinto(data)]  # type: ignore[attr-defined]
    with _quiet_opencv():
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ApplianceError(f"{label}: corrupt or truncated image data")
    if img.ndim == 3:
        code = cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB
        img = cv2.cvtColor(img, code)
    return img


def _canonical(img: np.ndarray, label: str) -> np.ndarray:
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[0] in (3, 4) and img.shape[2] not in (3, 4):
        img = np.moveaxis(img, 0, -1)  # planar RGB page (checked to be RGB by its header)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ApplianceError(f"{label}: unsupported image layout {img.shape}")
    if img.dtype == np.bool_:
        img = img.astype(np.uint8)
    return np.ascontiguousarray(img)


def check_values(img: np.ndarray, label: str) -> np.ndarray:
    """Refuse pixels that every later step (display, Otsu, models) would choke on."""
    if img.dtype.kind == "c":
        raise ApplianceError(f"{label}: complex pixels ({img.dtype}) are not an image")
    if img.dtype.kind not in "uif":
        raise ApplianceError(f"{label}: unsupported pixel type {img.dtype}")
    if img.dtype.itemsize > 4 and img.dtype.kind in "ui":
        raise ApplianceError(f"{label}: 64-bit integer pixels are not supported")
    if img.dtype.kind == "f" and not np.isfinite(img).all():
        raise ApplianceError(f"{label}: image holds NaN or infinite values")
    return img


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
