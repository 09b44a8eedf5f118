import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from appliance.errors import ApplianceError
from appliance.labels import Label, decode_instances, encode_instances
from testkit.synthetic import make_instances

instance_maps = arrays(
    np.uint32,
    st.tuples(st.integers(1, 24), st.integers(1, 24)),
    elements=st.sampled_from([0, 0, 0, 1, 2, 5, 70000, 2**32 - 1]),
)


@given(instance_maps)
@settings(max_examples=60, deadline=None)
def test_instances_coco_rle_instances_identity(arr: np.ndarray) -> None:
    label = Label(arr, {int(i): 1 + int(i) % 2 for i in np.unique(arr) if i})
    rles = [(p.id, p.class_id, rle) for p, rle in label.to_coco_rles()]
    back = Label.from_coco_rles(arr.shape, rles)
    assert back.equals(label)


@given(arrays(np.bool_, st.tuples(st.integers(1, 30), st.integers(1, 30))))
@settings(max_examples=60, deadline=None)
def test_binary_instances_binary_identity(mask: np.ndarray) -> None:
    assert np.array_equal(Label.from_binary(mask).binary(), mask)


@given(instance_maps)
@settings(max_examples=60, deadline=None)
def test_encoding_is_lossless(arr: np.ndarray) -> None:
    assert np.array_equal(decode_instances(encode_instances(arr)), arr)


def test_encoding_is_compact() -> None:
    arr = make_instances((512, 512), 100)
    assert len(encode_instances(arr)) < arr.nbytes / 20


def test_corrupt_encoding_refused() -> None:
    data = encode_instances(make_instances((32, 32), 3))
    with pytest.raises(ApplianceError, match="corrupt"):
        decode_instances(data[:-4])
    with pytest.raises(ApplianceError):
        decode_instances(b"nope")


def test_props_semantic_relabel() -> None:
    arr = np.zeros((6, 8), np.uint32)
    arr[1:3, 1:4] = 9
    arr[4, 6] = 4
    label = Label(arr, {9: 2})
    props = {p.id: p for p in label.props()}
    assert props[9].area == 6 and props[9].bbox == (1, 1, 3, 4) and props[9].class_id == 2
    assert props[9].centroid == (1.5, 2.0)
    assert props[4].area == 1 and props[4].class_id == 1  # default class
    sem = label.semantic()
    assert sem[1, 1] == 2 and sem[4, 6] == 1 and sem[0, 0] == 0
    seq = label.relabel_sequential()
    assert set(np.unique(seq.instances)) == {0, 1, 2}
    assert seq.class_of(2) == 2 and seq.class_of(1) == 1
    assert np.array_equal(seq.binary(), label.binary())


def test_from_semantic_splits_components_per_class() -> None:
    sem = np.zeros((5, 9), np.uint8)
    sem[0:2, 0:2] = 1
    sem[0:2, 4:6] = 1
    sem[3:5, 6:9] = 2
    label = Label.from_semantic(sem)
    assert len(label.ids()) == 3
    assert np.array_equal(label.semantic(), sem)


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ApplianceError):
        Label(np.zeros((2, 2, 2)))
    with pytest.raises(ApplianceError):
        Label(np.array([[-1]]))
