"""Virtual-microscope cells to plant into controls (`export.controls`, `export.region_controls`):
each a clean signal above its background and its mask, cut from fresh synthetic fields."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from export.synth import synth_sample

__all__ = ["CellSource", "Shape"]


@dataclass(frozen=True)
class Shape:
    """One source cell: clean signal above its background (H×W, zero outside) and its mask."""

    signal: np.ndarray
    mask: np.ndarray


class CellSource:
    """Virtual-microscope cells per class index (0 = the job's first cell class), denoised.

    Each call to `draw` takes a cell from a fresh virtual field when the pool runs dry.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.pool: dict[bool, list[Shape]] = {True: [], False: []}

    def _refill(self) -> None:
        sample = synth_sample(self.rng, 192, "mixed")
        img = cv2.GaussianBlur(sample.image.astype(np.float64), (0, 0), 1.0)
        for first, inst in ((True, sample.cells), (False, sample.others)):
            bg = cv2.GaussianBlur(
                np.where((sample.cells == 0) & (sample.others == 0), img, 0.0), (0, 0), 8
            ) / np.maximum(
                cv2.GaussianBlur(
                    ((sample.cells == 0) & (sample.others == 0)).astype(np.float64), (0, 0), 8
                ),
                1e-6,
            )
            h, w = inst.shape
            for cid in range(1, int(inst.max()) + 1):
                ys, xs = np.nonzero(inst == cid)
                if ys.size < 20 or ys.min() == 0 or xs.min() == 0 or ys.max() == h - 1:
                    continue  # a cell cut by the field's edge would show a straight side
                if xs.max() == w - 1:
                    continue
                y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
                mask = inst[y0:y1, x0:x1] == cid
                signal = np.where(mask, img[y0:y1, x0:x1] - bg[y0:y1, x0:x1], 0.0)
                self.pool[first].append(Shape(np.maximum(signal, 0.0), mask))

    def draw(self, class_index: int) -> Shape:
        first = class_index == 0
        while not self.pool[first]:
            self._refill()
        shapes = self.pool[first]
        return shapes.pop(int(self.rng.integers(len(shapes))))
