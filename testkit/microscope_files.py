"""Genuine Leica LIF and Nikon ND2 files written from the formats as `liffile` and `nd2`
parse them, for tests.

No writer for either is on the package index and the public sample files are Git LFS
objects, so the tests write their own (ND2: see `write_nd2`). The LIF layout follows
Leica's "Leica Image File Formats - LIF" (version 2) as liffile reads it:

- a header part: int32 0x70, int32 byte count of what follows (2 × chars + 5), byte 0x2A,
  int32 number of UTF-16 characters, then the XML in UTF-16-LE;
- the XML: `LMSDataContainerHeader Version="2"` holding the experiment `Element` whose
  `Children` are one `Element` per image (series), each with `Data/Image/ImageDescription`
  (`Channels/ChannelDescription`, `Dimensions/DimensionDescription`) and a `Memory` naming its
  memory block by `MemoryBlockID`;
- one memory block per element: int32 0x70, int32 byte count of the block description, byte
  0x2A, uint64 size of the data, byte 0x2A, int32 number of UTF-16 characters of the ID, the
  ID in UTF-16-LE, then the data.

The pixels are laid out as LAS X stores a confocal stack: X fastest, then Y, then
the channels one plane after another (each `ChannelDescription` has the byte offset of its
plane), then Z, then T. A channel's name is its `LUTName`, which is what bioio-lif reports.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

__all__ = ["LifSeries", "clx_lite", "edit_lif_xml", "write_lif", "write_nd2"]

_BITS = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}
# step per DimID written into the dimensions: X, Y, Z in metres (as LAS X writes them), T in s
_STEP = {1: (0.2e-6, "m"), 2: (0.2e-6, "m"), 3: (1e-6, "m"), 4: (2.0, "s")}


@dataclass(frozen=True)
class LifSeries:
    """One image of a LIF file: `data` is (T, C, Z, Y, X), uint8 or uint16; one name per C."""

    name: str
    data: np.ndarray
    channels: Sequence[str]


def write_lif(
    path: Path,
    data: np.ndarray,
    channels: Sequence[str],
    *,
    name: str = "Series001",
    more: Sequence[LifSeries] = (),
) -> Path:
    """Write `data` (T, C, Z, Y, X) as the first image of a LIF file, `more` images after it."""
    images = [LifSeries(name, data, channels), *more]
    for image in images:
        if image.data.ndim != 5 or image.data.dtype not in _BITS:
            raise ValueError(f"{image.name}: need (T, C, Z, Y, X) uint8 or uint16 data")
        if len(image.channels) != image.data.shape[1]:
            raise ValueError(
                f"{image.name}: {image.data.shape[1]} channels, names for {len(image.channels)}"
            )
    children = "".join(_element(image, f"MemBlock_{k + 1}") for k, image in enumerate(images))
    xml = (
        '<LMSDataContainerHeader Version="2">'
        f'<Element Name={quoteattr(Path(path).stem)} Visibility="1" CopyOption="1" '
        f'UniqueID="{uuid.uuid4()}">'
        '<Data><Experiment IsSavedFlag="1"/></Data>'
        '<Memory Size="0" MemoryBlockID="MemBlock_0"/>'
        f"<Children>{children}</Children>"
        "</Element></LMSDataContainerHeader>"
    )
    # LAS X stores T, Z, then the channel planes: (T, C, Z, Y, X) -> (T, Z, C, Y, X)
    blocks = [("MemBlock_0", b"")] + [
        (f"MemBlock_{k + 1}", _stored(im.data)) for k, im in enumerate(images)
    ]
    Path(path).write_bytes(_header(xml) + b"".join(_block(i, b) for i, b in blocks))
    return Path(path)


def edit_lif_xml(path: Path, edit: Callable[[str], str]) -> None:
    """Rewrite a LIF file's XML through `edit`, its memory blocks kept (a file that lies)."""
    raw = Path(path).read_bytes()
    _, _, _, chars = struct.unpack("<IIBI", raw[:13])
    xml = raw[13 : 13 + 2 * chars].decode("utf-16-le")
    Path(path).write_bytes(_header(edit(xml)) + raw[13 + 2 * chars :])


def _stored(data: np.ndarray) -> bytes:
    """(T, C, Z, Y, X) in LAS X's order: T, Z, then the channel planes; little-endian."""
    order = data.transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(order, dtype=data.dtype.newbyteorder("<")).tobytes()


def _header(xml: str) -> bytes:
    text = xml.encode("utf-16-le")
    return struct.pack("<IIBI", 0x70, len(text) + 5, 0x2A, len(xml)) + text


def _block(block_id: str, data: bytes) -> bytes:
    ident = block_id.encode("utf-16-le")
    description = struct.pack("<BQBI", 0x2A, len(data), 0x2A, len(block_id)) + ident
    return struct.pack("<II", 0x70, len(description)) + description + data


def _element(image: LifSeries, block_id: str) -> str:
    t, c, z, y, x = image.data.shape
    itemsize = image.data.dtype.itemsize
    bits = _BITS[image.data.dtype]
    plane = x * y * itemsize
    channels = "".join(
        f'<ChannelDescription DataType="0" ChannelTag="0" Resolution="{bits}" '
        f'NameOfMeasuredQuantity="" Min="0.000000e+00" Max="{2**bits - 1:.6e}" Unit="" '
        f'LUTName={quoteattr(label)} IsLUTInverted="0" BytesInc="{k * plane}" BitInc="0"/>'
        for k, label in enumerate(image.channels)
    )
    dims = [(1, x, itemsize), (2, y, x * itemsize)]
    if z > 1:
        dims.append((3, z, c * plane))
    if t > 1:
        dims.append((4, t, c * z * plane))
    dimensions = "".join(
        f'<DimensionDescription DimID="{dim_id}" NumberOfElements="{n}" Origin="0.000000e+00" '
        f'Length="{(n - 1) * _STEP[dim_id][0]:.6e}" Unit="{_STEP[dim_id][1]}" '
        f'BitInc="0" BytesInc="{inc}"/>'
        for dim_id, n, inc in dims
    )
    return (
        f'<Element Name={quoteattr(image.name)} Visibility="1" CopyOption="1" '
        f'UniqueID="{uuid.uuid4()}">'
        '<Data><Image TextDescription=""><ImageDescription>'
        f"<Channels>{channels}</Channels><Dimensions>{dimensions}</Dimensions>"
        "</ImageDescription></Image></Data>"
        f'<Memory Size="{t * c * z * plane}" MemoryBlockID="{block_id}"/>'
        "<Children/></Element>"
    )


# --- Nikon ND2 (version 3.0) ---------------------------------------------------------------

_ND2_MAGIC = 0x0ABECEDA
_ND2_ALIGN = 4096  # NIS-Elements starts every chunk on a 4096-byte boundary
_ND2_FRAME_NAME = 4072  # an image chunk's name field: its pixels start 4096 + 8 after the chunk
_FILE_SIGNATURE = b"ND2 FILE SIGNATURE CHUNK NAME01!"
_FILEMAP_SIGNATURE = b"ND2 FILEMAP SIGNATURE NAME 0001!"
_CHUNKMAP_SIGNATURE = b"ND2 CHUNK MAP SIGNATURE 0000001!"

# CLX-lite variant types (nd2's ELxLiteVariantType) and how each value is packed
_CLX_BOOL = 1
_CLX_INT32 = 2
_CLX_UINT32 = 3
_CLX_DOUBLE = 6
_CLX_STRING = 8
_CLX_LEVEL = 11
_CLX_PACK = {
    _CLX_BOOL: "<B",
    _CLX_INT32: "<i",
    _CLX_UINT32: "<I",
    _CLX_DOUBLE: "<d",
}
_CLX_PREFIX = (
    ("ui", _CLX_UINT32),
    ("b", _CLX_BOOL),
    ("d", _CLX_DOUBLE),
    ("e", _CLX_INT32),
    ("i", _CLX_INT32),
    ("ws", _CLX_STRING),
    ("s", _CLX_STRING),
)


def clx_lite(name: str, value: object) -> bytes:
    """One CLX-lite record as NIS-Elements writes metadata (decoded by nd2's `_clx_lite`).

    The type comes from the Hungarian prefix of the name as in Nikon's keys (`uiWidth` is a
    uint32, `dCalibration` a double, `bCalibrated` a bool, `sDescription` a string); a dict
    is a level of named records, a list a level of unnamed ones (NIS's arrays).
    """
    label = (name + "\0").encode("utf-16-le")
    if isinstance(value, (dict, list)):
        items = value.items() if isinstance(value, dict) else (("", v) for v in value)
        children = [clx_lite(key, item) for key, item in items]
        head = struct.pack("<BB", _CLX_LEVEL, len(name) + 1) + label
        length = len(head) + 12 + sum(map(len, children))
        offsets, at = [], len(head) + 12
        for child in children:  # the table after a level: where each record starts
            offsets.append(at)
            at += len(child)
        table = struct.pack(f"<{len(children)}Q", *offsets)
        return head + struct.pack("<IQ", len(children), length) + b"".join(children) + table
    kind = next((k for prefix, k in _CLX_PREFIX if name.startswith(prefix)), None)
    if kind is None:
        raise ValueError(f"{name!r}: no CLX type prefix")
    if kind == _CLX_STRING:
        packed = (str(value) + "\0").encode("utf-16-le")
    else:
        packed = struct.pack(_CLX_PACK[kind], value)
    return struct.pack("<BB", kind, len(name) + 1) + label + packed


def write_nd2(
    path: Path,
    data: np.ndarray,
    channels: Sequence[str],
    *,
    z_step_um: float = 0.5,
    period_ms: float = 2000.0,
    attributes: Mapping[str, int] | None = None,
) -> Path:
    """Write `data` (T, C, Z, Y, X), uint8 or uint16, as a Nikon ND2 3.0 file.

    Chunks as NIS-Elements writes them: the file signature chunk, `ImageAttributesLV!`,
    `ImageMetadataSeqLV|0!` (calibration and one `sPlaneNew` plane per channel, named by its
    `sDescription`), `ImageMetadataLV!` (the experiment: a time loop around a Z-stack loop,
    each only when longer than one), `CustomData|AcqTimesCache!`, one `ImageDataSeq|N!` per
    T×Z frame holding every channel interleaved per pixel (Y, X, C) after an 8-byte time,
    then the chunk map and its 40-byte trailer. `attributes` replaces values of the image
    attributes (`uiWidth`, ...): a file that lies about its pixels.
    """
    if data.ndim != 5 or data.dtype not in _BITS:
        raise ValueError("need (T, C, Z, Y, X) uint8 or uint16 data")
    t, c, z, y, x = data.shape
    if len(channels) != c:
        raise ValueError(f"{c} channels, names for {len(channels)}")
    bits = _BITS[data.dtype]
    attrs = {
        "uiWidth": x,
        "uiWidthBytes": x * c * data.dtype.itemsize,
        "uiHeight": y,
        "uiComp": c,
        "uiBpcInMemory": bits,
        "uiBpcSignificant": bits,
        "uiSequenceCount": t * z,
        "uiTileWidth": x,
        "uiTileHeight": y,
        "eCompression": 2,  # none
        "dCompressionParam": 0.0,
        "ePixelType": 1,
        "uiVirtualComponents": c,
        **(attributes or {}),
    }
    planes = {
        f"a{k}": {
            "uiCompCount": 1,
            "uiSampleIndex": k,
            "uiColor": 0xFFFFFF,
            "sDescription": label,
            "pFluorescentProbe": {
                "m_ExcitationSpectrum": _spectrum(400.0 + 100 * k),
                "m_EmissionSpectrum": _spectrum(450.0 + 100 * k),
            },
        }
        for k, label in enumerate(channels)
    }
    picture = {
        "dTimeMSec": 0.0,
        "dTimeAbsolute": 2461000.5,  # a Julian day, as NIS writes the acquisition date
        "bCalibrated": True,
        "dCalibration": 0.2,  # µm per pixel
        "dObjectiveMag": 60.0,
        "dObjectiveNA": 1.4,
        "wsObjectiveName": "Plan Apo 60x Oil",
        "dXPos": 0.0,
        "dYPos": 0.0,
        "dZPos": 0.0,
        "sPicturePlanes": {"uiCount": c, "uiCompCount": c, "sPlaneNew": planes},
    }
    loops = []  # outermost first, as NIS nests them
    if t > 1:
        timing = ("dMinPeriodDiff", "dMaxPeriodDiff", "dAvgPeriodDiff", "dPeriod")
        pars = {"uiCount": t, "dStart": 0.0, "dDuration": 0.0, **dict.fromkeys(timing, period_ms)}
        loops.append({"eType": 1, "uLoopPars": pars})  # TimeLoop
    if z > 1:
        pars = {"uiCount": z, "dZLow": 0.0, "dZHigh": (z - 1) * z_step_um, "dZStep": z_step_um}
        pars |= {"dZHome": 0.0, "bZInverted": False, "iType": 0, "wsZDevice": "Ti2 ZDrive"}
        loops.append({"eType": 4, "uLoopPars": pars})  # ZStackLoop
    experiment: dict[str, object] = {}
    for loop in reversed(loops):  # the outer loop holds the inner one in ppNextLevelEx
        experiment = {**loop, **({"ppNextLevelEx": [experiment]} if experiment else {})}
    times = [period_ms * (k // z) for k in range(t * z)]
    chunks = [
        (b"ImageAttributesLV!", clx_lite("SLxImageAttributes", attrs)),
        (b"ImageMetadataSeqLV|0!", clx_lite("SLxPictureMetadata", picture)),
    ]
    if experiment:  # a single plane has no loop
        chunks.append((b"ImageMetadataLV!", clx_lite("SLxExperiment", experiment)))
    chunks.append((b"CustomData|AcqTimesCache!", struct.pack(f"<{t * z}d", *times)))
    # frame k = (t, z) in T-major order; its pixels are (Y, X, C)
    frames = data.transpose(0, 2, 3, 4, 1).reshape(t * z, y, x, c)
    for k, frame in enumerate(frames):
        pixels = np.ascontiguousarray(frame, dtype=data.dtype.newbyteorder("<")).tobytes()
        chunks.append((f"ImageDataSeq|{k}!".encode(), struct.pack("<d", times[k]) + pixels))
    Path(path).write_bytes(_nd2_file(chunks))
    return Path(path)


def _spectrum(wavelength: float) -> dict[str, object]:
    return {
        "uiCount": 1,
        "pPoint": {"Point0": {"eType": 1, "dWavelength": wavelength, "dTValue": 1.0}},
    }


def _nd2_chunk(name: bytes, data: bytes, name_field: int) -> bytes:
    return (
        struct.pack("<IIQ", _ND2_MAGIC, name_field, len(data))
        + name.ljust(name_field, b"\0")
        + data
    )


def _nd2_file(chunks: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray(_nd2_chunk(_FILE_SIGNATURE, b"Ver3.0".ljust(64, b"\0"), 32))
    index = bytearray()
    for name, data in chunks:
        out += b"\0" * (-len(out) % _ND2_ALIGN)
        field = _ND2_FRAME_NAME if name.startswith(b"ImageDataSeq|") else len(name)
        index += name + struct.pack("<QQ", len(out), len(data))
        out += _nd2_chunk(name, data, field)
    out += b"\0" * (-len(out) % _ND2_ALIGN)
    at = len(out)
    index += _CHUNKMAP_SIGNATURE + struct.pack("<Q", at)
    out += _nd2_chunk(_FILEMAP_SIGNATURE, bytes(index), len(_FILEMAP_SIGNATURE))
    return bytes(out)
