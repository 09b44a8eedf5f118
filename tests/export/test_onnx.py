"""ONNX export: opset 18, dynamic batch/H/W, full check, parity with PyTorch; int8 QDQ runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

import onnx
import torch

from appliance.errors import ApplianceError
from export import onnx_export
from export.onnx_export import check_parity, cpu_session, export_onnx
from export.quantize import onnx_predict, quantize_int8
from export.unet import UNet


def _model(in_channels: int) -> UNet:
    """A U-Net with non-trivial BatchNorm statistics, so parity tests more than identity BN."""
    torch.manual_seed(0)
    model = UNet(in_channels, 2, width=4, depth=3)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("in_channels", [1, 2])
def test_export_is_checked_and_matches_pytorch(tmp_path: Path, in_channels: int) -> None:
    path = tmp_path / "m.onnx"
    parity = export_onnx(_model(in_channels), in_channels, path)
    assert parity.exporter == "dynamo" and parity.fallback_reason is None
    assert parity.max_abs_diff <= 1e-4 and parity.argmax_agreement >= 0.999
    assert len(parity.shapes) >= 3 and len({tuple(s[2:]) for s in parity.shapes}) >= 3
    proto = onnx.load(str(path))
    assert any(o.domain in ("", "ai.onnx") and o.version == 18 for o in proto.opset_import)
    session = cpu_session(path)
    x = np.zeros((3, in_channels, 32, 80), np.float32)  # batch, H, W all dynamic
    assert session.run(None, {"image": x})[0].shape == (3, 2, 32, 80)


def test_parity_failure_refuses_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_export, "MAX_ABS_DIFF", -1.0)
    with pytest.raises(ApplianceError, match="parity failed"):
        export_onnx(_model(1), 1, tmp_path / "m.onnx")


def test_int8_quantization_runs_and_stays_close(tmp_path: Path) -> None:
    model = _model(1)
    fp32 = tmp_path / "m.onnx"
    export_onnx(model, 1, fp32)
    rng = np.random.default_rng(0)
    calibration = [rng.random((1, 1, 32, 32), dtype=np.float32) for _ in range(4)]
    int8 = quantize_int8(fp32, tmp_path / "q.onnx", calibration)
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(int8)).graph.node)
    preds_fp32 = onnx_predict(fp32, calibration)
    preds_int8 = onnx_predict(int8, calibration)
    agreement = np.mean([np.mean(a == b) for a, b in zip(preds_fp32, preds_int8, strict=True)])
    assert agreement > 0.9
    max_diff, _, _ = check_parity(model, fp32, 1)
    assert max_diff <= 1e-4
