"""App-wide palm rejection: while a pen is down or hovering, finger touches anywhere are ignored.

A palm resting on the screen while the expert draws must not press Skip or pan the image. The
root widget sees every touch before any screen does, so it keeps track of pens (down, or
hovering within `HOVER_GRACE` seconds: Kivy reports hover as non-touch motion events) and
swallows any other touch — down, move and up — that starts meanwhile. The pen itself and
touches that began before the pen came near are untouched.
"""

from __future__ import annotations

import time

from kivy.core.window import Window
from kivy.input.motionevent import MotionEvent
from kivy.uix.floatlayout import FloatLayout

from appliance.ui.canvas import is_pen

HOVER_GRACE = 0.5  # seconds after the last hover report during which a pen counts as near


class PalmGuard(FloatLayout):
    """The app's root: passes everything through except touches a palm makes (module doc)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.pens: set[object] = set()
        self.ignored: set[object] = set()
        self.hover_until = 0.0
        Window.bind(on_motion=self._on_motion)

    def _on_motion(self, _win: object, etype: str, me: MotionEvent) -> None:
        if getattr(me, "type_id", None) == "hover" and _pen_device(me):
            self.hover_until = 0.0 if etype == "end" else time.monotonic() + HOVER_GRACE

    @property
    def pen_near(self) -> bool:
        return bool(self.pens) or time.monotonic() < self.hover_until

    def on_touch_down(self, touch: MotionEvent) -> bool:
        if _pen_device(touch):
            self.pens.add(touch.uid)
        elif self.pen_near:
            self.ignored.add(touch.uid)
            return True
        return super().on_touch_down(touch)

    def on_touch_move(self, touch: MotionEvent) -> bool:
        if touch.uid in self.ignored:
            return True
        return super().on_touch_move(touch)

    def on_touch_up(self, touch: MotionEvent) -> bool:
        self.pens.discard(touch.uid)
        if touch.uid in self.ignored:
            self.ignored.discard(touch.uid)
            return True
        return super().on_touch_up(touch)


def _pen_device(touch: MotionEvent) -> bool:
    """A real pen (not a mouse, not a finger that draws): only a pen brings a palm along."""
    return is_pen(touch) and "mouse" not in str(getattr(touch, "device", "")).lower()
