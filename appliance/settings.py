"""Every project setting in one typed place: its key, type, default, range and meaning.

Settings live in the project's `settings` table (JSON values) so that every tablet working on a
project behaves the same. Before this module the same keys and defaults (brush 20, opacity
0.45, ...) were spelled out in five files; now core and UI read and write them only through the
`Setting` objects below, so a default changes in one line and a bad stored value (edited by
hand, written by an older version) falls back to the default instead of crashing a screen.

Structured settings (`inspection`, `preprocessing`, `selector`, `prelabel.otsu`) keep their
fields and checks in their own dataclasses (`InspectionSettings`, `Preprocessing`, ...); here
they are registered as dicts so that their keys are known in one place.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from appliance.errors import ApplianceError
from appliance.typed import problem

__all__ = [
    "ALL",
    "BRUSH_SIZE",
    "BY_KEY",
    "DRAFT",
    "FINGER_DRAWS",
    "INFERENCE_THREADS",
    "INSPECTION",
    "LAST_CLASS",
    "LEFT_HANDED",
    "OPACITY",
    "OTSU",
    "PRELABEL",
    "PRELABEL_CHOICES",
    "PREPROCESSING",
    "SELECTOR",
    "SELECTOR_WEIGHTS",
    "Setting",
]

T = TypeVar("T")

PRELABEL_CHOICES = ("auto", "otsu", "previous", "model", "none")


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One project setting: `get` never fails (bad values read as the default), `set` checks."""

    key: str
    kind: type
    default: T
    doc: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False  # None is a valid value ("not set: the library decides")

    def validate(self, value: Any) -> T:
        """The value converted to this setting's type, or ApplianceError naming the setting."""
        if value is None:
            if self.optional:
                return value  # type: ignore[return-value]  # T includes None here
            raise ApplianceError(f"setting {self.key} needs a value")
        # JSON types as `appliance.typed` reads them; an int setting also takes a whole float
        # (a slider's 35.0), since JSON numbers do not tell 35 from 35.0
        kind: Any = float if self.kind is int else self.kind
        if problem(value, kind) or (self.kind is int and not float(value).is_integer()):
            raise ApplianceError(f"setting {self.key}: {value!r} is not a {self.kind.__name__}")
        out: Any = copy.deepcopy(value) if self.kind is dict else value
        if self.kind is int:
            out = round(float(value))
        elif self.kind is float:
            out = float(value)
        too_low = self.low is not None and out < self.low
        if too_low or (self.high is not None and out > self.high):
            raise ApplianceError(f"setting {self.key}: {out} is outside {self.low}..{self.high}")
        if self.choices and out not in self.choices:
            raise ApplianceError(
                f"setting {self.key}: {out!r} is not one of {', '.join(self.choices)}"
            )
        return out

    def get(self, project: Any) -> T:
        """The project's value; the default when unset or when the stored value is invalid."""
        stored = project.get_setting(self.key, None)
        if stored is None:
            return copy.deepcopy(self.default)
        try:
            return self.validate(stored)
        except ApplianceError:
            return copy.deepcopy(self.default)

    def set(self, project: Any, value: Any) -> T:
        """Check and store `value` (one transaction); returns what was stored."""
        checked = self.validate(value)
        project.set_setting(self.key, checked)
        return checked


BRUSH_SIZE: Setting[int] = Setting(
    "ui.brush_size", int, 20, "brush diameter in image pixels", low=1, high=200
)
OPACITY: Setting[float] = Setting(
    "ui.opacity", float, 0.45, "opacity of the label fill over the image", low=0.0, high=1.0
)
FINGER_DRAWS: Setting[bool] = Setting(
    "ui.finger_draws", bool, False, "one finger draws (tablets without a pen)"
)
LEFT_HANDED: Setting[bool] = Setting(
    "ui.left_handed", bool, False, "mirror the annotate screen: navigation on the left"
)
PRELABEL: Setting[str] = Setting(
    "ui.prelabel",
    str,
    "auto",
    "which pre-label to offer: auto (eq. 4 decides), a method, or none",
    choices=PRELABEL_CHOICES,
)
DRAFT: Setting[dict | None] = Setting(
    "ui.draft", dict, None, "the unsaved label of the open image (crash safety)", optional=True
)
LAST_CLASS: Setting[dict] = Setting(
    "ui.last_class", dict, {}, "the class each annotator chose last (annotator: class id)"
)
SELECTOR_WEIGHTS: Setting[dict] = Setting(
    "selector.weights",
    dict,
    {"random": 1.0, "cherry_pick": 1.0},
    "weight per query strategy of the selector (eq. 1)",
)
SELECTOR: Setting[dict] = Setting("selector", dict, {}, "selector seed and cluster threshold")
INSPECTION: Setting[dict] = Setting(
    "inspection", dict, {}, "label check priors and threshold (eq. 5; InspectionSettings)"
)
PREPROCESSING: Setting[dict] = Setting(
    "preprocessing", dict, {}, "display pre-processing h (Preprocessing)"
)
OTSU: Setting[dict] = Setting("prelabel.otsu", dict, {}, "Otsu pre-label channel and polarity")
INFERENCE_THREADS: Setting[int | None] = Setting(
    "inference.threads",
    int,
    None,
    "onnxruntime intra-op threads (unset: all cores but one, left to the UI)",
    low=1,
    high=64,
    optional=True,
)

ALL: tuple[Setting[Any], ...] = (
    BRUSH_SIZE,
    OPACITY,
    FINGER_DRAWS,
    LEFT_HANDED,
    PRELABEL,
    DRAFT,
    LAST_CLASS,
    SELECTOR_WEIGHTS,
    SELECTOR,
    INSPECTION,
    PREPROCESSING,
    OTSU,
    INFERENCE_THREADS,
)
BY_KEY: dict[str, Setting[Any]] = {s.key: s for s in ALL}
