"""The virtual microscope: deterministic, labelled, and not solvable by a global threshold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.errors import ApplianceError
from export.cli import main
from export.synth import otsu_dice, synth_samples


def test_deterministic_per_seed_and_index() -> None:
    a = list(synth_samples(3, 96, seed=5))
    b = list(synth_samples(5, 96, seed=5))  # image i does not depend on n
    for x, y in zip(a, b[:3], strict=True):
        assert np.array_equal(x.image, y.image)
        assert np.array_equal(x.cells, y.cells)
        assert np.array_equal(x.others, y.others)
    c = next(iter(synth_samples(1, 96, seed=6)))
    assert not np.array_equal(a[0].image, c.image)


@pytest.mark.parametrize("kind", ["nuclei", "mixed"])
def test_images_and_labels(kind: str) -> None:
    samples = list(synth_samples(4, 128, seed=0, kind=kind))
    for s in samples:
        assert s.image.dtype == np.uint16 and s.image.shape == (128, 128)
        assert s.cells.shape == s.others.shape == (128, 128)
        assert not np.any((s.cells > 0) & (s.others > 0))  # two kinds never share a pixel
        ids = np.unique(s.others)
        assert np.array_equal(ids, np.arange(len(ids)))  # sequential ids
        assert s.cells.max() >= 1
        assert s.image.std() > 100  # 16-bit range is used
    assert sum(int(s.others.max()) for s in samples) > 0
    assert 0.4 < otsu_dice(samples) < 0.9  # a global threshold does not solve it


def test_cli_writes_matching_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", str(tmp_path / "out"), "--n", "2", "--size", "64", "--seed", "1"]) == 0
    assert "Otsu Dice" in capsys.readouterr().out
    names = sorted(p.name for p in (tmp_path / "out" / "images").iterdir())
    assert names == ["synth_0000.tif", "synth_0001.tif"]
    for sub in ("masks", "other"):
        assert sorted(p.name for p in (tmp_path / "out" / sub).iterdir()) == names
    image = tifffile.imread(tmp_path / "out" / "images" / names[0])
    mask = tifffile.imread(tmp_path / "out" / "masks" / names[0])
    assert image.dtype == np.uint16 and mask.shape == image.shape
    assert np.array_equal(image, next(iter(synth_samples(2, 64, seed=1))).image)


def test_bad_arguments() -> None:
    with pytest.raises(ApplianceError, match="unknown synthetic kind"):
        next(iter(synth_samples(1, 64, kind="plankton")))
    with pytest.raises(ApplianceError, match="--size"):
        next(iter(synth_samples(1, 8)))


def test_synth_and_perturbations_need_no_torch() -> None:
    code = (
        "import sys; import export.synth, export.cli, appliance.perturb; "
        "export.cli.build_parser(); sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
