"""Sizes and colours for a 10-inch tablet, in physical units.

Touch targets are at least 9 mm and text at least 11 pt on the device's own DPI (Kivy's `mm`
and `pt` follow `Metrics.dpi`), so the layout is equally usable on a 224-dpi 1920×1200 tablet and
on a docked monitor. The UI tests and the screenshot tour set `KIVY_DPI=224` to look like the
target tablet under Xvfb.
"""

from __future__ import annotations

from dataclasses import dataclass

from kivy.metrics import mm, pt

TOUCH = mm(9)  # minimum height/width of anything tappable
GAP = mm(1.5)
FONT = pt(11)
FONT_SMALL = pt(9)
FONT_BIG = pt(15)
SIDEBAR = mm(50)
TOOLBAR = mm(17)


@dataclass(frozen=True)
class Palette:
    """The colours of one theme (RGBA in 0..1)."""

    background: tuple[float, float, float, float]
    panel: tuple[float, float, float, float]
    button: tuple[float, float, float, float]
    button_active: tuple[float, float, float, float]
    text: tuple[float, float, float, float]
    muted: tuple[float, float, float, float]
    error: tuple[float, float, float, float]
    ok: tuple[float, float, float, float]
    track: tuple[float, float, float, float]  # slider tracks, frames: visible on `panel`


DARK = Palette(
    background=(0.07, 0.08, 0.09, 1),
    panel=(0.13, 0.14, 0.16, 1),
    button=(0.22, 0.24, 0.27, 1),
    button_active=(0.10, 0.46, 0.72, 1),
    text=(0.95, 0.95, 0.95, 1),
    muted=(0.65, 0.67, 0.70, 1),
    error=(0.80, 0.20, 0.18, 1),
    ok=(0.16, 0.55, 0.30, 1),
    track=(0.55, 0.57, 0.61, 1),
)
LIGHT = Palette(
    background=(0.93, 0.93, 0.94, 1),
    panel=(0.99, 0.99, 1.0, 1),
    button=(0.82, 0.84, 0.87, 1),
    button_active=(0.10, 0.46, 0.72, 1),
    text=(0.08, 0.08, 0.10, 1),
    muted=(0.35, 0.36, 0.40, 1),
    error=(0.75, 0.12, 0.10, 1),
    ok=(0.12, 0.48, 0.25, 1),
    track=(0.40, 0.42, 0.46, 1),
)


def palette(name: str) -> Palette:
    return LIGHT if name == "light" else DARK


def contrast(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """WCAG contrast ratio of two RGB(A) colours (1: invisible, 21: black on white)."""

    def lum(c: tuple[float, ...]) -> float:
        r, g, b = (v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c[:3])
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)
