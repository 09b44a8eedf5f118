"""Issue 25: a frame of the annotate screen is cheap to draw, and still shows the right pixels.

Kivy redraws the whole window for any change (the busy spinner turns 20 times a second), so
what one frame rasterises is what the expert waits for between two frames: under Xvfb's
software GL a frame cost ~180 ms of CPU before, almost all of it pixels nobody sees (a
multisampled window, a full-window background under opaque panels, stencil passes,
transparent layers). These tests count what a frame rasterises (`testkit.overdraw`) and read
the drawn window back to check that the cheaper frame is still the same picture: the image's
pixels at fit, a stroke at once (at fit and zoomed in), nothing drawn outside the canvas.
"""

from __future__ import annotations

import numpy as np
import tifffile

from appliance.importer import import_paths
from appliance.store.project import Project
from testkit.touch import pen_stroke, pump, tap, wait_for

WINDOW_SHARE = 3.0  # a frame may rasterise at most this many windows' worth of pixels


def _budget(screen_name: str) -> tuple[float, str]:
    from kivy.core.window import Window

    from testkit.overdraw import rasterised

    tally = rasterised(Window.canvas, Window.size)
    share = tally.pixels / (Window.width * Window.height)
    return share, f"{screen_name}: {share:.2f} windows, largest {tally.largest()}"


def _opened_with_offer(opened_new, app, size: int):
    """The annotate screen on a `size`² image with its Otsu pre-label offered and drawn."""
    screen = opened_new(size=size, prelabel="otsu")
    _offer_drawn(screen, app)
    return screen, screen.canvas_view


def _offer_drawn(screen, app) -> None:
    canvas = screen.canvas_view
    wait_for(lambda: screen.offer is not None and not app.busy and not canvas.bands_pending)


def _frame() -> np.ndarray:
    """The window as drawn now, RGBA, indexed [y, x] with y up (Kivy's window coordinates)."""
    from kivy.core.window import Window
    from kivy.graphics.opengl import GL_RGBA, GL_UNSIGNED_BYTE, glReadPixels

    Window.canvas.ask_update()
    Window.dispatch("on_draw")  # the back buffer, before any swap
    width, height = Window.size
    data = glReadPixels(0, 0, width, height, GL_RGBA, GL_UNSIGNED_BYTE)
    return np.frombuffer(data, np.uint8).reshape(height, width, 4)


def test_a_frame_rasterises_about_two_windows_of_pixels_once_each(opened_new, app):
    """With a pre-label on offer, after Accept and edit, while holding to compare and with the
    object list open: at most `WINDOW_SHARE` windows of pixels, and one sample per pixel (was
    ~7 windows at 4 samples per pixel; now ~1.9-2.3 at one)."""
    from kivy.graphics.opengl import GL_SAMPLES, glGetIntegerv

    assert glGetIntegerv(GL_SAMPLES)[0] == 0  # no multisampling: each pixel shaded once
    screen, canvas = _opened_with_offer(opened_new, app, 1024)
    pump(2)
    share, why = _budget("offer")
    assert share <= WINDOW_SHARE, why
    tap(screen.buttons["offer_accept_edit"])
    wait_for(lambda: screen.offer is None and not canvas.bands_pending and not app.busy)
    pump(2)
    share, why = _budget("accepted")
    assert share <= WINDOW_SHARE, why
    canvas.hide_overlay = True  # "Raw" held: the overlay is not even rasterised
    pump(1)
    raw, why = _budget("raw")
    image_share = canvas._image_rect.size[0] * canvas._image_rect.size[1] / (1920 * 1200)
    assert raw <= share - image_share * 0.95, why
    canvas.hide_overlay = False
    screen.show_objects(True)
    pump(3)
    share, why = _budget("object list")
    assert share <= WINDOW_SHARE, why
    screen.show_objects(False)


def _blocks_image(folder, side: int = 2048, block: int = 256) -> None:
    """Flat squares of different greys: any one screen pixel inside a square is that grey."""
    folder.mkdir()
    yy, xx = np.mgrid[0:side, 0:side] // block
    tifffile.imwrite(folder / "blocks.tif", (30 + 25 * ((3 * yy + 5 * xx) % 9)).astype(np.uint8))


def test_the_cheap_frame_shows_the_image_a_stroke_at_once_and_nothing_outside(fresh, tmp_path):
    """A 2048² image. At fit: drawn from a level about its size on screen (not minified 2×
    or more), its own pixels where they should be, black only beside it; a pen stroke coloured
    in the very next frame, at fit and zoomed in 4× (from the full image then); zoomed in, the
    pixels around the canvas (panels, gaps) are what they were at fit: the clip holds."""
    _blocks_image(tmp_path / "src")
    project = Project.create(tmp_path / "p", ["nucleus"])
    assert len(import_paths(project, [tmp_path / "src"]).imported) == 1
    project.set_setting("ui.prelabel", "none")
    screen = fresh(project.root)
    canvas = screen.canvas_view
    display = screen.work.display
    wait_for(lambda: not canvas.bands_pending)
    drawn = canvas._image_rect
    assert drawn.texture.width < 2 * drawn.size[0]  # about 1:1, not 2048 texels onto ~940 px
    shot = _frame()

    def at(ix: float, iy: float) -> np.ndarray:
        x, y = canvas.to_window(ix, iy)
        return shot[int(y), int(x)].astype(int)

    for ix, iy in ((128, 128), (1152, 384), (1920, 1920), (640, 1408)):  # centres of squares
        assert np.array_equal(at(ix, iy)[:3], [display[iy, ix]] * 3), (ix, iy)
    left, _ = canvas.to_window(0, 0)
    if left - canvas.x > 4:  # letterboxed beside the image: black there
        assert np.array_equal(shot[int(canvas.center_y), int(canvas.x) + 2][:3], [0, 0, 0])
    around = [
        (int(canvas.x) - 3, int(canvas.center_y)),
        (int(canvas.right) + 2, int(canvas.center_y)),
        (int(canvas.center_x), int(canvas.top) + 2),
        (int(canvas.center_x), int(canvas.y) - 3),
    ]
    outside = [shot[y, x].copy() for x, y in around]

    def stroke_shows(iy: int) -> None:
        nonlocal shot
        before = _frame()
        a, b = canvas.to_window(900, iy), canvas.to_window(1100, iy)
        pen_stroke([a, ((a[0] + b[0]) / 2, a[1]), b])
        pump(1)  # the frame right after the pen events
        shot = _frame()
        x, y = canvas.to_window(1000, iy)
        grey = int(display[iy, 1000])
        assert canvas.session.instances[iy, 1000] != 0
        assert not np.array_equal(shot[int(y), int(x)], before[int(y), int(x)])
        from appliance.editing import Rect

        rgba = canvas.renderer.render(
            canvas.session.instances, canvas.session.classes, Rect(iy, 1000, iy + 1, 1001)
        )[0, 0].astype(float)
        alpha = rgba[3] / 255
        expected = grey * (1 - alpha) + rgba[:3] * alpha
        assert np.abs(shot[int(y), int(x)][:3] - expected).max() <= 3

    stroke_shows(640)
    layer = canvas._overlay_rect
    assert tuple(layer.size) == (0, 0)  # the overlay is drawn into the image's level
    assert drawn.texture is canvas._layer_levels["composite"]
    x, y = (int(v) for v in canvas.to_window(1000, 640))
    canvas.hide_overlay = True  # "Raw" held: the image alone, then the stroke again
    assert np.array_equal(_frame()[y, x][:3], [display[640, 1000]] * 3)
    canvas.hide_overlay = False
    assert np.array_equal(_frame()[y, x], shot[y, x])
    canvas.zoom_about(canvas.zoom * 4, *canvas.to_window(1000, 1280))
    pump(2)
    assert drawn.texture is canvas._image_tex  # zoomed in: every image pixel
    assert layer.texture is canvas._overlay_tex and layer.size[0] > 0
    stroke_shows(1280)
    zoomed = _frame()
    for (x, y), was in zip(around, outside, strict=True):
        assert np.array_equal(zoomed[y, x], was), (x, y)
    assert not np.array_equal(zoomed[int(canvas.center_y), int(canvas.x) + 2][:3], [0, 0, 0])


def test_zoomed_out_an_offer_is_drawn_into_the_picture_and_leaves_it_whole(opened_new, app):
    """A 2048² image with a pre-label on offer, at fit: its outlines are in the one picture
    drawn (no layer of their own), once all their bands are in; Reject takes them out again,
    leaving exactly the image and the label; Accept and edit puts the objects in."""
    from appliance.ui.canvas import _over

    screen, canvas = _opened_with_offer(opened_new, app, 2048)
    pump(2)
    px = canvas._level_px
    assert canvas._layer_step == 2 and tuple(canvas._offer_rect.size) == (0, 0)
    outlines = px["offer"][..., 3] > 0
    assert outlines.any() and canvas._image_rect.texture is canvas._layer_levels["composite"]
    plain = _over(px["image"], px["label"])
    assert np.array_equal(px["composite"][outlines], _over(plain, px["offer"])[outlines])
    assert np.array_equal(px["composite"][~outlines], plain[~outlines])
    shown = _frame()
    tap(screen.buttons["offer_reject"])
    wait_for(lambda: screen.offer is None and not canvas.bands_pending)
    pump(2)
    assert np.array_equal(px["composite"], _over(px["image"], px["label"]))
    assert not np.array_equal(_frame(), shown)  # the outlines left the screen
    screen.presenter._start_prelabel()  # the same pre-label again (as the bench does)
    _offer_drawn(screen, app)
    tap(screen.buttons["offer_accept_edit"])
    wait_for(lambda: screen.offer is None and not canvas.bands_pending and not app.busy)
    pump(2)
    label = px["label"][..., 3] > 0
    assert label.any() and np.array_equal(px["composite"], _over(px["image"], px["label"]))
