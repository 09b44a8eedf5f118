"""Per-project supervision settings, one JSON object under the settings key `supervision`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from appliance.errors import ApplianceError
from appliance.typed import from_json

__all__ = ["MAX_RATE", "SETTINGS_KEY", "Supervision", "load", "save"]

SETTINGS_KEY = "supervision"
MAX_RATE = 0.5  # controls are never served twice in a row, so at most every second item


@dataclass(frozen=True)
class Supervision:
    """How controls are served and how much the annotator is told.

    rate: share of served items that are controls (seed 000 mixes a fraction of known items
    into the real ones; 5 % keeps the cost low). k: independent labels wanted per ordinary
    image (seed 002's multi-expert votes). blind: a second annotator starts from the pre-label
    or from empty, never from another person's label (always so for controls, and whenever
    k > 1). highscore and feedback are the gamification of seed 000, off by default.
    """

    rate: float = 0.05
    k: int = 1
    blind: bool = False
    highscore: bool = False
    feedback: bool = False

    @property
    def blind_mode(self) -> bool:
        return self.blind or self.k > 1

    def check(self) -> Supervision:
        if not 0.0 <= self.rate <= MAX_RATE:
            raise ApplianceError(f"control rate must be in [0, {MAX_RATE}], got {self.rate}")
        if self.k < 1:
            raise ApplianceError(f"labels per image (k) must be >= 1, got {self.k}")
        return self


def load(project: Any) -> Supervision:
    """The project's settings, each of its declared type (a stored "false" is refused, not
    read as true), unknown fields refused: one line naming the project and the field."""
    raw = project.get_setting(SETTINGS_KEY, None) or {}
    return from_json(Supervision, raw, f"{project.root}: supervision settings").check()


def save(project: Any, cfg: Supervision) -> None:
    project.set_setting(SETTINGS_KEY, asdict(cfg.check()))
