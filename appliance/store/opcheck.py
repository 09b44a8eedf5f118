"""What an operation must be before anyone numbers or applies it: one check per kind.

Labels are append-only and every tablet of a project applies every operation the lab server
numbers, so one malformed operation accepted once would break every tablet for good (exports,
jobs, pre-labels and checks failing on it forever). The same function therefore runs in two
places: the lab server before it gives an operation a number, and a tablet before it applies a
pulled one (and refuses, reports and skips what fails). Each check is complete: fields and
types, identity (ref, blob), references to what came before (the labeled image, a parent
version of the same image), and content (a blob's header against the declared image; an
instance map that decodes, has the image's shape and a class for each of its instances).

What the receiver already holds is asked through `Known`; the server answers from its
operations, a tablet from its project. Only a tablet knows its class table (classes are edited
on each tablet), so the server checks class ids for form and the tablet for existence.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from appliance.errors import ApplianceError
from appliance.imageio import probe
from appliance.labels import decode_parts, run_ids
from appliance.slides import MAX_REGION_SIDE, MAX_SLIDE_SIDE, REGION_ORIGINS, open_slide

__all__ = [
    "CHECKS",
    "DTYPES",
    "MAX_PIXELS",
    "SOURCES",
    "Known",
    "Operation",
    "check_operation",
    "image_ref",
]

UID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
SHA_RE = re.compile(r"^[0-9a-f]{64}$")
IMAGE_REF_RE = re.compile(r"^([0-9a-f]{64}):([0-9]{0,6})$")
SUFFIX_RE = re.compile(r"^(\.[A-Za-z0-9]{1,8})?$")
SOURCES = ("manual", "prelabel", "upgrade", "postprocess", "import")
DTYPES = ("uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64", "bool")
MAX_PIXELS = 2**28  # what `appliance.imageio.read_image` decodes by default
MAX_CLASS_ID = 65_535


def image_ref(sha256: str, page: int | None) -> str:
    """Images are identified across tablets by content (and TIFF page), never by row id."""
    return f"{sha256}:{'' if page is None else page}"


class Operation(Protocol):
    """What is checked of an operation: the tablet's `oplog.Operation` and the lab server's
    rows both have it (a protocol, so this module needs neither: no import circle)."""

    @property
    def uid(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def ref(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any]: ...
    @property
    def blob(self) -> str | None: ...


class Known(Protocol):
    """What the receiver holds already (operations accepted or applied before this one)."""

    def image_shape(self, ref: str) -> tuple[int, int] | None:
        """(height, width) of the image added under `ref`, or None when none was."""

    def version_image(self, uid: str) -> str | None:
        """The image ref of label version `uid`, or None when there is no such version."""

    def class_ids(self) -> set[int] | None:
        """The class ids a label may name, or None when the receiver does not know them."""

    def blob(self, sha256: str) -> Path | bytes | Callable[[], BinaryIO] | None:
        """The bytes of blob `sha256` (a file, the bytes, or an opener of its plain bytes: a
        sealed slide of a project encrypted at rest), or None when not held."""

    def slide_size(self, sha256: str) -> tuple[int, int] | None:
        """(width, height) at level 0 of the slide added under `sha256`, or None."""


class _Bad(Exception):
    """One reason an operation is refused (caught by `check_operation`)."""


def check_operation(op: Operation, known: Known) -> str | None:
    """Why `op` may not be numbered or applied, in one line; None when it is usable."""
    try:
        if not isinstance(op.uid, str) or not UID_RE.match(op.uid):
            raise _Bad("its id is not 8-64 letters, digits, '-' or '_'")
        if op.blob is not None and not SHA_RE.match(str(op.blob)):
            raise _Bad("its blob is not a sha256")
        check = CHECKS.get(op.kind)
        if check is None:
            raise _Bad(f"unknown kind {str(op.kind)[:40]!r}")
        if not isinstance(op.payload, dict):
            raise _Bad("its payload is not an object")
        check(op, known)
    except _Bad as exc:
        return f"operation {str(op.uid)[:64]} ({str(op.kind)[:40]}): {exc}"
    return None


# per kind -----------------------------------------------------------------------------------


def _image_added(op: Operation, known: Known) -> None:
    p = op.payload
    sha = _text(p, "sha256", pattern=SHA_RE)
    page = _int(p, "page", 0, 100_000, optional=True)
    _text(p, "name", max_len=300)
    suffix = _text(p, "suffix", pattern=SUFFIX_RE, min_len=0)
    height, width = _int(p, "height", 1, 1 << 20), _int(p, "width", 1, 1 << 20)
    channels = _int(p, "channels", 1, 4)
    dtype = _text(p, "dtype", max_len=12)
    if dtype not in DTYPES:
        raise _Bad(f"payload dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    _text(p, "sequence", max_len=4096, optional=True)
    _int(p, "frame", -(1 << 31), 1 << 31, optional=True)
    if height * width > MAX_PIXELS:
        raise _Bad(f"{height}×{width} is over {MAX_PIXELS} pixels")
    if op.blob != sha or op.ref != image_ref(sha, page):
        raise _Bad("blob and ref must name the image's sha256 and page")
    data = known.blob(sha)
    if data is None:
        raise _Bad(f"blob {sha} is not held")
    if callable(data):  # an opener: read the plain bytes (images are small)
        with data() as fh:
            data = fh.read()
    try:
        frames = probe(data, name=f"blob {sha[:12]}{suffix}").frames
    except ApplianceError as exc:
        raise _Bad(f"its file is not a readable image ({exc})") from exc
    frame = next((f for f in frames if f.page == page), None)
    if frame is None:
        raise _Bad(f"its file has no page {page}")
    if (frame.height, frame.width, frame.channels) != (height, width, channels):
        raise _Bad(
            f"declares {height}×{width}×{channels} but its file holds "
            f"{frame.height}×{frame.width}×{frame.channels}"
        )


def _label_saved(op: Operation, known: Known) -> None:
    p = op.payload
    uid = _text(p, "uid", pattern=UID_RE)
    image = _text(p, "image", pattern=IMAGE_REF_RE)
    parent = _text(p, "parent", pattern=UID_RE, optional=True)
    merges = p.get("merges", [])
    if not isinstance(merges, list) or len(merges) > 100:
        raise _Bad("payload merges must be a list of at most 100 version ids")
    _text(p, "author", max_len=100)
    source = _text(p, "source", max_len=20)
    if source not in SOURCES:
        raise _Bad(f"unknown label source {source!r}")
    _text(p, "created", max_len=40)
    _number(p, "seconds_spent", 0.0, 1e9)
    _bool(p, "coarse")
    _bool(p, "reviewed")
    n_instances = _int(p, "n_instances", 0, 1 << 32)
    if op.ref != uid or op.blob is not None:
        raise _Bad("ref must be the version's uid, and a label names no blob")
    if known.version_image(uid) is not None:
        raise _Bad(f"version {uid} exists already")
    shape = known.image_shape(image)
    if shape is None:
        raise _Bad(f"it labels image {image}, which was not added before")
    for other in ([parent] if parent else []) + merges:
        if not isinstance(other, str) or not UID_RE.match(other):
            raise _Bad("payload merges must be version ids")
        where = known.version_image(other)
        if where is None:
            raise _Bad(f"its parent {other} was not saved before")
        if where != image:
            raise _Bad(f"its parent {other} is a version of another image")
    ids, object_classes = _decoded(p, shape)
    classes = _classes(p)
    if set(classes) != set(ids):
        raise _Bad("its class table must name exactly the instances of its map")
    if n_instances != len(ids):
        raise _Bad(f"n_instances is {n_instances} but its map holds {len(ids)}")
    allowed = known.class_ids()
    named = set(classes.values()) | object_classes
    if allowed is not None and (unknown := sorted(named - allowed)):
        raise _Bad(f"it names class {unknown[0]}, which this project lacks")


def _control_scored(op: Operation, known: Known) -> None:
    p = op.payload
    label = _text(p, "label", pattern=UID_RE)
    _text(p, "annotator", max_len=100)
    _number(p, "score", 0.0, 1.0)
    for key in p:
        if key not in ("label", "annotator"):
            _number(p, key, -1e9, 1e9)
        if len(str(key)) > 40:
            raise _Bad("payload keys have at most 40 characters")
    if op.ref != label or op.blob is not None:
        raise _Bad("ref must be the scored version's uid, and a score names no blob")
    if known.version_image(label) is None:
        raise _Bad(f"it scores version {label}, which was not saved before")


def _model_activated(op: Operation, _known: Known) -> None:
    p = op.payload
    model_id = _text(p, "model_id", max_len=80)
    _text(p, "role", max_len=40)
    if op.ref != model_id or op.blob is not None:
        raise _Bad("ref must be the model id, and an activation names no blob")


CONTROL_KINDS = ("gold", "synthetic", "planted")


def _control_added(op: Operation, known: Known) -> None:
    """A control (`oplog.record_control_added`): its image came before, its truth and planted
    pre-label are instance maps of that image with a class for each instance (classes this
    project has, on a tablet), its planted errors are records that name instance ids."""
    p = op.payload
    image = _text(p, "image", pattern=IMAGE_REF_RE)
    kind = _text(p, "kind", max_len=20)
    if kind not in CONTROL_KINDS:
        raise _Bad(f"unknown control kind {kind!r}")
    if op.ref != image or op.blob is not None:
        raise _Bad("ref must be the control image, and a control names no blob")
    shape = known.image_shape(image)
    if shape is None:
        raise _Bad(f"it makes image {image} a control, which was not added before")
    allowed = known.class_ids()
    maps = [("truth", "truth_classes")]
    if p.get("prelabel") is not None:
        maps.append(("prelabel", "prelabel_classes"))
    for instances, classes in maps:
        table = _classes(p, classes)
        if set(table) != set(_instances(p, shape, instances)):
            raise _Bad(f"payload {classes} must name exactly the instances of its {instances}")
        if allowed is not None and (unknown := sorted(set(table.values()) - allowed)):
            raise _Bad(f"its {instances} names class {unknown[0]}, which this project lacks")
    errors = p.get("errors")
    if not isinstance(errors, list) or len(errors) > 1000:
        raise _Bad("payload errors must be a list of planted errors")
    for err in errors:
        if not isinstance(err, dict) or not isinstance(err.get("kind"), str):
            raise _Bad("each planted error must be an object with its kind")
        for ids in ("truth_ids", "prelabel_ids"):
            values = err.get(ids)
            if not isinstance(values, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in values
            ):
                raise _Bad(f"each planted error's {ids} must be a list of instance ids")
    if errors and p.get("prelabel") is None:
        raise _Bad("planted errors need the planted pre-label")
    if not isinstance(p.get("detail"), dict) or len(json.dumps(p["detail"])) > 4096:
        raise _Bad("payload detail must be an object of at most 4 KiB")


def _slide_added(op: Operation, known: Known) -> None:
    """A slide file (`oplog.record_slide`): its declared level-0 size, pyramid depth and µm
    per pixel are what its header says (`appliance.slides.open_slide`, which reads tags, never
    pixels, and refuses hostile or truncated files), so every tablet can open it."""
    p = op.payload
    sha = _text(p, "sha256", pattern=SHA_RE)
    _text(p, "name", max_len=300)
    suffix = _text(p, "suffix", pattern=SUFFIX_RE, min_len=0)
    width, height = _int(p, "width", 1, MAX_SLIDE_SIDE), _int(p, "height", 1, MAX_SLIDE_SIDE)
    levels = _int(p, "levels", 1, 64)
    mpp = p.get("mpp")
    if mpp is not None:
        _number(p, "mpp", 1e-6, 1e3)
    _text(p, "vendor", max_len=40, optional=True)
    if op.blob != sha or op.ref != sha:
        raise _Bad("blob and ref must name the slide's sha256")
    data = known.blob(sha)
    if data is None:
        raise _Bad(f"blob {sha} is not held")
    try:
        if callable(data):  # a sealed slide: read through its opener, never written out plain
            path = Path(f"slide{suffix}")
            with open_slide(path, data) as slide:
                info = slide.info
        else:
            with _as_file(data, suffix) as path, open_slide(path) as slide:
                info = slide.info
    except ApplianceError as exc:  # named as the blob: no server path in the reply
        reason = str(exc).replace(f"{path}: ", "")
        raise _Bad(f"its file is refused as a slide ({reason})") from exc
    if (info.width, info.height, info.levels) != (width, height, levels):
        raise _Bad(
            f"declares {width}×{height} in {levels} levels but its file holds "
            f"{info.width}×{info.height} in {info.levels}"
        )
    if (mpp is None) != (info.mpp is None) or (
        mpp is not None and info.mpp is not None and not math.isclose(mpp, info.mpp)
    ):
        raise _Bad(f"declares {mpp} µm per pixel but its file says {info.mpp}")


@contextmanager
def _as_file(data: Path | bytes, suffix: str) -> Iterator[Path]:
    """The blob as a file named with the slide's suffix: the receiver keeps it under its hash
    alone (or as a download), and tifffile reads a file named `.ndpi` with NDPI's 64-bit
    offsets (which a real NDPI over 4 GB needs), any other as a classic TIFF. A link to the
    file; the bytes of a store without local files are written out for the check."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"slide{suffix}"
        if isinstance(data, Path):
            path.symlink_to(data.resolve())
        else:
            path.write_bytes(data)
        yield path


def _region_added(op: Operation, known: Known) -> None:
    """A region placed on a slide (`oplog.record_region`): its image and its slide came
    before, and the image (its level-0 pixels) lies inside the slide's level 0."""
    p = op.payload
    image = _text(p, "image", pattern=IMAGE_REF_RE)
    slide = _text(p, "slide", pattern=SHA_RE)
    x, y = _int(p, "x", 0, MAX_SLIDE_SIDE), _int(p, "y", 0, MAX_SLIDE_SIDE)
    origin = _text(p, "origin", max_len=20)
    if origin not in REGION_ORIGINS:
        raise _Bad(f"region origin {origin!r} is not one of {', '.join(REGION_ORIGINS)}")
    if op.ref != image or op.blob is not None:
        raise _Bad("ref must be the region's image, and a region names no blob")
    shape = known.image_shape(image)
    if shape is None:
        raise _Bad(f"it places image {image}, which was not added before")
    height, width = shape
    if max(height, width) > MAX_REGION_SIDE:
        raise _Bad(f"a region of {width}×{height} is over {MAX_REGION_SIDE} px on a side")
    size = known.slide_size(slide)
    if size is None:
        raise _Bad(f"it places a region on slide {slide}, which was not added before")
    if x + width > size[0] or y + height > size[1]:
        raise _Bad(f"region ({x}, {y}, {width}×{height}) leaves the slide ({size[0]}×{size[1]})")


CHECKS: dict[str, Callable[[Operation, Known], None]] = {
    "image.added": _image_added,
    "label.saved": _label_saved,
    "control.scored": _control_scored,
    "model.activated": _model_activated,
    "control.added": _control_added,
    "slide.added": _slide_added,
    "region.added": _region_added,
}


# fields -------------------------------------------------------------------------------------


def _text(
    p: dict[str, Any],
    key: str,
    *,
    pattern: re.Pattern[str] | None = None,
    max_len: int = 200,
    min_len: int = 1,
    optional: bool = False,
) -> Any:
    value = p.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not min_len <= len(value) <= max_len:
        raise _Bad(f"payload {key} must be text of {min_len} to {max_len} characters")
    if pattern is not None and not pattern.match(value):
        raise _Bad(f"payload {key} is not of the expected form")
    return value


def _int(p: dict[str, Any], key: str, lo: int, hi: int, *, optional: bool = False) -> Any:
    value = p.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _Bad(f"payload {key} must be a whole number from {lo} to {hi}")
    return value


def _number(p: dict[str, Any], key: str, lo: float, hi: float) -> float:
    value = p.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(f"payload {key} must be a number")
    if not math.isfinite(value) or not lo <= value <= hi:
        raise _Bad(f"payload {key} must lie in [{lo:g}, {hi:g}]")
    return float(value)


def _bool(p: dict[str, Any], key: str) -> bool:
    value = p.get(key)
    if not isinstance(value, bool):
        raise _Bad(f"payload {key} must be true or false")
    return value


def _instances(p: dict[str, Any], shape: tuple[int, int], key: str = "instances") -> list[int]:
    """The instance ids of the payload's map, which must decode to the image's shape."""
    return _decoded(p, shape, key)[0]


def _decoded(
    p: dict[str, Any], shape: tuple[int, int], key: str = "instances"
) -> tuple[list[int], set[int]]:
    """The instance ids of the payload's map, which must decode to the image's shape, and the
    class ids its point and box objects name."""
    text = _text(p, key, max_len=64 << 20)
    try:
        data = base64.b64decode(text, validate=True)
        _shape, values, _lengths, objects = decode_parts(data, shape)
    except (binascii.Error, ValueError) as exc:
        raise _Bad(f"payload {key} is not base64") from exc
    except ApplianceError as exc:
        raise _Bad(f"payload {key} is not an instance map of the image ({exc})") from exc
    return [int(i) for i in run_ids(values)], {o.class_id for o in objects}


def _classes(p: dict[str, Any], key: str = "classes") -> dict[int, int]:
    """Instance id → class id from the payload's JSON text."""
    text = _text(p, key, max_len=16 << 20, min_len=2)
    try:
        table = json.loads(text)
    except ValueError as exc:
        raise _Bad(f"payload {key} is not JSON") from exc
    if not isinstance(table, dict):
        raise _Bad(f"payload {key} must be a JSON object")
    out: dict[int, int] = {}
    for name, value in table.items():
        if not (isinstance(name, str) and name.isdigit() and 0 < int(name) < 1 << 32):
            raise _Bad(f"payload {key} names instance {name[:20]!r}, not an instance id")
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"payload {key} gives instance {name} a class that is not a number")
        if not 1 <= value <= MAX_CLASS_ID:
            raise _Bad(f"payload {key} gives instance {name} class {value}, not 1..{MAX_CLASS_ID}")
        out[int(name)] = value
    return out
