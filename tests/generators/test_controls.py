"""Synthetic controls match their context and copy nothing an annotator labels.

Seed 000 fears fakes are "recognised by their differing background and size": each planted
cell must measure like the cells of its context image (size, brightness, texture, focus), the
background must be new (no pixel noise shared with any job image, in any orientation), and no
context may serve twice.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.bundles.control_bundle import read_control_bundle
from appliance.bundles.training_job import read_training_job
from appliance.generators.context import cell_features, noise_model
from appliance.labels import Label
from export.cli import main as export_main
from export.controls import compose
from export.synth import synth_sample


def _context(seed: int) -> tuple[np.ndarray, Label]:
    s = synth_sample(np.random.default_rng(seed), 192, "mixed")
    top = int(s.cells.max())
    inst = np.where(s.others > 0, s.others + top, s.cells).astype(np.uint32)
    classes = {int(i): 1 for i in np.unique(s.cells) if i}
    classes |= {int(i) + top: 2 for i in np.unique(s.others) if i}
    return s.image, Label(inst, classes)


def _residual(img: np.ndarray) -> np.ndarray:
    f = img.astype(np.float64)
    return f - cv2.GaussianBlur(f, (0, 0), 1.5)


def _max_noise_correlation(image: np.ndarray, others: list[np.ndarray]) -> float:
    """Largest correlation of the pixel noise with any of `others` in any of 8 orientations:
    1 for a pixel copy (also turned or flipped), about 0 for fresh noise."""
    a = _residual(image).ravel()
    best = 0.0
    for other in others:
        r = _residual(other)
        for k in range(4):
            for flip in (False, True):
                b = np.rot90(r, k)
                b = b[:, ::-1] if flip else b
                if b.shape == image.shape:
                    best = max(best, abs(float(np.corrcoef(a, b.ravel())[0, 1])))
    return best


def test_planted_cells_measure_like_the_cells_of_their_context() -> None:
    ratios: dict[str, list[float]] = {k: [] for k in ("area", "contrast", "texture", "focus")}
    for seed in range(3):
        image, label = _context(20 + seed)
        control = compose(image, label, np.random.default_rng(seed))
        real = cell_features(image, label)
        fake = cell_features(control.image, control.truth)
        assert len(fake) >= 0.6 * len(real)
        for name, values in ratios.items():
            values.append(
                float(np.median([f.value(name) for f in fake]))
                / float(np.median([f.value(name) for f in real]))
            )
        # the background is new: no noise in common with the context, however turned
        assert _max_noise_correlation(control.image, [image]) < 0.1
        # and its noise follows the same model (photon gain within a quarter)
        occupied = control.truth.instances > 0
        assert noise_model(control.image, occupied).gain == pytest.approx(
            noise_model(image, label.instances > 0).gain, rel=0.25
        )
        # the truth is exact and complete: every planted cell is brighter than its ring
        for f in fake:
            assert f.contrast > 0
    for name, values in ratios.items():
        assert 0.8 <= float(np.median(values)) <= 1.25, (name, values)


def test_controls_copy_no_job_image_and_use_each_context_once(
    job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "controls.zip"
    with read_training_job(job) as j:
        images = [item.image() for item in j.items]
        n_labelled = sum(1 for item in j.items if item.label.ids().size)
    assert export_main(["controls", str(job), "--out", str(out), "--n", str(n_labelled)]) == 0
    bundle = read_control_bundle(out)
    assert len(bundle.items) == n_labelled
    assert len({item.background for item, _ in bundle.items}) == n_labelled  # each context once
    for _, pixels in bundle.items:
        assert _max_noise_correlation(pixels, images) < 0.15
    capsys.readouterr()
    more = tmp_path / "more.zip"
    code = export_main(["controls", str(job), "--out", str(more), "--n", str(n_labelled + 1)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "each serves one" in err[0]
    assert not more.exists()
