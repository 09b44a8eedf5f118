"""The tablet's numpy DDIM loop equals the PyTorch sampler on the same noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from appliance.contract import GeneratorContract
from appliance.generators.ddim import ddim_sample
from appliance.generators.runtime import Generator
from export.generators.diffusion import Denoiser, ddim_sample_torch, ddim_schedule
from export.generators.onnx import export_generator


def _model() -> Denoiser:
    torch.manual_seed(0)
    model = Denoiser(channels=1, n_classes=2, width=8, mults=(1, 2)).eval()
    with torch.no_grad():  # an untrained net predicts ~0 noise; make its output matter
        model.out.weight.mul_(5)
    return model


def _inputs(n: int = 3, size: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((n, 1, size, size)).astype(np.float32)
    mask = np.zeros((n, 1, size, size), np.float32)
    mask[:, :, 4:12, 5:11] = 1
    return noise, np.array([0, 1, 1]), mask


@pytest.mark.parametrize("guidance", [1.0, 2.5])
def test_numpy_loop_equals_torch_loop(guidance: float) -> None:
    model, schedule = _model(), ddim_schedule(20)
    noise, labels, mask = _inputs()

    def denoise(x: np.ndarray, t: np.ndarray, c: np.ndarray, m: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(*(torch.from_numpy(a) for a in (x, t, c, m))).numpy()

    ours = ddim_sample(denoise, schedule, noise, labels, mask, guidance, null_class=2)
    ref = ddim_sample_torch(
        model, schedule, *(torch.from_numpy(a) for a in (noise, labels, mask)), guidance, 2
    ).numpy()
    assert np.abs(ours - ref).max() < 1e-4
    assert np.abs(ours - noise).max() > 0.5  # the loop did move the samples
    assert ours.min() >= -1.0 - 1e-6 and ours.max() <= 1.0 + 1e-6  # last step lands on x0


@pytest.mark.slow
def test_onnx_denoiser_in_numpy_loop_matches_torch(tmp_path: Path) -> None:
    model, schedule = _model(), ddim_schedule(20)
    raw = {
        "kind": "diffusion",
        "inputs": ["x", "t", "class", "mask"],
        "output_name": "eps",
        "channels": 1,
        "size": 16,
        "size_multiple": 2,
        "classes": ["cell", "granulocyte"],
        "output_range": [-1, 1],
        "guidance": 2.0,
        "schedule": {
            "kind": schedule.kind,
            "train_steps": schedule.train_steps,
            "timesteps": list(schedule.timesteps),
            "alphas_cumprod": list(schedule.alphas_cumprod),
        },
    }
    contract = GeneratorContract.parse(raw, "test")
    assert contract.schedule == schedule
    export_generator(model, contract, tmp_path / "d.onnx")
    gen = Generator(tmp_path / "d.onnx", contract, threads=1)
    noise, labels, mask = _inputs()
    ours = ddim_sample(gen.denoise, contract.schedule, noise, labels, mask, 2.0, 2)
    ref = ddim_sample_torch(
        model, schedule, *(torch.from_numpy(a) for a in (noise, labels, mask)), 2.0, 2
    ).numpy()
    assert np.abs(ours - ref).max() < 1e-3
    assert len(schedule.timesteps) == 20
