"""Optional int8 static quantization (QDQ) of an exported model, calibrated on training images.

Static QDQ (activations uint8, weights int8 per channel: onnxruntime's fast CPU path) roughly
halves the tablet's pre-label latency; the price is a small Dice drop, which `train` measures on
the validation images and records in the bundle so the tablet's user can judge it.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from export.onnx_export import INPUT_NAME, OUTPUT_NAME, cpu_session

log = logging.getLogger(__name__)


def _reader(inputs: Iterable[np.ndarray]):  # -> onnxruntime.quantization.CalibrationDataReader
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        """Feeds calibration inputs (1×C×H×W float32) one at a time."""

        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {INPUT_NAME: x.astype(np.float32)}

    return _Reader()


def quantize_int8(fp32: Path, out: Path, calibration: list[np.ndarray]) -> Path:
    """Write an int8 QDQ copy of `fp32`, calibrated on 1×C×H×W inputs (H, W multiples of 16)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            _reader(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    return out


def onnx_predict(path: Path, inputs: Iterable[np.ndarray]) -> list[np.ndarray]:
    """Argmax class maps of an ONNX model for 1×C×H×W inputs (used to measure the Dice drop)."""
    session = cpu_session(path)
    return [session.run([OUTPUT_NAME], {INPUT_NAME: x})[0].argmax(1)[0] for x in inputs]
