"""Point and box objects beside the instance map: model, encoding, store, editing."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from appliance.editing import EditSession
from appliance.errors import ApplianceError
from appliance.labels import (
    Box,
    Label,
    Point,
    decode_instances,
    decode_label,
    encode_instances,
    encode_label,
)
from appliance.store.project import Project


def _label() -> Label:
    inst = np.zeros((20, 30), np.uint32)
    inst[2:5, 3:9] = 7
    return Label(inst, {7: 2}, (Point(10.25, 4.5, 1), Box(12, 3, 20.5, 9, 2), Point(0, 0, 2)))


def test_objects_round_trip_through_encoding_exactly() -> None:
    lab = _label()
    back = decode_label(encode_label(lab), lab.classes)
    assert back.equals(lab)
    assert back.points == [Point(10.25, 4.5, 1), Point(0, 0, 2)]
    assert back.boxes == [Box(12, 3, 20.5, 9, 2)]
    assert back.count() == 4


def test_label_without_objects_is_still_written_in_format_1() -> None:
    """Older readers (another tablet, an old lab) keep decoding labels that have no objects."""
    inst = np.arange(12, dtype=np.uint32).reshape(3, 4)
    blob = encode_label(Label(inst, {}))
    assert blob == encode_instances(inst)
    assert blob[4] == 1
    assert decode_label(blob, {}).objects == ()


def test_format_2_instances_decode_for_mask_only_readers() -> None:
    lab = _label()
    assert np.array_equal(decode_instances(encode_label(lab)), lab.instances)


def test_corrupt_object_records_are_refused() -> None:
    blob = encode_label(_label())
    header, body = blob[:13], zlib.decompress(blob[13:])
    with pytest.raises(ApplianceError, match="cut short"):
        decode_label(header + zlib.compress(body[:-3]), {})
    bad_kind = bytearray(body)
    n_runs = int.from_bytes(body[:4], "little")
    bad_kind[4 + 8 * n_runs] = 9
    with pytest.raises(ApplianceError, match="unknown object kind 9"):
        decode_label(header + zlib.compress(bytes(bad_kind)), {})
    nan = bytearray(body)
    nan[4 + 8 * n_runs + 5 : 4 + 8 * n_runs + 13] = np.float64("nan").tobytes()
    with pytest.raises(ApplianceError, match="finite"):
        decode_label(header + zlib.compress(bytes(nan)), {})


@pytest.mark.parametrize(
    "obj",
    [
        lambda: Point(-0.1, 3),
        lambda: Point(5, 20.01),
        lambda: Box(0, 0, 31, 5),
    ],
)
def test_objects_off_the_image_are_refused(obj) -> None:
    with pytest.raises(ApplianceError, match="outside the image"):
        Label(np.zeros((20, 30), np.uint32), {}, (obj(),))


def test_degenerate_box_and_bad_class_are_refused() -> None:
    with pytest.raises(ApplianceError, match="width and a height"):
        Box(3, 3, 3, 9)
    with pytest.raises(ApplianceError, match="class id"):
        Point(1, 1, 0)
    with pytest.raises(ApplianceError, match="finite"):
        Point(float("inf"), 1)


def test_store_keeps_objects_per_version_and_counts_them(tmp_path) -> None:
    import cv2

    project = Project.create(tmp_path / "p", classes=["a", "b"])
    img = tmp_path / "im.png"
    cv2.imwrite(str(img), np.zeros((20, 30), np.uint8))
    from appliance.importer import import_paths

    (image_id,) = import_paths(project, [img]).imported
    first = project.save_label(image_id, Label.empty((20, 30)), author="x", source="manual")
    second = project.save_label(image_id, _label(), author="x", source="manual", parent_id=first)
    project.close()
    again = Project.open(tmp_path / "p")
    assert again.label_version(first).label.objects == ()
    assert again.label_version(second).label.equals(_label())
    assert again.label_version(second).n_instances == 1  # mask instances (what sync checks)
    assert again.label_version(second).label.count() == 4


def test_editing_points_and_boxes_are_one_undo_step_each() -> None:
    s = EditSession(Label.empty((20, 30)), active_class=1)
    assert s.place_point(4.5, 5.5) is not None
    s.active_class = 2
    assert s.draw_box(20, 15, 10, 2) is not None  # dragged up-left: corners put in order
    assert s.label().objects == (Point(4.5, 5.5, 1), Box(10, 2, 20, 15, 2))
    assert s.object_at(5, 6, tolerance=1.0) == 0
    assert s.object_at(15, 10, tolerance=1.0) == 1
    assert s.object_at(25, 18, tolerance=1.0) is None
    s.set_object_class(0, 2)
    s.delete_object(1)
    assert s.label().objects == (Point(4.5, 5.5, 2),)
    s.undo()
    assert s.label().objects == (Point(4.5, 5.5, 2), Box(10, 2, 20, 15, 2))
    s.undo()
    s.undo()
    assert s.label().objects == (Point(4.5, 5.5, 1),)
    s.redo()
    assert s.label().objects == (Point(4.5, 5.5, 1), Box(10, 2, 20, 15, 2))
    s.undo()
    s.undo()
    assert s.label().objects == () and not s.can_undo


def test_slipped_taps_outside_or_tiny_drags_change_nothing() -> None:
    s = EditSession(Label.empty((20, 30)))
    assert s.place_point(31, 5) is None
    assert s.draw_box(3, 3, 4, 4) is None
    assert s.draw_box(-50, -50, 1, 30) is None  # clipped to the image: 1 pixel wide
    assert s.draw_box(-5, -5, 4, 40) is not None
    assert s.label().objects == (Box(0, 0, 4, 20),)
    assert s.delete_object(5) is None and s.set_object_class(0, 1) is None


def test_strokes_keep_objects_and_replace_keeps_them_unless_given() -> None:
    s = EditSession(_label())
    s.begin_stroke(25, 15, 2)
    s.end_stroke()
    assert s.label().objects == _label().objects
    s.replace(Label.empty((20, 30)))
    assert s.label().objects == _label().objects
    s.replace(Label(np.zeros((20, 30)), {}, (Point(1, 1),)))
    assert s.label().objects == (Point(1, 1),)
    s.undo()
    assert s.label().objects == _label().objects


def test_a_crash_draft_keeps_points_and_boxes(tmp_path) -> None:
    """The draft written after each gesture holds the objects, so a crash loses none."""
    import cv2

    from appliance.importer import import_paths
    from appliance.session.workflow import ImageWork

    project = Project.create(tmp_path / "p", classes=["a", "b"])
    img = tmp_path / "im.png"
    cv2.imwrite(str(img), np.zeros((20, 30), np.uint8))
    (image_id,) = import_paths(project, [img]).imported
    work = ImageWork(project, image_id, "vet", active_class=2)
    work.session.place_point(3.5, 4.5)
    work.session.draw_box(10, 2, 20, 12)
    work.save_draft()
    project.close()  # the app dies here
    again = Project.open(tmp_path / "p")
    recovered = ImageWork(again, image_id, "vet")
    assert recovered.recovered and recovered.has_label
    assert recovered.session.label().objects == (Point(3.5, 4.5, 2), Box(10, 2, 20, 12, 2))


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"kind": "circle", "x": 1, "y": 1, "class_id": 1}, "kind 'point' or 'box'"),
        ([1, 2], "kind 'point' or 'box'"),
        ({"kind": "point", "x": True, "y": 1, "class_id": 1}, "needs numbers"),
        ({"kind": "point", "x": "1", "y": 1, "class_id": 1}, "needs numbers"),
        ({"kind": "box", "x0": 1, "y0": 1, "x1": 2, "class_id": 1}, "needs numbers"),
        ({"kind": "point", "x": float("nan"), "y": 1, "class_id": 1}, "finite"),
        ({"kind": "point", "x": 1, "y": 1, "class_id": 1.5}, "not an integer"),
        ({"kind": "point", "x": 1, "y": 1, "class_id": 0}, "class id"),
    ],
)
def test_objects_from_json_are_checked(data: object, needle: str) -> None:
    from appliance.labels import object_from_dict

    with pytest.raises(ApplianceError, match=needle):
        object_from_dict(data)


def test_objects_to_json_and_back() -> None:
    from appliance.labels import object_from_dict, object_to_dict

    for obj in _label().objects:
        assert object_from_dict(object_to_dict(obj)) == obj


def test_a_label_with_objects_syncs_to_another_tablet(tmp_path) -> None:
    """The receiving tablet's check of a pulled version (the lab server's own check) accepts
    format 2, and the version arrives with its points and boxes."""
    import cv2

    from appliance.importer import import_paths
    from appliance.store.sync_log import apply_remote, pending

    a = Project.create(tmp_path / "a", classes=["a", "b"])
    img = tmp_path / "im.png"
    cv2.imwrite(str(img), np.zeros((20, 30), np.uint8))
    (image_id,) = import_paths(a, [img]).imported
    a.save_label(image_id, _label(), author="vet", source="manual")
    ops = pending(a)
    original = a.image(image_id)
    b = Project.create(tmp_path / "b", classes=["a", "b"])
    new, refused = apply_remote(b, ops, len(ops), staged={original.sha256: original.path})
    assert refused == [] and new == len(ops)
    (rec,) = b.images()
    got = b.latest_label(rec.id)
    assert got is not None and got.label.equals(_label())
    # a device sending an object off the image is refused, not stored as a damaged version
    import base64

    from appliance.labels import encode_label

    bad = Label(np.zeros((20, 30), np.uint32), {}, (Point(1, 1),))
    blob = bytearray(encode_label(bad))
    body = zlib.decompress(bytes(blob[13:]))
    n = int.from_bytes(body[:4], "little")
    body = body[: 4 + 8 * n + 5] + np.float64(99.0).tobytes() + body[4 + 8 * n + 13 :]
    forged = ops[-1].payload | {
        "uid": "f" * 32,
        "parent": None,
        "n_instances": 0,
        "classes": "{}",
        "instances": base64.b64encode(bytes(blob[:13]) + zlib.compress(body)).decode(),
    }
    forged_op = type(ops[-1])(uid="e" * 32, kind=ops[-1].kind, ref="f" * 32, payload=forged)
    _, refused = apply_remote(b, [forged_op], len(ops) + 1)
    assert len(refused) == 1 and "outside the image" in refused[0]
