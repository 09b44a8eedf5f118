"""Two-finger gesture classification (pure functions, no Kivy): brush drag vs pinch vs pan."""

from __future__ import annotations

import doctest
import math
import subprocess
import sys

import pytest

from appliance.session import gesture
from appliance.session.gesture import BRUSH, WAIT, ZOOM, brush_size, classify

T = 30.0  # threshold, screen px
A0, B0 = (500.0, 400.0), (700.0, 400.0)  # two fingers 200 px apart, side by side


def moved(p: tuple[float, float], dx: float, dy: float) -> tuple[float, float]:
    return p[0] + dx, p[1] + dy


def test_the_module_imports_no_kivy_and_its_examples_hold():
    code = "import appliance.session.gesture, sys; print('kivy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert doctest.testmod(gesture).failed == 0


@pytest.mark.parametrize("dy", [40.0, -40.0, 120.0])
def test_both_fingers_up_or_down_together_resize_the_brush(dy):
    # slightly uneven, as real fingers are: one 10 % behind, a little sideways drift
    a, b = moved(A0, 3, dy), moved(B0, -2, dy * 0.9)
    assert classify(A0, B0, a, b, T) == BRUSH


def test_fingers_one_above_the_other_dragged_vertically_resize_too():
    a0, b0 = (600.0, 300.0), (600.0, 500.0)
    assert classify(a0, b0, moved(a0, 0, 45), moved(b0, 0, 42), T) == BRUSH


@pytest.mark.parametrize(
    ("da", "db"),
    [
        ((-25, 0), (25, 0)),  # spread apart sideways
        ((15, 0), (-15, 0)),  # pinch in
        ((0, 0), (35, 0)),  # one finger still, the other moves away
        ((0, 35), (0, -35)),  # opposite vertical moves: a rotation/zoom, not a drag
    ],
)
def test_a_change_of_distance_or_opposite_moves_navigate(da, db):
    assert classify(A0, B0, moved(A0, *da), moved(B0, *db), T) == ZOOM


def test_a_diagonal_or_sideways_two_finger_drag_pans():
    assert classify(A0, B0, moved(A0, 40, 0), moved(B0, 40, 0), T) == ZOOM
    assert classify(A0, B0, moved(A0, 40, 40), moved(B0, 40, 40), T) == ZOOM


def test_a_pinch_whose_fingers_also_rise_is_a_zoom():
    # spread grows by 40 while the midpoint rises 40: distance change wins
    assert classify(A0, B0, moved(A0, -20, 40), moved(B0, 20, 40), T) == ZOOM


def test_one_finger_moving_alone_waits_for_the_other_then_navigates():
    # fingers are reported one at a time: a lone move first waits for the other's report
    assert classify(A0, B0, moved(A0, 0, 40), B0, T) == WAIT
    assert classify(A0, B0, moved(A0, 0, 40), moved(B0, 0, 38), T) == BRUSH
    # a finger that keeps moving alone (a rotation about the still one) navigates
    assert classify(A0, B0, moved(A0, 0, 2.5 * T), B0, T) == ZOOM


def test_nothing_is_decided_within_the_threshold():
    assert classify(A0, B0, moved(A0, 5, 12), moved(B0, -4, 10), T) == WAIT
    assert classify(A0, B0, A0, B0, T) == WAIT


def test_brush_size_doubles_per_step_is_continuous_and_clamped():
    assert brush_size(20, 0, 150, 1, 200) == 20
    assert brush_size(20, 150, 150, 1, 200) == 40
    assert brush_size(20, -150, 150, 1, 200) == 10
    assert brush_size(20, 75, 150, 1, 200) == round(20 * math.sqrt(2))
    assert brush_size(150, 500, 150, 1, 200) == 200
    assert brush_size(3, -900, 150, 1, 200) == 1
    sizes = [brush_size(20, dy, 150, 1, 200) for dy in range(-300, 301, 5)]
    assert sizes == sorted(sizes)  # monotonic: up is always bigger
