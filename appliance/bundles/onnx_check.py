"""Checks that an ONNX model is self-contained, loads, and honours its declared I/O contract.

The tablet runs models it did not build, so before a model is installed it must load in
onnxruntime from memory (a path would let external-data references reach into the file
system), and its graph must have exactly the input and output its contract
(`appliance.contract`) names, with the ranks, channels and dtype the runtime will feed and
expect. `onnx` is optional in the core: with it, `onnx.checker` and an explicit external-data
scan run too; without it, loading from bytes already refuses external data because there is
no folder to resolve it against.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import numpy as np

from appliance.contract import Contract, ContractError

__all__ = ["PROBE_DTYPES", "check_onnx"]

PROBE_DTYPES = {"float32": np.float32, "float16": np.float16}
Fail = Callable[[str], NoReturn]


def check_onnx(data: bytes, contract: Contract, fail: Fail) -> None:
    """Refuse (through `fail`) a model that is invalid, not self-contained or off-contract.

    The graph's inputs and outputs are held against the contract (`Contract.validate`), then
    the model runs once on a zero tile of tile_multiple × 2·tile_multiple pixels, the smallest
    input the runtime can feed it (a fixed-size model: one tile of its size), and must answer
    with the shape the contract implies.
    """
    _check_with_onnx(data, fail)
    session = _session(data, fail)
    try:
        contract.validate(inputs=session.get_inputs(), outputs=session.get_outputs())
    except ContractError as exc:
        fail(f"contract.{exc.field}: {exc.problem}")
    # A fixed-size model only ever gets tiles of its size.
    h, w = (contract.fixed_size,) * 2 if contract.fixed_size else (contract.tile_multiple,) * 2
    w = w if contract.fixed_size else 2 * w
    probe = np.zeros((1, contract.channels_in, h, w), PROBE_DTYPES[contract.dtype])
    try:
        result = session.run([contract.output_name], {contract.input_name: probe})[0]
    except Exception as exc:  # onnxruntime raises its own unexported exception types
        fail(f"fails on a {h}×{w} zero tile: {exc}")
    wanted = (1, contract.channels_out, h, w)
    if tuple(result.shape) != wanted:
        fail(f"on a {h}×{w} tile gives shape {tuple(result.shape)}, contract implies {wanted}")


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
