"""What the gallery shows, without Kivy: label state per image and small pictures.

The gallery lets the expert revisit any image, flag it for cherry-picking (seed 004: the
selector's `cherry_pick` strategy prefers flagged images) and compare any two stored versions
of its label side by side. Pictures are computed on the job worker (decoding is slow), at
thumbnail size, with the label drawn over the display image the way the canvas draws it:
masks blended in, point and box objects as discs and outlines of their class colour (a label
of marked cells must not look empty).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from appliance.assist import preprocess
from appliance.editing import Rect
from appliance.labels import CellObject, Label, Point
from appliance.overlay import OverlayRenderer, class_colour
from appliance.session.appearance import display_pixels
from appliance.store.conflicts import conflicted_image_ids
from appliance.store.project import Project
from appliance.supervision.blind import start_version, views, visible_conflict

__all__ = ["GalleryItem", "items", "picture", "thumbnail", "version_pair"]

THUMB = 192  # longest side of a thumbnail, pixels


@dataclass(frozen=True)
class GalleryItem:
    image_id: int
    name: str
    state: str  # "unlabeled", "labeled" (by a person) or "pre-labeled" (machine, not reviewed)
    versions: int
    flagged: bool
    conflict: bool = False  # versions from different tablets wait for the expert to pick


def items(project: Project, annotator: str) -> list[GalleryItem]:
    """Every image of the project in import order, as `annotator` may see it: controls too,
    each like an ordinary image nobody else has labeled (`blind.visible_versions`), so the
    gallery, the status line's total and the open image's tile agree on every image."""
    out = []
    records = project.images()
    seen = views(project, annotator, [r.id for r in records])
    conflicts = {  # as the open image would show them (`blind.visible_conflict`)
        i for i in conflicted_image_ids(project) if visible_conflict(project, i, annotator)
    }
    for rec in records:
        versions, start = seen[rec.id]
        if start is None:
            state = "unlabeled"
        elif start.source in ("manual", "postprocess", "upgrade") or start.reviewed:
            state = "labeled"
        else:
            state = "pre-labeled"
        out.append(
            GalleryItem(
                rec.id, rec.name, state, len(versions), rec.cherry_picked, rec.id in conflicts
            )
        )
    return out


def picture(display: np.ndarray, label: Label | None, size: int = THUMB) -> np.ndarray:
    """RGB uint8, longest side `size`: the display image with `label` blended over it."""
    rgb = display if display.ndim == 3 else np.repeat(display[..., None], 3, axis=2)
    rgb = rgb[..., :3].astype(np.float32)
    if label is not None and label.instances.any():
        rgba = (
            OverlayRenderer()
            .render(label.instances, label.classes, Rect.full(label.shape), None)
            .astype(np.float32)
        )
        alpha = rgba[..., 3:4] / 255.0
        rgb = rgb * (1 - alpha) + rgba[..., :3] * alpha
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    small = cv2.resize(
        rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )
    out = np.ascontiguousarray(np.clip(small, 0, 255).astype(np.uint8))
    if label is not None:
        _draw_marks(out, label.objects, scale)
    return out


def _draw_marks(rgb: np.ndarray, objects: tuple[CellObject, ...], scale: float) -> None:
    """Points as discs ringed in black, boxes as outlines, in class colours, at `scale`."""
    radius = max(2, round(max(rgb.shape[:2]) / 80))  # a marker is seen at every picture size
    for obj in objects:
        colour = tuple(int(v) for v in class_colour(obj.class_id))
        if isinstance(obj, Point):
            centre = (round(obj.x * scale), round(obj.y * scale))
            cv2.circle(rgb, centre, radius + 1, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(rgb, centre, radius, colour, -1, cv2.LINE_AA)
        else:
            a = (round(obj.x0 * scale), round(obj.y0 * scale))
            b = (round(obj.x1 * scale), round(obj.y1 * scale))
            cv2.rectangle(rgb, a, b, colour, 1)


def thumbnail(project: Project, image_id: int, annotator: str, size: int = THUMB) -> np.ndarray:
    """The image with the label it would open with for `annotator`, small."""
    display = display_pixels(project.load_pixels(image_id), preprocess.load(project))
    latest = start_version(project, image_id, annotator)
    return picture(display, latest.label if latest else None, size)


def version_pair(
    project: Project, image_id: int, before: int, after: int, size: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Two stored versions of an image's label drawn over it, for a before/after."""
    display = display_pixels(project.load_pixels(image_id), preprocess.load(project))
    return tuple(  # type: ignore[return-value]
        picture(display, project.label_version(v).label, size) for v in (before, after)
    )
