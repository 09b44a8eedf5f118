"""Bring your own detector: `python -m export bundle --role detector` checks an outside ONNX
cell detector (output kind `centres`) against its contract, runs it through the tablet's
runtime, scores its cells (detection F1) and writes a bundle that installs with role detector."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from appliance.bundles.install import install_model_bundle
from appliance.bundles.model_bundle import read_model_bundle
from appliance.contract import Contract
from appliance.store import Project
from appliance.store.models import list_models
from export.cli import main as export_main
from tests.bundles.onnx_models import conv_model


def test_an_outside_detector_is_wrapped_scored_and_installs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export_main(["bundle", "--role", "detector", "--print-contract"]) == 0
    template = json.loads(capsys.readouterr().out)
    contract = Contract.parse(json.dumps(template), "template")
    contract.validate(role="detector")  # the template is a detector's, ready to fill in
    assert contract.output_kind == "centres" and contract.channels_out == 3
    (tmp_path / "contract.json").write_text(json.dumps(template))
    onnx_path = conv_model(tmp_path / "det.onnx", channels=3, classes=3)  # 1 heatmap + 2 sizes
    out = tmp_path / "det.zip"
    args = ["bundle", "--onnx", str(onnx_path), "--role", "detector"]
    args += ["--contract", str(tmp_path / "contract.json"), "--out", str(out)]
    assert export_main(args) == 0
    printed = capsys.readouterr().out
    assert "detector model 'det'" in printed and "detection_f1" in printed
    (model,) = read_model_bundle(out).models
    assert model.role == "detector"
    assert 0.0 <= model.metrics["detection_f1"] <= 1.0 and "class_f1" in model.metrics
    assert np.isfinite(model.metrics["latency_ms_512_2threads"])
    project = Project.create(tmp_path / "tablet", ["nucleus"])
    try:
        install_model_bundle(project, out)
        assert [m.role for m in list_models(project)] == ["detector"]
    finally:
        project.close()
    # a segmentation contract cannot be wrapped as a detector: one line, nothing written
    seg = tmp_path / "seg.json"
    seg.write_text(json.dumps(template | {"output_kind": "softmax"}))
    args[args.index(str(tmp_path / "contract.json"))] = str(seg)
    args[args.index(str(out))] = str(tmp_path / "seg.zip")
    assert export_main(args) != 0
    assert "detector" in capsys.readouterr().err
    assert not (tmp_path / "seg.zip").exists()
