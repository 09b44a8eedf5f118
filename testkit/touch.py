"""Synthetic pen and finger touches, dispatched through Kivy's real input path.

Events go through `EventLoop.post_dispatch_input`, as a hardware provider's would: the window
scales them, dispatches `on_touch_*` down the widget tree and honours grabs. A pen reports
pressure on a device named "pen"; a finger reports position only on a device named "finger".
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable

from kivy.base import EventLoop
from kivy.input.motionevent import MotionEvent
from kivy.uix.widget import Widget

_ids = itertools.count(1000)


class SynthTouch(MotionEvent):
    """One contact at window pixel (x, y); `pressure` None means the device has none.

    `button` is what a mouse (or a pen's barrel button) reports; `double` marks the second tap
    of a double tap (Kivy's double-tap post-processor is not on this input path).
    """

    def __init__(
        self,
        device: str,
        x: float,
        y: float,
        pressure: float | None = None,
        button: str | None = None,
        double: bool = False,
    ) -> None:
        self._has_pressure = pressure is not None
        self._button = button
        super().__init__(device, next(_ids), _args(x, y, pressure), is_touch=True, type_id="touch")
        self.is_double_tap = double

    def depack(self, args: dict) -> None:
        self.sx, self.sy = args["x"], args["y"]
        self.profile = ["pos", "pressure"] if self._has_pressure else ["pos"]
        if self._has_pressure:
            self.pressure = args["pressure"]
        if self._button is not None:
            self.profile.append("button")
            self.button = self._button
        super().depack(args)

    def down(self) -> SynthTouch:
        EventLoop.post_dispatch_input("begin", self)
        return self

    def move_to(self, x: float, y: float, pressure: float | None = None) -> None:
        self.move(_args(x, y, pressure if pressure is not None else getattr(self, "pressure", 1)))
        EventLoop.post_dispatch_input("update", self)

    def up(self) -> None:
        EventLoop.post_dispatch_input("end", self)


class SynthHover(MotionEvent):
    """A pen hovering above the screen (no contact), as tablet drivers report it."""

    def __init__(self, device: str, x: float, y: float) -> None:
        super().__init__(device, next(_ids), _args(x, y, None), is_touch=False, type_id="hover")

    def depack(self, args: dict) -> None:
        self.sx, self.sy = args["x"], args["y"]
        self.profile = ["pos"]
        super().depack(args)

    def at(self, x: float, y: float, etype: str = "update") -> None:
        """Report the hover at window pixel (x, y) (`etype` "end": the pen went away)."""
        self.move(_args(x, y, None))
        EventLoop.post_dispatch_input(etype, self)


def _args(x: float, y: float, pressure: float | None) -> dict:
    win = EventLoop.window
    return {"x": x / (win.width - 1.0), "y": y / (win.height - 1.0), "pressure": pressure}


def pen_stroke(points: Iterable[tuple[float, float]], pressure: float = 1.0) -> None:
    """Pen down at the first window point, through the others, up at the last."""
    pts = list(points)
    touch = SynthTouch("pen", *pts[0], pressure=pressure).down()
    for x, y in pts[1:]:
        touch.move_to(x, y, pressure)
    touch.up()


def tap(widget: Widget, device: str = "finger") -> None:
    """A finger tap in the middle of a widget (buttons react to any touch), once laid out."""
    pump(2)
    x, y = widget.to_window(*widget.center)
    touch = SynthTouch(device, x, y).down()
    touch.up()


def pump(frames: int = 2) -> None:
    """Let Kivy run `frames` iterations of its loop (clock, input, drawing)."""
    for _ in range(frames):
        EventLoop.idle()


def wait_for(cond: Callable[[], object], timeout: float = 60.0) -> None:
    """Run the loop until `cond()` is true (background jobs deliver through the clock).

    The deadline only ends a wait that would never end: generous, since a loaded 2-core CI
    machine runs the app's workers many times slower than a desk machine."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for the app")
        pump(1)
        time.sleep(0.005)
