"""The selector (seed 004 sec. 3.3, eq. 1): which unlabeled image the expert should see next.

Each strategy gives every unlabeled image a score in [0, 1]; the final score is their weighted
mean and `next()` returns the argmax. All strategies are whole-array numpy, so a choice among
100,000 images takes milliseconds; the state that is costly to rebuild (feature matrix, nearest
labeled distance, cluster counts) lives in the `Selector` and is updated incrementally as
images get labeled (`mark_labeled`).

- sequential: first unlabeled frame in (sequence, frame, id) order scores 1, the last 0.
- random: a seeded hash of the image id, so the order is reproducible and does not move when
  other images get labeled.
- cherry_pick: 1 for images the user flagged, else 0.
- sequence_aware: consecutive images (in sequential order) whose features differ by more than
  a threshold (RMS over the feature vector) start a new cluster, as does a new sequence; a
  cluster's score falls with the number of its images already labeled, so every cluster gets
  one sample before any gets a second.
- uncertainty: mean pixel entropy of the pre-label model (cached per image and model in the
  `uncertainty` table), divided by its maximum; images not yet scored get the mean.
- diversity: farthest-point: distance to the nearest labeled image in feature space, divided
  by its maximum (all 1 while nothing is labeled).

Strategies with nothing to say (uncertainty without scores) drop out of the mean instead of
pulling it down. Ties go to the random hash, which makes "a random image per cluster" true.
`next(n)` is greedy: after each pick the image counts as labeled, so a batch spreads over
clusters and feature space exactly as one-at-a-time labeling would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from appliance import settings
from appliance.assist import features as feats
from appliance.errors import ApplianceError
from appliance.store import Project, cache
from appliance.store.models import active_model

__all__ = [
    "DEFAULT_THRESHOLD",
    "DEFAULT_WEIGHTS",
    "SETTINGS_KEY",
    "STRATEGIES",
    "WEIGHTS_KEY",
    "Choice",
    "Pool",
    "Selector",
    "clusters",
    "from_project",
    "load_pool",
    "nearest_distance",
    "random_scores",
    "weight",
]

STRATEGIES = ("sequential", "random", "cherry_pick", "sequence_aware", "uncertainty", "diversity")
WEIGHTS_KEY = settings.SELECTOR_WEIGHTS.key
SETTINGS_KEY = settings.SELECTOR.key
DEFAULT_WEIGHTS = settings.SELECTOR_WEIGHTS.default
DEFAULT_THRESHOLD = 0.1  # RMS grey-level change (0..1 scale) that starts a new cluster


def random_scores(ids: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) per id from a splitmix64 hash: stable, seedable, vectorised."""
    with np.errstate(over="ignore"):
        z = ids.astype(np.uint64) + np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def clusters(
    order: np.ndarray, sequence: np.ndarray, vectors: np.ndarray, threshold: float
) -> np.ndarray:
    """Cluster id per image: a new one at each sequence change or feature jump (in `order`)."""
    n = order.size
    if n == 0:
        return np.zeros(0, np.int64)
    v = vectors[order]
    jump = np.sqrt(np.mean((v[1:] - v[:-1]) ** 2, axis=1)) > threshold
    new = np.empty(n, bool)
    new[0] = False
    new[1:] = jump | (sequence[order][1:] != sequence[order][:-1])
    out = np.empty(n, np.int64)
    out[order] = np.cumsum(new)
    return out


def nearest_distance(vectors: np.ndarray, targets: np.ndarray, rows: int = 4096) -> np.ndarray:
    """Euclidean distance of each row of `vectors` to its nearest row of `targets` (float32).

    |v - t|² = |v|² - 2 v·t + |t|²: one BLAS product per block of rows, and |v|² is added after
    the minimum, so the big temporary is touched only twice. Blocks of rows keep it in cache.
    """
    best = np.full(vectors.shape[0], np.inf, np.float32)
    if targets.shape[0] == 0:
        return best
    tt = np.einsum("ij,ij->i", targets, targets)
    t_cols = np.ascontiguousarray(targets.T)
    for s in range(0, vectors.shape[0], rows):
        v = vectors[s : s + rows]
        d2 = v @ t_cols
        d2 *= -2.0
        d2 += tt
        best[s : s + rows] = d2.min(axis=1) + np.einsum("ij,ij->i", v, v)
    return np.sqrt(np.maximum(best, 0.0))


@dataclass
class Pool:
    """Everything the strategies read, one entry per image (index = position, not id)."""

    ids: np.ndarray  # int64
    order: np.ndarray  # int64 permutation: sequential order of positions
    sequence: np.ndarray  # int64 code per image (images without a sequence share one)
    cherry: np.ndarray  # bool
    vectors: np.ndarray  # float32 [n, DIM]
    uncertainty: np.ndarray  # float64, NaN where unknown
    labeled: np.ndarray  # bool


@dataclass(frozen=True)
class Choice:
    """One image the selector proposes, its final score and each strategy's score."""

    image_id: int
    score: float
    scores: dict[str, float] = field(default_factory=dict)  # per active strategy


class Selector:
    """Scores the unlabeled pool; keep one alive in the UI and call `mark_labeled` after saves."""

    def __init__(
        self,
        pool: Pool,
        weights: dict[str, float] | None = None,
        seed: int = 0,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        try:
            w = {
                str(k): float(v)
                for k, v in (DEFAULT_WEIGHTS if weights is None else weights).items()
            }
        except (AttributeError, TypeError, ValueError) as exc:
            raise ApplianceError(
                f"selector weights must map strategy to number: {weights!r}"
            ) from exc
        unknown = set(w) - set(STRATEGIES)
        if unknown:
            raise ApplianceError(f"unknown selector strategies: {', '.join(sorted(unknown))}")
        if any(v < 0 for v in w.values()):
            raise ApplianceError("selector weights must be >= 0")
        if np.isnan(pool.uncertainty).all():
            w.pop("uncertainty", None)
        self.weights = {k: v for k, v in w.items() if v > 0}
        if not self.weights:
            self.weights = {"sequential": 1.0}
        self.pool = pool
        n = pool.ids.size
        self._sorter = np.argsort(pool.ids, kind="stable")  # id -> position by binary search
        self._labeled = pool.labeled.copy()
        self._rank = np.empty(n, np.int64)
        self._rank[pool.order] = np.arange(n)
        self._hash = random_scores(pool.ids, seed)
        self._cluster = clusters(pool.order, pool.sequence, pool.vectors, threshold)
        self._per_cluster = np.bincount(
            self._cluster[self._labeled], minlength=int(self._cluster.max(initial=-1)) + 1
        )
        self._nearest: np.ndarray | None = None
        if "diversity" in self.weights:
            self._nearest = nearest_distance(pool.vectors, pool.vectors[self._labeled])
        u = pool.uncertainty
        known = ~np.isnan(u)
        self._uncertainty_scores = np.where(known, u, np.nanmean(u) if known.any() else 0.0)

    @property
    def unlabeled(self) -> int:
        """How many images of the pool have no human label yet."""
        return int((~self._labeled).sum())

    def mark_labeled(self, image_id: int) -> None:
        """Update the incremental state after `image_id` got a label (a no-op if it had one)."""
        j = int(np.searchsorted(self.pool.ids, image_id, sorter=self._sorter))
        if j == self._sorter.size or self.pool.ids[self._sorter[j]] != image_id:
            return
        k = int(self._sorter[j])
        if self._labeled[k]:
            return
        self._labeled[k] = True
        self._per_cluster[self._cluster[k]] += 1
        if self._nearest is not None:
            d = np.sqrt(np.sum((self.pool.vectors - self.pool.vectors[k]) ** 2, axis=1))
            np.minimum(self._nearest, d, out=self._nearest)

    def scores(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(positions of unlabeled images, strategy -> score array over them)."""
        cand = np.flatnonzero(~self._labeled)
        out: dict[str, np.ndarray] = {}
        if cand.size == 0:
            return cand, out
        for name in self.weights:
            out[name] = getattr(self, f"_{name}")(cand)
        return cand, out

    def _sequential(self, cand: np.ndarray) -> np.ndarray:
        r = self._rank[cand].astype(np.float64)
        lo, hi = r.min(), r.max()
        return np.ones(cand.size) if hi == lo else 1.0 - (r - lo) / (hi - lo)

    def _random(self, cand: np.ndarray) -> np.ndarray:
        return self._hash[cand]

    def _cherry_pick(self, cand: np.ndarray) -> np.ndarray:
        return self.pool.cherry[cand].astype(np.float64)

    def _sequence_aware(self, cand: np.ndarray) -> np.ndarray:
        c = self._per_cluster[self._cluster[cand]]
        return 1.0 / (1.0 + (c - c.min()))

    def _uncertainty(self, cand: np.ndarray) -> np.ndarray:
        return _by_max(self._uncertainty_scores[cand])

    def _diversity(self, cand: np.ndarray) -> np.ndarray:
        assert self._nearest is not None
        d = self._nearest[cand]
        return np.ones(cand.size) if np.isinf(d).all() else _by_max(d)

    def next(self, n: int = 1) -> list[Choice]:
        """The `n` best images, greedily (each pick counts as labeled for the next)."""
        saved = (
            self._labeled.copy(),
            self._per_cluster.copy(),
            None if self._nearest is None else self._nearest.copy(),
        )
        picks: list[Choice] = []
        try:
            for _ in range(n):
                cand, per = self.scores()
                if cand.size == 0:
                    break
                total = sum(self.weights.values())
                final = np.asarray(sum(self.weights[k] * v for k, v in per.items())) / total
                best = np.flatnonzero(final >= final.max() - 1e-12)
                j = best[np.argmax(self._hash[cand[best]])]
                k = int(cand[j])
                picks.append(
                    Choice(
                        int(self.pool.ids[k]),
                        float(final[j]),
                        {s: float(v[j]) for s, v in per.items()},
                    )
                )
                self.mark_labeled(int(self.pool.ids[k]))
        finally:
            self._labeled, self._per_cluster, self._nearest = saved
        return picks


def _by_max(x: np.ndarray) -> np.ndarray:
    m = float(x.max()) if x.size else 0.0
    return x / m if m > 0 else np.zeros_like(x, dtype=np.float64)


def load_pool(project: Project, model_id: str | None = None) -> Pool:
    """The pool from the store: images, flags, cached features and uncertainty for `model_id`.

    Images without a cached feature vector get the mean vector (neutral); run
    `features.update` (a background job after import) to fill them in.
    """
    rows = project.image_positions()
    n = len(rows)
    ids = np.fromiter((r.id for r in rows), np.int64, n)
    seq_names = [r.sequence or "" for r in rows]
    codes = {s: k for k, s in enumerate(sorted(set(seq_names)))}
    sequence = np.fromiter((codes[s] for s in seq_names), np.int64, n)
    frame = np.fromiter((-1 if r.frame is None else r.frame for r in rows), np.int64, n)
    order = np.lexsort((ids, frame, sequence))
    cherry = np.fromiter((r.cherry_picked for r in rows), bool, n)

    vectors = np.zeros((n, feats.DIM), np.float32)
    f_ids, f_vec = feats.load(project)
    pos = np.searchsorted(ids, f_ids)
    have = np.zeros(n, bool)
    have[pos] = True
    vectors[pos] = f_vec
    if f_ids.size and not have.all():
        vectors[~have] = f_vec.mean(axis=0)

    uncertainty = np.full(n, np.nan)
    if model_id is not None:
        urows = cache.uncertainty_rows(project, model_id)
        if urows:
            u = np.array(urows, np.float64)
            uncertainty[np.searchsorted(ids, u[:, 0].astype(np.int64))] = u[:, 1]

    done = np.array(project.human_labeled_image_ids(), np.int64)
    labeled = np.isin(ids, done)
    return Pool(ids, order, sequence, cherry, vectors, uncertainty, labeled)


def weight(project: Project, strategy: str) -> float:
    """The project's weight for one strategy (the default weights when none are set)."""
    weights = project.get_setting(WEIGHTS_KEY, None) or DEFAULT_WEIGHTS
    return float(weights.get(strategy, 0.0))


def from_project(
    project: Project, model_id: str | None = None, labeled: np.ndarray | None = None
) -> Selector:
    """A selector with the project's weights, seed and cluster threshold.

    Uncertainty comes from `model_id`'s cached scores, by default the active pre-label model's.
    `labeled` (image ids) replaces "has a human label" as what counts as done, for callers that
    want k labels per image or hide control items (`appliance.supervision.serving`).
    """
    if model_id is None:
        row = active_model(project, "prelabel")
        model_id = None if row is None else row.id
    cfg = settings.SELECTOR.get(project)
    weights = settings.SELECTOR_WEIGHTS.get(project)
    pool = load_pool(project, model_id)
    if labeled is not None:
        pool.labeled = np.isin(pool.ids, labeled)
    return Selector(
        pool,
        weights=weights,
        seed=int(cfg.get("seed", 0)),
        threshold=float(cfg.get("threshold", DEFAULT_THRESHOLD)),
    )
