"""The drawing surface: image and label overlay as two textures, pen draws, fingers navigate.

Input rule (documented in docs/ui.md): a touch *draws* when it comes from a pen or a mouse — its
device name says pen/stylus/mouse, or its profile reports pressure on a non-finger device —
and *navigates* otherwise (one finger pans, two fingers pinch-zoom about their midpoint). While
a pen is down every finger touch is ignored (palm rejection), and a pen landing cancels any
finger gesture in progress. The "finger draws" setting makes one finger draw for tablets
without a pen; then a second finger cancels the stroke and turns it into a pinch.

Speed: a stroke re-renders only the dirty rectangle the core returns and blits it into the
overlay texture (`blit_buffer` with `pos`/`size`, no mipmaps), so a dab costs the same on a
512² and a 8192² image. Magnification is nearest-neighbour so that single pixels are exact at
high zoom; the image texture is uploaded once per image.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from kivy.graphics import Color, InstructionGroup, Line, Rectangle
from kivy.graphics.texture import Texture
from kivy.input.motionevent import MotionEvent
from kivy.properties import BooleanProperty, NumericProperty, StringProperty
from kivy.uix.stencilview import StencilView

from appliance.editing import EditSession, Rect
from appliance.errors import ApplianceError
from appliance.labels import Label
from appliance.overlay import OverlayRenderer, display_rect

MAX_ZOOM = 32.0
PEN_WORDS = ("pen", "stylus", "mouse", "wacom")
FINGER_WORDS = ("mtdev", "touch", "finger")
TOOLS = ("brush", "eraser", "fill", "lasso", "pick", "delete", "reclass")


def is_pen(touch: MotionEvent, finger_draws: bool = False) -> bool:
    """Whether a touch draws (pen or mouse) rather than navigates (finger); see module doc."""
    device = str(getattr(touch, "device", "")).lower()
    if any(word in device for word in PEN_WORDS):
        return True
    profile = getattr(touch, "profile", ()) or ()
    if "pressure" in profile and not any(word in device for word in FINGER_WORDS):
        return True
    return finger_draws


def pressure_of(touch: MotionEvent) -> float | None:
    """Pen pressure in [0, 1] when the device reports it, else None."""
    if "pressure" not in (getattr(touch, "profile", ()) or ()):
        return None
    value = float(getattr(touch, "pressure", 1.0) or 0.0)
    return min(1.0, max(0.0, value))


class LabelCanvas(StencilView):
    """Shows an image with its editable label; see the module doc for the input rule."""

    tool = StringProperty("brush")
    brush_size = NumericProperty(20.0)  # diameter in image pixels
    opacity_overlay = NumericProperty(0.45)
    finger_draws = BooleanProperty(False)
    zoom = NumericProperty(1.0)  # screen pixels per image pixel
    selected = NumericProperty(0)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.session: EditSession | None = None
        self.renderer = OverlayRenderer(opacity=self.opacity_overlay)
        self.preview: Label | None = None
        self.markers: list[tuple[float, float, float]] = []  # image x, y, radius
        self.on_changed: Callable[[], None] = lambda: None
        self.on_stroke_done: Callable[[], None] = lambda: None
        self.on_pick: Callable[[int], None] = lambda _id: None
        self.on_message: Callable[[str], None] = lambda _msg: None
        self.offset = (0.0, 0.0)  # image bottom-left relative to the widget, screen px
        self._image_tex: Texture | None = None
        self._overlay_tex: Texture | None = None
        self._pens: dict[object, MotionEvent] = {}  # uid -> touch
        self._fingers: dict[object, tuple[float, float]] = {}
        self._pinch: tuple[float, float, float, float] | None = None  # d0, zoom0, ix, iy
        self._lasso: list[tuple[float, float]] = []
        self._fitted = True  # follow the widget size until the user zooms or pans
        with self.canvas:
            Color(0, 0, 0, 1)
            self._bg = Rectangle()
            Color(1, 1, 1, 1)
            self._image_rect = Rectangle()
            Color(1, 1, 1, 1)
            self._overlay_rect = Rectangle()
            Color(1, 1, 1, 0.9)
            self._lasso_line = Line(width=1.5)
            self._cursor = Line(width=1.2)  # the brush's footprint under the pen
            Color(1.0, 0.25, 0.25, 1)
        self._markers = InstructionGroup()  # inside the stencil: clipped to the view
        self.canvas.add(self._markers)
        self.bind(pos=self._layout, size=self._on_size)
        self.bind(opacity_overlay=self._on_opacity, selected=self._on_selected)

    # ----- content -------------------------------------------------------------------------
    def set_image(self, display: np.ndarray, session: EditSession) -> None:
        """Show a display-ready uint8 image (H×W or H×W×3) with the label being edited."""
        rgb = display if display.ndim == 3 else np.repeat(display[..., None], 3, axis=2)
        rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
        h, w = rgb.shape[:2]
        self._image_tex = _texture((w, h), "rgb", mag="nearest", minf="linear")
        self._image_tex.blit_buffer(rgb.tobytes(), colorfmt="rgb", bufferfmt="ubyte")
        self._overlay_tex = _texture((w, h), "rgba", mag="nearest", minf="linear")
        self._image_rect.texture = self._image_tex
        self._overlay_rect.texture = self._overlay_tex
        self.session = session
        self.preview = None
        self.markers = []
        self.selected = 0
        self._fitted = True
        self.fit()
        self.refresh()

    def clear(self) -> None:
        """Show nothing (no image open)."""
        self.session = None
        self._image_tex = self._overlay_tex = None
        self._image_rect.texture = self._overlay_rect.texture = None
        self._image_rect.size = self._overlay_rect.size = (0, 0)

    def refresh(self, rect: Rect | None = None) -> None:
        """Re-render the overlay in `rect` (changed pixels; None = everything) and blit it."""
        if self.session is None or self._overlay_tex is None:
            return
        shape = self.session.shape
        region = Rect.full(shape) if rect is None else display_rect(rect, shape)
        if region.empty:
            return
        if self.preview is not None:
            inst, classes, version = self.preview.instances, self.preview.classes, None
        else:
            inst, classes = self.session.instances, self.session.classes
            version = self.session.classes_version
        rgba = self.renderer.render(inst, classes, region, version, int(self.selected))
        self._overlay_tex.blit_buffer(
            rgba.tobytes(),
            pos=(region.x0, region.y0),
            size=(region.width, region.height),
            colorfmt="rgba",
            bufferfmt="ubyte",
        )
        self.canvas.ask_update()

    def show_preview(self, label: Label | None) -> None:
        """Show another label (a suggestion's before/after) instead of the edited one."""
        self.preview = label
        self.refresh()

    def set_markers(self, points: list[tuple[float, float, float]]) -> None:
        """Circles (image x, y, radius) that point at objects an inspection warns about."""
        self.markers = list(points)
        self._layout()

    # ----- geometry ------------------------------------------------------------------------
    def fit(self) -> None:
        """Zoom so that the whole image is visible and centred."""
        if self.session is None or self.width <= 1 or self.height <= 1:
            return
        h, w = self.session.shape
        self.zoom = min(self.width / w, self.height / h)
        self.offset = ((self.width - w * self.zoom) / 2, (self.height - h * self.zoom) / 2)
        self._fitted = True
        self._layout()

    def min_zoom(self) -> float:
        """Fit the whole image, but never below 1× for images smaller than the screen."""
        if self.session is None:
            return 1.0
        h, w = self.session.shape
        return min(1.0, self.width / w, self.height / h)

    def to_image(self, x: float, y: float) -> tuple[float, float]:
        """Window point → continuous image coordinates (column, row)."""
        h = self.session.shape[0] if self.session else 0
        ix = (x - self.x - self.offset[0]) / self.zoom
        iy = h - (y - self.y - self.offset[1]) / self.zoom
        return ix, iy

    def to_window(self, ix: float, iy: float) -> tuple[float, float]:
        """Continuous image coordinates → window point."""
        h = self.session.shape[0] if self.session else 0
        return self.x + self.offset[0] + ix * self.zoom, self.y + self.offset[1] + (h - iy) * (
            self.zoom
        )

    def zoom_about(self, factor_zoom: float, wx: float, wy: float) -> None:
        """Set the zoom keeping the image point under window point (wx, wy) in place."""
        self._fitted = False
        ix, iy = self.to_image(wx, wy)
        self.zoom = min(MAX_ZOOM, max(self.min_zoom(), factor_zoom))
        self._place(ix, iy, wx, wy)

    def _place(self, ix: float, iy: float, wx: float, wy: float) -> None:
        """Translate so that image point (ix, iy) lies under window point (wx, wy)."""
        h = self.session.shape[0] if self.session else 0
        self.offset = (wx - self.x - ix * self.zoom, wy - self.y - (h - iy) * self.zoom)
        self._layout()

    def _on_size(self, *_: object) -> None:
        """Keep a fitted image fitted when panels appear; keep the user's own zoom otherwise."""
        if self._fitted:
            self.fit()
        self._layout()

    def _layout(self, *_: object) -> None:
        self._bg.pos, self._bg.size = self.pos, self.size
        if self.session is None:
            return
        h, w = self.session.shape
        pos = (self.x + self.offset[0], self.y + self.offset[1])
        size = (w * self.zoom, h * self.zoom)
        self._image_rect.pos = self._overlay_rect.pos = pos
        self._image_rect.size = self._overlay_rect.size = size
        self._markers.clear()
        for ix, iy, r in self.markers:
            cx, cy = self.to_window(ix, iy)
            self._markers.add(Line(circle=(cx, cy, max(r * self.zoom + 12, 24)), width=3))

    def _on_opacity(self, *_: object) -> None:
        self.renderer.opacity = float(self.opacity_overlay)
        self.refresh()

    def _on_selected(self, *_: object) -> None:
        self.refresh()

    # ----- touches -------------------------------------------------------------------------
    def on_touch_down(self, touch: MotionEvent) -> bool:
        if not self.collide_point(*touch.pos) or self.session is None:
            return False
        if getattr(touch, "is_mouse_scrolling", False):
            step = 1.25 if touch.button in ("scrolldown", "scrollleft") else 0.8
            self.zoom_about(self.zoom * step, *touch.pos)
            return True
        device_pen = is_pen(touch) and getattr(touch, "button", None) in (None, "left")
        if not device_pen and any(is_pen(t) for t in self._pens.values()):
            return True  # palm rejection: a finger is swallowed while a pen is down
        pen = device_pen or self.finger_draws
        if pen and not device_pen and (self._pens or self._fingers):
            self._fingers_to_pinch()  # "finger draws": a second finger means navigate
            pen = False
        if pen:
            self._fingers.clear()
            self._pinch = None
            self._pens[touch.uid] = touch
            touch.grab(self)
            touch.ud["canvas_pen"] = True
            self._pen_down(touch)
            return True
        touch.grab(self)
        self._fingers[touch.uid] = tuple(touch.pos)
        self._start_pinch()
        return True

    def on_touch_move(self, touch: MotionEvent) -> bool:
        if touch.grab_current is not self:
            return self.collide_point(*touch.pos)
        if touch.ud.get("canvas_pen"):
            self._pen_move(touch)
        elif touch.uid in self._fingers:
            self._finger_move(touch)
        return True

    def on_touch_up(self, touch: MotionEvent) -> bool:
        if touch.grab_current is not self:
            return self.collide_point(*touch.pos)
        touch.ungrab(self)
        if touch.ud.get("canvas_pen"):
            if self._pens.pop(touch.uid, None) is not None:
                self._pen_up(touch)
        elif touch.uid in self._fingers:
            del self._fingers[touch.uid]
            self._start_pinch()
        return True

    def _radius(self, touch: MotionEvent) -> float:
        pressure = pressure_of(touch)
        scale = 1.0 if pressure is None else 0.25 + 0.75 * pressure
        return max(0.5, self.brush_size * scale / 2.0)

    def _pen_down(self, touch: MotionEvent) -> None:
        assert self.session is not None
        if self.preview is not None:
            self.on_message("Accept or reject the suggestion first")
            return
        ix, iy = self.to_image(*touch.pos)
        try:
            if self.tool in ("brush", "eraser"):
                rect = self.session.begin_stroke(ix, iy, self._radius(touch), self.tool == "eraser")
                self._changed(rect)
            elif self.tool == "lasso":
                self._lasso = [(ix, iy)]
                self._lasso_line.points = list(touch.pos)
            elif self.tool == "fill":
                self._finish_gesture(self.session.fill(ix, iy))
            else:
                self._instance_tool(self.session.instance_at(ix, iy))
        except ApplianceError as exc:
            self.on_message(str(exc))

    def _pen_move(self, touch: MotionEvent) -> None:
        assert self.session is not None
        ix, iy = self.to_image(*touch.pos)
        if self.session.stroke_active:
            radius = self._radius(touch)
            self._cursor.circle = (*touch.pos, max(2.0, radius * self.zoom))
            self._changed(self.session.stroke_to(ix, iy, radius))
        elif self._lasso:
            self._lasso.append((ix, iy))
            self._lasso_line.points = [*self._lasso_line.points, *touch.pos]

    def _pen_up(self, touch: MotionEvent) -> None:
        assert self.session is not None
        if self.session.stroke_active:
            self._pen_move(touch)
            self._cursor.points = []
            self._finish_gesture(self.session.end_stroke())
        elif self._lasso:
            points, self._lasso = self._lasso, []
            self._lasso_line.points = []
            self._finish_gesture(self.session.lasso(points))

    def _instance_tool(self, instance_id: int) -> None:
        assert self.session is not None
        if instance_id == 0:
            self.on_message("Tap inside an object")
            return
        if self.tool == "pick":
            self.selected = instance_id
            self.on_pick(instance_id)
        elif self.tool == "delete":
            self.selected = 0
            self._finish_gesture(self.session.delete_instance(instance_id))
        elif self.tool == "reclass":
            self._finish_gesture(self.session.set_class(instance_id, self.session.active_class))

    def _finish_gesture(self, rect: Rect | None) -> None:
        self._changed(rect)
        if rect is not None:
            self.on_stroke_done()

    def _changed(self, rect: Rect | None) -> None:
        if rect is not None:
            self.refresh(rect)
            self.on_changed()

    def _fingers_to_pinch(self) -> None:
        """Drop the stroke of a drawing finger and let that finger take part in a pinch."""
        assert self.session is not None
        self._changed(self.session.cancel_stroke())
        self._lasso, self._lasso_line.points, self._cursor.points = [], [], []
        for uid, touch in self._pens.items():
            touch.ud["canvas_pen"] = False
            self._fingers[uid] = tuple(touch.pos)
        self._pens.clear()

    def _start_pinch(self) -> None:
        """(Re)anchor the gesture whenever the set of fingers changes."""
        if len(self._fingers) >= 2:
            (ax, ay), (bx, by) = list(self._fingers.values())[:2]
            mx, my = (ax + bx) / 2, (ay + by) / 2
            ix, iy = self.to_image(mx, my)
            self._pinch = (max(1.0, math.hypot(bx - ax, by - ay)), self.zoom, ix, iy)
        else:
            self._pinch = None

    def _finger_move(self, touch: MotionEvent) -> None:
        old = self._fingers[touch.uid]
        self._fingers[touch.uid] = tuple(touch.pos)
        if self._pinch is not None and len(self._fingers) >= 2:
            (ax, ay), (bx, by) = list(self._fingers.values())[:2]
            d0, zoom0, ix, iy = self._pinch
            self._fitted = False
            factor = math.hypot(bx - ax, by - ay) / d0
            self.zoom = min(MAX_ZOOM, max(self.min_zoom(), zoom0 * factor))
            self._place(ix, iy, (ax + bx) / 2, (ay + by) / 2)
        elif len(self._fingers) == 1:
            ox, oy = self.offset
            self._fitted = False
            self.offset = (ox + touch.pos[0] - old[0], oy + touch.pos[1] - old[1])
            self._layout()


def _texture(size: tuple[int, int], fmt: str, mag: str, minf: str) -> Texture:
    tex = Texture.create(size=size, colorfmt=fmt, bufferfmt="ubyte", mipmap=False)
    tex.mag_filter = mag
    tex.min_filter = minf
    tex.flip_vertical()  # texture row 0 = image row 0, so dirty rects blit at (x0, y0)
    return tex
