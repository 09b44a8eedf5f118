"""Training targets of the instance output kinds, and the coarse-label merge perturbation.

numpy and SciPy only (the CLI reads `TRAINABLE` without importing torch), computed per
augmented crop by the data set. The targets are the exact
inverse of the tablet's decoding (`appliance.assist.instances`): the boundary class is
`instances.boundaries`, the distance target each cell's distance to its own edge over its
largest, so a perfect model decodes to the instance map it was trained on.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from appliance.assist.instances import boundaries
from appliance.errors import ApplianceError

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
# Output kinds the workstation trains. The default per task is the kind bench/instances.py
# found best for it (docs/instances.md): distance for both, held-out F1 0.964 against 0.936
# (pre-label) and 0.951 against 0.940 (upgrade) for three-class, Dice level with softmax.
TRAINABLE = ("three_class", "distance", "softmax")
DEFAULT_OUTPUT = {"segment": "distance", "upgrade": "distance"}


def check_output(kind: str) -> str:
    """`kind` if it is trainable, else a one-line error naming the choices."""
    if kind not in TRAINABLE:
        raise ApplianceError(f"--output must be one of {', '.join(TRAINABLE)}, got {kind!r}")
    return kind


def output_for(task: str, kind: str = "auto") -> str:
    """The output kind to train: `kind`, or the task's default when it is "auto"."""
    if kind == "auto":
        if task not in DEFAULT_OUTPUT:
            raise ApplianceError(f"unknown task {task!r}: expected segment or upgrade")
        return DEFAULT_OUTPUT[task]
    return check_output(kind)


def three_class_target(instances: np.ndarray) -> np.ndarray:
    """int64 H×W: 0 background, 1 interior, 2 boundary (every cell's edge ring)."""
    fg = instances > 0
    edge = boundaries(instances)
    out = np.zeros(instances.shape, np.int64)
    out[fg] = INTERIOR
    out[edge] = BOUNDARY
    return out


def distance_target(instances: np.ndarray) -> np.ndarray:
    """float32 H×W in [0, 1]: distance to the cell's own edge divided by that cell's largest.

    Normalising per cell gives small and large cells the same peak, so one seed threshold finds
    the centre of each, and two touching cells meet at 0 along their shared edge.
    """
    inst = np.asarray(instances)
    out = np.zeros(inst.shape, np.float32)
    core = (inst > 0) & ~boundaries(inst)
    if not core.any():
        return out
    dist = ndi.distance_transform_edt(core).astype(np.float32)
    n = int(inst.max())
    peak = np.asarray(ndi.maximum(dist, inst, index=np.arange(n + 1)), np.float32)
    peak[peak == 0] = 1.0
    sel = inst > 0
    out[sel] = dist[sel] / peak[inst[sel]]
    return out


def merge_touching(instances: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """Coarse annotators draw touching cells as one blob: each touching pair merges with `p`.

    Merges run through a union-find over the pairs that share an edge, so a chain of touching
    cells may become one blob, as a quick stroke around a cluster would make it.
    """
    inst = np.asarray(instances)
    if p <= 0 or inst.max() == 0:
        return inst
    pairs: set[tuple[int, int]] = set()
    for a, b in ((inst[1:, :], inst[:-1, :]), (inst[:, 1:], inst[:, :-1])):
        sel = (a != b) & (a > 0) & (b > 0)
        if sel.any():
            lo, hi = np.minimum(a[sel], b[sel]), np.maximum(a[sel], b[sel])
            pairs.update(zip(lo.tolist(), hi.tolist(), strict=True))
    if not pairs:
        return inst
    parent = np.arange(int(inst.max()) + 1)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for first, second in sorted(pairs):
        if rng.random() < p:
            parent[root(second)] = root(first)
    lut = np.array([root(i) for i in range(parent.size)], np.uint32)
    return lut[inst]


def ideal_logits(instances: np.ndarray, kind: str, scale: float = 12.0) -> np.ndarray:
    """The raw output a perfect two-class model of `kind` would give for `instances`.

    For timing the decoding on realistic content (an untrained network's output is noise).
    """
    if kind == "three_class":
        onehot = np.eye(3, dtype=np.float32)[three_class_target(instances)]
        return scale * onehot.transpose(2, 0, 1)
    if kind == "distance":
        fg = (instances > 0).astype(np.float32)
        d = np.clip(distance_target(instances), 1e-4, 1 - 1e-4)
        return np.stack([scale * (0.5 - fg), scale * (fg - 0.5), np.log(d / (1 - d))])
    fg = (instances > 0).astype(np.float32)
    return np.stack([scale * (0.5 - fg), scale * (fg - 0.5)])
