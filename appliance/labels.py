"""The label model: an instance map plus a class table, point and box objects beside it.

Every mask representation (binary and semantic masks, boxes, centroids, COCO RLE) is computed
from the instance map, so there is one truth per label version and no derived state to go stale.
Instance ids are arbitrary positive integers (0 is background); class ids start at 1 and index
the project's class table.

Cells that are only counted or located (seed 002 points cells, seed 000 boxes them) are
`Point` and `Box` objects with a class, kept beside the map in continuous image coordinates
(x = column, y = row, origin at the top-left corner of pixel (0, 0), as QuPath and the editor
use them). They are stored in the same versioned blob (format version 2); a label without
objects is still written as version 1, which every older reader decodes.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import cv2
import numpy as np
from pycocotools import mask as coco_mask

from appliance.errors import ApplianceError

__all__ = [
    "DEFAULT_CLASS",
    "MAX_OBJECTS",
    "Box",
    "CellObject",
    "InstanceProps",
    "Label",
    "Point",
    "decode_coco_rle",
    "decode_instances",
    "decode_label",
    "decode_parts",
    "decode_runs",
    "encode_instances",
    "encode_label",
    "encode_runs",
    "instance_runs",
    "object_centres",
    "object_from_dict",
    "object_to_dict",
    "run_ids",
]

DEFAULT_CLASS = 1
_MAGIC = b"ALBL"
_HEADER = struct.Struct("<4sBII")  # magic, format version, height, width
_FORMAT_VERSION = 1  # runs only
_OBJECTS_VERSION = 2  # runs, then point and box records
_RUN_COUNT = struct.Struct("<I")
# one record per object: kind (0 point, 1 box), class id, x0, y0, x1, y1 (a point: x1=x0, y1=y0)
_OBJECT_RECORD = np.dtype(
    [
        ("kind", "<u1"),
        ("class_id", "<u4"),
        ("x0", "<f8"),
        ("y0", "<f8"),
        ("x1", "<f8"),
        ("y1", "<f8"),
    ]
)


@dataclass(frozen=True)
class InstanceProps:
    """Geometry of one instance; `bbox` is (y0, x0, y1, x1) with exclusive ends."""

    id: int
    class_id: int
    area: int
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]


def _check_class(class_id: int) -> int:
    if isinstance(class_id, bool) or int(class_id) != class_id or not 1 <= class_id < 2**32:
        raise ApplianceError(f"an object's class id must be an integer >= 1, got {class_id!r}")
    return int(class_id)


def _check_coords(*values: float) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if not all(math.isfinite(v) for v in out):
        raise ApplianceError(f"object coordinates must be finite numbers, got {values}")
    return out


@dataclass(frozen=True)
class Point:
    """A cell located by one point (its centre or a mitotic figure), of a class.

    Examples
    --------
    >>> Point(3.5, 2.0, 2).bounds()
    (3.5, 2.0, 3.5, 2.0)
    """

    x: float
    y: float
    class_id: int = DEFAULT_CLASS
    kind: ClassVar[str] = "point"

    def __post_init__(self) -> None:
        x, y = _check_coords(self.x, self.y)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "class_id", _check_class(self.class_id))

    def bounds(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the object; a point's is degenerate."""
        return self.x, self.y, self.x, self.y

    def with_class(self, class_id: int) -> Point:
        """The same point with another class."""
        return Point(self.x, self.y, class_id)

    def shifted(self, dx: float, dy: float) -> Point:
        """The same point in coordinates whose origin lies at (-dx, -dy)."""
        return Point(self.x + dx, self.y + dy, self.class_id)


@dataclass(frozen=True)
class Box:
    """A cell located by an axis-aligned rectangle `[x0, x1] × [y0, y1]`, of a class.

    Corners are put in order, so a box dragged up and to the left is the same box.

    Examples
    --------
    >>> Box(5, 6, 1, 2, 3)
    Box(x0=1.0, y0=2.0, x1=5.0, y1=6.0, class_id=3)
    >>> Box(1, 2, 5, 6).area
    16.0
    """

    x0: float
    y0: float
    x1: float
    y1: float
    class_id: int = DEFAULT_CLASS
    kind: ClassVar[str] = "box"

    def __post_init__(self) -> None:
        x0, y0, x1, y1 = _check_coords(self.x0, self.y0, self.x1, self.y1)
        x0, x1 = min(x0, x1), max(x0, x1)
        y0, y1 = min(y0, y1), max(y0, y1)
        if x1 == x0 or y1 == y0:
            raise ApplianceError(f"a box needs a width and a height, got ({x0}, {y0}, {x1}, {y1})")
        for name, value in (("x0", x0), ("y0", y0), ("x1", x1), ("y1", y1)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "class_id", _check_class(self.class_id))

    @property
    def area(self) -> float:
        """Width × height in pixels²."""
        return (self.x1 - self.x0) * (self.y1 - self.y0)

    @property
    def centre(self) -> tuple[float, float]:
        """(x, y) of the box's centre."""
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    def bounds(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1)."""
        return self.x0, self.y0, self.x1, self.y1

    def with_class(self, class_id: int) -> Box:
        """The same box with another class."""
        return Box(self.x0, self.y0, self.x1, self.y1, class_id)

    def shifted(self, dx: float, dy: float) -> Box:
        """The same box in coordinates whose origin lies at (-dx, -dy)."""
        return Box(self.x0 + dx, self.y0 + dy, self.x1 + dx, self.y1 + dy, self.class_id)


CellObject = Point | Box


def object_centres(objects: Sequence[CellObject]) -> np.ndarray:
    """(x, y) of each point and each box's centre, N×2 (for matching cells by distance).

    >>> object_centres([Point(1, 2), Box(0, 0, 4, 2)]).tolist()
    [[1.0, 2.0], [2.0, 1.0]]
    """
    xy = [(o.x, o.y) if isinstance(o, Point) else o.centre for o in objects]
    return np.array(xy, float).reshape(-1, 2)


def object_to_dict(obj: CellObject) -> dict[str, object]:
    """A point or box as a JSON-ready dict (bundles, drafts); `object_from_dict` inverts it.

    Examples
    --------
    >>> object_to_dict(Point(1.5, 2, 3))
    {'kind': 'point', 'class_id': 3, 'x': 1.5, 'y': 2.0}
    """
    if isinstance(obj, Point):
        return {"kind": "point", "class_id": obj.class_id, "x": obj.x, "y": obj.y}
    return {
        "kind": "box",
        "class_id": obj.class_id,
        "x0": obj.x0,
        "y0": obj.y0,
        "x1": obj.x1,
        "y1": obj.y1,
    }


def object_from_dict(data: object) -> CellObject:
    """The point or box of an `object_to_dict` dict; anything else is one ApplianceError."""
    if not isinstance(data, dict) or data.get("kind") not in ("point", "box"):
        raise ApplianceError("an object must be a dict with kind 'point' or 'box'")
    keys = ("x", "y") if data["kind"] == "point" else ("x0", "y0", "x1", "y1")
    values: list[float] = []
    for key in (*keys, "class_id"):
        v = data.get(key)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise ApplianceError(f"a {data['kind']} needs numbers {', '.join(keys)} and class_id")
        values.append(float(v))
    class_id = values.pop()
    if not class_id.is_integer():
        raise ApplianceError(f"class id {class_id!r} is not an integer")
    if data["kind"] == "point":
        return Point(values[0], values[1], int(class_id))
    return Box(values[0], values[1], values[2], values[3], int(class_id))


@dataclass
class Label:
    """An instance map (H×W, uint32, 0 = background), instance id → class id, and the point
    and box objects placed on the same image (each with its own class)."""

    instances: np.ndarray
    classes: dict[int, int] = field(default_factory=dict)
    objects: tuple[CellObject, ...] = ()

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
        self.objects = tuple(self.objects)
        h, w = arr.shape
        for obj in self.objects:
            if not isinstance(obj, (Point, Box)):
                raise ApplianceError(f"a label object must be a Point or a Box, got {obj!r}")
            x0, y0, x1, y1 = obj.bounds()
            if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
                raise ApplianceError(
                    f"{obj.kind} at ({x0:g}, {y0:g}, {x1:g}, {y1:g}) lies outside the image "
                    f"({w}×{h})"
                )

    @property
    def points(self) -> list[Point]:
        """The point objects, in the order they were placed."""
        return [o for o in self.objects if isinstance(o, Point)]

    @property
    def boxes(self) -> list[Box]:
        """The box objects, in the order they were drawn."""
        return [o for o in self.objects if isinstance(o, Box)]

    def count(self) -> int:
        """Annotated cells: mask instances plus point and box objects."""
        return int(self.ids().size) + len(self.objects)

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

    def with_instances(self, instances: np.ndarray, classes: dict[int, int]) -> Label:
        """A new instance map and class table, keeping this label's point and box objects
        (post-processing, upgrades and mask imports change masks, never objects)."""
        return Label(instances, classes, self.objects)

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
                raise ApplianceError(f"RLE of instance {inst_id}: {exc}") from exc
            out[m] = inst_id
            classes[int(inst_id)] = int(class_id)
        return cls(out, classes)

    def equals(self, other: Label) -> bool:
        """Same instance ids at every pixel, the same class for every present instance and
        the same point and box objects in the same order."""
        if not np.array_equal(self.instances, other.instances) or self.objects != other.objects:
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


def encode_runs(
    shape: tuple[int, int],
    values: np.ndarray,
    lengths: np.ndarray,
    objects: tuple[CellObject, ...] = (),
) -> bytes:
    """Lossless and compact: the runs, deflated; much faster than PNG or zlib over pixels.

    Parameters
    ----------
    shape : tuple of int
        (H, W) of the map the runs cover.
    values, lengths : numpy.ndarray
        uint32 runs from `instance_runs`.
    objects : tuple of Point or Box
        Written as format version 2 (run count, runs, object records); without objects the
        bytes are format version 1, which readers from before objects existed decode.

    Returns
    -------
    bytes
        A header (magic, format version, H, W) and the deflated body.
    """
    runs = values.tobytes() + lengths.tobytes()
    if not objects:
        body = zlib.compress(runs, 1)
        return _HEADER.pack(_MAGIC, _FORMAT_VERSION, shape[0], shape[1]) + body
    records = np.zeros(len(objects), _OBJECT_RECORD)
    for k, obj in enumerate(objects):
        x0, y0, x1, y1 = obj.bounds()
        records[k] = (0 if isinstance(obj, Point) else 1, obj.class_id, x0, y0, x1, y1)
    body = zlib.compress(_RUN_COUNT.pack(values.size) + runs + records.tobytes(), 1)
    return _HEADER.pack(_MAGIC, _OBJECTS_VERSION, shape[0], shape[1]) + body


def encode_label(label: Label) -> bytes:
    """Encode a label's instance map and objects; `decode_label` inverts it exactly.

    The class table is not part of the bytes (the store keeps it as JSON beside them).

    Examples
    --------
    >>> lab = Label(np.array([[0, 3]]), {3: 2}, (Point(0.5, 0.5, 2), Box(0, 0, 2, 1, 1)))
    >>> decode_label(encode_label(lab), lab.classes).equals(lab)
    True
    """
    return encode_runs(label.shape, *instance_runs(label.instances), label.objects)


def encode_instances(instances: np.ndarray) -> bytes:
    """Encode an (H, W) instance map for storage; `decode_instances` inverts it exactly.

    Examples
    --------
    >>> arr = np.array([[0, 5], [5, 70000]], np.uint32)
    >>> np.array_equal(decode_instances(encode_instances(arr)), arr)
    True
    """
    return encode_runs(instances.shape, *instance_runs(instances))


MAX_OBJECTS = 1 << 20  # point and box objects in one label: a whole slide's cells fit


def _inflate(data: bytes, shape: tuple[int, int] | None) -> tuple[int, int, int, bytes]:
    """(H, W, format version, inflated body) of label bytes, the header checked first.

    `shape`, when given, is the map's expected (H, W): bytes declaring another are refused
    before anything is inflated, and inflating stops at the most a label of that shape can
    hold (one run per pixel, `MAX_OBJECTS` records), so bytes from another device cannot
    expand into gigabytes.
    """
    if len(data) < _HEADER.size:
        raise ApplianceError("stored label is truncated")
    magic, version, h, w = _HEADER.unpack_from(data)
    if magic != _MAGIC or version not in (_FORMAT_VERSION, _OBJECTS_VERSION):
        raise ApplianceError(f"stored label has an unknown encoding (version {version})")
    if shape is not None and (h, w) != tuple(shape):
        raise ApplianceError(f"stored label is {h}×{w}, not {shape[0]}×{shape[1]}")
    limit = 8 * h * w + 1  # two uint32 per run, at most one run per pixel; +1 to see excess
    if version == _OBJECTS_VERSION:
        limit += _RUN_COUNT.size + MAX_OBJECTS * _OBJECT_RECORD.itemsize
    try:
        inflater = zlib.decompressobj()
        body = inflater.decompress(data[_HEADER.size :], limit)
    except zlib.error as exc:
        raise ApplianceError(f"stored label is corrupt: {exc}") from exc
    if len(body) >= limit or not inflater.eof:
        raise ApplianceError("stored label is corrupt: more runs than pixels, or cut short")
    return h, w, version, body


def _split(
    h: int, w: int, version: int, body: bytes
) -> tuple[np.ndarray, np.ndarray, tuple[CellObject, ...]]:
    """Run values, run lengths and objects of an inflated body, each checked."""
    records = np.zeros(0, _OBJECT_RECORD)
    if version == _OBJECTS_VERSION:
        if len(body) < _RUN_COUNT.size:
            raise ApplianceError("stored label is corrupt: no run count")
        (n,) = _RUN_COUNT.unpack_from(body)
        end = _RUN_COUNT.size + 8 * n
        tail = body[end:]
        if len(body) < end or len(tail) % _OBJECT_RECORD.itemsize:
            raise ApplianceError("stored label is corrupt: object records are cut short")
        raw = np.frombuffer(body[_RUN_COUNT.size : end], np.uint32)
        records = np.frombuffer(tail, _OBJECT_RECORD)
    else:
        raw = np.frombuffer(body, np.uint32)
    n = raw.size // 2
    values, lengths = raw[:n], raw[n:]
    if raw.size % 2 or int(lengths.sum(dtype=np.int64)) != h * w:
        raise ApplianceError("stored label is corrupt: runs do not cover the image")
    objects: list[CellObject] = []
    for r in records:
        kind, cid = int(r["kind"]), int(r["class_id"])
        x0, y0, x1, y1 = (float(r[k]) for k in ("x0", "y0", "x1", "y1"))
        if kind == 0:
            objects.append(Point(x0, y0, cid))
        elif kind == 1:
            objects.append(Box(x0, y0, x1, y1, cid))
        else:
            raise ApplianceError(f"stored label is corrupt: unknown object kind {kind}")
        bx0, by0, bx1, by1 = objects[-1].bounds()
        if bx0 < 0 or by0 < 0 or bx1 > w or by1 > h:
            raise ApplianceError("stored label is corrupt: an object lies outside the image")
    return values, lengths, tuple(objects)


def decode_runs(
    data: bytes, shape: tuple[int, int] | None = None
) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """(H, W), run values and run lengths of `encode_instances` or `encode_label` bytes,
    checked to cover the map exactly (and any point and box records to be sound), without
    building the map (what checking another device's label needs). `shape`: as `_inflate`.

    Raises
    ------
    ApplianceError
        When the bytes are truncated, corrupt, of an unknown format version or of another shape.
    """
    size, values, lengths, _objects = decode_parts(data, shape)
    return size, values, lengths


def decode_parts(
    data: bytes, shape: tuple[int, int] | None = None
) -> tuple[tuple[int, int], np.ndarray, np.ndarray, tuple[CellObject, ...]]:
    """`decode_runs` and the label's point and box objects, each checked (a receiver also
    checks the objects' classes).

    Raises
    ------
    ApplianceError
        As `decode_runs`.
    """
    h, w, version, body = _inflate(data, shape)
    values, lengths, objects = _split(h, w, version, body)
    return (h, w), values, lengths, objects


def decode_instances(data: bytes, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The uint32 (H, W) instance map of `encode_instances` or `encode_label` bytes
    (`shape`: as `decode_runs`).

    Raises
    ------
    ApplianceError
        When the bytes are truncated, corrupt, of an unknown format version or of another shape.
    """
    (h, w), values, lengths = decode_runs(data, shape)
    return np.repeat(values, lengths).reshape(h, w)


def decode_label(data: bytes, classes: dict[int, int]) -> Label:
    """The label (instance map, `classes`, objects) of `encode_label` bytes of either format
    version; corrupt records (an unknown kind, a NaN, an object off the image) raise."""
    h, w, version, body = _inflate(data, None)
    values, lengths, objects = _split(h, w, version, body)
    return Label(np.repeat(values, lengths).reshape(h, w), classes, objects)
