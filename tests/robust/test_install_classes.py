"""A model for other classes is refused by name, or mapped explicitly with --map (#10)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from appliance.assist.contract import class_ids
from appliance.bundles.model_bundle import ModelSpec, write_model_bundle
from appliance.store import Project
from appliance.store.models import active_model
from tests.assist.onnx_builders import contract
from tests.bundles.onnx_models import conv_model
from tests.robust.conftest import assert_one_line_refusal, cli, unchanged


def mito_bundle(tmp_path: Path) -> Path:
    onnx_path = conv_model(tmp_path / "m.onnx", channels=1, classes=2)
    spec = dataclasses.replace(contract(classes=2), classes=("background", "mitochondrion"))
    out = tmp_path / "mito.zip"
    write_model_bundle(out, [ModelSpec("prelabel", "mito", onnx_path, spec)])
    return out


def test_class_mismatch_refused_then_mapped(labeled: Path, tmp_path: Path) -> None:
    bundle = mito_bundle(tmp_path)
    with unchanged(labeled):
        res = cli("install-model", labeled, bundle)
    assert_one_line_refusal(res, "predicts mitochondrion", "--map mitochondrion=")
    with unchanged(labeled):
        res = cli("install-model", labeled, bundle, "--map", "mitochondrion=golgi")
    assert_one_line_refusal(res, "'golgi' is not a class")
    res = cli("install-model", labeled, bundle, "--map", "mitochondrion=debris")
    assert res.rc == 0, res.err
    with Project.open(labeled) as project:
        installed = active_model(project, "prelabel")
        assert installed is not None
        assert installed.contract.classes == ("background", "debris")
    with Project.open(labeled) as project:  # predictions of class 1 are stored as debris (2)
        assert class_ids(installed.contract, project.classes()).tolist() == [0, 2]
