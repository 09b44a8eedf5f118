"""Checks that an ONNX model is self-contained, loads, and honours its declared I/O contract.

The tablet runs models it did not build, so before a model is installed it must load in
onnxruntime from memory (a path would let external-data references reach into the file
system), and its graph must have exactly the input and output the contract names, with the
ranks, channels and dtype the runtime will feed and expect. `onnx` is optional in the core: with
it, `onnx.checker` and an explicit external-data scan run too; without it, loading from bytes
already refuses external data because there is no folder to resolve it against.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import numpy as np

from appliance.bundles.archive import Fields

DTYPES = {"float32": ("tensor(float)", np.float32), "float16": ("tensor(float16)", np.float16)}
OUTPUT_KINDS = ("softmax", "sigmoid")
Fail = Callable[[str], NoReturn]


def validate_contract(f: Fields) -> dict[str, Any]:
    """The I/O contract (docs/architecture.md), type- and range-checked; returns it unchanged."""
    f.get("input_name", str)
    f.get("output_name", str)
    if f.get("input_channels", int) < 1:
        f.fail(f"{f.where}.input_channels must be at least 1")
    f.get("mask_channel", bool)
    if f.get("dtype", str) not in DTYPES:
        f.fail(f"{f.where}.dtype must be one of {', '.join(DTYPES)}")
    if f.get("layout", str) != "NCHW":
        f.fail(f"{f.where}.layout must be 'NCHW'")
    norm = f.nested("normalisation")
    norm.get("method", str)
    low, high = norm.get("low", float, optional=True), norm.get("high", float, optional=True)
    if low is not None and high is not None and not 0 <= low < high <= 100:
        f.fail(f"{f.where}.normalisation needs 0 <= low < high <= 100")
    if f.get("tile_multiple", int) < 1:
        f.fail(f"{f.where}.tile_multiple must be at least 1")
    kind = f.get("output_kind", str)
    if kind not in OUTPUT_KINDS:
        f.fail(f"{f.where}.output_kind must be one of {', '.join(OUTPUT_KINDS)}")
    classes = f.get("classes", list)
    if len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        f.fail(f"{f.where}.classes must list at least two names (index 0 is background)")
    threshold = f.get("threshold", float)
    if not 0.0 <= threshold <= 1.0:
        f.fail(f"{f.where}.threshold must lie in [0, 1]")
    return f.obj


def check_onnx(data: bytes, contract: dict[str, Any], fail: Fail) -> None:
    """Refuse (through `fail`) a model that is invalid, not self-contained or off-contract."""
    _check_with_onnx(data, fail)
    session = _session(data, fail)
    channels = contract["input_channels"] + int(contract["mask_channel"])
    classes = len(contract["classes"]) if contract["output_kind"] == "softmax" else 1
    onnx_type, np_type = DTYPES[contract["dtype"]]
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    declared_in, declared_out = contract["input_name"], contract["output_name"]
    if declared_in not in inputs:
        fail(f"graph has no input {declared_in!r} (inputs: {', '.join(inputs)})")
    if len(inputs) > 1:
        extra = ", ".join(n for n in inputs if n != declared_in)
        fail(f"graph has inputs the contract does not declare: {extra}")
    if declared_out not in outputs:
        fail(f"graph has no output {declared_out!r} (outputs: {', '.join(outputs)})")
    node_in, node_out = inputs[declared_in], outputs[declared_out]
    if node_in.type != onnx_type:
        fail(f"input {declared_in!r} is {node_in.type}, contract says {contract['dtype']}")
    _check_shape("input", node_in.name, node_in.shape, channels, fail)
    _check_shape("output", node_out.name, node_out.shape, classes, fail)
    tile = contract["tile_multiple"]
    probe = np.zeros((1, channels, tile, tile), np_type)
    try:
        result = session.run([declared_out], {declared_in: probe})[0]
    except Exception as exc:  # onnxruntime raises its own unexported exception types
        fail(f"fails on a {tile}×{tile} zero tile: {exc}")
    if result.shape != (1, classes, tile, tile):
        fail(
            f"on a {tile}×{tile} tile gives shape {tuple(result.shape)}, contract implies "
            f"{(1, classes, tile, tile)}"
        )


def _check_shape(kind: str, name: str, shape: list[Any], channels: int, fail: Fail) -> None:
    if len(shape) != 4:
        fail(f"{kind} {name!r} has rank {len(shape)}, contract layout NCHW needs rank 4")
    if isinstance(shape[1], int) and shape[1] != channels:
        fail(f"{kind} {name!r} has {shape[1]} channels, contract implies {channels}")


def _session(data: bytes, fail: Fail) -> Any:
    """A CPU session from the bytes (never a path), one thread, quiet."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own unexported exception types
        fail(f"onnxruntime cannot load it: {exc}")


def _check_with_onnx(data: bytes, fail: Fail) -> None:
    """`onnx.checker` and an external-data scan, when the optional `onnx` package is present."""
    try:
        onnx = importlib.import_module("onnx")
    except ImportError:
        return
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and onnx's own errors
        fail(f"not an ONNX model: {exc}")
    for tensor in _tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            fail(f"tensor {tensor.name!r} refers to external data; bundles must be self-contained")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx.checker.ValidationError and protobuf errors
        fail(f"onnx.checker refuses it: {exc}")


def _tensors(model: Any) -> Iterator[Any]:
    """Every tensor a model can hold: initializers, attribute constants, subgraphs, functions."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        yield from _node_tensors(function.node)


def _graph_tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    yield from _node_tensors(graph.node)


def _node_tensors(nodes: Any) -> Iterator[Any]:
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _graph_tensors(attr.g)
            for graph in attr.graphs:
                yield from _graph_tensors(graph)


def check_generator_onnx(data: bytes, contract: dict[str, Any], fail: Fail) -> None:
    """The generator counterpart of `check_onnx`: inputs named as declared, a zero probe runs
    at the contract's size and gives the declared output shape."""
    from appliance.errors import ApplianceError
    from appliance.generators.contract import GeneratorContract

    try:
        gen = GeneratorContract.parse(contract, "contract")
    except ApplianceError as exc:
        fail(str(exc))
    _check_with_onnx(data, fail)
    session = _session(data, fail)
    inputs = {i.name for i in session.get_inputs()}
    if inputs != set(gen.inputs):
        fail(f"graph inputs {sorted(inputs)} differ from the contract's {sorted(gen.inputs)}")
    if gen.output_name not in {o.name for o in session.get_outputs()}:
        fail(f"graph has no output {gen.output_name!r}")
    try:
        result = session.run([gen.output_name], gen.probe_inputs())[0]
    except Exception as exc:  # onnxruntime raises its own unexported exception types
        fail(f"fails on zero inputs of the contract's shapes: {exc}")
    expected = (1, gen.output_channels, gen.size, gen.size)
    if tuple(result.shape) != expected:
        fail(f"gives shape {tuple(result.shape)} on a probe, contract implies {expected}")
