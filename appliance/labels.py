"""The label model: an instance map plus a class table, and everything derived from it.

Every other representation (binary and semantic masks, boxes, centroids, COCO RLE) is computed
from the instance map, so there is one truth per label version and no derived state to go stale.
Instance ids are arbitrary positive integers (0 is background); class ids start at 1 and index
the project's class table.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import cv2
import numpy as np
from pycocotools import mask as coco_mask

from appliance.errors import ApplianceError

__all__ = [
    "DEFAULT_CLASS",
    "InstanceProps",
    "Label",
    "decode_coco_rle",
    "decode_instances",
    "decode_runs",
    "encode_instances",
    "encode_runs",
    "instance_runs",
    "run_ids",
]

DEFAULT_CLASS = 1
_MAGIC = b"ALBL"
_HEADER = struct.Struct("<4sBII")  # magic, format version, height, width
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class InstanceProps:
    """Geometry of one instance; `bbox` is (y0, x0, y1, x1) with exclusive ends."""

    id: int
    class_id: int
    area: int
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]


@dataclass
class Label:
    """An instance map (H×W, uint32, 0 = background) and instance id → class id."""

    instances: np.ndarray
    classes: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arr = np.asarray(self.instances)
        if arr.ndim != 2:
            raise ApplianceError(f"a label must be a 2-D instance map, got shape {arr.shape}")
        if arr.dtype != np.uint32:
            if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(np.uint32).max):
                raise ApplianceError("instance ids must lie in 0..2**32-1")
            arr = arr.astype(np.uint32)
        self.instances = arr
        self.classes = {int(k): int(v) for k, v in self.classes.items()}

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> Label:
        """A label of `shape` (H, W) without instances."""
        return cls(np.zeros(shape, np.uint32), {})

    @classmethod
    def from_binary(cls, mask: np.ndarray, class_id: int = DEFAULT_CLASS) -> Label:
        """Connected components (8-connectivity) of a binary mask become instances.

        Parameters
        ----------
        mask : numpy.ndarray
            (H, W), any dtype; non-zero pixels are foreground.
        class_id : int
            Class of every instance.

        Returns
        -------
        Label
            Instances numbered 1..n in scan order.

        Examples
        --------
        >>> mask = np.array([[1, 1, 0, 0], [0, 0, 0, 1]])
        >>> lab = Label.from_binary(mask, class_id=2)
        >>> lab.instances.tolist(), lab.classes
        ([[1, 1, 0, 0], [0, 0, 0, 2]], {1: 2, 2: 2})
        """
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ApplianceError(f"a mask must be 2-D, got shape {mask.shape}")
        n, comp = cv2.connectedComponents((mask > 0).astype(np.uint8), connectivity=8)
        return cls(comp.astype(np.uint32), {i: class_id for i in range(1, n)})

    @classmethod
    def from_semantic(cls, semantic: np.ndarray) -> Label:
        """Each class's connected components become instances of that class.

        Parameters
        ----------
        semantic : numpy.ndarray
            (H, W) integer class id per pixel, 0 background.

        Returns
        -------
        Label
            Instances numbered class by class (ascending class id), 8-connectivity.
        """
        semantic = np.asarray(semantic)
        out = np.zeros(semantic.shape, np.uint32)
        classes: dict[int, int] = {}
        next_id = 1
        for class_id in np.unique(semantic):
            if class_id == 0:
                continue
            mask = np.ascontiguousarray(semantic == class_id, np.uint8)
            n, comp = cv2.connectedComponents(mask, connectivity=8)
            sel = comp > 0
            out[sel] = comp[sel].astype(np.uint32) + (next_id - 1)
            classes.update({next_id + i: int(class_id) for i in range(n - 1)})
            next_id += n - 1
        return cls(out, classes)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the instance map."""
        h, w = self.instances.shape
        return h, w

    def ids(self) -> np.ndarray:
        """Sorted ids (uint32, 1-D) of the instances present in the map.

        Taken from the run values rather than all pixels: sorting ~10^4 runs instead of
        ~10^6 pixels keeps a save of a large label within a few milliseconds.
        """
        return run_ids(instance_runs(self.instances)[0])

    def class_of(self, instance_id: int) -> int:
        """Class id of an instance; instances missing from the table are `DEFAULT_CLASS`."""
        return self.classes.get(int(instance_id), DEFAULT_CLASS)

    def binary(self) -> np.ndarray:
        """Foreground mask, bool (H, W)."""
        return self.instances > 0

    def semantic(self) -> np.ndarray:
        """Class id per pixel, uint16 (H, W), through a lookup table over sequential ids.

        Examples
        --------
        >>> Label(np.array([[0, 7], [9, 9]]), {7: 2}).semantic().tolist()
        [[0, 2], [1, 1]]
        """
        ids, inverse = np.unique(self.instances, return_inverse=True)
        lut = np.array([0 if i == 0 else self.class_of(i) for i in ids], np.uint16)
        return lut[inverse.reshape(self.instances.shape)]

    def props(self) -> list[InstanceProps]:
        """Area, box and centroid of every instance, vectorised over all instances at once."""
        flat = self.instances.ravel()
        fg = np.flatnonzero(flat)
        if fg.size == 0:
            return []
        ids, inv = np.unique(flat[fg], return_inverse=True)
        ys, xs = np.divmod(fg, self.instances.shape[1])
        area = np.bincount(inv, minlength=ids.size)
        cy = np.bincount(inv, weights=ys, minlength=ids.size) / area
        cx = np.bincount(inv, weights=xs, minlength=ids.size) / area
        y0 = np.full(ids.size, np.iinfo(np.int64).max)
        x0 = y0.copy()
        y1 = np.full(ids.size, -1)
        x1 = y1.copy()
        np.minimum.at(y0, inv, ys)
        np.minimum.at(x0, inv, xs)
        np.maximum.at(y1, inv, ys)
        np.maximum.at(x1, inv, xs)
        return [
            InstanceProps(
                id=int(i),
                class_id=self.class_of(i),
                area=int(area[k]),
                bbox=(int(y0[k]), int(x0[k]), int(y1[k]) + 1, int(x1[k]) + 1),
                centroid=(float(cy[k]), float(cx[k])),
            )
            for k, i in enumerate(ids)
        ]

    def relabel_sequential(self) -> Label:
        """Ids become 1..n in ascending order of the old ids; classes follow.

        Examples
        --------
        >>> lab = Label(np.array([[0, 40], [12, 40]]), {40: 2, 12: 1}).relabel_sequential()
        >>> lab.instances.tolist(), lab.classes
        ([[0, 2], [1, 2]], {1: 1, 2: 2})
        """
        ids, inverse = np.unique(self.instances, return_inverse=True)
        has_bg = ids.size > 0 and ids[0] == 0
        new = inverse.reshape(self.instances.shape).astype(np.uint32)
        if not has_bg:
            new += 1
        old_ids = ids[1:] if has_bg else ids
        classes = {k + 1: self.class_of(old) for k, old in enumerate(old_ids)}
        return Label(new, classes)

    def to_coco_rles(self) -> list[tuple[InstanceProps, dict]]:
        """Each instance's geometry and COCO RLE (string counts, JSON-ready)."""
        out = []
        for p in self.props():
            y0, x0, y1, x1 = p.bbox
            crop = np.zeros(self.instances.shape, np.uint8, order="F")
            crop[y0:y1, x0:x1] = self.instances[y0:y1, x0:x1] == p.id
            rle = coco_mask.encode(crop)
            rle["counts"] = rle["counts"].decode("ascii")
            out.append((p, rle))
        return out

    @classmethod
    def from_coco_rles(cls, shape: tuple[int, int], rles: list[tuple[int, int, dict]]) -> Label:
        """Inverse of `to_coco_rles`; later instances win where masks overlap."""
        out = np.zeros(shape, np.uint32)
        classes = {}
        for inst_id, class_id, rle in rles:
            try:
                m = decode_coco_rle(rle, int(shape[0]), int(shape[1]))
            except ApplianceError as exc:
                raise ApplianceError(f"RLE of instance {inst_id}: {exc}") from None
            out[m] = inst_id
            classes[int(inst_id)] = int(class_id)
        return cls(out, classes)

    def equals(self, other: Label) -> bool:
        """Same instance ids at every pixel and the same class for every present instance."""
        if not np.array_equal(self.instances, other.instances):
            return False
        return all(self.class_of(i) == other.class_of(i) for i in self.ids())


def _rle_string_counts(text: str) -> list[int]:
    """COCO's compressed counts (pycocotools `rleFrString`), decoded in Python.

    pycocotools' C decoder reads past the end of a malformed string and corrupts the heap, so a
    hostile file could crash the process; here every character and number is checked.
    """
    counts: list[int] = []
    pos, n = 0, len(text)
    while pos < n:
        x = shift = 0
        more = True
        while more:
            if pos >= n or shift > 30:
                raise ApplianceError("compressed RLE counts end inside a number")
            c = ord(text[pos]) - 48
            if not 0 <= c < 64:
                raise ApplianceError(
                    "compressed RLE counts hold a character outside their alphabet"
                )
            x |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if not more and c & 0x10:
                x |= -1 << shift
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def decode_coco_rle(rle: object, height: int, width: int) -> np.ndarray:
    """A COCO RLE (counts as a list or a compressed string) as an H×W bool mask.

    Size and counts are checked before anything is allocated: the size must be the image's,
    counts non-negative and covering exactly height × width pixels (column-major runs, starting
    with background).
    """
    if not isinstance(rle, dict):
        raise ApplianceError("RLE segmentation must be an object with size and counts")
    size, counts = rle.get("size"), rle.get("counts")
    if size != [height, width]:
        raise ApplianceError(f"RLE size {size!r} does not match the image ({height}×{width})")
    if isinstance(counts, (str, bytes)):
        text = counts.decode("ascii", "replace") if isinstance(counts, bytes) else counts
        counts = _rle_string_counts(text)
    if not isinstance(counts, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts
    ):
        raise ApplianceError("RLE counts must be non-negative integers")
    if sum(counts) != height * width:
        raise ApplianceError(f"RLE counts cover {sum(counts)} pixels, image has {height * width}")
    runs = np.asarray(counts, np.int64)
    flat = np.repeat((np.arange(runs.size) % 2).astype(bool), runs)
    return flat.reshape(width, height).T


def instance_runs(instances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run values and lengths of the row-major flattened map (one vectorised comparison).

    Parameters
    ----------
    instances : numpy.ndarray
        (H, W) instance map, any integer dtype.

    Returns
    -------
    values, lengths : numpy.ndarray
        Both uint32, 1-D, one entry per run.

    Examples
    --------
    >>> values, lengths = instance_runs(np.array([[0, 0, 3], [3, 3, 0]]))
    >>> values.tolist(), lengths.tolist()
    ([0, 3, 0], [2, 3, 1])
    """
    flat = np.ascontiguousarray(instances, dtype=np.uint32).ravel()
    if flat.size == 0:
        return flat, np.zeros(0, np.uint32)
    starts = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1))
    lengths = np.diff(np.append(starts, flat.size)).astype(np.uint32)
    return flat[starts], lengths


def run_ids(values: np.ndarray) -> np.ndarray:
    """Sorted distinct non-zero ids among run values (1-D, dtype of `values`)."""
    ids = np.unique(values)
    return ids[ids != 0]


def encode_runs(shape: tuple[int, int], values: np.ndarray, lengths: np.ndarray) -> bytes:
    """Lossless and compact: the runs, deflated; much faster than PNG or zlib over pixels.

    Parameters
    ----------
    shape : tuple of int
        (H, W) of the map the runs cover.
    values, lengths : numpy.ndarray
        uint32 runs from `instance_runs`.

    Returns
    -------
    bytes
        A header (magic, format version, H, W) and the deflated runs.
    """
    body = zlib.compress(values.tobytes() + lengths.tobytes(), 1)
    return _HEADER.pack(_MAGIC, _FORMAT_VERSION, shape[0], shape[1]) + body


def encode_instances(instances: np.ndarray) -> bytes:
    """Encode an (H, W) instance map for storage; `decode_instances` inverts it exactly.

    Examples
    --------
    >>> arr = np.array([[0, 5], [5, 70000]], np.uint32)
    >>> np.array_equal(decode_instances(encode_instances(arr)), arr)
    True
    """
    return encode_runs(instances.shape, *instance_runs(instances))


def decode_runs(
    data: bytes, shape: tuple[int, int] | None = None
) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """(H, W), run values and run lengths of `encode_instances` bytes, checked to cover the
    map exactly, without building the map (what checking another device's label needs).

    `shape`, when given, is the map's expected (H, W): bytes declaring another are refused
    before anything is inflated, and inflating stops at the most the runs of that shape can
    take, so bytes from another device cannot expand into gigabytes.

    Raises
    ------
    ApplianceError
        When the bytes are truncated, corrupt, of an unknown format version or of another shape.
    """
    if len(data) < _HEADER.size:
        raise ApplianceError("stored label is truncated")
    magic, version, h, w = _HEADER.unpack_from(data)
    if magic != _MAGIC or version != _FORMAT_VERSION:
        raise ApplianceError(f"stored label has an unknown encoding (version {version})")
    if shape is not None and (h, w) != tuple(shape):
        raise ApplianceError(f"stored label is {h}×{w}, not {shape[0]}×{shape[1]}")
    limit = 8 * h * w + 1  # two uint32 per run, at most one run per pixel; +1 to see excess
    try:
        inflater = zlib.decompressobj()
        raw_bytes = inflater.decompress(data[_HEADER.size :], limit)
    except zlib.error as exc:
        raise ApplianceError(f"stored label is corrupt: {exc}") from None
    if len(raw_bytes) >= limit or not inflater.eof:
        raise ApplianceError("stored label is corrupt: more runs than pixels, or cut short")
    raw = np.frombuffer(raw_bytes, np.uint32)
    n = raw.size // 2
    values, lengths = raw[:n], raw[n:]
    if raw.size % 2 or int(lengths.sum(dtype=np.int64)) != h * w:
        raise ApplianceError("stored label is corrupt: runs do not cover the image")
    return (h, w), values, lengths


def decode_instances(data: bytes, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The uint32 (H, W) instance map of `encode_instances` bytes (`shape`: as `decode_runs`).

    Raises
    ------
    ApplianceError
        When the bytes are truncated, corrupt, of an unknown format version or of another shape.
    """
    (h, w), values, lengths = decode_runs(data, shape)
    return np.repeat(values, lengths).reshape(h, w)
