"""Overlay rendering: colours by class, opaque outlines, regions identical to a full render."""

from __future__ import annotations

import numpy as np

from appliance.editing import Rect
from appliance.labels import Label
from appliance.overlay import (
    OverlayRenderer,
    boundary,
    class_colour,
    display_rect,
    most_opaque,
)


def _label():
    inst = np.zeros((30, 40), np.uint32)
    inst[5:15, 5:15] = 1
    inst[5:15, 15:25] = 2
    inst[20:28, 30:38] = 3
    return Label(inst, {1: 1, 2: 1, 3: 2})


def test_background_transparent_fill_at_opacity_outline_opaque():
    lab = _label()
    out = OverlayRenderer(opacity=0.4).render(lab.instances, lab.classes, Rect.full(lab.shape))
    assert out.shape == (30, 40, 4) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert out[0, 0, 3] == 0
    assert out[10, 10, 3] == round(0.4 * 255)
    assert out[5, 10, 3] == 255 and tuple(out[5, 10, :3]) == class_colour(1)
    assert tuple(out[24, 30, :3]) == class_colour(2)


def test_touching_instances_have_an_outline_between_them():
    lab = _label()
    edge = boundary(lab.instances, Rect.full(lab.shape))
    assert edge[10, 14] and edge[10, 15]
    assert not edge[10, 10]
    assert not edge[0, 0]


def test_region_render_equals_crop_of_full_render():
    lab = _label()
    r = OverlayRenderer()
    full = r.render(lab.instances, lab.classes, Rect.full(lab.shape))
    rect = Rect(3, 12, 22, 33)
    part = r.render(lab.instances, lab.classes, rect)
    assert np.array_equal(part, full[3:22, 12:33])


def test_image_border_is_not_an_outline():
    inst = np.ones((10, 10), np.uint32)
    edge = boundary(inst, Rect.full(inst.shape))
    assert not edge.any()


def test_unknown_instance_gets_default_class_and_selected_is_white():
    inst = np.zeros((12, 12), np.uint32)
    inst[2:10, 2:10] = 9
    out = OverlayRenderer().render(inst, {}, Rect.full(inst.shape), selected=9)
    assert tuple(out[2, 5, :3]) == (255, 255, 255)
    assert out[5, 5, 3] > OverlayRenderer().render(inst, {}, Rect.full(inst.shape))[5, 5, 3]


def test_display_rect_grows_for_outlines():
    assert display_rect(Rect(5, 5, 10, 10), (12, 12)) == Rect(4, 4, 11, 11)
    assert display_rect(Rect(0, 0, 12, 12), (12, 12)) == Rect(0, 0, 12, 12)


def test_the_zoomed_out_level_keeps_every_outline_and_each_blocks_most_opaque_pixel():
    """`most_opaque`: a rendered label 2× and 3× smaller (an odd size: padded blocks) keeps in
    each block the pixel with the highest alpha, so a one-pixel outline never breaks up."""
    rng = np.random.default_rng(3)
    inst = np.zeros((61, 47), np.uint32)
    for i in range(1, 9):
        y, x = rng.integers(4, 40, 2)
        inst[y : y + rng.integers(5, 20), x : x + rng.integers(5, 20)] = i
    rgba = OverlayRenderer(opacity=0.4).render(inst, {}, Rect.full(inst.shape))
    for step in (2, 3):
        small = most_opaque(rgba, step)
        h, w = -(-61 // step), -(-47 // step)
        assert small.shape == (h, w, 4)
        for by in range(h):
            for bx in range(w):
                block = rgba[by * step : (by + 1) * step, bx * step : (bx + 1) * step]
                assert small[by, bx, 3] == block[..., 3].max()
                assert any((small[by, bx] == px).all() for px in block.reshape(-1, 4))
        edges = boundary(inst, Rect.full(inst.shape))
        ys, xs = np.nonzero(edges)
        assert (small[ys // step, xs // step, 3] == 255).all()  # every outline pixel shows
