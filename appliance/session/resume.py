"""What an annotator works with, kept across a quit: undo history, zoom and pan, chosen class.

Quitting mid-edit already keeps the label as the crash draft (`workflow`). Coming back to it
without undo, at the fitted view and with the first class chosen felt like losing work
(issue 25). On leaving (Home, quitting; not after every stroke, so a stroke costs what it did)
the draft also gets:

- the newest `UNDO_KEPT` undo steps: each holds only the rectangle it changed, so the record
  stays small; they are put back only on top of the label they led to (the draft's own);
- the zoom and the image point at the centre of the view, so another window size shows the
  same place;

and the chosen class is kept per annotator for the whole project (`settings.LAST_CLASS`).
A record that does not fit the image (a hand-edited or foreign project) is dropped with the
reason; the label itself is never touched by it.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np

from appliance import settings
from appliance.editing import EditSession, Rect, UndoStep
from appliance.errors import ApplianceError
from appliance.labels import object_from_dict, object_to_dict

__all__ = [
    "UNDO_KEPT",
    "ViewState",
    "decode_history",
    "decode_view",
    "encode_history",
    "remember_class",
    "remembered_class",
]

UNDO_KEPT = 20  # undo steps kept across a quit (the session itself keeps MAX_UNDO_STEPS)


@dataclass(frozen=True)
class ViewState:
    """A zoomed-in view: its zoom (screen px per image px) and the image point at its centre."""

    zoom: float
    centre: tuple[float, float]  # (column, row), continuous image coordinates


def encode_history(session: EditSession, limit: int = UNDO_KEPT) -> list[dict[str, Any]]:
    """The newest `limit` undo steps as JSON-ready dicts, oldest first."""
    return [_encode_step(step) for step in session.undo_steps(limit)]


def decode_history(data: object, shape: tuple[int, int]) -> list[UndoStep]:
    """The undo steps of `encode_history`; ApplianceError when they do not fit a `shape`d
    image (the caller then keeps the label without its history)."""
    if not isinstance(data, list):
        raise ApplianceError("the kept undo history is not a list")
    return [_decode_step(item, shape) for item in data[-UNDO_KEPT:]]


def encode_view(view: ViewState | None) -> dict[str, Any] | None:
    if view is None:
        return None
    return {"zoom": view.zoom, "centre": list(view.centre)}


def decode_view(data: object) -> ViewState | None:
    """The kept view; None when none was kept or it is not a positive zoom and a point."""
    if not isinstance(data, dict):
        return None
    zoom, centre = data.get("zoom"), data.get("centre")
    if not (isinstance(centre, list) and len(centre) == 2):
        return None
    x, y = centre
    if not (_number(zoom) and _number(x) and _number(y)) or zoom <= 0:
        return None
    return ViewState(float(zoom), (float(x), float(y)))


def remember_class(project: Any, annotator: str, class_id: int) -> None:
    """Keep `annotator`'s chosen class for the next start (one small transaction)."""
    chosen = settings.LAST_CLASS.get(project)
    if chosen.get(annotator) != class_id:
        chosen[annotator] = class_id
        settings.LAST_CLASS.set(project, chosen)


def remembered_class(project: Any, annotator: str, classes: dict[int, str]) -> int | None:
    """`annotator`'s last chosen class if the project still has it."""
    chosen = settings.LAST_CLASS.get(project).get(annotator)
    return chosen if isinstance(chosen, int) and chosen in classes else None


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _pack(array: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(array.astype("<u4").tobytes(), 6)).decode("ascii")


def _unpack(text: object, rect: Rect) -> np.ndarray:
    if not isinstance(text, str):
        raise ApplianceError("an undo step's pixels are not text")
    try:
        # bounded inflation: never more than the rectangle's pixels
        raw = zlib.decompressobj().decompress(base64.b64decode(text), rect.height * rect.width * 4)
    except (ValueError, zlib.error) as exc:
        raise ApplianceError(f"an undo step's pixels cannot be read ({exc})") from exc
    if len(raw) != rect.height * rect.width * 4:
        raise ApplianceError("an undo step's pixels do not fill its rectangle")
    return np.frombuffer(raw, "<u4").astype(np.uint32).reshape(rect.height, rect.width)


def _classes(data: object) -> dict[int, int]:
    if not isinstance(data, dict):
        raise ApplianceError("an undo step's classes are not a table")
    try:
        return {int(k): int(v) for k, v in data.items()}
    except (TypeError, ValueError) as exc:
        raise ApplianceError("an undo step's classes are not whole numbers") from exc


def _encode_step(step: UndoStep) -> dict[str, Any]:
    r = step.rect
    return {
        "rect": [r.y0, r.x0, r.y1, r.x1],
        "before": _pack(step.before),
        "after": _pack(step.after),
        "classes_before": {str(k): v for k, v in step.classes_before.items()},
        "classes_after": {str(k): v for k, v in step.classes_after.items()},
        "objects_before": [object_to_dict(o) for o in step.objects_before],
        "objects_after": [object_to_dict(o) for o in step.objects_after],
    }


def _decode_step(data: object, shape: tuple[int, int]) -> UndoStep:
    if not isinstance(data, dict):
        raise ApplianceError("an undo step is not a record")
    bounds = data.get("rect")
    if not (isinstance(bounds, list) and len(bounds) == 4 and all(type(v) is int for v in bounds)):
        raise ApplianceError("an undo step's rectangle is not four whole numbers")
    rect = Rect(*bounds)
    h, w = shape
    if rect.empty or rect.y0 < 0 or rect.x0 < 0 or rect.y1 > h or rect.x1 > w:
        raise ApplianceError(f"an undo step's rectangle {bounds} is outside the {w}×{h} image")
    objects = []
    for key in ("objects_before", "objects_after"):
        items = data.get(key)
        if not isinstance(items, list):
            raise ApplianceError("an undo step's objects are not a list")
        objects.append(tuple(object_from_dict(o) for o in items))
    return UndoStep(
        rect,
        _unpack(data.get("before"), rect),
        _unpack(data.get("after"), rect),
        _classes(data.get("classes_before")),
        _classes(data.get("classes_after")),
        objects[0],
        objects[1],
    )
