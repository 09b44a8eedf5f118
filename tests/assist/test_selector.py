"""Selector strategies (seed 004 eq. 1) on tiny pools, and the pool loaded from a project."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.assist import features
from appliance.assist.selector import (
    Pool,
    Selector,
    clusters,
    from_project,
    nearest_distance,
    random_scores,
)
from appliance.errors import ApplianceError
from appliance.importer import import_paths
from appliance.labels import Label


def pool(n: int = 6, **over) -> Pool:
    base = {
        "ids": np.arange(1, n + 1, dtype=np.int64) * 10,
        "order": np.arange(n, dtype=np.int64),
        "sequence": np.zeros(n, np.int64),
        "cherry": np.zeros(n, bool),
        "vectors": np.zeros((n, features.DIM), np.float32),
        "uncertainty": np.full(n, np.nan),
        "labeled": np.zeros(n, bool),
    }
    base.update(over)
    return Pool(**base)


def picks(sel: Selector, n: int) -> list[int]:
    return [c.image_id for c in sel.next(n)]


def test_sequential_follows_sequence_order() -> None:
    order = np.array([3, 1, 2, 0, 4, 5])
    sel = Selector(pool(order=order), {"sequential": 1})
    assert picks(sel, 3) == [40, 20, 30]
    sel.mark_labeled(40)
    sel.mark_labeled(999)  # unknown ids (an image imported meanwhile) are ignored
    assert picks(sel, 1) == [20] and sel.unlabeled == 5
    assert sel.next(1)[0].scores["sequential"] == 1.0


def test_random_is_seeded_uniform_and_stable() -> None:
    ids = np.arange(10_000, dtype=np.int64)
    r = random_scores(ids, 7)
    assert r.min() >= 0 and r.max() < 1 and abs(r.mean() - 0.5) < 0.02
    assert np.array_equal(r, random_scores(ids, 7))
    assert not np.array_equal(r, random_scores(ids, 8))
    a = picks(Selector(pool(), {"random": 1}, seed=1), 6)
    assert sorted(a) == [10, 20, 30, 40, 50, 60]
    assert picks(Selector(pool(), {"random": 1}, seed=1), 6) == a
    sel = Selector(pool(), {"random": 1}, seed=1)
    sel.mark_labeled(a[0])
    assert picks(sel, 5) == a[1:]  # labeling one does not reshuffle the rest


def test_cherry_pick_first() -> None:
    cherry = np.array([0, 0, 1, 0, 1, 0], bool)
    sel = Selector(pool(cherry=cherry), {"cherry_pick": 1, "sequential": 0.01})
    assert picks(sel, 3) == [30, 50, 10]


def two_scenes(n: int = 8) -> np.ndarray:
    v = np.zeros((n, features.DIM), np.float32)
    v[n // 2 :] = 1.0  # a scene change halfway through
    return v


def test_clusters_break_at_feature_jumps_and_sequence_changes() -> None:
    v = two_scenes()
    seq = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    c = clusters(np.arange(8), seq, v, threshold=0.1)
    assert c.tolist() == [0, 0, 0, 0, 1, 1, 2, 2]
    assert clusters(np.zeros(0, np.int64), seq[:0], v[:0], 0.1).size == 0


def test_sequence_aware_one_per_cluster_before_repeats() -> None:
    p = pool(8, vectors=two_scenes(), sequence=np.array([0, 0, 0, 0, 0, 0, 1, 1]))
    sel = Selector(p, {"sequence_aware": 1}, threshold=0.1)
    first = picks(sel, 3)
    cluster_of = {10: 0, 20: 0, 30: 0, 40: 0, 50: 1, 60: 1, 70: 2, 80: 2}
    assert sorted(cluster_of[i] for i in first) == [0, 1, 2]
    sel.mark_labeled(10)
    assert cluster_of[picks(sel, 1)[0]] in (1, 2)


def test_uncertainty_prefers_uncertain_and_fills_unknown_with_mean() -> None:
    u = np.array([0.1, 0.9, np.nan, 0.5, 0.2, 0.3])
    sel = Selector(pool(uncertainty=u), {"uncertainty": 1})
    choice = sel.next(1)[0]
    assert choice.image_id == 20 and choice.scores["uncertainty"] == 1.0
    assert picks(sel, 6)[1] == 40
    no_model = Selector(pool(), {"uncertainty": 1, "random": 1})
    assert set(no_model.weights) == {"random"}  # nothing to say: drops out of the mean


def test_diversity_is_farthest_point() -> None:
    v = np.zeros((5, features.DIM), np.float32)
    v[:, 0] = [0.0, 0.2, 0.5, 1.0, 0.95]
    labeled = np.array([True, False, False, False, False])
    sel = Selector(pool(5, vectors=v, labeled=labeled), {"diversity": 1})
    assert picks(sel, 3) == [40, 30, 20]  # farthest from 0, then from {0, 1.0}, ...
    fresh = Selector(pool(5, vectors=v), {"diversity": 1})
    assert fresh.next(1)[0].scores["diversity"] == 1.0  # nothing labeled: all equally new


def test_nearest_distance_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random((50, 8), np.float32), rng.random((700, 8), np.float32)
    brute = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(nearest_distance(a, b), brute, atol=1e-4)


def test_weighted_mean_and_validation() -> None:
    cherry = np.array([0, 0, 0, 0, 0, 1], bool)
    sel = Selector(pool(cherry=cherry), {"sequential": 3, "cherry_pick": 1})
    best = sel.next(1)[0]
    assert best.image_id == 10 and best.score == pytest.approx(0.75)
    assert all(0 <= c.score <= 1 for c in sel.next(6))
    with pytest.raises(ApplianceError, match="unknown selector"):
        Selector(pool(), {"clever": 1})
    with pytest.raises(ApplianceError, match=">= 0"):
        Selector(pool(), {"random": -1})
    with pytest.raises(ApplianceError, match="must map strategy to number"):
        Selector(pool(), {"random": "lots"})
    assert Selector(pool(), {"random": 0}).weights == {"sequential": 1.0}


def test_empty_single_and_fully_labeled_pools() -> None:
    assert Selector(pool(0)).next(3) == []
    every = dict.fromkeys(("sequential", "random", "cherry_pick", "sequence_aware", "diversity"), 1)
    only = Selector(pool(1), every).next(3)
    assert [c.image_id for c in only] == [10] and 0 <= only[0].score <= 1
    assert Selector(pool(3, labeled=np.ones(3, bool))).next(1) == []


def test_from_project_uses_features_labels_and_settings(project, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for k in range(5):
        img = np.full((16, 16), 100, np.uint16)
        img[: 4 + k] = 3000 + 100 * k
        tifffile.imwrite(folder / f"im{k}.tif", img)
    assert not import_paths(project, [folder]).failed
    assert features.update(project) == 5 and features.update(project) == 0
    _ids, vecs = features.load(project)
    assert vecs.shape == (5, features.DIM) and vecs.dtype == np.float32
    first, second = (r.id for r in project.images()[:2])
    project.save_label(first, Label.empty((16, 16)), author="a", source="manual")
    project.save_label(second, Label.empty((16, 16)), author="p", source="prelabel")
    project.set_setting("selector.weights", {"sequential": 1})
    sel = from_project(project)
    assert sel.unlabeled == 4  # a bare pre-label does not count as labeled
    assert sel.next(1)[0].image_id == second
