"""Control bundles (workstation → tablet): synthetic control items with exact instance truth.

Seed 000 hides synthetic cells among real ones so an annotator can be scored on items whose
truth is known. The workstation makes them (`python -m export controls JOB`): cells from a
generator blended into the job's own backgrounds. The generator is named per bundle and per
item (`{"name": "virtual-microscope", "kind": "virtual-microscope"}` now; a cGAN or diffusion
generator bundle later writes the same format with its own name and kind).

Layout: `manifest.json` (format "controls": `classes` as in training jobs, index 0 background;
`generator`; `job_id` of the job whose backgrounds were used; `items`: the member holding
the list), the image files, and per item a `.npy` uint32 instance map with its class table,
its point and box truth (`objects`, as in training jobs) and, for a control composed on a slide
region, that region's place (`region`, as in training jobs: the tablet makes it a region of
the slide it holds with that hash).
The tablet installs a bundle like a model bundle (`appliance.supervision.install`): every
member verified first, every image and map decoded and checked, and only then imported.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from appliance.bundles.archive import BundleReader, Fields, Limits, write_bundle
from appliance.bundles.training_job import parse_region
from appliance.errors import ApplianceError
from appliance.imageio import read_image
from appliance.labels import Label, object_from_dict, object_to_dict
from appliance.security.signing import SigningKey, Verdict, default_signing_key
from appliance.security.trust import TrustPolicy

__all__ = [
    "FORMAT",
    "ITEMS",
    "ControlBundle",
    "ControlItem",
    "read_control_bundle",
    "write_control_bundle",
]

FORMAT = "controls"
ITEMS = "items.json"


@dataclass(frozen=True)
class ControlItem:
    """One synthetic control: a plausible file name, the encoded image, its exact truth."""

    name: str
    image_bytes: bytes
    suffix: str
    truth: Label
    generator: dict[str, Any] = field(default_factory=dict)
    background: str = ""
    region: dict[str, Any] | None = None  # slide, slide_sha256, level-0 x and y


def write_control_bundle(
    out: Path | str,
    items: list[ControlItem],
    classes: list[str],
    generator: dict[str, Any],
    job_id: str | None,
    producer: tuple[str, str],
    sign: SigningKey | bool = True,
) -> str:
    """Write the bundle atomically; returns its id. `sign` as for model bundles."""
    members: dict[str, bytes | Path] = {}
    listed = []
    for k, item in enumerate(items):
        image_member = f"images/{k:05d}{item.suffix}"
        truth_member = f"truth/{k:05d}.npy"
        buf = io.BytesIO()
        np.save(buf, item.truth.instances.astype(np.uint32), allow_pickle=False)
        members[image_member] = item.image_bytes
        members[truth_member] = buf.getvalue()
        listed.append(
            {
                "name": item.name,
                "image": image_member,
                "truth": truth_member,
                "classes": {str(i): item.truth.class_of(i) for i in item.truth.ids()},
                "generator": item.generator or generator,
                "background": item.background,
                "objects": [object_to_dict(o) for o in item.truth.objects],
                "region": item.region,
            }
        )
    members[ITEMS] = json.dumps({"items": listed}, indent=1).encode("utf-8")
    body = {"classes": classes, "generator": generator, "job_id": job_id, "items": ITEMS}
    return write_bundle(
        out, FORMAT, body, members, producer=producer, sign=default_signing_key(sign)
    )


@dataclass(frozen=True)
class ControlBundle:
    id: str
    classes: list[str]
    generator: dict[str, Any]
    items: list[tuple[ControlItem, np.ndarray]]  # with the decoded pixels
    verdict: Verdict | None = None


def read_control_bundle(
    path: Path | str, limits: Limits | None = None, trust: TrustPolicy | None = None
) -> ControlBundle:
    """Verify every member, decode every image and truth map, check they agree (and the
    signature first, with `trust`)."""
    with BundleReader(path, FORMAT, limits, trust) as reader:
        top = reader.fields(reader.manifest, where="manifest")
        classes = top.get("classes", list)
        if not classes or not all(isinstance(c, str) for c in classes):
            top.fail("manifest.classes must be a non-empty list of names (index 0 is background)")
        generator = top.get("generator", dict)
        items_member = top.get("items", str)
        reader.verify_all()
        raw = reader.read_json(items_member).get("items", list)
        items = [
            _item(reader, Fields(r, reader.name, items_member, f"items[{i}]"), len(classes))
            for i, r in enumerate(raw)
        ]
        names = [item.name for item, _ in items]
        if len(set(names)) != len(names):
            reader.fail("two items have the same file name", items_member)
        return ControlBundle(reader.manifest["id"], classes, generator, items, reader.verdict)


def _item(reader: BundleReader, f: Fields, n_classes: int) -> tuple[ControlItem, np.ndarray]:
    name = f.get("name", str)
    if not name or "/" in name or "\\" in name or name.startswith("."):
        f.fail(f"{f.where}.name {name!r} is not a plain file name")
    image_member, truth_member = f.get("image", str), f.get("truth", str)
    data = reader.read_bytes(image_member)
    try:
        pixels = read_image(data, name=image_member)
        arr = np.load(io.BytesIO(reader.read_bytes(truth_member)), allow_pickle=False)
    except (ApplianceError, ValueError) as exc:
        f.fail(f"{f.where}: cannot be decoded ({exc})")
    if arr.shape != pixels.shape[:2] or arr.dtype.kind != "u":
        f.fail(f"{f.where}: truth {arr.dtype} {arr.shape} does not fit image {pixels.shape}")
    table = {}
    for key, cid in f.get("classes", dict).items():
        if not key.isdigit() or isinstance(cid, bool) or not isinstance(cid, int):
            f.fail(f"{f.where}.classes must map instance ids to class ids")
        if not 1 <= cid < n_classes:
            f.fail(f"{f.where}.classes[{key!r}] = {cid} is not a class of this bundle")
        table[int(key)] = cid
    objects = []
    h, w = arr.shape
    for k, raw in enumerate(f.get("objects", list, optional=True) or []):
        try:
            obj = object_from_dict(raw)
        except ApplianceError as exc:
            f.fail(f"{f.where}.objects[{k}]: {exc}")
        x0, y0, x1, y1 = obj.bounds()
        if not 1 <= obj.class_id < n_classes or x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            f.fail(f"{f.where}.objects[{k}] lies off the image or has no class of this bundle")
        objects.append(obj)
    item = ControlItem(
        name=name,
        image_bytes=data,
        suffix=Path(image_member).suffix,
        truth=Label(arr.astype(np.uint32), table, tuple(objects)),
        generator=f.get("generator", dict, optional=True) or {},
        background=f.get("background", str, optional=True) or "",
        region=parse_region(f),
    )
    return item, pixels
