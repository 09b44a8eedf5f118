"""Genuine Leica LIF files written from the format as `liffile` parses it, for tests.

No writer for LIF is on the package index and the public sample files are Git LFS objects,
so the tests write their own. The layout follows Leica's "Leica Image File Formats - LIF"
(version 2) as liffile reads it:

- a header part: int32 0x70, int32 byte count of what follows (2 × chars + 5), byte 0x2A,
  int32 number of UTF-16 characters, then the XML in UTF-16-LE;
- the XML: `LMSDataContainerHeader Version="2"` holding the experiment `Element` whose
  `Children` are one `Element` per image (series), each with `Data/Image/ImageDescription`
  (`Channels/ChannelDescription`, `Dimensions/DimensionDescription`) and a `Memory` naming its
  memory block by `MemoryBlockID`;
- one memory block per element: int32 0x70, int32 byte count of the block description, byte
  0x2A, uint64 size of the data, byte 0x2A, int32 number of UTF-16 characters of the ID, the
  ID in UTF-16-LE, then the data.

The pixels are laid out as a confocal stack from LAS X stores them: X fastest, then Y, then
the channels one plane after another (each `ChannelDescription` has the byte offset of its
plane), then Z, then T. A channel's name is its `LUTName`, which is what bioio-lif reports.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

__all__ = ["LifSeries", "edit_lif_xml", "write_lif"]

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
