"""The model I/O contract (docs/architecture.md) and the array work on both sides of a model.

Everything here is pure numpy so that it can be tested without a model: `model_input` turns a
stored image (and, for upgrade models, a coarse mask) into the C×H×W float array the network
expects, and `probabilities` / `to_label` turn its raw output back into a `Label`. Padding and
tiling live in `runtime`, because they depend on how the session is run, not on the contract.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from appliance.assist import instances
from appliance.assist.instances import OUTPUT_KINDS, Decoding
from appliance.errors import ApplianceError
from appliance.imageio import percentile_normalise
from appliance.labels import Label

_LAYOUTS = ("NCHW", "NHWC")
_DTYPES = ("float32", "float16")
# ITU-R BT.601 luma: the same grey a person sees, so an RGB image fed to a grey model looks right.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class Contract:
    """What a model expects and returns; parsed once, validated, then trusted."""

    input_name: str
    output_name: str
    input_channels: int
    mask_channel: bool
    dtype: str
    layout: str
    norm_low: float
    norm_high: float
    tile_multiple: int
    output_kind: str
    classes: tuple[str, ...]
    threshold: float
    decoding: Decoding = field(default_factory=Decoding)
    boundary_channel: bool = False

    @classmethod
    def parse(cls, data: str | dict[str, Any], source: str) -> Contract:
        """Validate a contract from JSON text or a dict; `source` names it in error messages."""
        try:
            raw = json.loads(data) if isinstance(data, str) else dict(data)
            norm = raw.get("normalisation", {"method": "percentile", "low": 1.0, "high": 99.8})
            if norm.get("method", "percentile") != "percentile":
                raise ValueError(f"normalisation method {norm.get('method')!r} is not supported")
            contract = cls(
                input_name=str(raw["input_name"]),
                output_name=str(raw["output_name"]),
                input_channels=int(raw["input_channels"]),
                mask_channel=bool(raw.get("mask_channel", False)),
                dtype=str(raw.get("dtype", "float32")),
                layout=str(raw.get("layout", "NCHW")),
                norm_low=float(norm.get("low", 1.0)),
                norm_high=float(norm.get("high", 99.8)),
                tile_multiple=int(raw.get("tile_multiple", 1)),
                output_kind=str(raw["output_kind"]),
                classes=tuple(str(c) for c in raw["classes"]),
                threshold=float(raw.get("threshold", 0.5)),
                decoding=Decoding.parse(raw.get("decoding"), source, str(raw["output_kind"])),
                boundary_channel=bool(raw.get("boundary_channel", False)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ApplianceError(f"{source}: invalid model contract ({exc})") from None
        contract._check(source)
        return contract

    def _check(self, source: str) -> None:
        problems = []
        if self.input_channels not in (1, 3):
            problems.append(f"input_channels {self.input_channels} (1 or 3)")
        if self.dtype not in _DTYPES:
            problems.append(f"dtype {self.dtype!r}")
        if self.layout not in _LAYOUTS:
            problems.append(f"layout {self.layout!r}")
        if self.output_kind not in OUTPUT_KINDS:
            problems.append(f"output_kind {self.output_kind!r}")
        if self.tile_multiple < 1:
            problems.append(f"tile_multiple {self.tile_multiple}")
        if len(self.classes) < 2:
            problems.append("fewer than 2 classes (background first)")
        if self.output_kind == "sigmoid" and len(self.classes) != 2:
            problems.append("a sigmoid model has exactly 2 classes")
        if self.boundary_channel and not self.mask_channel:
            problems.append("a boundary channel needs the mask channel")
        if not 0.0 <= self.norm_low < self.norm_high <= 100.0:
            problems.append(f"normalisation percentiles {self.norm_low}..{self.norm_high}")
        if problems:
            raise ApplianceError(f"{source}: invalid model contract: {', '.join(problems)}")

    @property
    def channels_in(self) -> int:
        """Channels of the network input, the coarse mask and boundary channels included."""
        return self.input_channels + int(self.mask_channel) + int(self.boundary_channel)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def output_channels(self) -> int:
        """Channels the network returns (see `appliance.assist.instances.output_channels`)."""
        return instances.output_channels(self.output_kind, self.n_classes)

    @property
    def instance_aware(self) -> bool:
        """True when the output tells touching cells apart (decoded by seeded watershed)."""
        return self.output_kind in instances.INSTANCE_KINDS


def model_input(
    image: np.ndarray, contract: Contract, mask: np.ndarray | None = None
) -> np.ndarray:
    """C×H×W float32: channels adapted, percentile-normalised, mask channel(s) appended.

    `mask` is the coarse label's instance map (or a 0/1 mask): the mask channel holds its
    foreground, the boundary channel (when the contract has one) the edges of its instances,
    so that touching coarse cells reach the network as separate cells.

    Normalisation runs on the whole image before any tiling, so every tile sees the same scale
    and a tiled prediction equals a single pass.
    """
    img = np.asarray(image)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3)):
        raise ApplianceError(f"image of shape {img.shape} is neither grey nor RGB")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    norm = percentile_normalise(img, contract.norm_low, contract.norm_high)
    if norm.ndim == 2:
        chans = np.repeat(norm[None], contract.input_channels, axis=0)
    elif contract.input_channels == 1:
        chans = np.tensordot(_LUMA, norm, axes=([0], [2]))[None]
    else:
        chans = np.moveaxis(norm, 2, 0)
    if contract.mask_channel:
        if mask is None:
            raise ApplianceError("this model needs a coarse mask as its last input channel")
        mask = np.asarray(mask)
        if mask.shape != img.shape[:2]:
            raise ApplianceError(f"coarse mask {mask.shape} does not match image {img.shape[:2]}")
        planes = [chans, (mask > 0).astype(np.float32)[None]]
        if contract.boundary_channel:
            planes.append(instances.boundaries(mask).astype(np.float32)[None])
        chans = np.concatenate(planes, axis=0)
    return np.ascontiguousarray(chans, dtype=np.float32)


def probabilities(logits: np.ndarray, contract: Contract) -> np.ndarray:
    """K×H×W class probabilities from raw outputs (a sigmoid model becomes [1-p, p]).

    For an instance kind: background, then the foreground probability times each class's share.
    """
    x = logits.astype(np.float32, copy=False)
    if contract.instance_aware:
        return instances.probabilities(x, contract.output_kind, contract.n_classes)
    if contract.output_kind == "sigmoid":
        p = 1.0 / (1.0 + np.exp(-np.clip(x[0], -60.0, 60.0)))
        return np.stack([1.0 - p, p])
    e = np.exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def semantic(probs: np.ndarray, contract: Contract) -> np.ndarray:
    """Class id per pixel (uint16): the contract's threshold for sigmoid models, else argmax."""
    if contract.output_kind == "sigmoid":
        return (probs[1] > contract.threshold).astype(np.uint16)
    return np.argmax(probs, axis=0).astype(np.uint16)


def class_ids(contract: Contract, project_classes: dict[int, str]) -> np.ndarray:
    """Lookup table model class index -> project class id, matched by name.

    A model trained elsewhere may list classes in another order; where a name is unknown the
    index itself is kept, which is right for models trained on this project's own bundles.
    """
    by_name = {name: cid for cid, name in project_classes.items()}
    lut = [0] + [by_name.get(name, k) for k, name in enumerate(contract.classes) if k > 0]
    return np.array(lut, np.uint16)


def to_label(probs: np.ndarray, contract: Contract, lut: np.ndarray | None = None) -> Label:
    """Instances are the connected components of each predicted class (mapped through `lut`)."""
    sem = semantic(probs, contract)
    return Label.from_semantic(sem if lut is None else lut[sem])


def decode_label(
    logits: np.ndarray, probs: np.ndarray, contract: Contract, lut: np.ndarray | None = None
) -> Label:
    """The instances of a whole image's raw output: seeded watershed for instance kinds, else
    connected components of `probs`; model class indices map to project classes through `lut`.
    """
    if not contract.instance_aware:
        return to_label(probs, contract, lut)
    inst, classes = instances.decode(
        logits, contract.output_kind, contract.n_classes, contract.decoding
    )
    if lut is not None:
        classes = {i: int(lut[c]) for i, c in classes.items()}
    return Label(inst, classes)


def mean_entropy(probs: np.ndarray) -> float:
    """Mean pixel entropy divided by log K, so 0 is certain and 1 is a uniform guess."""
    k = probs.shape[0]
    p = np.clip(probs, 1e-12, 1.0)
    return float(-(p * np.log(p)).sum(axis=0).mean() / np.log(k))
