"""A report PNG per annotator, drawn with OpenCV in the core (matplotlib is workstation-only).

Left: quality per control in the order they were saved, with its running mean and the final
95 % interval as a band. Right: planted errors caught out of planted, per kind. The tablet can
show the file and `appliance scores --report` writes it anywhere, without the workstation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from appliance.durable import atomic_write
from appliance.errors import ApplianceError
from appliance.store.controls import ScoreRow
from appliance.supervision.summary import quality

__all__ = ["render", "write_report"]

W, H = 960, 480
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_INK = (40, 40, 40)
_GRID = (215, 215, 215)
_BLUE = (180, 110, 30)  # BGR
_ORANGE = (40, 140, 240)


def _text(img: np.ndarray, s: str, x: int, y: int, scale: float = 0.5) -> None:
    cv2.putText(img, s, (x, y), _FONT, scale, _INK, 1, cv2.LINE_AA)


def _panel(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, title: str) -> None:
    cv2.rectangle(img, (x0, y0), (x1, y1), _INK, 1)
    for k in range(1, 5):
        y = y1 - (y1 - y0) * k // 4
        if k < 4:
            cv2.line(img, (x0 + 1, y), (x1 - 1, y), _GRID, 1)
        _text(img, f"{k / 4:.2f}", x0 - 40, y + 5, 0.4)
    _text(img, "0", x0 - 16, y1 + 5, 0.4)
    _text(img, title, x0, y0 - 10)


def render(name: str, rows: Sequence[ScoreRow], summary: dict[str, Any]) -> np.ndarray:
    """The report as a BGR image."""
    img = np.full((H, W, 3), 255, np.uint8)
    ascii_name = name.encode("ascii", "replace").decode("ascii")
    _text(img, f"{ascii_name}: {len(rows)} controls", 20, 28, 0.7)
    x0, y0, x1, y1 = 70, 80, 520, 420
    _panel(img, x0, y0, x1, y1, "quality per control (mean of Dice, instance F1, boundary F1)")
    q = np.array([quality(r) for r in rows])

    def to_y(v: float) -> int:
        return round(y1 - (y1 - y0) * float(np.clip(v, 0.0, 1.0)))

    est = summary.get("quality", {})
    if est.get("low") is not None:
        cv2.rectangle(
            img, (x0 + 1, to_y(est["high"])), (x1 - 1, to_y(est["low"])), (245, 225, 200), -1
        )
    if q.size:
        xs = np.linspace(x0 + 10, x1 - 10, q.size) if q.size > 1 else np.array([(x0 + x1) / 2])
        running = np.cumsum(q) / np.arange(1, q.size + 1)
        pts = np.array([[int(x), to_y(v)] for x, v in zip(xs, running, strict=True)], np.int32)
        cv2.polylines(img, [pts], False, _BLUE, 2, cv2.LINE_AA)
        for x, v in zip(xs, q, strict=True):
            cv2.circle(img, (int(x), to_y(v)), 3, _ORANGE, -1, cv2.LINE_AA)
    _text(img, "control (in order saved)", x0 + 140, y1 + 30, 0.45)

    bx0, bx1 = 600, 930
    _panel(img, bx0, y0, bx1, y1, "planted errors caught / planted")
    kinds = summary.get("planted_recall_by_kind", {})
    if not kinds:
        _text(img, "no planted errors seen yet", bx0 + 40, (y0 + y1) // 2, 0.5)
    width = (bx1 - bx0) // max(len(kinds), 1)
    for k, (kind, e) in enumerate(sorted(kinds.items())):
        left = bx0 + k * width + width // 5
        right = bx0 + (k + 1) * width - width // 5
        if e.get("value") is not None:
            cv2.rectangle(img, (left, to_y(e["value"])), (right, y1 - 1), _BLUE, -1)
            mid = (left + right) // 2
            cv2.line(img, (mid, to_y(e["low"])), (mid, to_y(e["high"])), _INK, 1)
        _text(img, kind[:9], left - 6, y1 + 18, 0.35)
        _text(img, f"n={e.get('n', 0)}", left - 2, y1 + 34, 0.35)
    return img


def write_report(
    out_dir: Path, name: str, rows: Sequence[ScoreRow], summary: dict[str, Any]
) -> Path:
    """Write OUT_DIR/scores-<name>.png durably (`appliance.durable.atomic_write`)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "annotator"
    path = Path(out_dir) / f"scores-{safe}.png"
    ok, data = cv2.imencode(".png", render(name, rows, summary))
    if not ok:
        raise ApplianceError(f"{path}: cannot encode the report")
    try:
        atomic_write(path, data.tobytes())
    except OSError as exc:
        raise ApplianceError(f"{path}: cannot write ({exc.strerror})") from exc
    return path
