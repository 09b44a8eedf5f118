"""Property test of `EditSession`: any sequence of gestures, undone, gives back the original
label exactly (instances and classes), and redoing as many steps gives back the edited one."""

from __future__ import annotations

import contextlib

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance import editing
from appliance.editing import EditSession
from appliance.errors import ApplianceError
from appliance.labels import Label
from testkit.synthetic import make_instances

H, W = 24, 32
xs = st.floats(-2.0, W + 2.0, allow_nan=False)  # a little outside the image too
ys = st.floats(-2.0, H + 2.0, allow_nan=False)
points = st.tuples(xs, ys)
radii = st.floats(0.5, 6.0)
instance_ids = st.integers(0, 12)
class_ids = st.integers(1, 3)

gestures = st.one_of(
    st.tuples(st.just("stroke"), st.lists(points, min_size=1, max_size=5), radii, st.booleans()),
    st.tuples(st.just("cancelled"), st.lists(points, min_size=1, max_size=3), radii),
    st.tuples(st.just("fill"), points),
    st.tuples(st.just("lasso"), st.lists(points, min_size=0, max_size=6)),
    st.tuples(st.just("delete"), instance_ids),
    st.tuples(st.just("set_class"), instance_ids, class_ids),
    st.tuples(st.just("replace"), st.integers(0, 6), st.integers(0, 1000)),
    st.tuples(st.just("undo")),
    st.tuples(st.just("class"), class_ids),
)


def apply(session: EditSession, gesture: tuple) -> None:
    kind, *args = gesture
    if kind == "stroke":
        (x, y), *rest = args[0]
        session.begin_stroke(x, y, args[1], erase=args[2])
        for px, py in rest:
            session.stroke_to(px, py, args[1])
        session.end_stroke()
    elif kind == "cancelled":  # a second finger came down mid-stroke
        (x, y), *rest = args[0]
        session.begin_stroke(x, y, args[1])
        for px, py in rest:
            session.stroke_to(px, py, args[1])
        session.cancel_stroke()
    elif kind == "fill":
        with contextlib.suppress(ApplianceError):  # open to the border: refused, no change
            session.fill(*args[0])
    elif kind == "lasso":
        session.lasso(args[0])
    elif kind == "delete":
        session.delete_instance(args[0])
    elif kind == "set_class":
        session.set_class(args[0], args[1])
    elif kind == "replace":
        n, seed = args
        session.replace(Label(make_instances((H, W), n, seed), {i: 1 + i % 3 for i in range(n)}))
    elif kind == "undo":
        session.undo()
    elif kind == "class":
        session.active_class = args[0]


def same(a: Label, b: Label) -> bool:
    return np.array_equal(a.instances, b.instances) and a.classes == b.classes


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 8),
    seed=st.integers(0, 1000),
    gestures=st.lists(gestures, max_size=12),
)
def test_undo_everything_restores_the_original(n: int, seed: int, gestures: list) -> None:
    original = Label(make_instances((H, W), n, seed), {i: 1 + i % 2 for i in range(1, n + 1)})
    session = EditSession(original)
    start = session.label()
    for gesture in gestures:
        apply(session, gesture)
    edited = session.label()
    undone = 0
    while session.can_undo:
        session.undo()
        undone += 1
    assert same(session.label(), start)
    assert np.array_equal(session.instances, original.instances)
    for _ in range(undone):
        session.redo()
    assert same(session.label(), edited)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 8),
    seed=st.integers(0, 1000),
    gestures=st.lists(st.one_of(gestures, st.tuples(st.just("redo"))), max_size=14),
    share=st.sampled_from(
        [editing.RECOUNT_SHARE, 2.0]
    ),  # 2.0: even `replace` kept, never recounted
)
def test_the_kept_areas_equal_a_full_count_after_every_gesture(
    n: int, seed: int, gestures: list, share: float
) -> None:
    original = Label(make_instances((H, W), n, seed), {i: 1 + i % 2 for i in range(1, n + 1)})
    session = EditSession(original)
    assert session.areas() == editing.areas(original.instances)
    default, editing.RECOUNT_SHARE = editing.RECOUNT_SHARE, share
    try:
        for gesture in gestures:
            if gesture == ("redo",):
                session.redo()
            else:
                apply(session, gesture)
            assert session.areas() == editing.areas(session.instances), gesture
            assert set(session.classes) >= set(session.areas())  # every object has a class
            assert all(i in session.areas() for i in session.classes)  # none kept once gone
        while session.can_undo:
            session.undo()
            assert session.areas() == editing.areas(session.instances)
    finally:
        editing.RECOUNT_SHARE = default


def test_areas_after_a_stroke_count_only_the_pixels_it_changed(monkeypatch) -> None:
    """Asking for the areas after each stroke (the object list does) never counts the whole
    label again: only the before/after pixels of the stroke's rectangles."""
    label = Label(make_instances((512, 512), 40, 3), {})
    session = EditSession(label)
    session.areas()  # the one full count, when the list is first opened
    counted: list[int] = []
    real = editing.areas

    def counting(pixels: np.ndarray) -> dict[int, int]:
        counted.append(pixels.size)
        return real(pixels)

    monkeypatch.setattr(editing, "areas", counting)
    session.begin_stroke(100.0, 100.0, 6.0)
    session.stroke_to(140.0, 110.0, 6.0)
    rect = session.end_stroke()
    kept = session.areas()
    session.begin_stroke(300.0, 300.0, 4.0, erase=True)
    session.end_stroke()
    session.undo()
    session.redo()
    session.areas()
    assert rect is not None and counted and max(counted) <= rect.height * rect.width
    assert sum(counted) < label.instances.size / 20
    monkeypatch.setattr(editing, "areas", real)
    assert session.areas() == real(session.instances)
    assert kept != real(label.instances)  # the stroke's object grew
