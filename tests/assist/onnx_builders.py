"""Tiny ONNX models made with `onnx.helper`, matching the model I/O contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from appliance.contract import Contract


def raw_contract(
    channels: int = 1,
    classes: int = 2,
    *,
    mask: bool = False,
    kind: str = "softmax",
    multiple: int = 16,
) -> dict[str, Any]:
    """The JSON form of a contract, as a model bundle manifest carries it."""
    return {
        "input_name": "image",
        "output_name": "logits",
        "input_channels": channels,
        "mask_channel": mask,
        "dtype": "float32",
        "layout": "NCHW",
        "normalisation": {"method": "percentile", "low": 1.0, "high": 99.8},
        "tile_multiple": multiple,
        "output_kind": kind,
        "classes": ["background", "nucleus", "debris"][:classes],
    }


def contract(
    channels: int = 1,
    classes: int = 2,
    *,
    mask: bool = False,
    kind: str = "softmax",
    multiple: int = 16,
) -> Contract:
    """The typed contract (`raw_contract` parsed)."""
    raw = raw_contract(channels, classes, mask=mask, kind=kind, multiple=multiple)
    return Contract.parse(raw, "test contract")


def conv_model(path: Path, weights: np.ndarray, bias: np.ndarray | None = None) -> Path:
    """One convolution (`weights`: out × in × k × k, 'same' padding), dynamic height and width."""
    out_c, in_c, k, _ = weights.shape
    inits = [numpy_helper.from_array(weights.astype(np.float32), "w")]
    inputs = ["image", "w"]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias.astype(np.float32), "b"))
        inputs.append("b")
    node = helper.make_node("Conv", inputs, ["logits"], pads=[k // 2] * 4)
    graph = helper.make_graph(
        [node],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, in_c, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, out_c, "h", "w"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def threshold_model(path: Path, channels: int = 1) -> Path:
    """2-class softmax: foreground logit 20·(mean of channels − 0.5), background its negative."""
    w = np.zeros((2, channels, 1, 1), np.float32)
    w[1, :, 0, 0] = 20.0 / channels
    w[0, :, 0, 0] = -20.0 / channels
    return conv_model(path, w, np.array([10.0, -10.0]))


def mask_model(path: Path, channels: int = 1) -> Path:
    """Upgrade-style model (image + mask channel): foreground where the mask is, grown by 1 px."""
    w = np.zeros((2, channels + 1, 3, 3), np.float32)
    w[1, channels] = 10.0
    w[0, channels] = -10.0
    return conv_model(path, w, np.array([5.0, -5.0]))


def pooling_model(path: Path) -> Path:
    """A miniature U-Net step without convolution buffers: 3×3 average, 2×2 max-pool with stride
    2, 1×1 conv to 2 classes, ×2 nearest upsample.

    Its output depends on each pixel's neighbourhood and on where the pooling grid falls, so a
    tiled result equals a single pass only if tiles overlap enough and start on the grid of the
    tile multiple. No im2col buffers: a 3000×2000 single pass stays within ~150 MB.
    """
    w = numpy_helper.from_array(np.array([[[[3.0]]], [[[-3.0]]]], np.float32), "w")
    b = numpy_helper.from_array(np.array([-1.5, 1.5], np.float32), "b")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes = [
        helper.make_node("AveragePool", ["image"], ["a"], kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("MaxPool", ["a"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p", "w", "b"], ["c"]),
        helper.make_node("Resize", ["c", "", "scales"], ["logits"], mode="nearest"),
    ]
    graph = helper.make_graph(
        nodes,
        "pool",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2, "h2", "w2"])],
        [w, b, scales],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
