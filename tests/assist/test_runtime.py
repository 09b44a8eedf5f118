"""Provider choice, session cache, padding and tiling of the inference runtime."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import pytest

from appliance.assist import runtime
from appliance.assist.contract import model_input
from appliance.assist.runtime import InferenceModel, tile_starts

from .onnx_builders import contract, pooling_model, threshold_model


@pytest.fixture
def fresh_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_probed", None)


def test_no_gpu_runs_on_cpu_without_error_output(
    tmp_path: Path,
    fresh_probe: None,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture,
) -> None:
    """onnxruntime-gpu lists CUDA here, but there is no device: CPU, and no error lines."""
    if runtime.cuda_device_count() > 0:
        pytest.skip("this machine has a CUDA device")
    caplog.set_level(logging.DEBUG)
    path = threshold_model(tmp_path / "m.onnx")
    sess = runtime.session(path)
    assert sess.get_providers() == ["CPUExecutionProvider"]
    out = capfd.readouterr()
    assert "[E:" not in out.err and "Error" not in out.err
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_failed_gpu_attempt_is_silent(
    tmp_path: Path,
    fresh_probe: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture,
) -> None:
    """Even when the driver check is fooled, the CUDA attempt's native errors go to debug."""
    monkeypatch.setattr(runtime, "cuda_device_count", lambda: 1)
    caplog.set_level(logging.DEBUG)
    path = threshold_model(tmp_path / "m.onnx")
    assert runtime.choose_providers(str(path)) == ["CPUExecutionProvider"]
    assert "[E:" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_sessions_are_cached_and_do_not_spin(tmp_path: Path) -> None:
    path = threshold_model(tmp_path / "m.onnx")
    a, b = runtime.session(path, threads=1), runtime.session(path, threads=1)
    assert a is b
    runtime.release_sessions()
    assert runtime.session(path, threads=1) is not a
    opts = a.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.intra_op_num_threads == 1


def test_missing_or_corrupt_model_is_one_line_error(tmp_path: Path) -> None:
    from appliance.errors import ApplianceError

    with pytest.raises(ApplianceError, match="missing"):
        runtime.session(tmp_path / "none.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ApplianceError, match="does not load"):
        runtime.session(bad)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (17, 33), (16, 16)])
def test_prediction_keeps_odd_and_tiny_shapes(tmp_path: Path, shape: tuple[int, int]) -> None:
    model = InferenceModel(threshold_model(tmp_path / "m.onnx"), contract())
    img = np.zeros(shape, np.uint8)
    img[:, : shape[1] // 2] = 255  # left half bright (nothing at all for a single pixel)
    pred = model.predict(img)
    assert pred.probs.shape == (2, *shape) and pred.label.shape == shape
    assert np.array_equal(pred.label.binary(), img > 0)


def test_rgb_and_16bit_inputs(tmp_path: Path) -> None:
    model = InferenceModel(threshold_model(tmp_path / "m.onnx", 3), contract(3))
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[5:10, 5:10] = 200
    assert model.predict(rgb).label.binary().sum() == 25
    grey = InferenceModel(threshold_model(tmp_path / "g.onnx"), contract())
    img16 = np.full((20, 20), 1000, np.uint16)
    img16[2:4, 2:4] = 60000
    assert grey.predict(img16).label.binary().sum() == 4


def test_tile_starts_cover_the_axis() -> None:
    assert tile_starts(100, 128, 16) == [0]
    starts = tile_starts(1000, 256, 32)
    assert starts[0] == 0 and starts[-1] == 1000 - 256
    assert all(b - a <= 256 - 64 for a, b in itertools.pairwise(starts))


def test_tiled_3000x2000_equals_single_pass(tmp_path: Path) -> None:
    """3000×2000 (not a multiple of 16), neighbourhood + pooling model: tiles == one pass."""
    model = InferenceModel(pooling_model(tmp_path / "m.onnx"), contract())
    img = np.random.default_rng(0).integers(0, 65535, (3000, 2000), dtype=np.uint16)
    chw = model_input(img, model.contract)
    single = model.logits(chw, max_pixels=10**8)
    calls = []
    model_run = model._run

    def counting(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape)
        return model_run(x)

    model._run = counting  # type: ignore[method-assign]
    tiled = model.logits(chw, max_pixels=512 * 512, tile=512, margin=16)
    assert len(calls) > 20 and all(s[1] <= 512 and s[2] <= 512 for s in calls)
    assert tiled.shape == single.shape == (2, 3000, 2000)
    # np.array_equal, not np.testing (which needs ~130 MB of temporaries here): later tests
    # measure child processes' peak RSS, which a forked child inherits from this process.
    assert np.array_equal(tiled, single)
    del tiled
    seams = model.logits(chw, max_pixels=512 * 512, tile=512, margin=0)
    assert not np.array_equal(seams, single)  # without overlap the seams show: the test has teeth


def test_check_stops_between_tiles(tmp_path: Path) -> None:
    from appliance.assist.jobs import Cancelled

    model = InferenceModel(pooling_model(tmp_path / "m.onnx"), contract())

    def stop() -> None:
        raise Cancelled

    with pytest.raises(Cancelled):
        model.predict(
            np.zeros((300, 300), np.uint8), check=stop, max_pixels=64 * 64, tile=128, margin=16
        )


def test_gpu_provider_kept_only_when_session_really_uses_it(
    tmp_path: Path, fresh_probe: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe trusts get_providers(), not the list it asked for (a fake session stands in)."""

    class FakeSession:
        def __init__(self, providers: list[str]) -> None:
            self.providers = providers

        def get_providers(self) -> list[str]:
            return [p for p in self.providers if p != "TensorrtExecutionProvider"]

    import onnxruntime

    gpu_build = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: gpu_build)
    monkeypatch.setattr(runtime, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(runtime, "_new_session", lambda _p, providers, _t: FakeSession(providers))
    chosen = runtime.choose_providers(str(tmp_path / "m.onnx"))
    assert chosen == ["CUDAExecutionProvider", "CPUExecutionProvider"]
