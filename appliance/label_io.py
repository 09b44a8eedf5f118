"""Labels in and out: instance maps and binary masks from files, COCO JSON both ways.

Masks are matched to images by file stem. A mask with a single non-zero value is a binary mask
(its connected components become instances); anything else is an instance map whose values are
instance ids. Imported labels are stored as new versions with source `import`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocotools import mask as coco_mask

from appliance.errors import ApplianceError
from appliance.imageio import read_image
from appliance.importer import collect
from appliance.labels import Label, coco_rle_bytes
from appliance.store.project import ImageRecord, Project

__all__ = ["LabelImportSummary", "export_coco", "import_coco", "import_labels", "read_mask"]


@dataclass
class LabelImportSummary:
    """What a label import did: versions imported, images unmatched, files failed."""

    imported: int = 0
    unmatched: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary line, then one line per unmatched image and per failure."""
        out = [
            f"labels imported {self.imported}, unmatched {len(self.unmatched)}, "
            f"failed {len(self.failed)}"
        ]
        out += [f"unmatched: {name} (no image with this stem)" for name in self.unmatched]
        out += [f"failed: {name}: {reason}" for name, reason in self.failed]
        return out


def read_mask(path: Path | str, class_id: int = 1) -> Label:
    """An instance map or a binary mask file as a Label (all instances of `class_id`)."""
    arr = read_image(path)
    if arr.ndim != 2:
        raise ApplianceError(f"{path}: a mask must be single-channel, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.array_equal(arr, np.round(arr)) or arr.min() < 0:
            raise ApplianceError(f"{path}: float mask holds non-integer or negative values")
        arr = arr.astype(np.uint32)
    values = np.unique(arr)
    nonzero = values[values != 0]
    if nonzero.size == 1:
        return Label.from_binary(arr > 0, class_id)
    return Label(arr.astype(np.uint32), {int(i): class_id for i in nonzero})


def _stem(name: str) -> str:
    return Path(name.split("[")[0]).stem


def _images_by_stem(project: Project) -> dict[str, list[ImageRecord]]:
    out: dict[str, list[ImageRecord]] = {}
    for rec in project.images():
        key = _stem(rec.name) if rec.page is None else f"{_stem(rec.name)}_{rec.page}"
        out.setdefault(key, []).append(rec)
    return out


def import_labels(project: Project, path: Path, *, author: str = "import") -> LabelImportSummary:
    """Import mask files (a file or folder) or a COCO JSON file."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return import_coco(project, path, author=author)
    summary = LabelImportSummary()
    by_stem = _images_by_stem(project)
    for files in collect([path]).values():
        for f in files:
            matches = by_stem.get(f.stem, [])
            if not matches:
                summary.unmatched.append(str(f))
                continue
            if len(matches) > 1:
                summary.failed.append((str(f), f"stem matches {len(matches)} images"))
                continue
            try:
                label = read_mask(f)
                project.save_label(matches[0].id, label, author=author, source="import")
            except ApplianceError as exc:
                summary.failed.append((str(f), str(exc).removeprefix(f"{f}: ")))
            else:
                summary.imported += 1
    return summary


def import_coco(project: Project, path: Path, *, author: str = "import") -> LabelImportSummary:
    """Import the instances of a COCO JSON file as `import` versions of matching images.

    Images are matched by file stem (an image whose stem is not unique is left unmatched);
    categories by name, and every category must be a project class. Returns the counts of
    imported, unmatched and failed images.
    """
    try:
        doc = json.loads(Path(path).read_text())
        images = {im["id"]: im for im in doc["images"]}
        categories = {c["id"]: c["name"] for c in doc.get("categories", [])}
        annotations = doc.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ApplianceError(f"{path}: not a COCO JSON file ({exc})") from None
    class_ids = {name: cid for cid, name in project.classes().items()}
    missing = sorted(set(categories.values()) - set(class_ids))
    if missing:
        raise ApplianceError(f"{path}: categories not in the project: {', '.join(missing)}")
    by_image: dict[int, list[dict]] = {}
    for ann in annotations:
        by_image.setdefault(ann.get("image_id"), []).append(ann)
    summary = LabelImportSummary()
    by_stem = _images_by_stem(project)
    for coco_id, im in images.items():
        matches = by_stem.get(_stem(im.get("file_name", "")), [])
        if len(matches) != 1:
            summary.unmatched.append(str(im.get("file_name")))
            continue
        rec = matches[0]
        try:
            label = _coco_label(rec, by_image.get(coco_id, []), categories, class_ids)
            project.save_label(rec.id, label, author=author, source="import")
        except (ApplianceError, KeyError, ValueError, TypeError) as exc:
            summary.failed.append((str(im.get("file_name")), str(exc)))
        else:
            summary.imported += 1
    return summary


def _coco_label(
    rec: ImageRecord, anns: list[dict], categories: dict[int, str], class_ids: dict[str, int]
) -> Label:
    h, w = rec.height, rec.width
    out = np.zeros((h, w), np.uint32)
    classes: dict[int, int] = {}
    for k, ann in enumerate(anns, start=1):
        seg = ann["segmentation"]
        if isinstance(seg, list):
            rle = coco_mask.merge(coco_mask.frPyObjects(seg, h, w))
        else:
            rle = coco_rle_bytes(seg)
        m = coco_mask.decode(rle).astype(bool)
        if m.shape != (h, w):
            raise ApplianceError(f"annotation {ann.get('id')} has size {m.shape}, image {h}×{w}")
        inst = int(ann.get("instance_id", k))
        out[m] = inst
        classes[inst] = class_ids[categories[ann["category_id"]]]
    return Label(out, classes)


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
    try:
        Path(out).write_text(json.dumps(doc))
    except OSError as exc:
        raise ApplianceError(f"{out}: cannot write ({exc.strerror})") from None
    return {"images": len(doc["images"]), "annotations": len(doc["annotations"])}
