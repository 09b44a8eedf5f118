"""Perturbations behave exactly as specified on tiny hand-made masks (seed 003, eqs. 3.9-3.11)."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.errors import ApplianceError
from appliance.perturb import (
    PerturbSpec,
    bias,
    felzenszwalb_objects,
    inclusion,
    omission,
    perturb,
    salt_and_pepper,
)


def _blocks(n: int, size: int = 40) -> np.ndarray:
    """n separate 4×4 squares with ids 1..n on a size×size canvas."""
    lab = np.zeros((size, size), np.uint32)
    for i in range(n):
        r, c = divmod(i, 5)
        lab[2 + 7 * r : 6 + 7 * r, 2 + 7 * c : 6 + 7 * c] = i + 1
    return lab


def _ids(lab: np.ndarray) -> set[int]:
    return set(np.unique(lab).tolist()) - {0}


@pytest.mark.parametrize(
    ("n_cells", "rate", "kept"),
    [(10, 0.0, 10), (10, 0.7, 3), (10, 1.0, 0), (5, 0.5, 3), (4, 0.3, 3), (0, 0.7, 0)],
)
def test_omission_drops_whole_instances(n_cells: int, rate: float, kept: int) -> None:
    lab = _blocks(n_cells)
    out = omission(lab, rate, np.random.default_rng(0))
    assert len(_ids(out)) == kept
    for cid in _ids(out):  # survivors are untouched, nothing new appears
        assert np.array_equal(out == cid, lab == cid)
    assert _ids(out) <= _ids(lab)
    assert out.dtype == np.uint32


@pytest.mark.parametrize(("n_others", "rate", "added"), [(10, 0.7, 7), (10, 0.0, 0), (3, 1.0, 3)])
def test_inclusion_adds_other_objects_with_fresh_ids(
    n_others: int, rate: float, added: int
) -> None:
    cells = np.zeros((40, 40), np.uint32)
    cells[30:36, 30:36] = 5
    others = _blocks(n_others)
    out = inclusion(cells, rate, np.random.default_rng(1), others=others)
    new_ids = _ids(out) - {5}
    assert len(new_ids) == added
    assert all(i > 5 for i in new_ids)
    for nid in new_ids:  # each added object is exactly one of the other objects
        matches = [oid for oid in _ids(others) if np.array_equal(out == nid, others == oid)]
        assert len(matches) == 1
    assert np.array_equal(out == 5, cells == 5)


def test_inclusion_overwrites_what_lies_under_the_object() -> None:
    cells = np.zeros((10, 10), np.uint32)
    cells[2:6, 2:6] = 1
    others = np.zeros_like(cells)
    others[4:8, 4:8] = 1
    out = inclusion(cells, 1.0, np.random.default_rng(0), others=others)
    assert np.all(out[4:8, 4:8] == 2)
    assert np.all(out[2:4, 2:6] == 1)


def test_inclusion_falls_back_to_felzenszwalb_segments() -> None:
    rng = np.random.default_rng(3)
    image = rng.normal(100, 2, (64, 64))
    cells = np.zeros((64, 64), np.uint32)
    cells[5:15, 5:15] = 1
    image[5:15, 5:15] += 80  # the cell
    image[40:48, 40:48] += 60  # an unlabelled bright object: a candidate
    candidates = felzenszwalb_objects(image, cells, min_size=10)
    assert candidates[44, 44] > 0
    assert not np.any(candidates[cells > 0])
    assert (candidates > 0).mean() < 0.2  # the background segment is never a candidate
    out = inclusion(cells, 1.0, np.random.default_rng(0), image=image)
    assert out[44, 44] > 1


def test_inclusion_needs_others_or_image() -> None:
    with pytest.raises(ApplianceError, match="other objects or the image"):
        inclusion(_blocks(2), 0.5, np.random.default_rng(0))


def _draws(seed: int, q_max: int) -> tuple[int, bool]:
    """Replay bias()'s draws for a seed: q first, then erode (True) or dilate."""
    probe = np.random.default_rng(seed)
    return int(probe.integers(1, q_max + 1)), bool(probe.integers(0, 2))


# A 3×3 all-ones element: q erosions shrink a 7×7 square by q on each side, dilations grow it.
@pytest.mark.parametrize(("want_erode", "q_max"), [(True, 1), (True, 3), (False, 1), (False, 3)])
def test_bias_per_image_erodes_or_dilates_q_times(want_erode: bool, q_max: int) -> None:
    lab = np.zeros((21, 21), np.uint32)
    lab[7:14, 7:14] = 3
    seed = next(s for s in range(100) if _draws(s, q_max)[1] == want_erode)
    q, erode = _draws(seed, q_max)
    out = bias(lab, q_max, np.random.default_rng(seed))
    side = 7 - 2 * q if erode else 7 + 2 * q
    expected = np.zeros_like(lab)
    lo = 10 - side // 2
    expected[lo : lo + side, lo : lo + side] = 3
    assert np.array_equal(out, expected)


def test_bias_draws_q_between_1_and_q_max() -> None:
    lab = np.zeros((41, 41), np.uint32)
    lab[10:31, 10:31] = 1
    areas = {int((bias(lab, 4, np.random.default_rng(s)) > 0).sum()) for s in range(60)}
    sides = {21 - 2 * q for q in range(1, 5)} | {21 + 2 * q for q in range(1, 5)}
    assert areas == {s * s for s in sides}


def test_bias_erosion_separates_touching_cells_and_dilation_never_eats_a_neighbour() -> None:
    lab = np.zeros((12, 12), np.uint32)
    lab[2:10, 2:6] = 1
    lab[2:10, 6:10] = 2
    erode_seed = next(s for s in range(100) if _draws(s, 1)[1])
    dilate_seed = next(s for s in range(100) if not _draws(s, 1)[1])
    eroded = bias(lab, 1, np.random.default_rng(erode_seed))
    assert set(np.argwhere(eroded == 1)[:, 1].tolist()) == {3, 4}
    assert set(np.argwhere(eroded == 2)[:, 1].tolist()) == {7, 8}
    assert set(np.argwhere(eroded > 0)[:, 0].tolist()) == set(range(3, 9))
    dilated = bias(lab, 1, np.random.default_rng(dilate_seed))
    assert np.array_equal(dilated[2:10, 2:10], lab[2:10, 2:10])
    assert (dilated > 0).sum() == 10 * 10


def test_bias_keeps_cells_cut_by_the_image_border() -> None:
    lab = np.zeros((10, 10), np.uint32)
    lab[0:4, 0:4] = 1
    seed = next(s for s in range(100) if _draws(s, 1)[1])
    out = bias(lab, 1, np.random.default_rng(seed))
    expected = np.zeros_like(lab)
    expected[0:3, 0:3] = 1
    assert np.array_equal(out, expected)


def test_bias_per_cell_draws_per_cell() -> None:
    lab = np.zeros((60, 60), np.uint32)
    for i in range(9):
        r, c = divmod(i, 3)
        lab[5 + 20 * r : 15 + 20 * r, 5 + 20 * c : 15 + 20 * c] = i + 1
    out = bias(lab, 3, np.random.default_rng(7), mode="cell")
    areas = {int((out == i).sum()) for i in range(1, 10)}
    assert len(areas) > 1  # cells got different operations or q
    assert areas <= {(10 + 2 * k) ** 2 for k in (-3, -2, -1, 1, 2, 3)}


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0])
def test_salt_and_pepper_corrupts_a_share_p(p: float) -> None:
    lab = np.zeros((100, 100), np.uint32)
    lab[:, :50] = 1
    out = salt_and_pepper(lab, p, np.random.default_rng(0))
    pepper = ((lab == 1) & (out == 0)).sum() / (lab == 1).sum()  # p/2 of the cell pixels
    salt = ((lab == 0) & (out > 0)).sum() / (lab == 0).sum()  # p/2 of the background
    assert abs(pepper - p / 2) < 0.02
    assert abs(salt - p / 2) < 0.02
    assert set(np.unique(out[(lab == 0) & (out > 0)]).tolist()) <= {2}  # one noise instance


def test_composition_order_and_seeding() -> None:
    cells = _blocks(10)
    others = np.zeros_like(cells)
    others[30:34, 30:34] = 1
    spec = PerturbSpec.parse("omission=0.5,inclusion=1,bias=0")
    out = perturb(cells, spec, np.random.default_rng(5), others=others)
    assert len(_ids(out)) == 5 + 1  # inclusion after omission: the new object is never omitted
    added = _ids(out) - {int(i) for i in _ids(out) if np.array_equal(out == i, cells == i)}
    assert len(added) == 1
    assert np.all(out[30:34, 30:34] == added.pop())
    again = perturb(cells, spec, np.random.default_rng(5), others=others)
    assert np.array_equal(out, again)
    spec = PerturbSpec.parse("omission=0.3, inclusion=0.3, bias=4, salt_pepper=0.1")
    a = perturb(cells, spec, np.random.default_rng(9), others=others)
    b = perturb(cells, spec, np.random.default_rng(9), others=others)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, perturb(cells, spec, np.random.default_rng(10), others=others))


def test_inputs_are_never_modified() -> None:
    lab = _blocks(6)
    before = lab.copy()
    spec = PerturbSpec(omission=0.5, inclusion=0.5, bias=2, salt_pepper=0.2)
    perturb(lab, spec, np.random.default_rng(0), others=_blocks(3))
    assert np.array_equal(lab, before)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("omission=1.5", "omission rate"),
        ("bias=x", "bad perturbation"),
        ("colour=1", "bad perturbation"),
        ("omission", "bad perturbation"),
        ("bias=-1", "bias must be"),
    ],
)
def test_spec_rejects_bad_text(text: str, message: str) -> None:
    with pytest.raises(ApplianceError, match=message):
        PerturbSpec.parse(text)


def test_spec_round_trips() -> None:
    spec = PerturbSpec.parse("omission=0.7,inclusion=0.7,bias=6,bias_mode=cell,salt_pepper=0.1")
    assert spec == PerturbSpec(0.7, 0.7, 6, "cell", 0.1)
    assert PerturbSpec.parse(str(spec)) == spec


def test_rejects_non_integer_maps() -> None:
    with pytest.raises(ApplianceError, match="integer instance map"):
        omission(np.zeros((4, 4), np.float32), 0.5, np.random.default_rng(0))
