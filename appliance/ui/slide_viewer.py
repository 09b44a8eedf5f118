"""The slide viewer: pans and zooms a whole slide from its pyramid; pen marks cells.

Only the tiles of the visible level that intersect the widget are read (on the job worker,
through the core `TileCache`), and a tile already read is drawn in the same frame. Under the
tiles the overview (the coarsest level, read once) is always drawn, so panning never shows a
blank. Input: a pen tap places a point of the active class, a pen drag draws a box (both on
the open region, one undo step each); a pen landing on a point drags it along, on a box's
corner or edge resizes or moves the box (`appliance.session.marks`, as on the annotate
screen); a finger tap selects the point or box under it (for the screen's Delete and Re-class);
one finger pans, two fingers pinch-zoom, the mouse wheel zooms about the pointer. The region
being annotated is outlined.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from kivy.app import App
from kivy.clock import Clock
from kivy.graphics import Color, Line, Rectangle
from kivy.graphics.texture import Texture
from kivy.input.motionevent import MotionEvent
from kivy.metrics import dp, mm
from kivy.uix.stencilview import StencilView

from appliance.labels import CellObject
from appliance.session.marks import GRAB_MM, SELECT_MM, TAP_MM, MarkDrag, is_tap
from appliance.session.slide_view import SlideViewport, TileKey
from appliance.session.slide_work import SlideWork
from appliance.store.classes import colours
from appliance.ui.canvas import is_pen
from appliance.ui.marks import draw_marks

__all__ = ["SlideViewer"]


def _texture(rgb: np.ndarray) -> Texture:
    h, w = rgb.shape[:2]
    tex = Texture.create(size=(w, h), colorfmt="rgb")
    tex.blit_buffer(np.ascontiguousarray(rgb[::-1]).tobytes(), colorfmt="rgb", bufferfmt="ubyte")
    tex.mag_filter = "nearest"  # full resolution and beyond shows exact pixels
    return tex


class SlideViewer(StencilView):
    """Draws `work`'s slide through a `SlideViewport`; `on_marked()` runs after each mark."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.work: SlideWork | None = None
        self.viewport: SlideViewport | None = None
        self.textures: dict[TileKey, Texture] = {}
        self.overview: Texture | None = None
        self.pending: set[TileKey] = set()
        self.on_marked: Any = None
        self.selected: int | None = None  # index into the region's objects
        self.colours: dict[int, tuple[int, int, int]] = {}  # the classes' chosen colours
        self._finger_start: dict[int, tuple[float, float]] = {}
        self._pen: tuple[MotionEvent, float, float, MarkDrag] | None = None
        self._fingers: dict[int, tuple[float, float]] = {}
        self._shape: CellObject | None = None  # the mark the pen shapes (level-0 coordinates)
        self._fitted: tuple[float, float, float] | None = None  # the view `fit` gave
        self._sized = False  # whether the layout gave the viewer its size yet
        self._redraw_soon = Clock.create_trigger(lambda _dt: self.redraw())
        self.bind(size=self._resized, pos=lambda *_: self.redraw())

    # ----- opening -------------------------------------------------------------------------
    def show(self, work: SlideWork) -> None:
        """Show a region's slide, fitted (the overview)."""
        self.work = work
        self.colours = colours(work.work.project)
        self.textures.clear()
        self.pending.clear()
        self.viewport = SlideViewport(work.slide.info, (max(self.width, 1), max(self.height, 1)))
        self._fit()
        self.overview = _texture(work.overview())
        if self._sized:  # else the layout's first size fits and draws it (`_resized`), so no
            self.redraw()  # tile is read for a size the viewer never shows

    def _fit(self) -> None:
        assert self.viewport is not None
        self.viewport.fit()
        vp = self.viewport
        self._fitted = (vp.x, vp.y, vp.scale)

    def _resized(self, *_: object) -> None:
        """A new size keeps the view; an untouched overview is fitted again (the first show
        happens before the layout gives the viewer its size)."""
        self._sized = True
        if self.viewport is not None:
            vp = self.viewport
            untouched = (vp.x, vp.y, vp.scale) == self._fitted
            vp.size = (max(self.width, 1), max(self.height, 1))
            if untouched:
                self._fit()
            self._redraw_soon()  # once per frame: a layout passes through sizes it never shows

    # ----- view commands -------------------------------------------------------------------
    def fit(self) -> None:
        if self.viewport is not None:
            self._fit()
            self.redraw()

    def full_resolution(self) -> None:
        """One screen pixel per level-0 pixel, centred on the region (40x on a 40x scan)."""
        if self.viewport is not None and self.work is not None:
            r = self.work.region
            self.viewport.centre_on(r.x + r.width / 2, r.y + r.height / 2, 1.0)
            self.redraw()

    def zoom(self, factor: float) -> None:
        if self.viewport is not None:
            self.viewport.zoom_about(factor, self.width / 2, self.height / 2)
            self.redraw()

    # ----- coordinates ---------------------------------------------------------------------
    def _local(self, wx: float, wy: float) -> tuple[float, float]:
        """Widget point, origin top-left, y down (the viewport's convention)."""
        return wx - self.x, self.top - wy

    def _window(self, sx: float, sy: float) -> tuple[float, float]:
        return self.x + sx, self.top - sy

    def slide_to_window(self, x: float, y: float) -> tuple[float, float]:
        """Window point of level-0 point (x, y) (tests aim the pen with it)."""
        assert self.viewport is not None
        return self._window(*self.viewport.to_screen(x, y))

    # ----- drawing -------------------------------------------------------------------------
    def redraw(self) -> None:
        """Overview, visible tiles (cached ones now, others once read), region, marks."""
        vp, work = self.viewport, self.work
        self.canvas.clear()
        if vp is None or work is None:
            return
        cache = work.tiles
        wanted = vp.visible_tiles()
        with self.canvas:
            Color(1, 1, 1, 1)
            if self.overview is not None:
                left, top = vp.to_screen(0, 0)
                w, h = vp.info.width * vp.scale, vp.info.height * vp.scale
                self._rect(self.overview, left, top, w, h)
            for key in wanted:
                tex = self.textures.get(key)
                if tex is None:
                    tile = cache.peek(key)
                    if tile is not None:
                        tex = self.textures[key] = _texture(tile)
                if tex is not None:
                    self._rect(tex, *vp.tile_rect(key))
                else:
                    self._request(key)
        self._draw_marks()
        keep = set(wanted)
        for key in [k for k in self.textures if k not in keep]:
            del self.textures[key]  # the core cache keeps the pixels; textures only while shown

    def _rect(self, tex: Texture, left: float, top: float, w: float, h: float) -> None:
        x, y = self._window(left, top + h)
        Rectangle(texture=tex, pos=(x, y), size=(w, h))

    def _draw_marks(self) -> None:
        assert self.viewport is not None and self.work is not None
        vp, r, canvas = self.viewport, self.work.region, self.canvas
        canvas.add(Color(1, 0.85, 0, 1))
        left, top = vp.to_screen(r.x, r.y)
        x, y = self._window(left, top + r.height * vp.scale)
        canvas.add(Line(rectangle=(x, y, r.width * vp.scale, r.height * vp.scale), width=dp(1)))
        objects, selected = tuple(self.work.objects()), self.selected
        if self._pen is not None and self._shape is not None:  # the mark being shaped
            k = self._pen[3].index
            if k is None:
                objects, selected = (*objects, self._shape), len(objects)
            else:
                objects, selected = (*objects[:k], self._shape, *objects[k + 1 :]), k
        draw_marks(canvas, objects, self.slide_to_window, self.colours, selected)

    def _request(self, key: TileKey) -> None:
        """Read a tile on the worker; draw again when it is in the cache."""
        if key in self.pending or self.work is None:
            return
        self.pending.add(key)
        cache = self.work.tiles
        app = App.get_running_app()

        def done(_tile: object) -> None:
            self.pending.discard(key)
            self.redraw()

        def failed(exc: BaseException) -> None:
            self.pending.discard(key)
            app.show_error(exc)

        app.run_job(lambda _ctx: cache.get(key), done, key=("slide-tile", key), failed=failed)

    def _select(self, wx: float, wy: float) -> None:
        """Select the point or box under a finger tap (a point within 4 mm), or nothing."""
        if self.work is None or self.viewport is None:
            return
        x, y = self.viewport.to_slide(*self._local(wx, wy))
        self.selected = self.work.object_at(x, y, mm(SELECT_MM) / self.viewport.scale)
        self.redraw()
        if self.on_marked is not None:
            self.on_marked()

    # ----- input ---------------------------------------------------------------------------
    def on_touch_down(self, touch: MotionEvent) -> bool:
        if not self.collide_point(*touch.pos) or self.viewport is None:
            return False
        if getattr(touch, "is_mouse_scrolling", False):
            factor = 1.25 if touch.button == "scrolldown" else 0.8
            self.viewport.zoom_about(factor, *self._local(*touch.pos))
            self.redraw()
            return True
        touch.grab(self)
        if is_pen(touch) and getattr(touch, "button", "left") in (None, "left"):
            if self.work is not None:
                at = self.viewport.to_slide(*self._local(*touch.pos))
                drag = self.work.grab(*at, mm(GRAB_MM) / self.viewport.scale)
                self._pen, self._shape = (touch, *touch.pos, drag), None
        else:
            self._fingers[touch.uid] = touch.pos
            self._finger_start[touch.uid] = touch.pos
        return True

    def on_touch_move(self, touch: MotionEvent) -> bool:
        if touch.grab_current is not self or self.viewport is None:
            return False
        if self._pen is not None and self._pen[0] is touch:
            _, x0, y0, drag = self._pen
            at = self.viewport.to_slide(*self._local(*touch.pos))
            tapped = is_tap((x0, y0), touch.pos, mm(TAP_MM))
            self._shape = None if tapped or self.work is None else self.work.shaped(drag, *at)
            self.redraw()
            return True
        old = self._fingers.get(touch.uid)
        if old is None:
            return True
        if len(self._fingers) >= 2:
            other = next(p for uid, p in self._fingers.items() if uid != touch.uid)
            before = math.dist(old, other)
            after = math.dist(touch.pos, other)
            if before > 0:
                mid = ((touch.pos[0] + other[0]) / 2, (touch.pos[1] + other[1]) / 2)
                self.viewport.zoom_about(after / before, *self._local(*mid))
        else:
            self.viewport.pan(touch.pos[0] - old[0], -(touch.pos[1] - old[1]))
        self._fingers[touch.uid] = touch.pos
        self.redraw()
        return True

    def on_touch_up(self, touch: MotionEvent) -> bool:
        if touch.grab_current is not self:
            return False
        touch.ungrab(self)
        self._fingers.pop(touch.uid, None)
        start = self._finger_start.pop(touch.uid, None)
        if start is not None and not self._fingers and is_tap(start, touch.pos, mm(TAP_MM)):
            self._select(*touch.pos)
            return True
        if self._pen is None or self._pen[0] is not touch or self.work is None:
            return True
        _, x0, y0, drag = self._pen
        self._pen, self._shape = None, None
        assert self.viewport is not None
        b = self.viewport.to_slide(*self._local(*touch.pos))
        tapped = is_tap((x0, y0), touch.pos, mm(TAP_MM))
        marked, index = self.work.finish(drag, *b, tapped)
        if index is not None:
            self.selected = index  # a tapped or moved mark: Delete and Re-class act on it
        self.redraw()
        if (marked or index is not None) and self.on_marked is not None:
            self.on_marked()
        return True
