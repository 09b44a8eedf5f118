"""ONNX export of a trained U-Net, its full check, PyTorch parity and CPU latency.

A model may only ship after (1) `torch.onnx.export` at opset 18 with the dynamo exporter and
dynamic batch, height and width (H and W multiples of 16, the contract's `tile_multiple`),
(2) `onnx.checker` with `full_check`, and (3) onnxruntime reproducing PyTorch on several random
inputs and sizes (max |Δlogit| ≤ 1e-4, argmax agreement ≥ 99.9 %). The TorchScript exporter is a
fallback only when the dynamo exporter fails, and the reason is logged and recorded.
"""

from __future__ import annotations

import inspect
import logging
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from appliance.errors import ApplianceError
from export.data import TILE_MULTIPLE

log = logging.getLogger(__name__)
# The exporter warns once per torchvision operator when torchvision is absent; our U-Net uses
# none of them, so those lines are noise in every training log.
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)

OPSET = 18
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
MAX_ABS_DIFF = 1e-4
MIN_ARGMAX_AGREEMENT = 0.999
# Batch and height, width in units of the tile multiple (16: 64², 96×128, 256², 48×80).
PARITY_SHAPES = ((1, 4, 4), (2, 6, 8), (1, 16, 16), (3, 3, 5))


@dataclass(frozen=True)
class Parity:
    """How closely onnxruntime reproduces PyTorch, over all parity inputs."""

    exporter: str
    fallback_reason: str | None
    max_abs_diff: float
    argmax_agreement: float
    shapes: list[list[int]]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def cpu_session(path: Path, threads: int | None = None):  # -> onnxruntime.InferenceSession
    """An onnxruntime CPU session (the appliance's runtime) with all graph optimisations."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _export_dynamo(
    model: torch.nn.Module, example: torch.Tensor, path: Path, names: tuple[str, str], multiple: int
) -> None:
    dims = {
        0: torch.export.Dim("batch", min=1, max=1024),
        2: multiple * torch.export.Dim("h_blocks", min=1, max=16384 // multiple),
        3: multiple * torch.export.Dim("w_blocks", min=1, max=16384 // multiple),
    }
    arg = next(iter(inspect.signature(model.forward).parameters))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            opset_version=OPSET,
            input_names=[names[0]],
            output_names=[names[1]],
            dynamic_shapes={arg: dims},
            external_data=False,
            verbose=False,
        )
    if program is None:
        raise RuntimeError("the dynamo exporter returned no program")
    program.save(str(path), external_data=False)


def _export_torchscript(
    model: torch.nn.Module, example: torch.Tensor, path: Path, names: tuple[str, str]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[names[0]],
            output_names=[names[1]],
            dynamic_axes={
                names[0]: {0: "batch", 2: "height", 3: "width"},
                names[1]: {0: "batch", 2: "height", 3: "width"},
            },
        )


def check_parity(
    model: torch.nn.Module,
    path: Path,
    in_channels: int,
    seed: int = 0,
    names: tuple[str, str] = (INPUT_NAME, OUTPUT_NAME),
    multiple: int = TILE_MULTIPLE,
) -> tuple[float, float, list[list[int]]]:
    """Max |Δlogit| and argmax agreement of onnxruntime vs PyTorch on random inputs."""
    session = cpu_session(path)
    rng = np.random.default_rng(seed)
    worst, agree, total = 0.0, 0, 0
    shapes = []
    model.eval()
    for n, h_units, w_units in PARITY_SHAPES:
        h, w = h_units * multiple, w_units * multiple
        x = rng.random((n, in_channels, h, w), dtype=np.float32)
        if in_channels > 1:  # a realistic 0/1 mask channel for upgrade models
            x[:, -1] = (x[:, -1] > 0.5).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = session.run([names[1]], {names[0]: x})[0]
        if got.shape != ref.shape:
            raise ApplianceError(f"{path.name}: ONNX output shape {got.shape}, PyTorch {ref.shape}")
        worst = max(worst, float(np.abs(got - ref).max()))
        agree += int((got.argmax(1) == ref.argmax(1)).sum())
        total += ref.shape[0] * ref.shape[2] * ref.shape[3]
        shapes.append([n, in_channels, h, w])
    return worst, agree / total, shapes


def export_onnx(
    model: torch.nn.Module,
    in_channels: int,
    path: Path,
    *,
    input_name: str = INPUT_NAME,
    output_name: str = OUTPUT_NAME,
    multiple: int = TILE_MULTIPLE,
) -> Parity:
    """Export, fully check and parity-test `model`; raise ApplianceError if it must not ship.

    Height and width stay dynamic in steps of `multiple` (the contract's tile multiple), so one
    file serves every image size the tablet tiles to.
    """
    import onnx

    model = model.cpu().eval()
    example = torch.rand(1, in_channels, 4 * multiple, 4 * multiple)
    names = (input_name, output_name)
    exporter, reason = "dynamo", None
    try:
        _export_dynamo(model, example, path, names, multiple)
    except Exception as exc:  # any exporter failure: fall back, and say why
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        log.warning("dynamo ONNX exporter failed (%s); falling back to TorchScript", reason)
        exporter = "torchscript"
        _export_torchscript(model, example, path, names)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    max_diff, agreement, shapes = check_parity(
        model, path, in_channels, names=names, multiple=multiple
    )
    parity = Parity(exporter, reason, max_diff, agreement, shapes)
    if max_diff > MAX_ABS_DIFF or agreement < MIN_ARGMAX_AGREEMENT:
        raise ApplianceError(
            f"{path.name}: ONNX parity failed (max |Δ| {max_diff:.2e}, "
            f"argmax agreement {agreement:.4%}); the model is not written"
        )
    return parity


def measure_latency(
    path: Path, in_channels: int, size: int = 512, threads: int = 2, runs: int = 20
) -> float:
    """Median milliseconds for one size×size image through onnxruntime on `threads` CPU threads."""
    session = cpu_session(path, threads)
    x = np.random.default_rng(0).random((1, in_channels, size, size), dtype=np.float32)
    for _ in range(3):
        session.run([OUTPUT_NAME], {INPUT_NAME: x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run([OUTPUT_NAME], {INPUT_NAME: x})
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))
