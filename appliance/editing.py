"""Label editing for the tablet: brush, eraser, fill, lasso, delete, re-class, point and box
objects, undo/redo.

Pure numpy/OpenCV so that it is testable without a screen and fast enough to run on every
touch-move event: each operation touches only the pixels it changes and returns their bounding
`Rect`, which the UI re-renders and blits instead of the whole overlay.

Coordinates are continuous image coordinates `(x, y)` = (column, row) with pixel centres at
`(c + 0.5, r + 0.5)`; a brush dab covers exactly the pixels whose centre lies within `radius` of
the stroke's path, so a test can predict every changed pixel independently.

One undo step is one whole gesture (a stroke, a fill, a lasso, a deletion, a re-class, a
replacement by an accepted suggestion, a placed point, a drawn box). A step keeps only the
before/after patches of its bounding rectangle, so the history stays small even on large images.

The session also keeps every instance's area (`EditSession.areas`), updated from the
before/after pixels of each changed rectangle: the object list shows areas after every stroke,
and counting a 2048² label each time cost ~10-20 ms of the UI thread (issue 25, defect 6).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from appliance.errors import ApplianceError
from appliance.labels import DEFAULT_CLASS, Box, CellObject, Label, Point

__all__ = [
    "MAX_UNDO_STEPS",
    "MIN_BOX_SIDE",
    "EditSession",
    "Rect",
    "UndoStep",
    "areas",
    "capsule_mask",
]

MAX_UNDO_STEPS = 100
MIN_BOX_SIDE = 2.0  # pixels: a shorter drag is a slipped tap, not a box
DENSE_IDS = 1 << 22  # above this, areas are counted by sorting instead of by a dense table
RECOUNT_SHARE = 0.5  # a change over more of the label than this: count it all again when asked


def areas(instances: np.ndarray) -> dict[int, int]:
    """Pixel count of every instance id present (background left out).

    >>> areas(np.array([[0, 2, 2], [5, 5, 5]], np.uint32))
    {2: 2, 5: 3}
    """
    top = int(instances.max(initial=0))
    if top < DENSE_IDS:
        counts = np.bincount(instances.ravel(), minlength=top + 1)
        ids = np.flatnonzero(counts)
        found = counts[ids]
    else:
        ids, found = np.unique(instances, return_counts=True)
    return {int(i): int(n) for i, n in zip(ids, found, strict=True) if i}


@dataclass(frozen=True)
class Rect:
    """Pixel rectangle `[y0, y1) × [x0, x1)` in image rows/columns (exclusive ends).

    Examples
    --------
    >>> r = Rect(2, 3, 5, 7).union(Rect(4, 0, 6, 4))
    >>> r, r.height, r.width
    (Rect(y0=2, x0=0, y1=6, x1=7), 4, 7)
    >>> Rect(0, 0, 2, 2).grow(1, (10, 10))
    Rect(y0=0, x0=0, y1=3, x1=3)
    """

    y0: int
    x0: int
    y1: int
    x1: int

    @property
    def empty(self) -> bool:
        """True when the rectangle covers no pixel."""
        return self.y1 <= self.y0 or self.x1 <= self.x0

    @property
    def height(self) -> int:
        """Rows covered (0 when empty)."""
        return max(0, self.y1 - self.y0)

    @property
    def width(self) -> int:
        """Columns covered (0 when empty)."""
        return max(0, self.x1 - self.x0)

    @property
    def slices(self) -> tuple[slice, slice]:
        """(rows, columns) slices into an image-sized array."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def within(self, outer: Rect) -> tuple[slice, slice]:
        """Slices of this rectangle inside an array that covers `outer`."""
        return (
            slice(self.y0 - outer.y0, self.y1 - outer.y0),
            slice(self.x0 - outer.x0, self.x1 - outer.x0),
        )

    def union(self, other: Rect | None) -> Rect:
        """Smallest rectangle covering both (an empty or missing one adds nothing)."""
        if other is None or other.empty:
            return self
        if self.empty:
            return other
        return Rect(
            min(self.y0, other.y0),
            min(self.x0, other.x0),
            max(self.y1, other.y1),
            max(self.x1, other.x1),
        )

    def grow(self, n: int, shape: tuple[int, int]) -> Rect:
        """Grown by `n` pixels on every side, clipped to an image of `shape`."""
        return Rect(
            max(0, self.y0 - n),
            max(0, self.x0 - n),
            min(shape[0], self.y1 + n),
            min(shape[1], self.x1 + n),
        )

    @classmethod
    def around(cls, obj: CellObject, shape: tuple[int, int], margin: int = 2) -> Rect:
        """Pixels covering an object and a small margin (its marker), clipped to the image."""
        x0, y0, x1, y1 = obj.bounds()
        return Rect(
            int(np.floor(y0)), int(np.floor(x0)), int(np.ceil(y1)) + 1, int(np.ceil(x1)) + 1
        ).grow(margin, shape)

    @classmethod
    def full(cls, shape: tuple[int, int]) -> Rect:
        """The whole image of `shape` (H, W)."""
        return cls(0, 0, int(shape[0]), int(shape[1]))

    @classmethod
    def of_mask(cls, mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> Rect | None:
        """Bounding box of the true pixels of a bool (H, W) `mask`, shifted by `offset`
        (rows, columns); None when no pixel is set."""
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(mask.any(axis=0))
        oy, ox = offset
        return cls(
            oy + int(rows[0]), ox + int(cols[0]), oy + int(rows[-1]) + 1, ox + int(cols[-1]) + 1
        )


@dataclass
class _Step:
    """One undo step: the rectangle it changed, its pixels, class table and objects before and
    after (objects are a tuple of frozen values, so keeping both costs little)."""

    rect: Rect
    before: np.ndarray
    after: np.ndarray
    classes_before: dict[int, int]
    classes_after: dict[int, int]
    objects_before: tuple[CellObject, ...]
    objects_after: tuple[CellObject, ...]


UndoStep = _Step  # what `EditSession.undo_steps` hands out (to keep across a quit)


@dataclass
class _Stroke:
    """A stroke in progress: the patches it overwrote (oldest first) and where the pen was."""

    value: int
    last: tuple[float, float]
    classes_before: dict[int, int]
    patches: list[tuple[Rect, np.ndarray]] = field(default_factory=list)


class EditSession:
    """The label being edited on screen, with whole-gesture undo/redo and dirty rectangles.

    The instance map is edited in place (`instances`); `label()` returns a copy to save.
    `revision` increases with every change, undo and redo, so the UI can tell whether there is
    anything unsaved since it last saved at a known revision.
    """

    def __init__(self, label: Label, active_class: int = DEFAULT_CLASS) -> None:
        self.instances: np.ndarray = np.array(label.instances, dtype=np.uint32, copy=True)
        present = self.instances.max(initial=0)
        self.classes: dict[int, int] = {
            int(i): label.class_of(int(i)) for i in np.unique(self.instances) if i != 0
        }
        self.objects: tuple[CellObject, ...] = label.objects
        self.active_class = active_class
        self.revision = 0
        self.classes_version = 0
        self._next_id = int(max(present, max(self.classes, default=0))) + 1
        self._undo: list[_Step] = []
        self._redo: list[_Step] = []
        self._stroke: _Stroke | None = None
        self._areas: dict[int, int] | None = None  # counted when first asked, then kept

    # ----- queries -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the label being edited."""
        h, w = self.instances.shape
        return h, w

    @property
    def can_undo(self) -> bool:
        """Whether a finished gesture can be undone."""
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        """Whether an undone gesture can be re-applied."""
        return bool(self._redo)

    @property
    def stroke_active(self) -> bool:
        """Whether a brush or eraser stroke is in progress (begun, not ended)."""
        return self._stroke is not None

    def label(self) -> Label:
        """A copy of the current label, ready to save as a version."""
        return Label(self.instances.copy(), dict(self.classes), self.objects)

    def areas(self) -> dict[int, int]:
        """Pixel count of every instance (a copy). Counted over the whole label only the first
        time (and after a change of most of it); every edit since updates it from the
        rectangle it changed, so asking after each stroke costs next to nothing."""
        if self._areas is None:
            self._areas = areas(self.instances)
        return dict(self._areas)

    def instance_at(self, x: float, y: float) -> int:
        """Instance id under an image point (0 for background or outside the image)."""
        r, c = int(np.floor(y)), int(np.floor(x))
        if 0 <= r < self.shape[0] and 0 <= c < self.shape[1]:
            return int(self.instances[r, c])
        return 0

    def class_of(self, instance_id: int) -> int:
        """Class id of an instance (`DEFAULT_CLASS` when it has none recorded)."""
        return self.classes.get(int(instance_id), DEFAULT_CLASS)

    def instance_rect(self, instance_id: int) -> Rect | None:
        """Bounding box of one instance (None when it is not in the map)."""
        return Rect.of_mask(self.instances == instance_id)

    def object_at(self, x: float, y: float, tolerance: float) -> int | None:
        """Index of the object under an image point: the nearest point within `tolerance`,
        else the smallest box containing it (None when there is neither)."""
        best: tuple[float, int] | None = None
        for k, obj in enumerate(self.objects):
            if isinstance(obj, Point):
                d = float(np.hypot(obj.x - x, obj.y - y))
                if d <= tolerance and (best is None or d < best[0]):
                    best = (d, k)
        if best is not None:
            return best[1]
        inside = [
            (obj.area, k)
            for k, obj in enumerate(self.objects)
            if isinstance(obj, Box) and obj.x0 <= x <= obj.x1 and obj.y0 <= y <= obj.y1
        ]
        return min(inside)[1] if inside else None

    # ----- point and box objects -----------------------------------------------------------
    def place_point(self, x: float, y: float) -> Rect | None:
        """Put a point of the active class at `(x, y)` (a pen tap); None outside the image."""
        h, w = self.shape
        if not (0 <= x <= w and 0 <= y <= h):
            return None
        return self._set_objects((*self.objects, Point(x, y, self.active_class)))

    def draw_box(self, x0: float, y0: float, x1: float, y1: float) -> Rect | None:
        """Add a box of the active class between two corners (a pen drag), clipped to the
        image; None when what is left is shorter than `MIN_BOX_SIDE` on a side."""
        h, w = self.shape
        xa, xb = sorted((min(max(x0, 0.0), w), min(max(x1, 0.0), w)))
        ya, yb = sorted((min(max(y0, 0.0), h), min(max(y1, 0.0), h)))
        if xb - xa < MIN_BOX_SIDE or yb - ya < MIN_BOX_SIDE:
            return None
        return self._set_objects((*self.objects, Box(xa, ya, xb, yb, self.active_class)))

    def delete_object(self, index: int) -> Rect | None:
        """Remove the point or box at `index` of `objects`."""
        if not 0 <= index < len(self.objects):
            return None
        return self._set_objects(self.objects[:index] + self.objects[index + 1 :], index)

    def set_object_class(self, index: int, class_id: int) -> Rect | None:
        """Give the point or box at `index` another class."""
        if not 0 <= index < len(self.objects) or self.objects[index].class_id == class_id:
            return None
        changed = self.objects[index].with_class(class_id)
        return self._set_objects(
            (*self.objects[:index], changed, *self.objects[index + 1 :]), index
        )

    def set_object(self, index: int, obj: CellObject) -> Rect | None:
        """Put `obj` in place of the point or box at `index` (the pen moved or resized it):
        one undo step; None when nothing changes or `obj` would leave the image. Returns the
        rectangle covering both the old and the new place."""
        if not 0 <= index < len(self.objects) or self.objects[index] == obj:
            return None
        h, w = self.shape
        x0, y0, x1, y1 = obj.bounds()
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            return None
        old = self.objects[index]
        rect = self._set_objects((*self.objects[:index], obj, *self.objects[index + 1 :]), index)
        return rect.union(Rect.around(old, self.shape))

    def _set_objects(self, objects: tuple[CellObject, ...], index: int = -1) -> Rect:
        """Make `objects` current as one undo step; returns the rectangle of the object at
        `index` of whichever tuple holds the changed one (the new one by default)."""
        self._finish_pending()
        changed = (objects if len(objects) >= len(self.objects) else self.objects)[index]
        rect = Rect.around(changed, self.shape)
        before = self.objects
        self.objects = objects
        self._push(rect, self.instances[rect.slices].copy(), dict(self.classes), before)
        self.revision += 1
        return rect

    # ----- strokes -------------------------------------------------------------------------
    def begin_stroke(self, x: float, y: float, radius: float, erase: bool = False) -> Rect | None:
        """Start a brush or eraser stroke with a first dab; returns the changed rectangle.

        A brush stroke that starts on an instance extends it; one that starts on background
        makes a new instance of the active class. Either way it paints over whatever is under
        the disc, so what the expert draws is exactly what the label becomes.
        """
        if self._stroke is not None:
            self.end_stroke()
        classes_before = dict(self.classes)
        if erase:
            value = 0
        else:
            value = self.instance_at(x, y)
            if value == 0:
                value = self._new_id()
                self.classes[value] = self.active_class
                self.classes_version += 1
        self._stroke = _Stroke(value=value, last=(x, y), classes_before=classes_before)
        return self._dab(x, y, x, y, radius)

    def stroke_to(self, x: float, y: float, radius: float) -> Rect | None:
        """Continue the stroke along a straight segment to `(x, y)`; returns the changed rect."""
        if self._stroke is None:
            return None
        x0, y0 = self._stroke.last
        self._stroke.last = (x, y)
        return self._dab(x0, y0, x, y, radius)

    def end_stroke(self) -> Rect | None:
        """Finish the stroke as one undo step; returns its whole rectangle (None: no change)."""
        stroke, self._stroke = self._stroke, None
        if stroke is None or not stroke.patches:
            if stroke is not None and stroke.classes_before != self.classes:
                self.classes = stroke.classes_before
                self.classes_version += 1
            return None
        rect = stroke.patches[0][0]
        for r, _ in stroke.patches[1:]:
            rect = rect.union(r)
        before = self.instances[rect.slices].copy()
        for r, patch in reversed(stroke.patches):
            before[r.within(rect)] = patch
        self._prune_classes(before, rect)
        self._push(rect, before, stroke.classes_before)
        return rect

    def cancel_stroke(self) -> Rect | None:
        """Undo the stroke in progress without recording it (e.g. a second finger came down)."""
        stroke, self._stroke = self._stroke, None
        if stroke is None:
            return None
        rect = None
        for r, patch in reversed(stroke.patches):
            self._recount(r, self.instances[r.slices], patch)
            self.instances[r.slices] = patch
            rect = r.union(rect)
        self.classes = stroke.classes_before
        self.classes_version += 1
        self.revision += 1
        return rect

    def _dab(self, xa: float, ya: float, xb: float, yb: float, radius: float) -> Rect | None:
        """Paint the capsule of `radius` around segment a→b: pixels whose centre is inside."""
        assert self._stroke is not None
        h, w = self.shape
        radius = max(float(radius), 0.5)
        rect = Rect(
            max(0, int(np.floor(min(ya, yb) - radius))),
            max(0, int(np.floor(min(xa, xb) - radius))),
            min(h, int(np.ceil(max(ya, yb) + radius)) + 1),
            min(w, int(np.ceil(max(xa, xb) + radius)) + 1),
        )
        if rect.empty:
            return None
        inside = capsule_mask(rect, xa, ya, xb, yb, radius)
        region = self.instances[rect.slices]
        inside &= region != self._stroke.value
        if not inside.any():
            return None
        tight = Rect.of_mask(inside, (rect.y0, rect.x0))
        assert tight is not None
        sub = inside[tight.within(rect)]
        before = self.instances[tight.slices].copy()
        self._stroke.patches.append((tight, before))
        self.instances[tight.slices][sub] = self._stroke.value
        self._recount(tight, before, self.instances[tight.slices])
        self.revision += 1
        return tight

    # ----- one-shot gestures ---------------------------------------------------------------
    def fill(self, x: float, y: float) -> Rect | None:
        """Flood fill of an instance.

        Tapped inside an instance: its holes (background it encloses) become part of it.
        Tapped on background: the enclosed background area joins the instance around it, which
        turns a drawn outline into a solid cell. Background that reaches the image border is not
        enclosed by anything, and filling it would paint the whole image, so that is refused.
        """
        self._finish_pending()
        h, w = self.shape
        r, c = int(np.floor(y)), int(np.floor(x))
        if not (0 <= r < h and 0 <= c < w):
            return None
        target = int(self.instances[r, c])
        if target == 0:
            region, rect = _component(self.instances == 0, r, c)
            if rect.y0 == 0 or rect.x0 == 0 or rect.y1 == h or rect.x1 == w:
                raise ApplianceError("this area is not enclosed: tap inside a closed outline")
            ring_rect = rect.grow(1, self.shape)
            pad = np.zeros((ring_rect.height, ring_rect.width), bool)
            pad[rect.within(ring_rect)] = region
            ring = cv2.dilate(pad.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~pad
            around = self.instances[ring_rect.slices][ring]
            around = around[around != 0]
            if around.size == 0:
                return None
            ids, counts = np.unique(around, return_counts=True)
            value = int(ids[np.argmax(counts)])
            return self._apply(rect, region, value)
        box = self.instance_rect(target)
        assert box is not None
        outer = box.grow(1, self.shape)
        mine = self.instances[outer.slices] == target
        holes = _enclosed(mine) & (self.instances[outer.slices] == 0)
        return self._apply(outer, holes, target)

    def lasso(self, points: list[tuple[float, float]]) -> Rect | None:
        """Fill the polygon through `points` (pixel centres inside it), like a brush stroke."""
        self._finish_pending()
        if len(points) < 3:
            return None
        pts = np.asarray(points, np.float64)
        h, w = self.shape
        rect = Rect(
            max(0, int(np.floor(pts[:, 1].min()))),
            max(0, int(np.floor(pts[:, 0].min()))),
            min(h, int(np.ceil(pts[:, 1].max())) + 1),
            min(w, int(np.ceil(pts[:, 0].max())) + 1),
        )
        if rect.empty:
            return None
        shift = 4
        local = np.round((pts - [rect.x0 + 0.5, rect.y0 + 0.5]) * (1 << shift)).astype(np.int32)
        mask = np.zeros((rect.height, rect.width), np.uint8)
        cv2.fillPoly(mask, [local], 1, lineType=cv2.LINE_8, shift=shift)
        value = self.instance_at(*points[0])
        classes_before = None
        if value == 0:
            classes_before = dict(self.classes)
            value = self._new_id()
            self.classes[value] = self.active_class
            self.classes_version += 1
        return self._apply(rect, mask.astype(bool), value, classes_before)

    def delete_instance(self, instance_id: int) -> Rect | None:
        """Remove one instance (its pixels become background)."""
        self._finish_pending()
        if instance_id == 0:
            return None
        rect = self.instance_rect(instance_id)
        if rect is None:
            return None
        return self._apply(rect, self.instances[rect.slices] == instance_id, 0)

    def set_class(self, instance_id: int, class_id: int) -> Rect | None:
        """Give one instance another class; returns its rectangle (to redraw its colour)."""
        self._finish_pending()
        if instance_id == 0 or self.class_of(instance_id) == class_id:
            return None
        rect = self.instance_rect(instance_id)
        if rect is None:
            return None
        classes_before = dict(self.classes)
        self.classes[int(instance_id)] = int(class_id)
        self.classes_version += 1
        patch = self.instances[rect.slices].copy()
        self._push(rect, patch, classes_before)
        self.revision += 1
        return rect

    def replace(self, label: Label, label_areas: dict[int, int] | None = None) -> Rect:
        """Replace the whole label (an accepted pre-label or suggestion) as one undo step.

        The masks always come from `label`; its points and boxes replace the current ones only
        when it has some, because suggestions come from mask models and accepting one must not
        erase the cells the expert pointed at. `label_areas`: the label's areas when already
        counted (else they are counted when first asked).
        """
        self._finish_pending()
        if label.shape != self.shape:
            raise ApplianceError(f"label shape {label.shape} does not match image {self.shape}")
        rect = Rect.full(self.shape)
        before = self.instances.copy()
        classes_before = dict(self.classes)
        self.instances[...] = label.instances
        self._areas = None if label_areas is None else dict(label_areas)
        # ids from the label's runs, not a sort of its pixels (2048²: ~10 ms, not ~60)
        self.classes = {int(i): label.class_of(int(i)) for i in label.ids()}
        self.classes_version += 1
        self._next_id = max(self._next_id, int(self.instances.max(initial=0)) + 1)
        objects_before = self.objects
        if label.objects:
            self.objects = label.objects
        self._push(rect, before, classes_before, objects_before)
        self.revision += 1
        return rect

    # ----- history -------------------------------------------------------------------------
    def undo(self) -> Rect | None:
        """Revert the last whole gesture; returns the rectangle to redraw."""
        self._finish_pending()
        if not self._undo:
            return None
        step = self._undo.pop()
        self._recount(step.rect, step.after, step.before)
        self.instances[step.rect.slices] = step.before
        self.classes = dict(step.classes_before)
        self.objects = step.objects_before
        self._redo.append(step)
        self.classes_version += 1
        self.revision += 1
        return step.rect

    def redo(self) -> Rect | None:
        """Re-apply the last undone gesture; returns the rectangle to redraw."""
        self._finish_pending()
        if not self._redo:
            return None
        step = self._redo.pop()
        self._recount(step.rect, step.before, step.after)
        self.instances[step.rect.slices] = step.after
        self.classes = dict(step.classes_after)
        self.objects = step.objects_after
        self._undo.append(step)
        self.classes_version += 1
        self.revision += 1
        return step.rect

    def undo_steps(self, limit: int) -> list[UndoStep]:
        """The newest `limit` undo steps, oldest first (`appliance.session.resume` keeps them
        across a quit)."""
        self._finish_pending()
        return self._undo[-limit:] if limit > 0 else []

    def restore_undo(self, steps: list[UndoStep]) -> None:
        """Put back undo steps kept from an earlier run; they must end in the label on screen
        (the last step's pixels after it are the ones here), else ApplianceError."""
        if steps:
            last = steps[-1]
            if last.after.shape != (last.rect.height, last.rect.width) or not np.array_equal(
                self.instances[last.rect.slices], last.after
            ):
                raise ApplianceError("the kept undo history does not end in this label")
            used = max(int(max(s.before.max(), s.after.max())) for s in steps)
            self._next_id = max(self._next_id, used + 1)
        self._undo = list(steps)[-MAX_UNDO_STEPS:]
        self._redo.clear()

    # ----- internals -----------------------------------------------------------------------
    def _new_id(self) -> int:
        value = self._next_id
        self._next_id += 1
        return value

    def _finish_pending(self) -> None:
        if self._stroke is not None:
            self.end_stroke()

    def _apply(
        self,
        rect: Rect,
        mask: np.ndarray,
        value: int,
        classes_before: dict[int, int] | None = None,
    ) -> Rect | None:
        """Set `mask` (local to `rect`) to `value` as one undo step; returns the changed rect."""
        if classes_before is None:
            classes_before = dict(self.classes)
        mask = mask & (self.instances[rect.slices] != value)
        tight = Rect.of_mask(mask, (rect.y0, rect.x0))
        if tight is None:
            if classes_before != self.classes:
                self.classes = classes_before
                self.classes_version += 1
            return None
        sub = mask[tight.within(rect)]
        before = self.instances[tight.slices].copy()
        self.instances[tight.slices][sub] = value
        self._recount(tight, before, self.instances[tight.slices])
        self._prune_classes(before, tight)
        self._push(tight, before, classes_before)
        self.revision += 1
        return tight

    def _recount(self, rect: Rect, before: np.ndarray, after: np.ndarray) -> None:
        """Keep the areas right as `rect`'s pixels go from `before` to `after` (a change of
        most of the label is counted again when next asked instead)."""
        if self._areas is None:
            return
        h, w = self.shape
        if rect.height * rect.width > RECOUNT_SHARE * h * w:
            self._areas = None
            return
        tally = self._areas
        for sign, pixels in ((-1, before), (1, after)):
            for i, n in areas(pixels).items():
                left = tally.get(i, 0) + sign * n
                if left:
                    tally[i] = left
                else:
                    tally.pop(i, None)

    def _prune_classes(self, before: np.ndarray, rect: Rect) -> None:
        """Forget the class of instances that lost their last pixel in `rect`."""
        after = self.instances[rect.slices]
        gone = np.setdiff1d(np.unique(before), np.unique(after))
        changed = False
        for i in gone:
            if i != 0 and not self._has(int(i)):
                self.classes.pop(int(i), None)
                changed = True
        if changed:
            self.classes_version += 1

    def _has(self, instance_id: int) -> bool:
        """Whether any pixel is `instance_id` (from the areas when kept: no scan)."""
        if self._areas is None:
            return bool((self.instances == instance_id).any())
        return instance_id in self._areas

    def _push(
        self,
        rect: Rect,
        before: np.ndarray,
        classes_before: dict[int, int],
        objects_before: tuple[CellObject, ...] | None = None,
    ) -> None:
        self._undo.append(
            _Step(
                rect,
                before,
                self.instances[rect.slices].copy(),
                classes_before,
                dict(self.classes),
                self.objects if objects_before is None else objects_before,
                self.objects,
            )
        )
        del self._undo[:-MAX_UNDO_STEPS]
        self._redo.clear()


def capsule_mask(
    rect: Rect, xa: float, ya: float, xb: float, yb: float, radius: float
) -> np.ndarray:
    """Pixels of `rect` whose centre lies within `radius` of the segment a→b.

    Parameters
    ----------
    rect : Rect
        The image area to evaluate.
    xa, ya, xb, yb : float
        Segment ends in image coordinates (x: column, y: row; pixel centres at +0.5).
    radius : float
        Brush radius in pixels.

    Returns
    -------
    numpy.ndarray
        bool, (rect.height, rect.width).

    Examples
    --------
    >>> capsule_mask(Rect(0, 0, 3, 5), 0.5, 1.5, 3.5, 1.5, 0.6).astype(int).tolist()
    [[0, 0, 0, 0, 0], [1, 1, 1, 1, 0], [0, 0, 0, 0, 0]]
    """
    ys = np.arange(rect.y0, rect.y1, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(rect.x0, rect.x1, dtype=np.float64)[None, :] + 0.5
    dx, dy = xb - xa, yb - ya
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0.0 else np.clip(((xs - xa) * dx + (ys - ya) * dy) / length2, 0.0, 1.0)
    px, py = xa + t * dx - xs, ya + t * dy - ys
    return px * px + py * py <= radius * radius


def _component(mask: np.ndarray, r: int, c: int) -> tuple[np.ndarray, Rect]:
    """4-connected component of `mask` through (r, c), cropped to its bounding rectangle."""
    img = mask.astype(np.uint8)
    flood = np.zeros((img.shape[0] + 2, img.shape[1] + 2), np.uint8)
    flags = 4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
    _, _, flood, (x, y, w, h) = cv2.floodFill(img, flood, (c, r), 1, 0, 0, flags)
    return flood[1 + y : 1 + y + h, 1 + x : 1 + x + w].astype(bool), Rect(y, x, y + h, x + w)


def _enclosed(inside: np.ndarray) -> np.ndarray:
    """Pixels not in `inside` that cannot reach the border without crossing `inside`."""
    outside = np.pad(~inside, 1, constant_values=True).astype(np.uint8)
    flood = np.zeros((outside.shape[0] + 2, outside.shape[1] + 2), np.uint8)
    cv2.floodFill(outside, flood, (0, 0), 1, 0, 0, 4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))
    reachable = flood[2:-2, 2:-2].astype(bool)
    return ~inside & ~reachable
