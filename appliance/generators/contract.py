"""The generator contract: what a `generator` model takes, returns, and how it is sampled.

Segmentation models share one contract (image in, class logits out); generators do not fit it,
so a model bundle's `generator` entry carries this one instead. It names the graph's inputs by
role, the conditioning (cell classes, mask, guidance), the output's value range and, for the
diffusion denoiser, the DDIM schedule the tablet's numpy loop runs (`appliance.generators.ddim`).

Three kinds (docs/generators.md):
- `cgan`: inputs `z` (N×latent) and `class` (N, int64) → `image` (N×(C+1)×S×S): C image channels
  and one mask channel, all in [-1, 1]; mask > 0 is the cell (seed 000, §3.1).
- `diffusion`: inputs `x` (N×C×S×S), `t` (N, float32 timestep), `class` (N, int64; the null
  class `len(classes)` means unconditional) and `mask` (N×1×S×S, 0/1) → `eps` (predicted noise).
- `label2image`: inputs `source` (N×C×S×S pixels in [-1, 1]) and `label` (N×K×S×S one-hot,
  K = 1 + len(classes)) → `image` (N×C×S×S) in [-1, 1] (MIPR, seed 001).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from appliance.errors import ApplianceError

KINDS = ("cgan", "diffusion", "label2image")
INPUTS: dict[str, tuple[str, ...]] = {
    "cgan": ("z", "class"),
    "diffusion": ("x", "t", "class", "mask"),
    "label2image": ("source", "label"),
}
OUTPUTS = {"cgan": "image", "diffusion": "eps", "label2image": "image"}


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
            raise ApplianceError(f"{source}: schedule needs one ᾱ per timestep")
        if np.any(np.diff(t) >= 0) or t.min() < 0 or t.max() >= self.train_steps:
            raise ApplianceError(f"{source}: schedule timesteps must descend within 0..T-1")
        if np.any(a <= 0) or np.any(a >= 1) or np.any(np.diff(a) <= 0):
            raise ApplianceError(f"{source}: schedule ᾱ must rise strictly within (0, 1)")
        if self.eta < 0:
            raise ApplianceError(f"{source}: schedule eta must be >= 0")


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
    def parse(cls, data: str | dict[str, Any], source: str) -> GeneratorContract:
        """Validate a contract from JSON text or a dict; `source` names it in error messages."""
        try:
            raw = json.loads(data) if isinstance(data, str) else dict(data)
            sched = raw.get("schedule")
            contract = cls(
                kind=str(raw["kind"]),
                inputs=tuple(str(n) for n in raw["inputs"]),
                output_name=str(raw["output_name"]),
                channels=int(raw["channels"]),
                size=int(raw["size"]),
                size_multiple=int(raw.get("size_multiple", 0)),
                classes=tuple(str(c) for c in raw["classes"]),
                output_range=(float(raw["output_range"][0]), float(raw["output_range"][1])),
                latent_dim=int(raw.get("latent_dim", 0)),
                guidance=float(raw.get("guidance", 1.0)),
                normalisation={k: float(v) for k, v in raw.get("normalisation", {}).items()}
                or {"low": 1.0, "high": 99.8},
                schedule=None
                if sched is None
                else Schedule(
                    kind=str(sched["kind"]),
                    train_steps=int(sched["train_steps"]),
                    timesteps=tuple(int(t) for t in sched["timesteps"]),
                    alphas_cumprod=tuple(float(a) for a in sched["alphas_cumprod"]),
                    eta=float(sched.get("eta", 0.0)),
                ),
            )
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise ApplianceError(f"{source}: invalid generator contract ({exc!r})") from None
        contract._check(source)
        return contract

    def _check(self, source: str) -> None:
        problems = []
        if self.kind not in KINDS:
            problems.append(f"kind {self.kind!r} (one of {', '.join(KINDS)})")
        elif tuple(sorted(self.inputs)) != tuple(sorted(INPUTS[self.kind])):
            problems.append(f"inputs {list(self.inputs)} (a {self.kind} takes {INPUTS[self.kind]})")
        elif self.output_name != OUTPUTS[self.kind]:
            problems.append(f"output_name {self.output_name!r}")
        if self.channels not in (1, 3):
            problems.append(f"channels {self.channels} (1 or 3)")
        if self.size < 8 or (self.size_multiple and self.size % self.size_multiple):
            problems.append(f"size {self.size}")
        if not self.classes:
            problems.append("no classes")
        if self.output_range[0] >= self.output_range[1]:
            problems.append(f"output_range {self.output_range}")
        if self.kind == "cgan" and self.latent_dim < 1:
            problems.append("a cgan needs latent_dim >= 1")
        if self.kind == "diffusion" and self.schedule is None:
            problems.append("a diffusion model needs a schedule")
        if problems:
            raise ApplianceError(f"{source}: invalid generator contract: {', '.join(problems)}")
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
