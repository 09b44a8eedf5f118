"""ONNX export of the generators with a parity check against PyTorch.

Each generator is exported with the input names its contract declares
(`appliance.contract.GENERATOR_INPUTS`) and a dynamic batch (and, for the fully convolutional
ones, dynamic height and width), checked with `onnx.checker` (full check), and run through
onnxruntime on random inputs of two sizes: the largest |Δ| against PyTorch must stay within
`MAX_ABS_DIFF`, or the model does not ship. The TorchScript exporter is used: the graphs hold
embeddings and int64 class inputs that it handles without the dynamo exporter's shape guards.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from appliance.contract import GeneratorContract
from appliance.errors import ApplianceError
from export.onnx_export import OPSET, Parity, cpu_session

MAX_ABS_DIFF = 1e-4


def _random_inputs(
    contract: GeneratorContract, n: int, size: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    inputs = contract.probe_inputs(n, size)
    for name, arr in inputs.items():
        if name == "class":
            top = len(contract.classes) + (1 if contract.kind == "diffusion" else 0)
            inputs[name] = rng.integers(0, top, arr.shape).astype(np.int64)
        elif name == "t":
            inputs[name] = rng.integers(0, 1000, arr.shape).astype(np.float32)
        elif name == "mask":
            inputs[name] = (rng.random(arr.shape) > 0.5).astype(np.float32)
        elif name == "label":
            k = arr.shape[1]
            idx = rng.integers(0, k, (n, size, size))
            inputs[name] = (np.arange(k)[None, :, None, None] == idx[:, None]).astype(np.float32)
        else:
            inputs[name] = rng.standard_normal(arr.shape).astype(np.float32)
    return inputs


def export_generator(model: torch.nn.Module, contract: GeneratorContract, path: Path) -> Parity:
    """Export `model` under `contract`, fully check it, and prove parity; raise if it fails."""
    import onnx

    model = model.cpu().eval()
    names = list(contract.inputs)
    rng = np.random.default_rng(0)
    example = tuple(
        torch.from_numpy(a) for a in _random_inputs(contract, 2, contract.size, rng).values()
    )
    axes: dict[str, dict[int, str]] = {}
    for name, arr in zip(names, example, strict=True):
        axes[name] = {0: "batch"}
        if contract.size_multiple and arr.ndim == 4:
            axes[name].update({2: "height", 3: "width"})
    axes[contract.output_name] = {0: "batch"}
    if contract.size_multiple:
        axes[contract.output_name].update({2: "height", 3: "width"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            example,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=names,
            output_names=[contract.output_name],
            dynamic_axes=axes,
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = cpu_session(path)
    sizes = [contract.size]
    if contract.size_multiple:
        sizes.append(contract.size + 2 * contract.size_multiple)
    worst, shapes = 0.0, []
    for n, size in zip((1, 3), sizes * 2, strict=False):
        inputs = _random_inputs(contract, n, size, rng)
        with torch.no_grad():
            ref = model(*(torch.from_numpy(inputs[k]) for k in names)).numpy()
        got = session.run([contract.output_name], inputs)[0]
        if got.shape != ref.shape:
            raise ApplianceError(f"{path.name}: ONNX output shape {got.shape}, PyTorch {ref.shape}")
        worst = max(worst, float(np.abs(got - ref).max()))
        shapes.append([n, size, size])
    if worst > MAX_ABS_DIFF:
        raise ApplianceError(
            f"{path.name}: ONNX parity failed (max |Δ| {worst:.2e}); the model is not written"
        )
    return Parity("torchscript", None, worst, 1.0, shapes)
