"""Labels in and out: instance maps and binary masks from files, COCO JSON both ways.

Masks are matched to images by file stem. A mask with a single non-zero value is a binary mask
(its connected components become instances); anything else is an instance map whose values are
instance ids. Imported labels are stored as new versions with source `import`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from appliance.durable import atomic_write
from appliance.errors import ApplianceError
from appliance.imageio import read_image
from appliance.importer import collect, printable
from appliance.labels import Label, decode_coco_rle
from appliance.store.project import ImageRecord, Project

__all__ = ["LabelImportSummary", "export_coco", "import_coco", "import_labels", "read_mask"]


@dataclass
class LabelImportSummary:
    """What a label import did: versions imported, images unmatched, files failed."""

    imported: int = 0
    unmatched: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why): nothing lost
    failed: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary line, then one line per unmatched image, skipped image and failure."""
        out = [
            f"labels imported {self.imported}, unmatched {len(self.unmatched)}, "
            f"skipped {len(self.skipped)}, failed {len(self.failed)}"
        ]
        out += [f"unmatched: {name} (no image with this stem)" for name in self.unmatched]
        out += [f"skipped: {name}: {why}" for name, why in self.skipped]
        out += [f"failed: {name}: {reason}" for name, reason in self.failed]
        return out


MAX_INSTANCE_ID = 2**32 - 1


def read_mask(path: Path | str, class_id: int = 1) -> Label:
    """An instance map or a binary mask file as a Label (all instances of `class_id`).

    Values must be whole numbers in 0..2**32-1: anything else (negative, int8 -1, inf, 1e12)
    would wrap when stored as uint32 and merge or drop objects, so it is refused.
    """
    arr = read_image(path)
    if arr.ndim != 2:
        raise ApplianceError(f"{path}: a mask must be single-channel, got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
        raise ApplianceError(f"{path}: float mask holds non-integer values")
    if arr.size and (arr.min() < 0 or arr.max() > MAX_INSTANCE_ID):
        raise ApplianceError(
            f"{path}: mask values {arr.min()}..{arr.max()} outside the instance ids "
            f"0..{MAX_INSTANCE_ID}"
        )
    arr = arr.astype(np.uint32)
    values = np.unique(arr)
    nonzero = values[values != 0]
    if nonzero.size == 1:
        return Label.from_binary(arr > 0, class_id)
    return Label(arr, {int(i): class_id for i in nonzero})


def _stem(name: str) -> str:
    return Path(name.split("[")[0]).stem


def _images_by_stem(project: Project) -> dict[str, list[ImageRecord]]:
    out: dict[str, list[ImageRecord]] = {}
    for rec in project.images():
        key = _stem(rec.name) if rec.page is None else f"{_stem(rec.name)}_{rec.page}"
        out.setdefault(key, []).append(rec)
    return out


def import_labels(
    project: Project, path: Path, *, author: str = "import", replace: bool = False
) -> LabelImportSummary:
    """Import mask files (a file or folder) or a COCO JSON file.

    An import never empties or shrinks an image's newest label (fewer instances) unless
    `replace` is set; such images are skipped and listed in the summary.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        return import_coco(project, path, author=author, replace=replace)
    summary = LabelImportSummary()
    by_stem = _images_by_stem(project)
    for files in collect([path]).values():
        for f in files:
            name = printable(f)
            matches = by_stem.get(f.stem, [])
            if not matches:
                summary.unmatched.append(name)
                continue
            if len(matches) > 1:
                summary.failed.append((name, f"stem matches {len(matches)} images"))
                continue
            try:
                label = read_mask(f)
            except ApplianceError as exc:
                summary.failed.append((name, str(exc).removeprefix(f"{f}: ")))
                continue
            _save_import(project, matches[0], label, name, author, replace, summary)
    return summary


def _save_import(
    project: Project,
    rec: ImageRecord,
    label: Label,
    name: str,
    author: str,
    replace: bool,
    summary: LabelImportSummary,
) -> None:
    """Append `label` as the newest version unless it would lose objects without `replace`."""
    count = len(label.classes)
    latest = project.latest_label(rec.id)  # the imported version builds on it (its parent)
    if not replace:
        if count == 0:
            summary.skipped.append((name, "no annotations (use --replace to store an empty label)"))
            return
        if latest is not None and latest.n_instances > count:
            summary.skipped.append(
                (
                    name,
                    f"would replace {latest.n_instances} instances with {count} "
                    "(use --replace to allow)",
                )
            )
            return
    try:
        project.save_label(
            rec.id, label, author=author, source="import", parent_id=latest.id if latest else None
        )
    except ApplianceError as exc:
        summary.failed.append((name, str(exc)))
    else:
        summary.imported += 1


def _load_coco(path: Path) -> dict[str, Any]:
    """The parsed document, its top-level structure checked (one line for anything else)."""
    if not path.is_file():
        raise ApplianceError(f"{printable(path)}: not a regular file")
    try:
        doc = json.loads(path.read_bytes())
    except OSError as exc:
        raise ApplianceError(f"{printable(path)}: cannot read ({exc.strerror})") from None
    except RecursionError:
        raise ApplianceError(
            f"{printable(path)}: not a COCO JSON file (nested too deeply)"
        ) from None
    except ValueError as exc:
        raise ApplianceError(f"{printable(path)}: not a COCO JSON file ({exc})") from None
    if not isinstance(doc, dict):
        raise ApplianceError(
            f"{printable(path)}: not a COCO JSON file (top level is not an object)"
        )
    for key in ("images", "annotations", "categories"):
        value = doc.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ApplianceError(f"{printable(path)}: COCO '{key}' must be a list of objects")
    if "images" not in doc:
        raise ApplianceError(f"{printable(path)}: not a COCO JSON file (no 'images')")
    return doc


def import_coco(
    project: Project, path: Path, *, author: str = "import", replace: bool = False
) -> LabelImportSummary:
    """Import the instances of a COCO JSON file as `import` versions of matching images.

    Images are matched by file stem (an image whose stem is not unique is left unmatched);
    categories by name, and every category must be a project class. Images listed without
    annotations, and annotations of unknown images, are skipped and listed; a version that
    would shrink the newest label needs `replace`.
    """
    path = Path(path)
    doc = _load_coco(path)
    try:
        images = {_int(im["id"], "image id"): str(im.get("file_name", "")) for im in doc["images"]}
        categories = {
            _int(c["id"], "category id"): str(c["name"]) for c in doc.get("categories", [])
        }
    except (KeyError, ApplianceError) as exc:
        raise ApplianceError(f"{printable(path)}: not a COCO JSON file ({exc})") from None
    class_ids = {name: cid for cid, name in project.classes().items()}
    missing = sorted(set(categories.values()) - set(class_ids))
    if missing:
        raise ApplianceError(
            f"{printable(path)}: categories not in the project: {', '.join(missing)}"
        )
    by_image: dict[object, list[dict]] = {}
    summary = LabelImportSummary()
    for ann in doc.get("annotations", []):
        image_id = ann.get("image_id")
        if image_id not in images:
            summary.skipped.append(
                (f"annotation {ann.get('id')}", f"unknown image_id {image_id!r}")
            )
            continue
        by_image.setdefault(image_id, []).append(ann)
    by_stem = _images_by_stem(project)
    for coco_id, file_name in images.items():
        matches = by_stem.get(_stem(file_name), [])
        if len(matches) != 1:
            summary.unmatched.append(printable(file_name))
            continue
        rec = matches[0]
        try:
            label = _coco_label(rec, by_image.get(coco_id, []), categories, class_ids)
        except ApplianceError as exc:
            summary.failed.append((printable(file_name), str(exc)))
            continue
        _save_import(project, rec, label, printable(file_name), author, replace, summary)
    return summary


def _int(value: object, what: str, low: int = -(2**63), high: int = 2**63 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApplianceError(f"{what} {value!r} is not an integer in {low}..{high}")
    return value


def _coco_mask(seg: object, h: int, w: int) -> np.ndarray:
    """One annotation's mask, every declared size and count checked before decoding."""
    if isinstance(seg, list):
        polys = []
        for poly in seg:
            if (
                not isinstance(poly, list)
                or len(poly) < 6
                or len(poly) % 2
                or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    for v in poly
                )
            ):
                raise ApplianceError("polygon needs at least 3 finite x, y points")
            xs, ys = poly[0::2], poly[1::2]
            # the C rasteriser allocates one entry per pixel step along each edge
            if min(xs) < -w or max(xs) > 2 * w or min(ys) < -h or max(ys) > 2 * h:
                raise ApplianceError(f"polygon points lie far outside the image ({h}×{w})")
            polys.append([float(v) for v in poly])
        if not polys:
            raise ApplianceError("empty polygon list")
        rle = coco_mask.merge(coco_mask.frPyObjects(polys, h, w))
    elif isinstance(seg, dict):
        return decode_coco_rle(seg, h, w)
    else:
        raise ApplianceError("segmentation must be polygons or an RLE object")
    try:
        m = coco_mask.decode(rle)
    except Exception as exc:  # pycocotools raises several types for one cause
        raise ApplianceError(f"polygon cannot be drawn ({exc})") from None
    if m.ndim == 3:
        m = m[..., 0]
    return m.astype(bool)


def _coco_label(
    rec: ImageRecord, anns: list[dict], categories: dict[int, str], class_ids: dict[str, int]
) -> Label:
    h, w = rec.height, rec.width
    out = np.zeros((h, w), np.uint32)
    classes: dict[int, int] = {}
    for k, ann in enumerate(anns, start=1):
        where = f"annotation {ann.get('id')!r}"
        try:
            inst = _int(ann.get("instance_id", k), "instance id", 1, MAX_INSTANCE_ID)
            category = categories.get(ann.get("category_id"))  # type: ignore[arg-type]
            if category is None:
                raise ApplianceError(f"unknown category_id {ann.get('category_id')!r}")
            if inst in classes:
                raise ApplianceError(f"instance id {inst} given twice")
            m = _coco_mask(ann.get("segmentation"), h, w)
        except ApplianceError as exc:
            raise ApplianceError(f"{where}: {exc}") from None
        out[m] = inst
        classes[inst] = class_ids[category]
    present = set(np.unique(out).tolist()) - {0}
    return Label(out, {i: c for i, c in classes.items() if i in present})


def export_coco(project: Project, out: Path) -> dict[str, int]:
    """Newest label version of every labeled image as COCO JSON (RLE, instance ids kept).

    Control items are left out: their labels would tell an outsider which images are controls,
    and an annotator's label of one is a test answer, not training data.
    """
    controls = project.control_image_ids()
    doc: dict = {
        "info": {"description": f"exported from {project.root}"},
        "categories": [{"id": cid, "name": name} for cid, name in project.classes().items()],
        "images": [],
        "annotations": [],
    }
    ann_id = 1
    for image_id in project.labeled_image_ids():
        if image_id in controls:
            continue
        rec = project.image(image_id)
        version = project.latest_label(image_id)
        assert version is not None
        doc["images"].append(
            {"id": rec.id, "file_name": rec.name, "height": rec.height, "width": rec.width}
        )
        for props, rle in version.label.to_coco_rles():
            y0, x0, y1, x1 = props.bbox
            doc["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": rec.id,
                    "category_id": props.class_id,
                    "instance_id": props.id,
                    "segmentation": rle,
                    "area": props.area,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "iscrowd": 0,
                    "label_version": version.uid,
                }
            )
            ann_id += 1
    try:  # durable and whole: a full disk never leaves a truncated JSON file behind
        atomic_write(Path(out), json.dumps(doc).encode("utf-8"))
    except OSError as exc:
        raise ApplianceError(f"{out}: cannot write ({exc.strerror})") from None
    return {"images": len(doc["images"]), "annotations": len(doc["annotations"])}
