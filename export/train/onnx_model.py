"""A trained U-Net as the tablet will see it: its I/O contract and its exported ONNX outputs.

The contract is written here, next to the code that scores the exported graph, so that the
numbers a model bundle records come from the same decoding (`appliance.assist.contract`) the
tablet runs, on whole images, never from the PyTorch model that stays on the workstation.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from appliance.assist.contract import decode_label, probabilities
from appliance.assist.instances import INSTANCE_KINDS
from appliance.contract import Contract, Value
from appliance.labels import Label
from export.data import NORMALISATION, TILE_MULTIPLE, SegDataset
from export.instance_metrics import dice, f1_at
from export.onnx_export import INPUT_NAME, OUTPUT_NAME, cpu_session

__all__ = ["onnx_instances", "onnx_outputs", "onnx_scores", "segmentation_contract"]


def segmentation_contract(
    image_channels: int,
    task: str,
    classes: list[str],
    output: str = "softmax",
    decoding: Mapping[str, Value] | None = None,
) -> Contract:
    """The model I/O contract (`appliance.contract`) of a U-Net `export.train` trained;
    `decoding` (instance kinds) defaults to the kind's."""
    return Contract(
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        input_channels=image_channels,
        mask_channel=task == "upgrade",
        normalisation=NORMALISATION,
        tile_multiple=TILE_MULTIPLE,
        output_kind=output,
        classes=tuple(classes),
        boundary_channel=task == "upgrade" and output in INSTANCE_KINDS,
        decoding=dict(decoding or {}),
    )


def onnx_outputs(path: Path, dataset: SegDataset) -> list[np.ndarray]:
    """An ONNX model's raw outputs (C×H×W) on whole evaluation images, as the tablet gets them."""
    session = cpu_session(path)
    outs = []
    for i, sample in enumerate(dataset.samples):
        h, w = sample.target.shape
        logits = session.run([OUTPUT_NAME], {INPUT_NAME: dataset[i]["x"][None].numpy()})[0][0]
        outs.append(logits[:, :h, :w])
    return outs


def onnx_instances(path: Path, dataset: SegDataset, contract: Contract) -> list[Label]:
    """Labels an ONNX model gives on whole evaluation images, decoded as the tablet decodes."""
    return [
        decode_label(out, probabilities(out, contract), contract)
        for out in onnx_outputs(path, dataset)
    ]


def onnx_scores(path: Path, dataset: SegDataset, contract: Contract) -> tuple[float, float]:
    """Pooled foreground Dice and instance F1 (IoU > 0.5) of an ONNX model on `dataset`."""
    preds = [label.instances for label in onnx_instances(path, dataset, contract)]
    truths = [s.instances for s in dataset.samples]
    return dice(truths, preds), f1_at(truths, preds)
