"""The generator contract: what a `generator` model takes and returns.

A `generator` model (docs/generators.md) does not map an image to a label: it takes noise,
a class and maybe a mask or source pixels, and returns pixels (or, for the diffusion denoiser,
predicted noise that the tablet's DDIM loop in `appliance.generators.ddim` consumes). Its
contract names the graph's inputs by role, the conditioning, the output range and, for
diffusion, the DDIM schedule. Kinds:
- `cgan`: `z` (N×latent) and `class` (N, int64) → `image` (N×(C+1)×S×S in [-1, 1]; the last
  channel > 0 is the cell's mask);
- `diffusion`: `x` (N×C×S×S), `t` (N, float32), `class` (N, int64; `len(classes)` is the null
  class of classifier-free guidance), `mask` (N×1×S×S, 0/1) → `eps`;
- `label2image`: `source` (N×C×S×S in [-1, 1]) and `label` (N×(1+K)×S×S one-hot) → `image`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from appliance.contract.common import ContractError, document, reject_unknown, typed
from appliance.errors import ApplianceError

__all__ = [
    "GENERATOR_INPUTS",
    "GENERATOR_KINDS",
    "GENERATOR_OUTPUTS",
    "GeneratorContract",
    "Schedule",
]

GENERATOR_KINDS = ("cgan", "diffusion", "label2image")
GENERATOR_INPUTS: dict[str, tuple[str, ...]] = {
    "cgan": ("z", "class"),
    "diffusion": ("x", "t", "class", "mask"),
    "label2image": ("source", "label"),
}
GENERATOR_OUTPUTS = {"cgan": "image", "diffusion": "eps", "label2image": "image"}


@dataclass(frozen=True)
class Schedule:
    """DDIM sampling steps: `timesteps[i]` (descending) with ᾱ at each and ᾱ after the last.

    `alphas_cumprod[i]` is ᾱ(timesteps[i]); the step after the last one lands on ᾱ = 1 (clean).
    `eta` = 0 is the deterministic DDIM sampler, > 0 adds DDPM-like noise.
    """

    kind: str
    train_steps: int
    timesteps: tuple[int, ...]
    alphas_cumprod: tuple[float, ...]
    eta: float = 0.0

    def check(self, source: str) -> None:
        a = np.asarray(self.alphas_cumprod)
        t = np.asarray(self.timesteps)
        if len(a) != len(t) or len(t) < 1:
            raise ContractError("schedule", "needs one alphas_cumprod per timestep", source)
        if np.any(np.diff(t) >= 0) or t.min() < 0 or t.max() >= self.train_steps:
            raise ContractError("schedule.timesteps", "must descend within 0..T-1", source)
        if np.any(a <= 0) or np.any(a >= 1) or np.any(np.diff(a) <= 0):
            raise ContractError("schedule.alphas_cumprod", "must rise strictly in (0, 1)", source)
        if self.eta < 0:
            raise ContractError("schedule.eta", "must be >= 0", source)


@dataclass(frozen=True)
class GeneratorContract:
    """Parsed, validated generator contract (the JSON under a `generator` model's `contract`)."""

    kind: str
    inputs: tuple[str, ...]
    output_name: str
    channels: int
    size: int
    size_multiple: int  # 0: fixed size only; else any multiple of it works (fully convolutional)
    classes: tuple[str, ...]
    output_range: tuple[float, float] = (-1.0, 1.0)
    latent_dim: int = 0
    guidance: float = 1.0
    normalisation: dict[str, float] = field(default_factory=lambda: {"low": 1.0, "high": 99.8})
    schedule: Schedule | None = None

    @classmethod
    def parse(cls, data: str | bytes | Mapping[str, Any], source: str) -> GeneratorContract:
        """Validate a contract from JSON text or a dict; `source` names it in error messages.

        Every field must have its JSON type (no "3" for 3, no 3.7 for an integer) and no field
        may be unknown: the same strictness as the image-to-label `Contract`.
        """
        raw = document(data, source)
        try:
            contract = cls._from_mapping(raw)
        except ContractError as exc:
            raise exc.at(source) from exc
        contract._check(source)
        return contract

    @classmethod
    def _from_mapping(cls, raw: Mapping[str, Any]) -> GeneratorContract:
        # a missing field first: an image-to-label contract under role generator then reads
        # "kind: is missing" rather than naming one of its own fields as unknown
        for name, (_, required) in _FIELDS.items():
            if required and raw.get(name) is None:
                raise ContractError(name, "is missing")
        reject_unknown(raw, _FIELDS)
        got = {
            name: typed(name, raw[name], kind)
            for name, (kind, _) in _FIELDS.items()
            if raw.get(name) is not None
        }
        bounds = got["output_range"]
        low_high = [typed(f"output_range[{i}]", v, int | float) for i, v in enumerate(bounds)]
        if len(low_high) != 2:
            raise ContractError("output_range", f"must be [low, high], got {bounds!r}")
        return cls(
            kind=got["kind"],
            inputs=_strings("inputs", got["inputs"]),
            output_name=got["output_name"],
            channels=got["channels"],
            size=got["size"],
            size_multiple=got.get("size_multiple", 0),
            classes=_strings("classes", got["classes"]),
            output_range=(float(low_high[0]), float(low_high[1])),
            latent_dim=got.get("latent_dim", 0),
            guidance=float(got.get("guidance", 1.0)),
            normalisation=_normalisation(got.get("normalisation", {})),
            schedule=None if "schedule" not in got else _schedule(got["schedule"]),
        )

    def _check(self, source: str) -> None:
        problems: list[tuple[str, str]] = []
        if self.kind not in GENERATOR_KINDS:
            problems.append(("kind", f"{self.kind!r} is not one of {', '.join(GENERATOR_KINDS)}"))
        elif tuple(sorted(self.inputs)) != tuple(sorted(GENERATOR_INPUTS[self.kind])):
            problems.append(("inputs", f"a {self.kind} takes {list(GENERATOR_INPUTS[self.kind])}"))
        elif self.output_name != GENERATOR_OUTPUTS[self.kind]:
            problems.append(
                ("output_name", f"a {self.kind} outputs {GENERATOR_OUTPUTS[self.kind]!r}")
            )
        if self.channels not in (1, 3):
            problems.append(("channels", f"must be 1 or 3, got {self.channels}"))
        if self.size < 8 or (self.size_multiple and self.size % self.size_multiple):
            problems.append(
                ("size", f"must be >= 8 and a multiple of size_multiple, got {self.size}")
            )
        if not self.classes:
            problems.append(("classes", "is empty"))
        if self.output_range[0] >= self.output_range[1]:
            problems.append(("output_range", f"must rise, got {self.output_range}"))
        if self.kind == "cgan" and self.latent_dim < 1:
            problems.append(("latent_dim", "a cgan needs latent_dim >= 1"))
        if self.kind == "diffusion" and self.schedule is None:
            problems.append(("schedule", "a diffusion model needs a schedule"))
        if problems:
            raise ContractError(*problems[0], source)
        if self.schedule is not None:
            self.schedule.check(source)

    @property
    def null_class(self) -> int:
        """The diffusion model's "no class" index, used for classifier-free guidance."""
        return len(self.classes)

    @property
    def output_channels(self) -> int:
        """Channels of the graph's output: the cGAN adds its mask channel."""
        return self.channels + (1 if self.kind == "cgan" else 0)

    def class_index(self, name: str, source: str) -> int:
        """The model's index of cell class `name`; a one-line error naming the choices."""
        if name not in self.classes:
            raise ApplianceError(
                f"{source}: class {name!r} is not one this generator draws "
                f"({', '.join(self.classes)})"
            )
        return self.classes.index(name)

    def probe_inputs(self, n: int = 1, size: int | None = None) -> dict[str, np.ndarray]:
        """Zero inputs of the right shapes and dtypes (the install-time check runs these)."""
        s = size or self.size
        c, k = self.channels, len(self.classes) + 1
        shapes: dict[str, np.ndarray] = {
            "z": np.zeros((n, self.latent_dim), np.float32),
            "class": np.zeros((n,), np.int64),
            "x": np.zeros((n, c, s, s), np.float32),
            "t": np.zeros((n,), np.float32),
            "mask": np.zeros((n, 1, s, s), np.float32),
            "source": np.zeros((n, c, s, s), np.float32),
            "label": np.zeros((n, k, s, s), np.float32),
        }
        return {name: shapes[name] for name in self.inputs}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["inputs"] = list(self.inputs)
        out["classes"] = list(self.classes)
        out["output_range"] = list(self.output_range)
        if self.schedule is None:
            del out["schedule"]
        else:
            out["schedule"]["timesteps"] = list(self.schedule.timesteps)
            out["schedule"]["alphas_cumprod"] = list(self.schedule.alphas_cumprod)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


# field: (JSON type, required); `None` counts as absent for the optional ones
_FIELDS: dict[str, tuple[Any, bool]] = {
    "kind": (str, True),
    "inputs": (list, True),
    "output_name": (str, True),
    "channels": (int, True),
    "size": (int, True),
    "size_multiple": (int, False),
    "classes": (list, True),
    "output_range": (list, True),
    "latent_dim": (int, False),
    "guidance": (int | float, False),
    "normalisation": (dict, False),
    "schedule": (dict, False),
}
_SCHEDULE_FIELDS = ("kind", "train_steps", "timesteps", "alphas_cumprod", "eta")
_DEFAULT_NORMALISATION = {"low": 1.0, "high": 99.8}


def _strings(name: str, values: list[Any]) -> tuple[str, ...]:
    return tuple(typed(f"{name}[{i}]", v, str) for i, v in enumerate(values))


def _normalisation(raw: Mapping[str, Any]) -> dict[str, float]:
    """The background percentiles compositing maps generated pixels back with."""
    reject_unknown(raw, _DEFAULT_NORMALISATION, "normalisation.")
    return {
        key: float(typed(f"normalisation.{key}", raw.get(key, default), int | float))
        for key, default in _DEFAULT_NORMALISATION.items()
    }


def _schedule(raw: Mapping[str, Any]) -> Schedule:
    reject_unknown(raw, _SCHEDULE_FIELDS, "schedule.")
    for name in _SCHEDULE_FIELDS[:4]:
        if name not in raw:
            raise ContractError(f"schedule.{name}", "is missing")
    timesteps = typed("schedule.timesteps", raw["timesteps"], list)
    alphas = typed("schedule.alphas_cumprod", raw["alphas_cumprod"], list)
    return Schedule(
        kind=typed("schedule.kind", raw["kind"], str),
        train_steps=typed("schedule.train_steps", raw["train_steps"], int),
        timesteps=tuple(typed(f"schedule.timesteps[{i}]", t, int) for i, t in enumerate(timesteps)),
        alphas_cumprod=tuple(
            float(typed(f"schedule.alphas_cumprod[{i}]", a, int | float))
            for i, a in enumerate(alphas)
        ),
        eta=float(typed("schedule.eta", raw.get("eta", 0.0), int | float)),
    )
