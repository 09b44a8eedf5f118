"""The image-to-label model contract: what a pre-label, upgrade or detector model eats and what
its output means.

The workstation writes it (`export.train`), the install check reads it
(`appliance.bundles.onnx_check`) and the runtime reads it (`appliance.assist`). There is no other
definition, so a contract that installs is a contract the runtime can serve: every rule the
runtime relies on is checked here, once, by `Contract.validate`, which runs whenever a
`Contract` is built.

Output kinds are a registry (`OUTPUT_KINDS`) rather than an if-chain, so a new kind (say an
instance-aware three-class output) is one `OutputKind` entry: the channels it implies, the roles
it serves, its typed decoding parameters and an optional extra check. The numbers that turn its
raw output into a label live beside the runtime (`appliance.assist.contract.DECODERS`); a test
refuses a kind without one. Generators have their own contract (`appliance.contract.generator`).
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from appliance.contract.common import ContractError, Value, document, reject_unknown, typed

__all__ = [
    "CENTRE_SIZE_CHANNELS",
    "DTYPES",
    "INPUT_CHANNELS",
    "INSTANCE_HEAD",
    "LAYOUTS",
    "MAX_TILE_MULTIPLE",
    "NORMALISATION_METHODS",
    "OUTPUT_KINDS",
    "Contract",
    "GraphPort",
    "Normalisation",
    "OutputKind",
    "Param",
    "register_output_kind",
]

DTYPES = {"float32": "tensor(float)", "float16": "tensor(float16)"}
LAYOUTS = ("NCHW",)
NORMALISATION_METHODS = ("percentile",)
# The runtime feeds grey images as 1 channel and colour images as 3 (`model_input`).
INPUT_CHANNELS = (1, 3)
# The runtime tiles large images at 512 px keeping 64 px margins (rounded up to the multiple):
# above 128 the margins would swallow the tile and large images could not be served.
MAX_TILE_MULTIPLE = 128


@dataclass(frozen=True)
class Param:
    """One typed decoding parameter of an output kind, with its default and allowed range."""

    kind: type
    default: Value
    low: float | None = None
    high: float | None = None
    doc: str = ""

    def check(self, name: str, value: object) -> Value:
        wanted = (int, float) if self.kind is float else (self.kind,)
        if (isinstance(value, bool) and self.kind is not bool) or not isinstance(value, wanted):
            raise ContractError(f"decoding.{name}", f"must be {self.kind.__name__}, got {value!r}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ContractError(f"decoding.{name}", f"must be finite, got {value!r}")
            if self.low is not None and value < self.low:
                raise ContractError(f"decoding.{name}", f"{value} is below {self.low}")
            if self.high is not None and value > self.high:
                raise ContractError(f"decoding.{name}", f"{value} is above {self.high}")
            value = float(value) if self.kind is float else value
        return value  # type: ignore[return-value]


@dataclass(frozen=True)
class OutputKind:
    """How to read a model's output: one registry entry per kind.

    `channels` gives the output channels a contract implies; `check` returns extra problems
    as (field, problem) pairs; `roles` are the model roles this output can serve.
    """

    name: str
    doc: str
    channels: Callable[[Contract], int]
    roles: frozenset[str]
    params: Mapping[str, Param] = field(default_factory=dict)
    check: Callable[[Contract], list[tuple[str, str]]] = lambda c: []


def _sigmoid_check(c: Contract) -> list[tuple[str, str]]:
    if len(c.classes) != 2:
        return [("classes", f"a sigmoid output has exactly 2 classes, got {len(c.classes)}")]
    return []


OUTPUT_KINDS: dict[str, OutputKind] = {}
# Instance kinds (docs/instances.md): channels before the K-1 class channels that a project
# with several cell classes adds; decoded by `appliance.assist.instances`.
INSTANCE_HEAD = {"three_class": 3, "distance": 3}


def register_output_kind(kind: OutputKind) -> None:
    """Add an output kind (once); its decoder is registered beside the runtime."""
    if kind.name in OUTPUT_KINDS:
        raise ValueError(f"output kind {kind.name!r} is already registered")
    OUTPUT_KINDS[kind.name] = kind


register_output_kind(
    OutputKind(
        "softmax",
        "K channels (one per class, channel 0 background); the class is the argmax",
        channels=lambda c: len(c.classes),
        roles=frozenset({"prelabel", "upgrade"}),
    )
)
register_output_kind(
    OutputKind(
        "sigmoid",
        "1 channel, the foreground logit; foreground where sigmoid(x) > threshold",
        channels=lambda c: 1,
        roles=frozenset({"prelabel", "upgrade"}),
        params={"threshold": Param(float, 0.5, 0.0, 1.0, "probability cut for foreground")},
        check=_sigmoid_check,
    )
)


def _instance_channels(c: Contract) -> int:
    k = len(c.classes)
    return INSTANCE_HEAD[c.output_kind] + (k - 1 if k > 2 else 0)


def _instance_params(seed_doc: str, seed_erosion: int, seed_smoothing: float) -> dict[str, Param]:
    return {
        "threshold": Param(float, 0.5, 0.0, 1.0, "foreground probability cut"),
        "seed_threshold": Param(float, 0.5, 0.0, 1.0, seed_doc),
        "seed_smoothing": Param(
            float,
            seed_smoothing,
            0.0,
            8.0,
            "Gaussian sigma (px) of the seed map before its threshold: a one-pixel dip no "
            "longer splits a cell's seed, nor a one-pixel bridge joins two",
        ),
        "seed_erosion": Param(
            int, seed_erosion, 0, 8, "pixels taken off the seed regions before labelling them"
        ),
        "min_seed_area": Param(int, 4, 1, None, "smaller seed regions are noise"),
        "min_area": Param(int, 8, 1, None, "smaller cells are dropped"),
    }


register_output_kind(
    OutputKind(
        "three_class",
        "background, interior and boundary (+ K-1 class channels); seeds = interiors, grown "
        "over the foreground by seeded watershed",
        channels=_instance_channels,
        roles=frozenset({"prelabel", "upgrade"}),
        # the boundary line is thin; a 2 px erosion keeps one stray interior pixel across it
        # from joining two cells' seeds (docs/instances.md)
        params=_instance_params("interior probability that seeds a cell", 2, 0.0),
    )
)
register_output_kind(
    OutputKind(
        "distance",
        "background, foreground and a distance-to-edge logit (+ K-1 class channels); seeds = "
        "cell cores, grown over the foreground by seeded watershed",
        channels=_instance_channels,
        roles=frozenset({"prelabel", "upgrade"}),
        # smoothing the distance map by 1 px: held-out F1 0.941 -> 0.950 (docs/instances.md)
        params=_instance_params("normalised distance to the cell edge that seeds a cell", 0, 1.0),
    )
)


def _centre_channels(c: Contract) -> int:
    return len(c.classes) - 1 + CENTRE_SIZE_CHANNELS


# A cell detector (docs/training.md): K-1 centre-heatmap logits, then log width and log height
# of the cell's box; decoded into point or box objects by `appliance.assist.detection`.
CENTRE_SIZE_CHANNELS = 2
register_output_kind(
    OutputKind(
        "centres",
        "K-1 centre-heatmap logits (one per cell class) and 2 size logits (log box width, "
        "height); cells are the heatmap peaks, points or boxes",
        channels=_centre_channels,
        roles=frozenset({"detector"}),
        params={
            "threshold": Param(float, 0.3, 0.0, 1.0, "centre probability that makes a cell"),
            "nms_radius": Param(
                int, 4, 1, 64, "pixels within which only the strongest peak is a cell"
            ),
            "max_objects": Param(int, 5000, 1, 1 << 20, "most cells proposed on one image"),
            "boxes": Param(bool, False, doc="propose boxes of the predicted size, not points"),
            "box_iou": Param(
                float, 0.5, 0.0, 1.0, "a box overlapping a stronger one above this is dropped"
            ),
        },
    )
)


@dataclass(frozen=True)
class Normalisation:
    """Per-image, per-channel scaling applied before the model (`percentile_normalise`)."""

    method: str = "percentile"
    low: float = 1.0
    high: float = 99.8

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.method not in NORMALISATION_METHODS:
            out.append(
                (
                    "normalisation.method",
                    f"{self.method!r} is not supported (only {', '.join(NORMALISATION_METHODS)})",
                )
            )
        if not 0.0 <= self.low < self.high <= 100.0:
            out.append(
                ("normalisation", f"needs 0 <= low < high <= 100, got {self.low}..{self.high}")
            )
        return out


class GraphPort(Protocol):
    """An ONNX graph input or output as onnxruntime describes it (`NodeArg`)."""

    @property
    def name(self) -> str: ...
    @property
    def shape(self) -> Sequence[Any]: ...
    @property
    def type(self) -> str: ...


@dataclass(frozen=True)
class Contract:
    """What a model expects and returns; always valid (checked when it is built)."""

    input_name: str
    output_name: str
    input_channels: int
    output_kind: str
    classes: tuple[str, ...]
    mask_channel: bool = False
    dtype: str = "float32"
    layout: str = "NCHW"
    normalisation: Normalisation = field(default_factory=Normalisation)
    tile_multiple: int = 16
    decoding: Mapping[str, Value] = field(default_factory=dict)
    # A model exported with a fixed square input (many outside models are): the runtime then
    # pads small images up to it and tiles large ones at exactly this size.
    fixed_size: int | None = None
    # Instance-aware upgrade models: one more input channel after the mask, the edges of the
    # coarse label's instances, so touching coarse cells arrive as separate cells.
    boundary_channel: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        kind = OUTPUT_KINDS.get(self.output_kind)
        if kind is not None:
            unknown = sorted(set(self.decoding) - set(kind.params))
            if unknown:
                raise ContractError(
                    f"decoding.{unknown[0]}",
                    f"is not a parameter of output kind {self.output_kind!r} "
                    f"(it has: {', '.join(kind.params) or 'none'})",
                )
            full = {
                name: p.check(name, self.decoding.get(name, p.default))
                for name, p in kind.params.items()
            }
            object.__setattr__(self, "decoding", types.MappingProxyType(full))
        self.validate()

    # ----------------------------------------------------------------- reading and writing

    @classmethod
    def parse(cls, data: str | bytes | Mapping[str, Any], source: str) -> Contract:
        """A contract from JSON text or a dict; `source` names it in the one-line error."""
        raw = document(data, source)
        try:
            return cls._from_mapping(raw)
        except ContractError as exc:
            raise exc.at(source) from exc

    @classmethod
    def _from_mapping(cls, raw: Mapping[str, Any]) -> Contract:
        raw = dict(raw)
        # Contracts written before `decoding` existed carry a top-level threshold (meaningful
        # only for sigmoid outputs); they are still installed in projects, so they still parse.
        legacy_threshold = raw.pop("threshold", None)
        reject_unknown(raw, (f.name for f in fields(cls)))
        kwargs: dict[str, Any] = {}
        for name, wanted, required in (
            ("input_name", str, True),
            ("output_name", str, True),
            ("input_channels", int, True),
            ("output_kind", str, True),
            ("classes", list, True),
            ("mask_channel", bool, False),
            ("dtype", str, False),
            ("layout", str, False),
            ("tile_multiple", int, False),
            ("decoding", dict, False),
            ("fixed_size", int, False),
            ("boundary_channel", bool, False),
        ):
            if name not in raw or (name == "fixed_size" and raw[name] is None):
                if required:
                    raise ContractError(name, "is missing")
                continue
            kwargs[name] = typed(name, raw[name], wanted)
        if "normalisation" in raw:
            kwargs["normalisation"] = _normalisation(raw["normalisation"])
        for i, name in enumerate(kwargs["classes"]):
            typed(f"classes[{i}]", name, str)
        kind = OUTPUT_KINDS.get(kwargs["output_kind"])
        decoding = dict(kwargs.get("decoding", {}))
        if legacy_threshold is not None and kind is not None and "threshold" in kind.params:
            decoding.setdefault("threshold", legacy_threshold)
        kwargs["decoding"] = decoding
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form written into model bundles and the `models` table."""
        return {
            "input_name": self.input_name,
            "output_name": self.output_name,
            "input_channels": self.input_channels,
            "mask_channel": self.mask_channel,
            "dtype": self.dtype,
            "layout": self.layout,
            "normalisation": {
                "method": self.normalisation.method,
                "low": self.normalisation.low,
                "high": self.normalisation.high,
            },
            "tile_multiple": self.tile_multiple,
            "output_kind": self.output_kind,
            "classes": list(self.classes),
            "decoding": dict(self.decoding),
            **({"fixed_size": self.fixed_size} if self.fixed_size is not None else {}),
            **({"boundary_channel": True} if self.boundary_channel else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    # ------------------------------------------------------------------------- checking

    def validate(
        self,
        *,
        role: str | None = None,
        inputs: Sequence[GraphPort] | None = None,
        outputs: Sequence[GraphPort] | None = None,
    ) -> None:
        """Raise `ContractError` for the first problem: the contract's own rules, then (when
        given) whether it fits a model role and an ONNX graph's inputs and outputs."""
        problems = self._problems()
        if not problems and role is not None:
            problems = self._role_problems(role)
        if not problems and inputs is not None and outputs is not None:
            problems = self._graph_problems(inputs, outputs)
        if problems:
            raise ContractError(*problems[0])

    def _problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for name in ("input_name", "output_name"):
            if not getattr(self, name).strip():
                out.append((name, "is empty"))
        if self.input_name == self.output_name:
            out.append(("output_name", "must differ from input_name"))
        if self.input_channels not in INPUT_CHANNELS:
            out.append(
                ("input_channels", f"must be 1 (grey) or 3 (RGB), got {self.input_channels}")
            )
        if self.dtype not in DTYPES:
            out.append(("dtype", f"must be one of {', '.join(DTYPES)}, got {self.dtype!r}"))
        if self.layout not in LAYOUTS:
            out.append(("layout", f"must be one of {', '.join(LAYOUTS)}, got {self.layout!r}"))
        if not 1 <= self.tile_multiple <= MAX_TILE_MULTIPLE:
            out.append(
                ("tile_multiple", f"must be 1..{MAX_TILE_MULTIPLE}, got {self.tile_multiple}")
            )
        if self.fixed_size is not None and (
            self.fixed_size % self.tile_multiple or not 2 * self.tile_multiple <= self.fixed_size
            or self.fixed_size > 4096
        ):  # fmt: skip
            out.append(
                (
                    "fixed_size",
                    f"must be a multiple of tile_multiple ({self.tile_multiple}) from "
                    f"{2 * self.tile_multiple} to 4096, got {self.fixed_size}",
                )
            )
        if self.boundary_channel and not self.mask_channel:
            out.append(("boundary_channel", "needs the coarse mask channel (mask_channel true)"))
        out += self.normalisation.problems()
        if len(self.classes) < 2:
            out.append(("classes", "needs at least 2 names (index 0 is background)"))
        if any(not c.strip() for c in self.classes) or len(set(self.classes)) != len(self.classes):
            out.append(("classes", "names must be non-empty and distinct"))
        kind = OUTPUT_KINDS.get(self.output_kind)
        if kind is None:
            out.append(
                ("output_kind", f"{self.output_kind!r} is not one of {', '.join(OUTPUT_KINDS)}")
            )
        elif not out:
            out += kind.check(self)
        return out

    def _role_problems(self, role: str) -> list[tuple[str, str]]:
        kind = OUTPUT_KINDS[self.output_kind]
        if role not in kind.roles:
            served = ", ".join(sorted(kind.roles))
            return [("output_kind", f"{self.output_kind!r} serves {served}, not role {role!r}")]
        if role == "upgrade" and not self.mask_channel:
            return [("mask_channel", "an upgrade model needs the coarse mask channel (true)")]
        if role in ("prelabel", "detector") and self.mask_channel:
            what = "pre-label" if role == "prelabel" else role
            return [("mask_channel", f"a {what} model gets no mask channel (false)")]
        return []

    def _graph_problems(
        self, inputs: Sequence[GraphPort], outputs: Sequence[GraphPort]
    ) -> list[tuple[str, str]]:
        ins = {p.name: p for p in inputs}
        outs = {p.name: p for p in outputs}
        if self.input_name not in ins:
            return [
                ("input_name", f"graph has no input {self.input_name!r} (has {', '.join(ins)})")
            ]
        if len(ins) > 1:
            extra = ", ".join(n for n in ins if n != self.input_name)
            return [("input_name", f"graph has inputs the contract does not declare: {extra}")]
        if self.output_name not in outs:
            return [
                ("output_name", f"graph has no output {self.output_name!r} (has {', '.join(outs)})")
            ]
        port_in, port_out = ins[self.input_name], outs[self.output_name]
        if port_in.type != DTYPES[self.dtype]:
            return [("dtype", f"graph input is {port_in.type}, contract says {self.dtype}")]
        if port_out.type not in DTYPES.values():
            return [("output_name", f"graph output is {port_out.type}, not a float tensor")]
        return [
            *_shape_problems(
                "input_channels", "input", port_in.shape, self.channels_in, self.fixed_size
            ),
            *_shape_problems(
                "output_kind", "output", port_out.shape, self.channels_out, self.fixed_size
            ),
        ][:1]

    # ------------------------------------------------------------------------ derived

    @property
    def channels_in(self) -> int:
        """Channels of the network input, the mask and boundary channels included."""
        return self.input_channels + int(self.mask_channel) + int(self.boundary_channel)

    @property
    def channels_out(self) -> int:
        """Channels of the network output, as the output kind implies."""
        return OUTPUT_KINDS[self.output_kind].channels(self)

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def _shape_problems(
    field_name: str, side: str, shape: Sequence[Any], channels: int, fixed_size: int | None
) -> list[tuple[str, str]]:
    """Rank 4 (NCHW), the implied channel count, batch 1 allowed, height and width free (or
    the contract's `fixed_size`)."""
    if len(shape) != 4:
        return [(field_name, f"graph {side} has rank {len(shape)}; layout NCHW needs rank 4")]
    batch, chans, height, width = shape
    if isinstance(chans, int) and chans != channels:
        return [(field_name, f"graph {side} has {chans} channels, the contract implies {channels}")]
    if isinstance(batch, int) and batch != 1:
        return [(field_name, f"graph {side} has a fixed batch of {batch}; the runtime feeds 1")]
    fixed = [d for d in (height, width) if isinstance(d, int)]
    if fixed_size is not None and any(d != fixed_size for d in fixed):
        return [
            (
                "fixed_size",
                f"graph {side} is {height}x{width}, the contract says {fixed_size}x{fixed_size}",
            )
        ]
    if fixed_size is None and fixed:
        return [
            (
                "fixed_size",
                f"graph {side} has a fixed size {height}x{width}; the runtime feeds any "
                "multiple of tile_multiple unless the contract sets fixed_size (square only)",
            )
        ]
    return []


def _normalisation(raw: object) -> Normalisation:
    if not isinstance(raw, Mapping):
        raise ContractError("normalisation", f"must be an object, got {raw!r}")
    reject_unknown(raw, ("method", "low", "high"), "normalisation.")
    method = typed("normalisation.method", raw.get("method", "percentile"), str)
    low = typed("normalisation.low", raw.get("low", 1.0), int | float)
    high = typed("normalisation.high", raw.get("high", 99.8), int | float)
    return Normalisation(method, float(low), float(high))
