"""Bring your own model: any segmentation network, shipped to the tablet as a verified bundle.

`wrap_onnx` takes an ONNX file and its contract; `from_torch` takes a torch `nn.Module` and
exports it first. Both refuse what the tablet could not run, before anything is written.
"""

from export.bundle.wrap import WrapReport, from_torch, load_contract, wrap_onnx

__all__ = ["WrapReport", "from_torch", "load_contract", "wrap_onnx"]
