"""The array work on both sides of a model, as its contract (`appliance.contract`) says.

Everything here is pure numpy so that it can be tested without a model: `model_input` turns a
stored image (and, for upgrade models, a coarse mask) into the C×H×W float array the network
expects, and `probabilities` / `decode_label` turn its raw output back into a `Label` through
the decoder of the contract's output kind (`DECODERS`, one per `appliance.contract.OUTPUT_KINDS`
entry): connected components for semantic kinds, seeded watershed for the instance kinds
(`appliance.assist.instances`). Padding and tiling live in `runtime`, because they depend on how
the session is run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from appliance.assist import detection, instances
from appliance.contract import Contract
from appliance.errors import ApplianceError
from appliance.imageio import percentile_normalise
from appliance.labels import CellObject, Label

__all__ = [
    "DECODERS",
    "Decoder",
    "class_ids",
    "decode_label",
    "mean_entropy",
    "model_input",
    "probabilities",
    "semantic",
    "to_label",
]

# ITU-R BT.601 luma: the same grey a person sees, so an RGB image fed to a grey model looks right.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


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
    norm = percentile_normalise(img, contract.normalisation.low, contract.normalisation.high)
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


@dataclass(frozen=True)
class Decoder:
    """How one output kind becomes class probabilities (K×H×W) and a class id per pixel, and,
    for instance kinds, instances straight from the raw output (instance map, id -> model class
    index); without `instances`, instances are connected components of `semantic`."""

    probabilities: Callable[[np.ndarray, Contract], np.ndarray]
    semantic: Callable[[np.ndarray, Contract], np.ndarray]
    instances: Callable[[np.ndarray, Contract], tuple[np.ndarray, dict[int, int]]] | None = None
    # a detector's kind: point and box objects (model class indices) instead of instances
    objects: Callable[[np.ndarray, Contract], list[CellObject]] | None = None


def _softmax(x: np.ndarray, contract: Contract) -> np.ndarray:
    return instances.softmax(x)


def _sigmoid(x: np.ndarray, contract: Contract) -> np.ndarray:
    p = 1.0 / (1.0 + np.exp(-np.clip(x[0], -60.0, 60.0)))
    return np.stack([1.0 - p, p])


def _argmax(probs: np.ndarray, contract: Contract) -> np.ndarray:
    return np.argmax(probs, axis=0).astype(np.uint16)


def _above_threshold(probs: np.ndarray, contract: Contract) -> np.ndarray:
    return (probs[1] > float(contract.decoding["threshold"])).astype(np.uint16)


def _instance_probabilities(x: np.ndarray, contract: Contract) -> np.ndarray:
    return instances.probabilities(x, contract.output_kind, contract.n_classes)


def _instance_decode(x: np.ndarray, contract: Contract) -> tuple[np.ndarray, dict[int, int]]:
    return instances.decode(x, contract.output_kind, contract.n_classes, contract.decoding)


def _centre_probabilities(x: np.ndarray, contract: Contract) -> np.ndarray:
    """K×H×W: each class's centre probability, background what the best class leaves."""
    cells = detection.scores(x, contract.n_classes)
    return np.concatenate([1.0 - cells.max(axis=0, keepdims=True), cells])


def _centre_objects(x: np.ndarray, contract: Contract) -> list[CellObject]:
    return detection.decode_objects(x, contract.n_classes, contract.decoding)


DECODERS: dict[str, Decoder] = {
    "softmax": Decoder(_softmax, _argmax),
    "sigmoid": Decoder(_sigmoid, _above_threshold),
    "three_class": Decoder(_instance_probabilities, _argmax, _instance_decode),
    "distance": Decoder(_instance_probabilities, _argmax, _instance_decode),
    "centres": Decoder(_centre_probabilities, _argmax, objects=_centre_objects),
}


def probabilities(logits: np.ndarray, contract: Contract) -> np.ndarray:
    """K×H×W class probabilities from the raw output (a sigmoid model becomes [1-p, p])."""
    x = logits.astype(np.float32, copy=False)
    return DECODERS[contract.output_kind].probabilities(x, contract)


def semantic(probs: np.ndarray, contract: Contract) -> np.ndarray:
    """Class id per pixel (uint16), as the output kind decides (argmax, threshold, ...)."""
    return DECODERS[contract.output_kind].semantic(probs, contract)


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
    """The instances of a whole image's raw output, as its kind decodes them (seeded watershed
    for instance kinds, peaks as point or box objects for a detector, else connected components
    of `probs`); model class indices map to project classes through `lut`."""
    decoder = DECODERS[contract.output_kind]
    if decoder.objects is not None:  # a detector: cells as points or boxes, no mask
        found = decoder.objects(logits.astype(np.float32, copy=False), contract)
        if lut is not None:
            found = [o.with_class(int(lut[o.class_id])) for o in found]
        return Label(np.zeros(logits.shape[1:], np.uint32), {}, tuple(found))
    if decoder.instances is None:
        return to_label(probs, contract, lut)
    inst, classes = decoder.instances(logits.astype(np.float32, copy=False), contract)
    if lut is not None:
        classes = {i: int(lut[c]) for i, c in classes.items()}
    return Label(inst, classes)


def mean_entropy(probs: np.ndarray) -> float:
    """Mean pixel entropy divided by log K, so 0 is certain and 1 is a uniform guess."""
    k = probs.shape[0]
    p = np.clip(probs, 1e-12, 1.0)
    return float(-(p * np.log(p)).sum(axis=0).mean() / np.log(k))
