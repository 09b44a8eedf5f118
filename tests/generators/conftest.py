"""A small virtual-microscope training job shared by the generator tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from export.generators.virtual import cell_job


@pytest.fixture(scope="session")
def job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 images of 64×64 (6 labelled, 2 unlabeled), cells and granulocytes."""
    return cell_job(tmp_path_factory.mktemp("virtual"), n=8, labeled=6, size=64, seed=1)
