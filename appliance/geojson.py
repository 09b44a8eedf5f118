"""Labels as QuPath-compatible GeoJSON features, and QuPath's GeoJSON back into labels.

QuPath's convention (its docs, "Exporting annotations"): coordinates in pixels of the
full-resolution image (level 0 of a slide), origin at the top-left corner; one Feature per
object with `properties.objectType` ("annotation" or "detection") and
`properties.classification` = {"name", "color": [r, g, b]} (QuPath 0.2 wrote "colorRGB", a
signed packed integer). Masks become a Polygon (holes as inner rings) or a MultiPolygon when an
instance has several pieces, each point a Point, each box a rectangle Polygon. A property
`objectKind` ("mask", "box", "point") and `instanceId` let our own exports come back
identical; files from QuPath lack them, so there an axis-aligned four-corner polygon is read
as a box and every other polygon as a mask.

Everything read is checked before any pixel is drawn: structure, finite numbers, vertex counts,
known class names; a problem is one `ApplianceError` naming the feature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from appliance.errors import ApplianceError
from appliance.geometry import Ring, mask_polygons, rasterise
from appliance.labels import Box, CellObject, Label, Point

__all__ = [
    "MAX_RING_VERTICES",
    "ClassStyle",
    "FeatureLabel",
    "features_in",
    "label_features",
    "label_from_features",
]

MAX_RING_VERTICES = 100_000  # a cell's outline at 40x has hundreds; more is not an outline


@dataclass(frozen=True)
class ClassStyle:
    """How QuPath shows a class: its name and display colour."""

    name: str
    colour: tuple[int, int, int]


def _ring_coords(ring: Ring) -> list[list[float]]:
    pts = [[_num(x), _num(y)] for x, y in np.asarray(ring).tolist()]
    return [*pts, pts[0]]  # GeoJSON rings are closed


def _num(v: float) -> float:
    """Integers stay integers in the JSON (mask corners), so files stay small and exact."""
    return int(v) if float(v).is_integer() else float(v)


def _feature(geometry: dict, style: ClassStyle, kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": geometry,
        "properties": {
            "objectType": "annotation",
            "classification": {"name": style.name, "color": list(style.colour)},
            "isLocked": False,
            "objectKind": kind,
            **extra,
        },
    }


def label_features(
    label: Label, styles: dict[int, ClassStyle], offset: tuple[int, int] = (0, 0)
) -> list[dict[str, Any]]:
    """One Feature per mask instance (by id), then one per point or box (in label order).

    Parameters
    ----------
    label : Label
        In image (or region) pixel coordinates.
    styles : dict
        Class id -> name and colour; a class missing here is written as "class N", grey.
    offset : tuple of int
        (x, y) of the label's origin in the full-resolution image (a slide region's corner).
    """

    def style(cid: int) -> ClassStyle:
        return styles.get(cid, ClassStyle(f"class {cid}", (128, 128, 128)))

    out = []
    inst = label.instances
    for p in label.props():
        y0, x0, y1, x1 = p.bbox
        polygons = mask_polygons(inst[y0:y1, x0:x1] == p.id, (x0 + offset[0], y0 + offset[1]))
        rings = [[_ring_coords(r) for r in poly] for poly in polygons]
        geometry: dict[str, Any] = (
            {"type": "Polygon", "coordinates": rings[0]}
            if len(rings) == 1
            else {"type": "MultiPolygon", "coordinates": rings}
        )
        out.append(_feature(geometry, style(p.class_id), "mask", instanceId=p.id))
    dx, dy = offset
    for obj in label.objects:
        if isinstance(obj, Point):
            geometry = {"type": "Point", "coordinates": [_num(obj.x + dx), _num(obj.y + dy)]}
            out.append(_feature(geometry, style(obj.class_id), "point"))
        else:
            xa, ya, xb, yb = (_num(v) for v in (obj.x0 + dx, obj.y0 + dy, obj.x1 + dx, obj.y1 + dy))
            corners = [[xa, ya], [xb, ya], [xb, yb], [xa, yb], [xa, ya]]
            geometry = {"type": "Polygon", "coordinates": [corners]}
            out.append(_feature(geometry, style(obj.class_id), "box"))
    return out


def features_in(doc: object) -> list[Any]:
    """The features of a QuPath export: a FeatureCollection, a list of Features (QuPath's
    default without FEATURE_COLLECTION) or one Feature."""
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list):
            raise ApplianceError("FeatureCollection has no list of features")
        return features
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        return [doc]
    raise ApplianceError("not GeoJSON: expected a FeatureCollection, a Feature or a list of them")


@dataclass
class FeatureLabel:
    """A label read from features, what was left out of it (one line each), and the indices
    of the features that put something into it."""

    label: Label
    skipped: list[str] = field(default_factory=list)
    used: set[int] = field(default_factory=set)


def _coords(value: object, where: str, depth: int) -> Any:
    """Nested lists of finite numbers, `depth` levels above the (x, y) pairs, checked."""
    if depth == 0:
        if (
            not isinstance(value, list)
            or len(value) < 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or not all(math.isfinite(v) for v in value)
        ):
            raise ApplianceError(f"{where}: a position must be finite numbers [x, y]")
        return [float(value[0]), float(value[1])]
    if not isinstance(value, list):
        raise ApplianceError(f"{where}: coordinates must be nested lists")
    if depth == 1 and len(value) > MAX_RING_VERTICES:
        raise ApplianceError(
            f"{where}: a ring of {len(value)} vertices (at most {MAX_RING_VERTICES})"
        )
    return [_coords(v, where, depth - 1) for v in value]


def _class_name(props: dict) -> str | None:
    cls = props.get("classification")
    if isinstance(cls, dict):
        name = cls.get("name")
        return name if isinstance(name, str) and name.strip() else None
    return cls if isinstance(cls, str) and cls.strip() else None


def _is_rectangle(rings: list[list[list[float]]]) -> bool:
    """One closed ring of four distinct axis-aligned corners (QuPath's rectangle ROI)."""
    if len(rings) != 1:
        return False
    ring = rings[0][:-1] if rings[0][0] == rings[0][-1] else rings[0]
    if len(ring) != 4:
        return False
    xs, ys = {p[0] for p in ring}, {p[1] for p in ring}
    return len(xs) == 2 and len(ys) == 2


def label_from_features(
    features: list[Any],
    shape: tuple[int, int],
    class_ids: dict[str, int],
    offset: tuple[float, float] = (0, 0),
    *,
    elsewhere: bool = False,
) -> FeatureLabel:
    """The label that `features` describe on an image (or region) of `shape` at `offset`.

    Class names must be project classes (compared without regard to case); features without
    a classification, of a geometry that is no cell (lines), or lying wholly outside the image
    are skipped and listed. With `elsewhere` (one region of a slide among several), features
    outside the region are expected and not listed. Masks are drawn in feature order (a later
    one wins where two overlap); `instanceId` is kept when it is a unique positive integer.
    """
    by_lower = {name.lower(): cid for name, cid in class_ids.items()}
    h, w = shape
    dx, dy = offset
    unknown: set[str] = set()
    masks: list[tuple[int | None, int, list[list[Ring]], int]] = []
    objects: list[CellObject] = []
    skipped: list[str] = []
    used: set[int] = set()

    def outside(what: str) -> None:
        if not elsewhere:
            skipped.append(what)

    for k, feat in enumerate(features):
        where = f"feature {k}"
        if not isinstance(feat, dict) or not isinstance(feat.get("geometry"), dict):
            raise ApplianceError(f"{where}: not a Feature with a geometry")
        props = feat.get("properties") or {}
        if not isinstance(props, dict):
            raise ApplianceError(f"{where}: properties must be an object")
        geometry = feat["geometry"]
        gtype = geometry.get("type")
        name = _class_name(props)
        if name is None:
            skipped.append(f"{where}: no classification")
            continue
        cid = by_lower.get(name.lower())
        if cid is None:
            unknown.add(name)
            continue
        kind = props.get("objectKind")
        raw = geometry.get("coordinates")
        if gtype in ("Point", "MultiPoint"):
            pts = [_coords(raw, where, 0)] if gtype == "Point" else _coords(raw, where, 1)
            for x, y in pts:
                if 0 <= x - dx <= w and 0 <= y - dy <= h:
                    objects.append(Point(x - dx, y - dy, cid))
                    used.add(k)
                else:
                    outside(f"{where}: point ({x:g}, {y:g}) outside the image")
        elif gtype in ("Polygon", "MultiPolygon"):
            polys = [_coords(raw, where, 2)] if gtype == "Polygon" else _coords(raw, where, 3)
            if kind == "box" or (kind is None and gtype == "Polygon" and _is_rectangle(polys[0])):
                xs = [p[0] - dx for p in polys[0][0]]
                ys = [p[1] - dy for p in polys[0][0]]
                x0, x1 = max(min(xs), 0.0), min(max(xs), float(w))
                y0, y1 = max(min(ys), 0.0), min(max(ys), float(h))
                if x1 <= x0 or y1 <= y0:
                    outside(f"{where}: box outside the image")
                    continue
                objects.append(Box(x0, y0, x1, y1, cid))
                used.add(k)
                continue
            rings = [[np.asarray(r, np.float64) for r in poly] for poly in polys]
            if any(len(r) < 3 for poly in rings for r in poly):
                raise ApplianceError(f"{where}: a polygon ring needs at least 3 vertices")
            inst = props.get("instanceId")
            ok = isinstance(inst, int) and not isinstance(inst, bool) and 0 < inst < 2**32
            masks.append((inst if ok else None, cid, rings, k))
        else:
            skipped.append(f"{where}: a {gtype} is not a cell (points, boxes and polygons are)")
    if unknown:
        raise ApplianceError(f"classes not in the project: {', '.join(sorted(unknown))}")
    instances = np.zeros(shape, np.uint32)
    classes: dict[int, int] = {}
    wanted = [m[0] for m in masks if m[0] is not None]
    keep_ids = len(set(wanted)) == len(wanted) == len(masks)
    for n, (inst, cid, rings, k) in enumerate(masks, start=1):
        region = rasterise(rings, shape, offset)
        if not region.any():
            outside(f"feature {k}: polygon covers no pixel of the image")
            continue
        used.add(k)
        value = inst if keep_ids and inst is not None else n
        instances[region] = value
        classes[value] = cid
    present = set(np.unique(instances).tolist()) - {0}
    label = Label(instances, {i: c for i, c in classes.items() if i in present}, tuple(objects))
    return FeatureLabel(label, skipped, used)
