"""Tiny ONNX graphs built with `onnx.helper`: a 1×1 convolution is a real segmentation model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.assist.onnx_builders import contract

__all__ = ["contract", "conv_model"]


def conv_model(
    path: Path,
    channels: int = 1,
    classes: int = 2,
    *,
    seed: int = 0,
    input_name: str = "image",
    output_name: str = "logits",
) -> Path:
    """A 1×1 convolution, `channels` in and `classes` out, dynamic height and width."""
    weights = np.random.default_rng(seed).normal(size=(classes, channels, 1, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", [input_name, "w"], [output_name])],
        "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, channels, "h", "w"])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [1, classes, "h", "w"])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
