"""Fixtures for the assistance tests: a small project with a sequence and installed models."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.assist.runtime import release_sessions
from appliance.bundles.install import install_model_bundle
from appliance.bundles.model_bundle import ModelSpec, write_model_bundle
from appliance.importer import import_paths
from appliance.store import Project

from .onnx_builders import contract, mask_model, threshold_model


@pytest.fixture(autouse=True, scope="module")
def _free_sessions() -> Iterator[None]:
    """Cached sessions keep their memory arenas; free them so later tests see a lean process."""
    yield
    release_sessions()
    gc.collect()


def blob_image(k: int) -> np.ndarray:
    """A 16-bit frame with two bright cells, drifting one pixel per frame."""
    img = np.full((32, 32), 500, np.uint16)
    img[4:12, 4 + k : 12 + k] = 40000
    img[18:26, 16 + k : 22 + k] = 42000
    return img


@pytest.fixture
def seq_project(project: Project, tmp_path: Path) -> Project:
    folder = tmp_path / "seq"
    folder.mkdir()
    for k in range(4):
        tifffile.imwrite(folder / f"f{k}.tif", blob_image(k))
    assert not import_paths(project, [folder]).failed
    return project


@pytest.fixture
def with_models(seq_project: Project, tmp_path: Path) -> Project:
    """The project with a pre-label model (threshold) and an upgrade model (mask, grown 1 px)."""
    specs = [
        ModelSpec("prelabel", "seg", threshold_model(tmp_path / "seg.onnx"), contract()),
        ModelSpec("upgrade", "upg", mask_model(tmp_path / "upg.onnx"), contract(mask=True)),
    ]
    bundle = tmp_path / "models.zip"
    write_model_bundle(bundle, specs, job_id="job-1")
    install_model_bundle(seq_project, bundle)
    return seq_project
