"""Labels in and out: instance maps and binary masks from files, COCO JSON and QuPath GeoJSON
both ways.

Masks are matched to images by file stem. A mask with a single non-zero value is a binary mask
(its connected components become instances); anything else is an instance map whose values are
instance ids. A mask file replaces an image's masks and keeps its point and box objects (a mask
cannot carry them); a GeoJSON or COCO file is the image's whole label. Imported labels are
stored as new versions with source `import`.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from pycocotools import mask as coco_mask

from appliance.durable import atomic_write
from appliance.errors import ApplianceError
from appliance.geojson import ClassStyle, features_in, label_features, label_from_features
from appliance.imageio import read_image
from appliance.importer import collect, printable
from appliance.labels import Box, Label, decode_coco_rle
from appliance.overlay import class_colour
from appliance.store.classes import colours
from appliance.store.project import ImageRecord, LabelVersion, Project
from appliance.store.slides import SlideRecord, find_slide, region_of, regions, slides

__all__ = [
    "CELLPOSE_SUFFIXES",
    "MAX_GEOJSON_BYTES",
    "Exported",
    "LabelImportSummary",
    "export_coco",
    "export_geojson",
    "export_label_tiffs",
    "exportable",
    "import_coco",
    "import_geojson",
    "import_labels",
    "read_mask",
]

MAX_GEOJSON_BYTES = 512 * 2**20  # a whole slide's cells as polygons stay far below this
# Cellpose names its mask files `<image>_cp_masks.png` / `.tif` (`--save_png`, `--save_tif`)
CELLPOSE_SUFFIXES = ("_cp_masks", "_masks")
SEG_NPY_REFUSAL = (
    "a Cellpose _seg.npy file needs pickle to load, which can run code hidden in the file; "
    "save the masks as PNG or TIFF in Cellpose (--save_png or --save_tif) and import those"
)


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
    if path.suffix.lower() == ".geojson":
        return import_geojson(project, path, author=author, replace=replace)
    summary = LabelImportSummary()
    by_stem = _images_by_stem(project)
    if path.name.endswith("_seg.npy"):
        summary.failed.append((printable(path), SEG_NPY_REFUSAL))
        return summary
    if path.is_dir():
        for f in sorted(path.glob("*.geojson")):
            _merge(summary, import_geojson(project, f, author=author, replace=replace))
        summary.failed += [(printable(f), SEG_NPY_REFUSAL) for f in sorted(path.glob("*_seg.npy"))]
    for files in collect([path]).values():
        for f in files:
            name = printable(f)
            matches = by_stem.get(_mask_stem(f.stem, by_stem), [])
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
            latest = project.latest_label(matches[0].id)
            if latest is not None:  # a mask file holds no points or boxes: keep the image's
                label = latest.label.with_instances(label.instances, label.classes)
            _save_import(project, matches[0], label, name, author, replace, summary)
    return summary


def _mask_stem(stem: str, by_stem: dict[str, list[ImageRecord]]) -> str:
    """The image stem a mask file names: its own, or without Cellpose's `_cp_masks` suffix."""
    if stem in by_stem:
        return stem
    for suffix in CELLPOSE_SUFFIXES:
        if stem.endswith(suffix) and stem[: -len(suffix)] in by_stem:
            return stem[: -len(suffix)]
    return stem


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
    count = label.count()
    latest = project.latest_label(rec.id)  # the imported version builds on it (its parent)
    if not replace:
        if count == 0:
            summary.skipped.append((name, "no annotations (use --replace to store an empty label)"))
            return
        before = latest.label.count() if latest is not None else 0  # masks, points, boxes
        if before > count:
            summary.skipped.append(
                (name, f"would replace {before} objects with {count} (use --replace to allow)")
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
        raise ApplianceError(f"{printable(path)}: cannot read ({exc.strerror})") from exc
    except RecursionError as exc:
        raise ApplianceError(
            f"{printable(path)}: not a COCO JSON file (nested too deeply)"
        ) from exc
    except ValueError as exc:
        raise ApplianceError(f"{printable(path)}: not a COCO JSON file ({exc})") from exc
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
        raise ApplianceError(f"{printable(path)}: not a COCO JSON file ({exc})") from exc
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
        raise ApplianceError(f"polygon cannot be drawn ({exc})") from exc
    if m.ndim == 3:
        m = m[..., 0]
    return m.astype(bool)


def _coco_label(
    rec: ImageRecord, anns: list[dict], categories: dict[int, str], class_ids: dict[str, int]
) -> Label:
    h, w = rec.height, rec.width
    out = np.zeros((h, w), np.uint32)
    classes: dict[int, int] = {}
    boxes: list[Box] = []
    for k, ann in enumerate(anns, start=1):
        where = f"annotation {ann.get('id')!r}"
        try:
            inst = _int(ann.get("instance_id", k), "instance id", 1, MAX_INSTANCE_ID)
            category = categories.get(ann.get("category_id"))  # type: ignore[arg-type]
            if category is None:
                raise ApplianceError(f"unknown category_id {ann.get('category_id')!r}")
            if not ann.get("segmentation") and "bbox" in ann:
                boxes.append(_coco_box(ann["bbox"], class_ids[category], h, w))
                continue
            if inst in classes:
                raise ApplianceError(f"instance id {inst} given twice")
            m = _coco_mask(ann.get("segmentation"), h, w)
        except ApplianceError as exc:
            raise ApplianceError(f"{where}: {exc}") from exc
        out[m] = inst
        classes[inst] = class_ids[category]
    present = set(np.unique(out).tolist()) - {0}
    return Label(out, {i: c for i, c in classes.items() if i in present}, tuple(boxes))


def _coco_box(bbox: object, class_id: int, h: int, w: int) -> Box:
    """A detection annotation (bbox `[x, y, width, height]`, no segmentation) as a box object."""
    if (
        not isinstance(bbox, list)
        or len(bbox) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
        or not all(math.isfinite(v) for v in bbox)
    ):
        raise ApplianceError("bbox must be 4 finite numbers [x, y, width, height]")
    x, y, bw, bh = (float(v) for v in bbox)
    if bw <= 0 or bh <= 0 or x < 0 or y < 0 or x + bw > w or y + bh > h:
        raise ApplianceError(f"bbox {bbox} is empty or leaves the image ({h}×{w})")
    return Box(x, y, x + bw, y + bh, class_id)


def export_coco(project: Project, out: Path) -> dict[str, int]:
    """Newest label version of every labeled image as COCO JSON (RLE, instance ids kept; box
    objects as detections with a bbox and no segmentation; point objects are not COCO's and
    are counted in `points_left_out`).

    Control items are left out: their labels would tell an outsider which images are controls,
    and an annotator's label of one is a test answer, not training data.
    """
    doc: dict = {
        "info": {"description": f"exported from {project.root}"},
        "categories": [{"id": cid, "name": name} for cid, name in project.classes().items()],
        "images": [],
        "annotations": [],
    }
    ann_id = 1
    points_left_out = 0  # COCO has no plain point annotation; GeoJSON carries them
    for item in exportable(project):
        rec, version = item.record, item.version
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
        for box in version.label.boxes:  # detections (seed 000): a bbox without segmentation
            bw, bh = box.x1 - box.x0, box.y1 - box.y0
            doc["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": rec.id,
                    "category_id": box.class_id,
                    "bbox": [box.x0, box.y0, bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                    "label_version": version.uid,
                }
            )
            ann_id += 1
        points_left_out += len(version.label.points)
    try:  # durable and whole: a full disk never leaves a truncated JSON file behind
        atomic_write(Path(out), json.dumps(doc).encode("utf-8"))
    except OSError as exc:
        raise ApplianceError(f"{out}: cannot write ({exc.strerror})") from exc
    return {
        "images": len(doc["images"]),
        "annotations": len(doc["annotations"]),
        "points_left_out": points_left_out,
    }


def _merge(into: LabelImportSummary, part: LabelImportSummary) -> None:
    into.imported += part.imported
    into.unmatched += part.unmatched
    into.skipped += part.skipped
    into.failed += part.failed


def _image_key(rec: ImageRecord) -> str:
    """The stem that `_images_by_stem` matches, so an exported file imports onto its image."""
    return _stem(rec.name) if rec.page is None else f"{_stem(rec.name)}_{rec.page}"


@dataclass(frozen=True)
class Exported:
    """An image's newest label to export, and the file stem that imports back onto it."""

    record: ImageRecord
    version: LabelVersion
    stem: str


def exportable(project: Project) -> Iterator[Exported]:
    """The newest label of every labeled image, control items left out (their labels would
    tell which images are controls, and an annotator's label of one is a test answer); an
    image whose stem another shares gets `<stem>-<id>`."""
    by_stem = _images_by_stem(project)
    controls = project.control_image_ids()
    for image_id in project.labeled_image_ids():
        if image_id in controls:
            continue
        rec = project.image(image_id)
        version = project.latest_label(image_id)
        assert version is not None
        key = _image_key(rec)
        yield Exported(rec, version, key if len(by_stem.get(key, [])) == 1 else f"{key}-{rec.id}")


def _read_json(path: Path, limit: int) -> Any:
    name = printable(path)
    try:
        size = path.stat().st_size
        if size > limit:
            raise ApplianceError(f"{name}: {size} bytes, more than a label file's {limit}")
        return json.loads(path.read_bytes(), parse_constant=_no_constant)
    except OSError as exc:
        raise ApplianceError(f"{name}: cannot read ({exc.strerror})") from exc
    except RecursionError as exc:
        raise ApplianceError(f"{name}: not a GeoJSON file (nested too deeply)") from exc
    except ValueError as exc:
        raise ApplianceError(f"{name}: not a GeoJSON file ({exc})") from exc


def _no_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a number")


def import_geojson(
    project: Project, path: Path, *, author: str = "import", replace: bool = False
) -> LabelImportSummary:
    """Import a QuPath GeoJSON export onto the image (or slide) whose stem is the file's.

    The file is the image's whole label (masks, points, boxes); class names must be project
    classes. On a slide (level-0 coordinates) each region gets the objects that lie on it;
    objects on no region are counted. A version that would empty or shrink the newest label
    needs `replace`.
    """
    path = Path(path)
    name = printable(path)
    summary = LabelImportSummary()
    matches = [
        rec
        for rec in _images_by_stem(project).get(path.stem, [])
        if region_of(project, rec.id) is None  # regions are matched through their slide
    ]
    on_slide = [s for s in slides(project) if _slide_stem(s) == path.stem]
    if len(matches) + len(on_slide) != 1:
        summary.unmatched.append(name)
        return summary
    class_ids = {n: cid for cid, n in project.classes().items()}
    try:
        features = features_in(_read_json(path, MAX_GEOJSON_BYTES))
        if matches:
            rec = matches[0]
            found = [(rec, label_from_features(features, (rec.height, rec.width), class_ids))]
        else:
            found = [
                (
                    project.image(r.image_id),
                    label_from_features(
                        features, (r.height, r.width), class_ids, (r.x, r.y), elsewhere=True
                    ),
                )
                for r in regions(project, on_slide[0].id)
            ]
    except ApplianceError as exc:
        summary.failed.append((name, str(exc).removeprefix(f"{name}: ")))
        return summary
    why = dict.fromkeys(line for _, result in found for line in result.skipped)
    summary.skipped += [(name, line) for line in why]
    if on_slide:
        placed = set().union(*(result.used for _, result in found))
        explained = {int(line.split(":")[0].removeprefix("feature ")) for line in why}
        off = len(set(range(len(features))) - placed - explained)
        if off:
            summary.skipped.append(
                (name, f"{off} features lie on no region of the slide (add one there)")
            )
    for rec, result in found:
        label_name = name if matches else f"{name} -> {printable(rec.name)}"
        _save_import(project, rec, result.label, label_name, author, replace, summary)
    return summary


def _slide_stem(slide: SlideRecord) -> str:
    """A slide's file name without its extension (`.ome.tif` counts as one)."""
    name = slide.name
    for ext in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def export_geojson(project: Project, out: Path) -> dict[str, int]:
    """Newest label of every labeled image as `OUT/<image stem>.geojson` for QuPath; the
    regions of a slide together as `OUT/<slide stem>.geojson` in level-0 pixels.

    Control items are left out, as in `export_coco`. Files are written whole (atomically);
    an image whose stem another image shares is written as `<stem>-<id>.geojson`.
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ApplianceError(f"{printable(out)}: cannot create folder ({exc.strerror})") from exc
    chosen = colours(project)
    styles = {
        cid: ClassStyle(n, chosen.get(cid, class_colour(cid)))
        for cid, n in project.classes().items()
    }
    files: dict[str, list[dict[str, Any]]] = {}
    counts = {"images": 0, "features": 0}
    for item in exportable(project):
        stem, label = item.stem, item.version.label
        region = region_of(project, item.record.id)
        if region is None:
            features = label_features(label, styles)
        else:  # every region of a slide goes into the slide's file, in level-0 pixels
            stem = _slide_stem(find_slide(project, str(region.slide_id)))
            features = label_features(label, styles, (region.x, region.y))
        files.setdefault(stem, []).extend(features)
        counts["images"] += 1
        counts["features"] += len(features)
    for stem, features in files.items():
        doc = {"type": "FeatureCollection", "features": features}
        target = out / f"{stem}.geojson"
        try:
            atomic_write(target, json.dumps(doc).encode("utf-8"))
        except OSError as exc:
            raise ApplianceError(f"{printable(target)}: cannot write ({exc.strerror})") from exc
    return counts


def export_label_tiffs(project: Project, out: Path) -> dict[str, int]:
    """Newest labels as TIFF label images for napari and Fiji: `OUT/instances/<stem>.tif`
    holds the instance ids (uint16, or uint32 beyond 65535 ids) and re-imports with
    `--labels OUT/instances`; `OUT/classes/<stem>.tif` holds the class id per pixel. Control
    items are left out; point and box objects have no pixels and are counted in
    `objects_left_out` (use GeoJSON)."""
    out = Path(out)
    try:
        for sub in ("instances", "classes"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ApplianceError(f"{printable(out)}: cannot create folder ({exc.strerror})") from exc
    counts = {"images": 0, "objects_left_out": 0}
    for item in exportable(project):
        label, stem = item.version.label, item.stem
        dtype = np.uint16 if int(label.instances.max(initial=0)) < 2**16 else np.uint32
        for target, pixels in (
            (out / "instances" / f"{stem}.tif", label.instances.astype(dtype)),
            (out / "classes" / f"{stem}.tif", label.semantic()),
        ):
            try:
                atomic_write(target, _tiff_bytes(pixels))
            except OSError as exc:
                raise ApplianceError(f"{printable(target)}: cannot write ({exc.strerror})") from exc
        counts["images"] += 1
        counts["objects_left_out"] += len(label.objects)
    return counts


def _tiff_bytes(pixels: np.ndarray) -> bytes:
    """A deflated TIFF of `pixels` in memory (a label image is a few megabytes at most)."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, pixels, compression="zlib")
    return buffer.getvalue()
