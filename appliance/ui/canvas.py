"""The drawing surface: image, label overlay and pre-label outlines; pen draws, fingers navigate.

Input rule (documented in docs/ui.md): a touch *draws* when it comes from a pen or a mouse — its
device name says pen/stylus/mouse, or its profile reports pressure on a non-finger device —
and *navigates* otherwise (one finger pans, two fingers pinch-zoom about their midpoint, a
double tap toggles fit / 1:1). A pen whose device name says *eraser* (the stylus's eraser end)
erases whatever tool is chosen, and so does a stylus's barrel button where the driver reports
it as the right button. Palm rejection (fingers ignored while a pen is down or hovering) is
app-wide, in `appliance.ui.palm`. The "finger draws" setting makes one finger draw for tablets
without a pen; then a second finger cancels the stroke and turns it into a pinch.

Point and box objects of the label are drawn over the overlay at every zoom and pan
(`appliance.ui.marks`). With the Point or Box tool the pen places, moves, resizes or selects
them (`appliance.session.marks` decides which); Pick, Delete and Set class take a point or a
box's outline under the pen before a mask.

Two fingers dragged up or down together (their distance kept) resize the brush instead of
navigating; `appliance.session.gesture` classifies a two-finger gesture once, when the fingers
have moved far enough, and the gesture keeps that meaning until a finger lifts. While the size
changes, the brush outline and its size in pixels are drawn between the fingers.

Speed: a stroke re-renders only the dirty rectangle the core returns and blits it into the
overlay texture (`blit_buffer` with `pos`/`size`, no mipmaps), so a dab costs the same on a
512² and a 8192² image. Magnification is nearest-neighbour so that single pixels are exact at
high zoom; the image texture is uploaded once per image. The zoom and pan maths are the pure
functions of `appliance.session.viewport`.

A change bigger than `BAND_PIXELS` (an accepted 2048² pre-label, a new offer's outlines, a
before/after, a new opacity) is redrawn in bands of rows, one band per layer per frame, each
band rendered from the label as it is *then* (so strokes drawn meanwhile are never painted
over with stale pixels). Rendering and uploading a 2048² overlay at once held the UI thread
for 0.1-0.3 s (issue 25, defect 6); a band costs a few milliseconds. A new offer's outlines
stay hidden until their last band is in, so they appear whole; the label's overlay fills in
from the top within a few frames. A selection redraws only the boxes of the objects it
concerns.

Frame cost (issue 25): Kivy redraws the whole window for any change, so each frame must
rasterise little. The widget clips with a scissor rectangle (a StencilView drew two
widget-sized stencil passes per frame), paints its black background only beside the image
(`viewport.margins`), and gives a layer that shows nothing (the offer after Accept, the
overlay while Raw is held or before anything is drawn, the hidden minimap) no size rather
than a zero alpha, which is still rasterised. Zoomed out to the fitted view's
`viewport.texture_step` or further, one opaque picture about as big as the image is on screen
is drawn instead of three layers: an area-averaged level of the image with the label's and
the shown offer's levels (`overlay.most_opaque`: one-pixel outlines stay whole) blended in on
the CPU. Every render keeps it (`_recomposite`, the rectangle it drew); an offer goes in once
all its bands are in and out again at its own pixels only (`_composite_offer`); Raw shows
the plain level. A 2048² texture minified 2.2× cost about 1.6× as much per pixel under Mesa's
llvmpipe, and its outlines came out dotted. Zoomed in past half size, the full textures are
drawn, so every image and label pixel is exact.

A big change that comes while bands are still pending (the opacity slider moving, one new
value per frame) does not start again from the top: its rows are queued after those still
pending, so the bands go on down the image and wrap round, and every band keeps following the
slider (before, only the top band updated until the slider was released). A small change then
is drawn at once, the pending bands left as they are.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from kivy.clock import Clock
from kivy.core.text import Label as CoreLabel
from kivy.core.window import Window
from kivy.graphics import (
    Color,
    InstructionGroup,
    Line,
    Rectangle,
    ScissorPop,
    ScissorPush,
    SmoothLine,
)
from kivy.graphics.texture import Texture
from kivy.input.motionevent import MotionEvent
from kivy.metrics import mm, pt
from kivy.properties import BooleanProperty, NumericProperty, StringProperty
from kivy.uix.widget import Widget

from appliance import settings
from appliance.editing import EditSession, Rect
from appliance.errors import ApplianceError
from appliance.labels import CellObject, Label
from appliance.overlay import OverlayRenderer, display_rect, most_opaque
from appliance.session import gesture, marks, viewport
from appliance.session.objects import object_box
from appliance.session.resume import ViewState
from appliance.session.viewport import MAX_ZOOM
from appliance.ui.marks import draw_marks

PEN_WORDS = ("pen", "stylus", "mouse", "wacom", "eraser")
FINGER_WORDS = ("mtdev", "touch", "finger")
MINIMAP_FROM = 2.0  # show the minimap once zoomed in this far beyond the fitted view
TOOLS = ("brush", "eraser", "point", "box", "fill", "lasso", "pick", "delete", "reclass")
GESTURE_THRESHOLD = mm(4)  # finger travel before a two-finger gesture is classified
BRUSH_DOUBLING = mm(15)  # vertical two-finger travel that doubles (or halves) the brush
# pixels of a layer rendered and uploaded per frame at most: ~5 ms of numpy on a tablet core,
# a 2048² layer in 8 frames; a smaller change (every stroke) is drawn at once
BAND_PIXELS = 1 << 19


@dataclass
class _Pair:
    """Two fingers on the surface: where they started (window px) and what they mean."""

    a0: tuple[float, float]
    b0: tuple[float, float]
    zoom0: float
    ix: float  # image point under their midpoint at the start: it stays under it (pinch)
    iy: float
    mode: str = gesture.WAIT
    size0: float = 0.0  # brush size when the drag was classified as a brush drag
    lock_y: float = 0.0  # the midpoint's y at that moment


def is_pen(touch: MotionEvent, finger_draws: bool = False) -> bool:
    """Whether a touch draws (pen or mouse) rather than navigates (finger); see module doc."""
    device = str(getattr(touch, "device", "")).lower()
    if any(word in device for word in PEN_WORDS):
        return True
    profile = getattr(touch, "profile", ()) or ()
    if "pressure" in profile and not any(word in device for word in FINGER_WORDS):
        return True
    return finger_draws


def is_eraser(touch: MotionEvent) -> bool:
    """The stylus's eraser end (device name says eraser) or its barrel button (reported as the
    right button of a pen, not of a mouse, whose right button pans)."""
    device = str(getattr(touch, "device", "")).lower()
    if "eraser" in device:
        return True
    barrel = getattr(touch, "button", None) in ("right", "middle")
    return barrel and is_pen(touch) and "mouse" not in device


def pressure_of(touch: MotionEvent) -> float | None:
    """Pen pressure in [0, 1] when the device reports it, else None."""
    if "pressure" not in (getattr(touch, "profile", ()) or ()):
        return None
    value = float(getattr(touch, "pressure", 1.0) or 0.0)
    return min(1.0, max(0.0, value))


class _Bands:
    """What is left of a big redraw: the rows still to draw, in the order they will be drawn
    (a queue of row ranges), across the union of the columns asked for."""

    def __init__(self, region: Rect) -> None:
        self.x0, self.x1 = region.x0, region.x1
        self.rows: list[tuple[int, int]] = [(region.y0, region.y1)]

    def add(self, region: Rect) -> None:
        """Queue the rows of `region` not queued yet, after the others."""
        self.x0, self.x1 = min(self.x0, region.x0), max(self.x1, region.x1)
        missing = [(region.y0, region.y1)]
        for a, b in self.rows:
            missing = [
                piece
                for c, d in missing
                for piece in ((c, min(d, a)), (max(c, b), d))
                if piece[0] < piece[1]
            ]
        self.rows += missing

    def take(self, rows: int) -> Rect:
        """The next band: at most `rows` rows from the front of the queue (one range)."""
        y0, y1 = self.rows[0]
        end = min(y1, y0 + rows)
        if end == y1:
            self.rows.pop(0)
        else:
            self.rows[0] = (end, y1)
        return Rect(y0, self.x0, end, self.x1)


class LabelCanvas(Widget):
    """Shows an image with its editable label; see the module doc for the input rule."""

    tool = StringProperty("brush")
    brush_size = NumericProperty(float(settings.BRUSH_SIZE.default))  # diameter, image px
    opacity_overlay = NumericProperty(settings.OPACITY.default)
    hide_overlay = BooleanProperty(False)  # "hold to compare": the raw image only
    finger_draws = BooleanProperty(False)
    zoom = NumericProperty(1.0)  # screen pixels per image pixel
    selected = NumericProperty(0)  # an instance of the label, highlighted
    offer_selected = NumericProperty(0)  # an instance of the offer, its outline highlighted
    selected_mark = NumericProperty(-1)  # index of a point or box of the label, highlighted

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.session: EditSession | None = None
        self.renderer = OverlayRenderer(opacity=self.opacity_overlay)
        self.preview: Label | None = None  # a before/after shown instead of the label
        self.offer: Label | None = None  # a pre-label on offer, drawn as outlines only
        self.offer_renderer = OverlayRenderer(opacity=0.0, outlines=True)
        self.markers: list[tuple[float, float, float]] = []  # image x, y, radius
        self.on_changed: Callable[[], None] = lambda: None
        self.on_stroke_done: Callable[[], None] = lambda: None
        self.on_pick: Callable[[int], None] = lambda _id: None
        self.on_message: Callable[[str], None] = lambda _msg: None
        self.on_pen_down: Callable[[], None] = lambda: None
        self.on_brush_sized: Callable[[float], None] = lambda _size: None  # two-finger drag ended
        # a point or box tapped with the Point/Box tool (None: none) or Pick (`picked` True)
        self.on_mark: Callable[[int | None, bool], None] = lambda _index, _picked: None
        self._mark: tuple[marks.MarkDrag, tuple[float, float]] | None = None  # and screen start
        self._mark_shape: CellObject | None = None  # what the pen shapes now
        # what the marks were last drawn for: the tuples themselves (an id could be reused)
        self._marks_shown: tuple[object, object, object] | None = None
        self.offset = (0.0, 0.0)  # image bottom-left relative to the widget, screen px
        self._image_tex: Texture | None = None
        self._rgb: np.ndarray | None = None  # the image shown, for its zoomed-out level
        # zoomed out, levels about the size of the fitted view (see the module doc), kept up
        # to date by every render: pixels of "image", "label" and "offer" (most opaque
        # pixels) and "composite" (label and shown offer over the image: one opaque layer),
        # and textures of "image" (drawn while Raw is held) and "composite"
        self._layer_step = 1  # their texture_step (1: none)
        self._layer_levels: dict[str, Texture] = {}
        self._level_px: dict[str, np.ndarray] = {}
        self._offer_composited = False  # whether the composite holds the offer's outlines
        self._overlay_tex: Texture | None = None
        self._offer_tex: Texture | None = None
        self._overlay_blank = False  # nothing drawn in the overlay yet: not even rasterised
        # layer ("label" or "offer") -> the part still to redraw, a band per frame
        self._pending: dict[str, _Bands] = {}
        self._next_band = Clock.create_trigger(self._draw_bands, 0)
        self._pens: dict[object, MotionEvent] = {}  # uid -> touch
        self._fingers: dict[object, tuple[float, float]] = {}
        self._pair: _Pair | None = None  # two fingers down: pinch-zoom or brush drag
        self._lasso: list[tuple[float, float]] = []
        self._fitted = True  # follow the widget size until the user zooms or pans
        with self.canvas.before:  # what is drawn is clipped to the widget (see `_clip_to`)
            self._clip = ScissorPush(x=0, y=0, width=0, height=0)
        with self.canvas:
            Color(0, 0, 0, 1)
            self._bg = [Rectangle(size=(0, 0)) for _ in range(4)]  # only beside the image
            Color(1, 1, 1, 1)
            self._image_rect = Rectangle()
            self._overlay_color = Color(1, 1, 1, 1)
            self._overlay_rect = Rectangle()
            self._offer_color = Color(1, 1, 1, 1)  # 0 while hidden or still being drawn
            self._offer_rect = Rectangle()
            self._marks = InstructionGroup()  # points and boxes, over the overlay
            Color(1, 1, 1, 0.9)
            self._lasso_line = Line(width=1.5)
            # circles are antialiased lines: the window is not multisampled (launch.py)
            self._cursor = SmoothLine(width=2.2)  # the brush's footprint, hovering or drawing
            self._size_text = Rectangle(size=(0, 0))  # brush size while two fingers change it
            Color(1.0, 0.25, 0.25, 1)
        self._markers = InstructionGroup()  # inside the scissor: clipped to the view
        self.canvas.add(self._markers)
        with self.canvas.after:
            ScissorPop()
            self._minimap_color = Color(1, 1, 1, 0)
            self._minimap = Rectangle()
            self._minimap_frame_color = Color(1, 0.85, 0.1, 0)
            self._minimap_view = Line(width=1.5)
        self.bind(pos=self._layout, size=self._on_size, zoom=self._layout)
        self.bind(opacity_overlay=self._on_opacity, selected=self._on_selected)
        self.bind(selected_mark=lambda *_: self._draw_marks(), hide_overlay=self._draw_marks)
        self.bind(hide_overlay=self._on_hide)
        self.bind(offer_selected=self._on_offer_selected)
        self._selected_before = self._offer_selected_before = 0
        Window.bind(on_motion=self._on_motion)
        # window coordinates change when an ancestor moves (the screen shown, a panel
        # opened) without this widget's pos changing: the clip is checked before each frame
        Window.bind(on_draw=lambda *_: self._clip_to())

    # ----- content -------------------------------------------------------------------------
    def set_image(self, display: np.ndarray, session: EditSession) -> None:
        """Show a display-ready uint8 image (H×W or H×W×3) with the label being edited."""
        rgb = display if display.ndim == 3 else np.repeat(display[..., None], 3, axis=2)
        rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
        h, w = rgb.shape[:2]
        self._image_tex = _texture((w, h), "rgb", mag="nearest", minf="linear")
        self._image_tex.blit_buffer(rgb.tobytes(), colorfmt="rgb", bufferfmt="ubyte")
        self._rgb = rgb
        self._layer_step, self._layer_levels = 1, {}
        self._overlay_tex = _texture((w, h), "rgba", mag="nearest", minf="linear")
        self._offer_tex = _texture((w, h), "rgba", mag="nearest", minf="linear")
        self._image_rect.texture = self._minimap.texture = self._image_tex
        self._overlay_rect.texture = self._overlay_tex
        self._offer_rect.texture = self._offer_tex
        self.session = session
        self._overlay_blank = not session.instances.any()
        self._pending.clear()
        self.preview = None
        self.offer = None
        self.markers = []
        self.selected = self.offer_selected = 0
        self.selected_mark = -1
        self._mark, self._mark_shape, self._marks_shown = None, None, None
        self._fitted = True
        self.fit()
        self._level_layers()
        self.refresh()
        self.show_offer(None)

    def set_display(self, display: np.ndarray) -> None:
        """Show a re-processed display of the same image, keeping label, zoom and pan."""
        if self._image_tex is None:
            return
        rgb = display if display.ndim == 3 else np.repeat(display[..., None], 3, axis=2)
        rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
        self._image_tex.blit_buffer(rgb.tobytes(), colorfmt="rgb", bufferfmt="ubyte")
        self._rgb = rgb
        self._level_layers(again=True)
        self.canvas.ask_update()

    def clear(self) -> None:
        """Show nothing (no image open)."""
        self.session = None
        self.preview = self.offer = None
        self._pending.clear()
        self._image_tex = self._overlay_tex = self._offer_tex = None
        self._rgb, self._level_px, self._offer_composited = None, {}, False
        self._layer_step, self._layer_levels = 1, {}
        self._image_rect.texture = self._overlay_rect.texture = self._offer_rect.texture = None
        self._minimap.texture = None
        self._image_rect.size = self._overlay_rect.size = self._offer_rect.size = (0, 0)
        self._minimap_color.a = self._minimap_frame_color.a = 0
        self._minimap.size = (0, 0)
        self._layout()
        self._minimap_view.points = []
        self._markers.clear()
        self._marks.clear()
        self._marks_shown = None

    def refresh(self, rect: Rect | None = None) -> None:
        """Re-render the overlay in `rect` (changed pixels; None = everything) and blit it; a
        big region is drawn in bands over the next frames (module doc)."""
        if self.session is None or self._overlay_tex is None:
            return
        shape = self.session.shape
        region = Rect.full(shape) if rect is None else display_rect(rect, shape)
        self._draw_marks()
        self._redraw("label", region)

    def show_offer(self, label: Label | None) -> None:
        """Outline a pre-label on offer over the expert's own label (None: hide it)."""
        if label is not None and label is self.offer:
            return  # shown (or being drawn) already: the panel changed, not the offer
        self._composite_offer(False)  # the old outlines out of the zoomed-out picture
        self._offer_selected_before = 0
        self.offer = label
        if self._offer_tex is None:
            return
        self._pending.pop("offer", None)
        if label is not None:
            self._redraw("offer", Rect.full(label.shape))
        self._draw_marks()  # the offer's points and boxes, hollow
        self._on_hide()  # hidden until all its outlines are drawn

    def show_preview(self, label: Label | None) -> None:
        """Show another label (a suggestion's before/after) instead of the edited one."""
        if label is self.preview:
            return  # shown already (or nothing instead of the label): nothing to redraw
        self.preview = label
        self.refresh()

    @property
    def bands_pending(self) -> bool:
        """Whether a big change is still being drawn in bands (see the module doc)."""
        return bool(self._pending)

    def _redraw(self, layer: str, region: Rect) -> None:
        """Render `region` of a layer now if small, else its first band now and the rest
        one band per frame; while bands are pending, a big region's rows are queued after
        theirs (the next frame's band goes on where the last one stopped)."""
        if region.empty:
            return
        if region.height * region.width <= BAND_PIXELS:
            self._render(layer, region)  # pending bands render the label as it is then
            return
        pending = self._pending.get(layer)
        if pending is not None:
            pending.add(region)
            return  # the next band comes with the next frame
        self._pending[layer] = _Bands(region)
        self._draw_bands()

    def _draw_bands(self, *_: object) -> None:
        """One band of each layer still pending (the next rows in the queue)."""
        for layer, bands in list(self._pending.items()):
            band = bands.take(max(1, BAND_PIXELS // max(1, bands.x1 - bands.x0)))
            if not bands.rows:
                del self._pending[layer]
            self._render(layer, band)
            if layer == "offer" and not bands.rows:
                self._on_hide()  # all outlines in: show them
        if self._pending:
            self._next_band()

    def _render(self, layer: str, region: Rect) -> None:
        """Render `region` of a layer from the label as it is now and blit it, and into the
        layer's level (if any) too: `region` grows to whole blocks of the level's step."""
        level, step = self._level_px.get(layer), self._layer_step
        if level is not None and self.session is not None:
            h, w = self.session.shape
            region = Rect(
                region.y0 // step * step,
                region.x0 // step * step,
                min(h, -(-region.y1 // step) * step),
                min(w, -(-region.x1 // step) * step),
            )
        if layer == "offer":
            texture, offer = self._offer_tex, self.offer
            if texture is None or offer is None:
                return
            rgba = self.offer_renderer.render(
                offer.instances, offer.classes, region, None, int(self.offer_selected)
            )
        else:
            texture = self._overlay_tex
            if texture is None or self.session is None:
                return
            if self.preview is not None:
                inst, classes, version = self.preview.instances, self.preview.classes, None
            else:
                inst, classes = self.session.instances, self.session.classes
                version = self.session.classes_version
            rgba = self.renderer.render(inst, classes, region, version, int(self.selected))
            if self._overlay_blank and rgba[..., 3].any():
                self._overlay_blank = False
                self._size_layers()
        texture.blit_buffer(
            rgba.tobytes(),
            pos=(region.x0, region.y0),
            size=(region.width, region.height),
            colorfmt="rgba",
            bufferfmt="ubyte",
        )
        if level is not None:
            small = most_opaque(rgba, step)
            rows = slice(region.y0 // step, region.y0 // step + small.shape[0])
            cols = slice(region.x0 // step, region.x0 // step + small.shape[1])
            level[rows, cols] = small
            if layer == "label" or self._offer_composited:
                self._recomposite(rows, cols)
        self.canvas.ask_update()

    def _recomposite(self, rows: slice, cols: slice) -> None:
        """Draw the label (and the offer, if shown) over the image level in a part of it."""
        px = self._level_px
        picture = _over(px["image"][rows, cols], px["label"][rows, cols])
        if self._offer_composited:
            picture = _over(picture, px["offer"][rows, cols])
        px["composite"][rows, cols] = picture
        self._layer_levels["composite"].blit_buffer(
            np.ascontiguousarray(picture).tobytes(),
            pos=(cols.start, rows.start),
            size=(picture.shape[1], picture.shape[0]),
            colorfmt="rgb",
        )

    def _composite_offer(self, show: bool) -> None:
        """Put the offer's outlines into the zoomed-out picture or take them out again, at the
        pixels they cover only (a few percent of it: a millisecond, not a full blend)."""
        if not self._level_px or show == self._offer_composited:
            return
        self._offer_composited = show
        px = self._level_px
        at = px["offer"][..., 3] > 0
        if show:
            px["composite"][at] = _over(px["composite"][at], px["offer"][at])
        else:
            px["composite"][at] = _over(px["image"][at], px["label"][at])
        rows = np.flatnonzero(at.any(axis=1))
        if rows.size:
            self._recomposite_rows(int(rows[0]), int(rows[-1]) + 1)

    def _recomposite_rows(self, y0: int, y1: int) -> None:
        """Upload rows [y0, y1) of the composite picture as they are."""
        picture = np.ascontiguousarray(self._level_px["composite"][y0:y1])
        self._layer_levels["composite"].blit_buffer(
            picture.tobytes(), pos=(0, y0), size=(picture.shape[1], y1 - y0), colorfmt="rgb"
        )

    def set_markers(self, points: list[tuple[float, float, float]]) -> None:
        """Circles (image x, y, radius) that point at objects an inspection warns about."""
        self.markers = list(points)
        self._layout()

    # ----- geometry (maths in appliance.session.viewport) -----------------------------------------
    def _view(self) -> viewport.View:
        return viewport.View(self.zoom, self.offset)

    def _set_view(self, view: viewport.View) -> None:
        self.zoom, self.offset = view.zoom, view.offset
        self._layout()

    def fit(self) -> None:
        """Zoom so that the whole image is visible and centred."""
        if self.session is None or self.width <= 1 or self.height <= 1:
            return
        self._fitted = True
        self._set_view(viewport.fit(self.session.shape, self.size))

    def focus_on(self, box: Rect) -> None:
        """Centre an image box (a selected object) at a sane zoom (`viewport.focus`)."""
        if self.session is None:
            return
        self._fitted = False
        corners = (box.x0, box.y0, box.x1, box.y1)
        self._set_view(viewport.focus(self._view(), self.session.shape, self.size, corners))

    def min_zoom(self) -> float:
        """Fit the whole image, but never below 1× for images smaller than the screen."""
        return 1.0 if self.session is None else viewport.min_zoom(self.session.shape, self.size)

    def to_image(self, x: float, y: float) -> tuple[float, float]:
        """Window point → continuous image coordinates (column, row)."""
        h = self.session.shape[0] if self.session else 0
        return viewport.to_image(self._view(), h, x - self.x, y - self.y)

    def to_window(self, ix: float, iy: float) -> tuple[float, float]:
        """Continuous image coordinates → window point."""
        h = self.session.shape[0] if self.session else 0
        x, y = viewport.to_widget(self._view(), h, ix, iy)
        return self.x + x, self.y + y

    def zoom_about(self, factor_zoom: float, wx: float, wy: float) -> None:
        """Set the zoom keeping the image point under window point (wx, wy) in place."""
        if self.session is None:
            return
        self._fitted = False
        rel = (wx - self.x, wy - self.y)
        self._set_view(
            viewport.zoom_about(self._view(), self.session.shape, self.size, factor_zoom, *rel)
        )

    def view_state(self) -> ViewState | None:
        """The zoom and the image point at the centre, to come back to (None: fitted)."""
        if self.session is None or self._fitted:
            return None
        centre = self.to_image(self.center_x, self.center_y)
        return ViewState(self.zoom, centre)

    def show_view_state(self, state: ViewState) -> None:
        """Zoom to `state.zoom` (clamped) with its image point at the centre."""
        if self.session is None:
            return
        self._fitted = False
        shape, size = self.session.shape, self.size
        zoom = viewport.clamp_zoom(state.zoom, shape, size)
        ix, iy = state.centre
        self._set_view(viewport.place(zoom, shape[0], ix, iy, size[0] / 2, size[1] / 2))

    def toggle_fit(self, wx: float, wy: float) -> None:
        """Double tap: fitted view ↔ 1:1 about the tapped point."""
        if self.session is None:
            return
        view = viewport.toggle_fit(
            self._view(), self.session.shape, self.size, wx - self.x, wy - self.y
        )
        self._fitted = view == viewport.fit(self.session.shape, self.size)
        self._set_view(view)

    def _place(self, ix: float, iy: float, wx: float, wy: float) -> None:
        """Translate so that image point (ix, iy) lies under window point (wx, wy)."""
        h = self.session.shape[0] if self.session else 0
        self._set_view(viewport.place(self.zoom, h, ix, iy, wx - self.x, wy - self.y))

    def _on_size(self, *_: object) -> None:
        """Keep a fitted image fitted when panels appear; keep the user's own zoom otherwise."""
        if self._fitted:
            self.fit()
        self._level_layers()
        self._layout()

    def _level_layers(self, again: bool = False) -> None:
        """Make the levels for the fitted view (`texture_step` of its zoom: the view the
        expert spends most time in; `again`: a new display of the image), kept with the
        layers by `_render`, which draws into both; a new step (another window size) redraws
        the layers in full."""
        if self.session is None or self._overlay_tex is None or self._rgb is None:
            return
        if self.width <= 1 or self.height <= 1:
            return  # not laid out yet: `_on_size` comes back
        shape = self.session.shape
        step = viewport.texture_step(viewport.fit(shape, self.size).zoom)
        if step == self._layer_step and (not again or step == 1):
            return
        self._layer_step, self._layer_levels, self._level_px = step, {}, {}
        self._offer_composited = False
        if step > 1:
            size = (-(-shape[1] // step), -(-shape[0] // step))
            image = np.ascontiguousarray(cv2.resize(self._rgb, size, interpolation=cv2.INTER_AREA))
            self._level_px = {
                "image": image,
                "composite": image.copy(),
                "label": np.zeros((size[1], size[0], 4), np.uint8),
                "offer": np.zeros((size[1], size[0], 4), np.uint8),
            }
            for name in ("image", "composite"):
                level = _texture(size, "rgb", mag="nearest", minf="linear")
                level.blit_buffer(image.tobytes(), colorfmt="rgb")
                self._layer_levels[name] = level
        self._redraw("label", Rect.full(shape))
        if self.offer is not None:
            self._redraw("offer", Rect.full(self.offer.shape))
        self._on_hide()  # the offer goes into the picture once its bands are all in

    def _layout(self, *_: object) -> None:
        self._clip_to()
        if self.session is None:
            self._paint_bg([(0.0, 0.0, self.width, self.height)])
            return
        h, w = self.session.shape
        self._paint_bg(viewport.margins(self._view(), (h, w), self.size))
        pos = (self.x + self.offset[0], self.y + self.offset[1])
        size = (w * self.zoom, h * self.zoom)
        self._image_rect.pos = self._overlay_rect.pos = self._offer_rect.pos = pos
        self._image_rect.size = size
        self._size_layers()
        self._layout_minimap()
        self._draw_marks()
        self._markers.clear()
        for ix, iy, r in self.markers:
            cx, cy = self.to_window(ix, iy)
            ring = (cx, cy, max(r * self.zoom + 12, 24))
            self._markers.add(SmoothLine(circle=ring, width=3.5, close=True))

    def _clip_to(self) -> None:
        """Clip drawing to the widget with a scissor rectangle (window pixels): free in any
        renderer, where a StencilView drew two widget-sized stencil passes every frame."""
        x, y = Widget.to_window(self, *self.pos)  # this class's to_window maps image points
        x0, y0 = round(x), round(y)
        size = (max(0, round(x + self.width) - x0), max(0, round(y + self.height) - y0))
        if (self._clip.pos, self._clip.size) != ((x0, y0), size):  # a change redraws
            self._clip.size, self._clip.pos = size, (x0, y0)

    def _paint_bg(self, bands: list[tuple[float, float, float, float]]) -> None:
        """Paint the background only where the image leaves the widget uncovered."""
        spare = [(0.0, 0.0, 0.0, 0.0)] * (len(self._bg) - len(bands))
        for rect, (x, y, w, h) in zip(self._bg, [*bands, *spare], strict=True):
            rect.pos, rect.size = (self.x + x, self.y + y), (w, h)

    def _size_layers(self) -> None:
        """Give the overlay and the offer their size only while they show something: a layer
        hidden by a zero alpha is still rasterised over the whole image in every frame.
        Zoomed out, both are in the image's composite level: one opaque layer."""
        levels = self._layer_levels
        on_levels = bool(levels) and viewport.texture_step(self.zoom) >= self._layer_step
        if on_levels:
            image = levels["composite" if self._overlay_color.a else "image"]
        else:
            image = self._image_tex
        if self._image_rect.texture is not image:
            self._image_rect.texture = image
        size = self._image_rect.size
        shown = not on_levels and self._overlay_color.a and not self._overlay_blank
        self._overlay_rect.size = size if shown else (0, 0)
        self._offer_rect.size = size if self._offer_color.a and not on_levels else (0, 0)

    def _draw_marks(self, *_: object) -> None:
        """Draw the label's points and boxes (a before/after's while it is shown) and the one
        the pen is shaping; rebuilt only when they or the view changed, not on every dab."""
        if self.session is None:
            return
        # a before/after without marks (a mask model's) keeps the label's: so does its Accept
        objects = (self.preview.objects if self.preview else ()) or self.session.objects
        drag = self._mark[0] if self._mark else None
        selected = int(self.selected_mark)
        if drag is not None and self._mark_shape is not None:
            if drag.index is None:
                objects, selected = (*objects, self._mark_shape), len(objects)
            else:
                k = drag.index
                objects = (*objects[:k], self._mark_shape, *objects[k + 1 :])
                selected = k
        renderer = self.renderer
        offered = self.offer.objects if self.offer is not None else ()
        view = (self._mark_shape, self.zoom, self.offset, tuple(self.pos), selected,
                dict(renderer.colours), renderer.hidden, self.hide_overlay)  # fmt: skip
        shown = self._marks_shown
        if shown is not None and shown[:2] == (objects, offered) and shown[2] == view:
            return
        self._marks_shown = (objects, offered, view)
        self._marks.clear()
        if not self.hide_overlay:
            hidden, colours, to_window = renderer.hidden, renderer.colours, self.to_window
            if offered:  # a pre-label's marks, hollow under the expert's
                draw_marks(self._marks, offered, to_window, colours, None, hidden, hollow=True)
            draw_marks(self._marks, objects, to_window, colours, selected, hidden)
        self.canvas.ask_update()

    def _layout_minimap(self) -> None:
        """A small whole-image view with the visible part framed, once zoomed in far."""
        assert self.session is not None
        shape = self.session.shape
        fitted = viewport.fit(shape, self.size).zoom
        show = self.zoom > fitted * MINIMAP_FROM
        self._minimap_color.a = self._minimap_frame_color.a = 1 if show else 0
        if not show:
            self._minimap_view.points = []
            self._minimap.size = (0, 0)  # transparent, but it would still be rasterised
            return
        h, w = shape
        mx, my, scale = viewport.minimap(shape, self.size)
        mw, mh = w * scale, h * scale
        mx, my = self.x + mx, self.y + my
        self._minimap.pos, self._minimap.size = (mx, my), (mw, mh)
        x0, y0, x1, y1 = viewport.visible(self._view(), shape, self.size)
        self._minimap_view.rectangle = (
            mx + x0 * scale,
            my + (h - y1) * scale,
            max(2.0, (x1 - x0) * scale),
            max(2.0, (y1 - y0) * scale),
        )

    @property
    def minimap_shown(self) -> bool:
        return bool(self._minimap_color.a)

    def _minimap_to(self, touch: MotionEvent) -> None:
        """Centre the view on the image point under the touch on the minimap."""
        assert self.session is not None
        self._fitted = False
        self._set_view(
            viewport.centre_on_minimap(
                self._view(), self.session.shape, self.size, touch.x - self.x, touch.y - self.y
            )
        )

    def _on_hide(self, *_: object) -> None:
        self._overlay_color.a = 0 if self.hide_overlay else 1
        drawn = self.offer is not None and "offer" not in self._pending
        self._offer_color.a = 1 if drawn and not self.hide_overlay else 0
        self._composite_offer(drawn)
        self._size_layers()
        self.canvas.ask_update()

    def _on_opacity(self, *_: object) -> None:
        self.renderer.opacity = float(self.opacity_overlay)
        self.refresh()

    def _on_selected(self, *_: object) -> None:
        """Redraw the boxes of the objects selected before and now (nothing else changes)."""
        before, self._selected_before = self._selected_before, int(self.selected)
        if self.session is None:
            return
        if self.preview is not None:
            self.refresh()
            return
        for iid in {before, int(self.selected)} - {0}:
            box = self.session.instance_rect(iid)
            if box is not None:
                self.refresh(box)

    def _on_offer_selected(self, *_: object) -> None:
        """Redraw the outlines of the offer's objects selected before and now."""
        before, self._offer_selected_before = self._offer_selected_before, int(self.offer_selected)
        offer = self.offer
        if offer is None or self._offer_tex is None:
            return
        for iid in {before, int(self.offer_selected)} - {0}:
            box = object_box(offer, iid)
            if box is not None:
                self._redraw("offer", display_rect(box, offer.shape))

    # ----- touches -------------------------------------------------------------------------
    def on_touch_down(self, touch: MotionEvent) -> bool:
        if not self.collide_point(*touch.pos) or self.session is None:
            return False
        if getattr(touch, "is_mouse_scrolling", False):
            step = 1.25 if touch.button in ("scrolldown", "scrollleft") else 0.8
            self.zoom_about(self.zoom * step, *touch.pos)
            return True
        if self.minimap_shown and viewport.on_minimap(
            self.session.shape, self.size, touch.x - self.x, touch.y - self.y
        ):
            touch.grab(self)  # pen or finger on the minimap: go there, never draw under it
            touch.ud["canvas_minimap"] = True
            self._minimap_to(touch)
            return True
        erase = is_eraser(touch)
        device_pen = erase or (is_pen(touch) and getattr(touch, "button", None) in (None, "left"))
        if not device_pen and any(is_pen(t) for t in self._pens.values()):
            return True  # palm rejection: a finger is swallowed while a pen is down
        if not device_pen and getattr(touch, "is_double_tap", False) and not self._fingers:
            self.toggle_fit(*touch.pos)
            return True
        pen = device_pen or self.finger_draws
        if pen and not device_pen and (self._pens or self._fingers):
            self._fingers_to_pinch()  # "finger draws": a second finger means navigate
            pen = False
        if pen:
            self._fingers.clear()
            self._end_pair()
            self._pens[touch.uid] = touch
            touch.grab(self)
            touch.ud["canvas_pen"] = True
            touch.ud["canvas_erase"] = erase
            self.on_pen_down()
            self._pen_down(touch)
            return True
        touch.grab(self)
        self._fingers[touch.uid] = tuple(touch.pos)
        self._start_pinch()
        return True

    def on_touch_move(self, touch: MotionEvent) -> bool:
        if touch.grab_current is not self:
            return self.collide_point(*touch.pos)
        if touch.ud.get("canvas_minimap"):
            self._minimap_to(touch)
        elif touch.ud.get("canvas_pen"):
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

    def _on_motion(self, _win: object, etype: str, me: MotionEvent) -> None:
        """A hovering pen shows the brush outline (its size in screen pixels at this zoom)
        before it touches, so the expert sees what the next dab will cover."""
        if getattr(me, "type_id", None) != "hover" or self.session is None or self._pens:
            return
        pos = (me.sx * (Window.width - 1), me.sy * (Window.height - 1))  # hover is not scaled
        if etype == "end" or not self.collide_point(*pos) or not is_pen(me):
            self._cursor.points = []
            return
        if self.tool in ("brush", "eraser") or is_eraser(me):
            radius = max(0.5, self.brush_size / 2.0)
            self._cursor.circle = (*pos, max(2.0, radius * self.zoom))

    def _radius(self, touch: MotionEvent) -> float:
        pressure = pressure_of(touch)
        scale = 1.0 if pressure is None else 0.25 + 0.75 * pressure
        return max(0.5, self.brush_size * scale / 2.0)

    def _pen_down(self, touch: MotionEvent) -> None:
        assert self.session is not None
        ix, iy = self.to_image(*touch.pos)
        erase = touch.ud.get("canvas_erase", False)
        try:
            if erase or self.tool in ("brush", "eraser"):
                radius = self._radius(touch)
                rect = self.session.begin_stroke(ix, iy, radius, erase or self.tool == "eraser")
                self._cursor.circle = (*touch.pos, max(2.0, radius * self.zoom))
                self._changed(rect)
            elif self.tool == "lasso":
                self._lasso = [(ix, iy)]
                self._lasso_line.points = list(touch.pos)
            elif self.tool == "fill":
                self._finish_gesture(self.session.fill(ix, iy))
            elif self.tool in marks.MARK_TOOLS:
                drag = marks.grab(self.session.objects, self.tool, ix, iy, self._grab())
                self._mark = (drag, tuple(touch.pos))
            else:
                self._object_tool(ix, iy)
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
        elif self._mark is not None:
            drag, start = self._mark
            tapped = marks.is_tap(start, touch.pos, mm(marks.TAP_MM))
            self._mark_shape = None if tapped else marks.shaped(drag, self.session, ix, iy)
            self._draw_marks()

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
        elif self._mark is not None:
            (drag, start), self._mark, self._mark_shape = self._mark, None, None
            ix, iy = self.to_image(*touch.pos)
            tapped = marks.is_tap(start, touch.pos, mm(marks.TAP_MM))
            rect, index = marks.finish(self.session, drag, ix, iy, tapped, self._grab())
            self.selected_mark = -1 if index is None else index
            self._finish_gesture(rect)
            self._draw_marks()
            if tapped or index is not None:
                self.on_mark(index, False)

    def _grab(self) -> float:
        """`marks.GRAB_MM` on the screen, in image pixels at this zoom."""
        return mm(marks.GRAB_MM) / max(self.zoom, 1e-6)

    def _object_tool(self, ix: float, iy: float) -> None:
        """Pick, Delete or Set class: a point or a box's outline under the pen first, then the
        mask there, then a box the pen is inside of."""
        assert self.session is not None
        session = self.session
        index = marks.mark_at(session.objects, ix, iy, self._grab())
        instance = session.instance_at(ix, iy)
        if index is None and instance == 0:
            index = session.object_at(ix, iy, self._grab())
        if index is None:
            self._instance_tool(instance)
        elif self.tool == "pick":
            self.selected_mark = index
            self.on_mark(index, True)
        elif self.tool == "delete":
            self.selected_mark = -1
            self._finish_gesture(session.delete_object(index))
        elif self.tool == "reclass":
            self._finish_gesture(session.set_object_class(index, session.active_class))

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
        self._mark, self._mark_shape = None, None
        self._draw_marks()
        for uid, touch in self._pens.items():
            touch.ud["canvas_pen"] = False
            self._fingers[uid] = tuple(touch.pos)
        self._pens.clear()

    def _start_pinch(self) -> None:
        """(Re)anchor the gesture whenever the set of fingers changes."""
        self._end_pair()
        if len(self._fingers) >= 2:
            (ax, ay), (bx, by) = list(self._fingers.values())[:2]
            ix, iy = self.to_image((ax + bx) / 2, (ay + by) / 2)
            self._pair = _Pair((ax, ay), (bx, by), self.zoom, ix, iy)

    def _end_pair(self) -> None:
        """The two-finger gesture is over: a brush drag hides its outline and reports the size."""
        pair, self._pair = self._pair, None
        if pair is not None and pair.mode == gesture.BRUSH:
            self._cursor.points = []
            self._size_text.size = (0, 0)
            self.on_brush_sized(self.brush_size)

    def _finger_move(self, touch: MotionEvent) -> None:
        old = self._fingers[touch.uid]
        self._fingers[touch.uid] = tuple(touch.pos)
        pair = self._pair
        if pair is not None and len(self._fingers) >= 2:
            a, b = list(self._fingers.values())[:2]
            if pair.mode == gesture.WAIT:
                pair.mode = gesture.classify(pair.a0, pair.b0, a, b, GESTURE_THRESHOLD)
                pair.size0, pair.lock_y = self.brush_size, (a[1] + b[1]) / 2
            if pair.mode == gesture.ZOOM:
                self._pinch_to(pair, a, b)
            elif pair.mode == gesture.BRUSH:
                self._brush_drag(pair, a, b)
        elif len(self._fingers) == 1:
            ox, oy = self.offset
            self._fitted = False
            self.offset = (ox + touch.pos[0] - old[0], oy + touch.pos[1] - old[1])
            self._layout()

    def _pinch_to(self, pair: _Pair, a: tuple[float, float], b: tuple[float, float]) -> None:
        """Zoom by the change of finger distance about the image point first under their
        midpoint, which follows the midpoint (so a two-finger drag pans)."""
        self._fitted = False
        factor = math.dist(a, b) / max(1.0, math.dist(pair.a0, pair.b0))
        self.zoom = min(MAX_ZOOM, max(self.min_zoom(), pair.zoom0 * factor))
        self._place(pair.ix, pair.iy, (a[0] + b[0]) / 2, (a[1] + b[1]) / 2)

    def _brush_drag(self, pair: _Pair, a: tuple[float, float], b: tuple[float, float]) -> None:
        """Resize the brush by the midpoint's vertical travel; show its outline and size."""
        limits = settings.BRUSH_SIZE
        mid = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
        low, high = int(limits.low or 1), int(limits.high or limits.default)
        size = gesture.brush_size(pair.size0, mid[1] - pair.lock_y, BRUSH_DOUBLING, low, high)
        self.brush_size = float(size)
        radius = max(2.0, size / 2.0 * self.zoom)
        self._cursor.circle = (*mid, radius)
        text = CoreLabel(
            text=f"{size} px", font_size=pt(11), bold=True, outline_width=2, outline_color=(0, 0, 0)
        )
        text.refresh()
        self._size_text.texture = text.texture
        self._size_text.size = text.texture.size
        self._size_text.pos = (mid[0] - text.texture.size[0] / 2, mid[1] + radius + mm(1))


def _over(under: np.ndarray, over: np.ndarray) -> np.ndarray:
    """RGBA pixels `over` blended onto RGB pixels `under` (as the GL blend would)."""
    alpha = over[..., 3:].astype(np.uint16)
    mixed = over[..., :3] * alpha + under * (255 - alpha) + 127
    return (mixed // 255).astype(np.uint8)


def _texture(size: tuple[int, int], fmt: str, mag: str, minf: str) -> Texture:
    tex = Texture.create(size=size, colorfmt=fmt, bufferfmt="ubyte", mipmap=False)
    tex.mag_filter = mag
    tex.min_filter = minf
    tex.flip_vertical()  # texture row 0 = image row 0, so dirty rects blit at (x0, y0)
    return tex
