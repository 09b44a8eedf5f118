"""Fixtures for bundle tests: a labeled project and model bundles, all made on the fly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.bundles.model_bundle import ModelSpec, write_model_bundle
from appliance.importer import import_paths
from appliance.labels import Label
from appliance.store import Project

from .onnx_models import contract, conv_model


def blobs(shape: tuple[int, int], seed: int) -> Label:
    """A few square instances with alternating classes."""
    rng = np.random.default_rng(seed)
    inst = np.zeros(shape, np.uint32)
    for i in range(1, 5):
        y, x = rng.integers(0, shape[0] - 6), rng.integers(0, shape[1] - 6)
        inst[y : y + 5, x : x + 5] = i * 7
    return Label(inst, {i * 7: 1 + i % 2 for i in range(1, 5)})


@pytest.fixture
def labeled_project(tmp_path: Path) -> Project:
    """Ten 16-bit images: manual labels, a pre-label later corrected, a coarse scribble, a
    second annotator, an unreviewed one, one without labels and one control item."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        tifffile.imwrite(folder / f"img{i}.tif", (rng.random((32, 40)) * 65535).astype(np.uint16))
    project = Project.create(tmp_path / "proj", ["nucleus", "debris"])
    assert not import_paths(project, [folder]).failed
    ids = [r.id for r in project.images()]
    for n, image_id in enumerate(ids[:8]):
        project.save_label(
            image_id,
            blobs((32, 40), n),
            author="alice",
            source="manual",
            seconds_spent=10.0 + n,
            reviewed=n != 5,
        )
    project.save_label(ids[1], blobs((32, 40), 100), author="model", source="prelabel")
    project.save_label(ids[1], blobs((32, 40), 101), author="bob", source="manual", reviewed=True)
    project.save_label(ids[2], blobs((32, 40), 200), author="bob", source="manual", coarse=True)
    project.save_label(ids[2], blobs((32, 40), 201), author="bob", source="manual", reviewed=True)
    project.save_label(ids[9], blobs((32, 40), 900), author="alice", source="manual")
    project.db.execute(
        "INSERT INTO controls (image_id, kind, created) VALUES (?, 'gold', '2026-01-01')",
        (ids[9],),
    )
    yield project
    project.close()


@pytest.fixture
def model_bundle(tmp_path: Path):
    """Factory: a valid model bundle with a 1×1-conv prelabel model, distinct per seed."""

    def make(name: str = "b1.zip", seed: int = 0, role: str = "prelabel") -> Path:
        onnx_path = conv_model(tmp_path / f"{name}.onnx", seed=seed)
        out = tmp_path / name
        spec = ModelSpec(role, f"tiny-{seed}", onnx_path, contract(), {"dice": 0.5 + seed / 100})
        write_model_bundle(out, [spec], job_id="job-1")
        return out

    return make


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, the database and its write-ahead log included.

    Take it while the project is open: `Project.open` itself bumps SQLite's change counter, so
    only snapshots of one open session are comparable. The `-shm` file is SQLite's shared-memory
    index (reader marks), not data, and is left out.
    """
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith("-shm")
    }
