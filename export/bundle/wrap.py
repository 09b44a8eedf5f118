"""Wrap a model the data scientist already has (an ONNX file or a torch module) as a model bundle.

Nothing ships on trust. Before a bundle is written:

1. the contract is parsed by the one schema the tablet uses (`appliance.contract`);
2. it is checked against the model's role and the ONNX graph's inputs and outputs;
3. the model runs through the tablet's own runtime (`appliance.assist.runtime`) on the job's
   test images, or on virtual-microscope images when no job is given, and every output must
   decode into a label;
4. the latency at 512² on 2 threads is measured;
5. the written bundle is read back with the install check (`read_model_bundle`).

A model that fails any step is refused with one line saying which field or step failed, and no
bundle is left behind. A wrapped model that installs on a tablet therefore runs there.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from appliance.assist.runtime import InferenceModel, release_sessions
from appliance.bundles.model_bundle import ModelSpec, read_model_bundle, write_model_bundle
from appliance.bundles.training_job import TrainingJob, read_training_job
from appliance.contract import Contract, ContractError
from appliance.errors import ApplianceError
from appliance.labels import Label
from appliance.metrics import POINT_RADIUS, dice, instance_f1
from appliance.perturb import PerturbSpec, perturb

__all__ = ["WrapReport", "from_torch", "load_contract", "wrap_onnx"]

LATENCY_SIZE = 512
LATENCY_THREADS = 2
SYNTH_IMAGES = 4
ROLES = ("prelabel", "upgrade", "detector")
# Upgrade models are checked on coarse versions of the truth, as the tablet feeds them.
COARSE = PerturbSpec.parse("omission=0.3,bias=3")


@dataclass(frozen=True)
class WrapReport:
    """What was written and what was measured on the way."""

    out: Path
    role: str
    name: str
    checked_on: str
    metrics: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        shown = ", ".join(f"{k} {v}" for k, v in self.metrics.items())
        return [
            f"wrote {self.out}: {self.role} model {self.name!r}",
            f"checked on {self.checked_on}: {shown}",
        ]


def load_contract(source: Contract | Mapping[str, Any] | Path | str) -> Contract:
    """A contract from the schema, a dict, or a JSON file; one-line error naming the file."""
    if isinstance(source, Contract):
        return source
    if isinstance(source, Mapping):
        return Contract.parse(source, "contract")
    path = Path(source)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ApplianceError(f"{path}: cannot read the contract ({exc.strerror})") from exc
    return Contract.parse(text, str(path))


def _check_graph(onnx_path: Path, contract: Contract, role: str) -> None:
    """The contract fits the role and the graph, judged by the tablet's own checks."""
    from appliance.assist.runtime import session

    contract.validate(role=role)
    try:
        sess = session(onnx_path, threads=1)
    except ApplianceError:
        raise
    except Exception as exc:  # onnxruntime's load errors are not a public hierarchy
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ApplianceError(f"{onnx_path}: onnxruntime cannot load it ({first})") from exc
    try:
        contract.validate(inputs=sess.get_inputs(), outputs=sess.get_outputs())
    except ContractError as exc:
        raise exc.at(str(onnx_path)) from exc


def _check_set(
    job: TrainingJob | None, contract: Contract
) -> tuple[list[tuple[np.ndarray, Label]], str]:
    """Images with their truth: the job's test split (val if none), else synthetic cells."""
    if job is not None:
        items = [i for i in job.items if i.split == "test"] or [
            i for i in job.items if i.split == "val"
        ]
        if not items:
            raise ApplianceError(f"{job.path}: the job has no test or validation items to check on")
        return [
            (i.image(), i.label) for i in items
        ], f"{len(items)} {items[0].split} images of job {job.id}"
    from export.synth import synth_samples

    pairs = []
    for s in synth_samples(SYNTH_IMAGES, size=256, seed=2024):
        img = s.image if contract.input_channels == 1 else np.repeat(s.image[..., None], 3, axis=2)
        pairs.append(
            (img, Label(s.cells.astype(np.uint32), {int(i): 1 for i in np.unique(s.cells) if i}))
        )
    return pairs, f"{len(pairs)} virtual-microscope images"


def _run_checks(
    onnx_path: Path, contract: Contract, role: str, pairs: list[tuple[np.ndarray, Label]]
) -> dict[str, float]:
    """Run the model as the tablet would; Dice and instance F1 against the truth, per image."""
    model = InferenceModel(onnx_path, contract, model_id=onnx_path.name, threads=LATENCY_THREADS)
    if role == "detector":
        return _detector_checks(onnx_path, model, pairs)
    rng = np.random.default_rng(0)
    dices, f1s = [], []
    for image, truth in pairs:
        mask = None
        if role == "upgrade":
            mask = perturb(truth.instances, COARSE, rng, image=image) > 0
        label = _predict(model, onnx_path, image, mask)
        dices.append(dice(truth.instances, label.instances))
        f1s.append(instance_f1(truth.instances, label.instances))
    return {"dice": round(float(np.mean(dices)), 4), "instance_f1": round(float(np.mean(f1s)), 4)}


def _predict(
    model: InferenceModel, onnx_path: Path, image: np.ndarray, mask: np.ndarray | None = None
) -> Label:
    """The model's label for `image`, as the tablet would run it; a graph that breaks on an
    image its contract accepts is one line naming the file."""
    try:
        return model.predict(image, mask=mask).label
    except ApplianceError:
        raise
    except Exception as exc:  # a shape or dtype the contract promised and the graph broke
        raise ApplianceError(
            f"{onnx_path}: running it on a {image.shape} image failed ({exc})"
        ) from exc


def _detector_checks(
    onnx_path: Path, model: InferenceModel, pairs: list[tuple[np.ndarray, Label]]
) -> dict[str, float]:
    """A detector's cells against the truth's (points, boxes, and masks as their boxes),
    matched as training scores it (boxes at IoU > 0.5, the rest by centre within
    `metrics.POINT_RADIUS`, the control-scoring radius)."""
    from export.centres import label_objects
    from export.train.detector import score_objects

    truths, guesses = [], []
    for image, truth in pairs:
        label = _predict(model, onnx_path, image)
        truths.append(label_objects(truth))
        guesses.append(list(label.objects))
    found = score_objects(truths, guesses, POINT_RADIUS)
    return {"detection_f1": round(found.f1, 4), "class_f1": round(found.class_f1, 4)}


def _latency_ms(onnx_path: Path, contract: Contract) -> float:
    """Median milliseconds for one 512² image through the tablet's runtime on 2 CPU threads
    (tiling included, which is what a fixed-size model costs)."""
    model = InferenceModel(onnx_path, contract, threads=LATENCY_THREADS)
    size = LATENCY_SIZE
    chw = np.random.default_rng(0).random((contract.channels_in, size, size), dtype=np.float32)
    for _ in range(2):
        model.logits(chw)
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        model.logits(chw)
        times.append(time.perf_counter() - t0)
    return round(1000.0 * float(np.median(times)), 1)


def wrap_onnx(
    onnx_path: Path | str,
    *,
    role: str,
    contract: Contract | Mapping[str, Any] | Path | str,
    out: Path | str,
    job: Path | str | None = None,
    name: str | None = None,
    extra_metrics: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] = print,
) -> WrapReport:
    """Check an ONNX model against its contract, run it, measure it, write a model bundle."""
    onnx_path, out = Path(onnx_path), Path(out)
    if role not in ROLES:
        raise ApplianceError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not onnx_path.is_file():
        raise ApplianceError(f"{onnx_path}: no such ONNX file")
    parsed = load_contract(contract)
    progress(f"checking {onnx_path.name} against its contract")
    _check_graph(onnx_path, parsed, role)
    training_job = read_training_job(job) if job is not None else None
    pairs, checked_on = _check_set(training_job, parsed)
    progress(f"running it on {checked_on}")
    metrics: dict[str, Any] = dict(extra_metrics or {})
    metrics.update(_run_checks(onnx_path, parsed, role, pairs))
    metrics[f"latency_ms_{LATENCY_SIZE}_{LATENCY_THREADS}threads"] = _latency_ms(onnx_path, parsed)
    metrics["checked_on"] = checked_on
    metrics["wrapped"] = True
    release_sessions()
    model_name = name or onnx_path.stem
    spec = ModelSpec(role, model_name, onnx_path, parsed, metrics)
    write_model_bundle(out, [spec], job_id=training_job.id if training_job else None)
    try:
        read_model_bundle(out)  # the tablet's install check, before anyone carries it there
    except ApplianceError:
        out.unlink(missing_ok=True)
        raise
    return WrapReport(out, role, model_name, checked_on, metrics)


def from_torch(
    module: Any,
    contract: Contract | Mapping[str, Any] | Path | str,
    *,
    out: Path | str,
    role: str = "prelabel",
    example_job: Path | str | None = None,
    name: str | None = None,
    progress: Callable[[str], None] = print,
) -> WrapReport:
    """Export a torch `nn.Module` to ONNX (dynamic H and W, parity checked) and wrap it.

    The module takes N×C×H×W float32 (C = the contract's input channels, plus the mask channel
    for upgrade models) and returns N×K×H×W, as the contract's output kind implies.
    """
    from export.onnx_export import export_onnx

    parsed = load_contract(contract)
    with tempfile.TemporaryDirectory(prefix="wrap-") as tmp:
        onnx_path = Path(tmp) / f"{name or type(module).__name__}.onnx"
        progress(f"exporting {type(module).__name__} to ONNX and checking parity with PyTorch")
        parity = export_onnx(
            module,
            parsed.channels_in,
            onnx_path,
            input_name=parsed.input_name,
            output_name=parsed.output_name,
            multiple=parsed.tile_multiple,
        )
        extra = {"parity_max_abs_diff": parity.max_abs_diff, "exporter": parity.exporter}
        return wrap_onnx(
            onnx_path,
            role=role,
            contract=parsed,
            out=out,
            job=example_job,
            name=name or type(module).__name__,
            extra_metrics=extra,
            progress=progress,
        )


def contract_template(role: str) -> str:
    """A starting contract for `--print-contract`: the fields a data scientist must fill in."""
    example: dict[str, Any] = {
        "input_name": "image",
        "output_name": "logits",
        "input_channels": 1,
        "mask_channel": role == "upgrade",
        "dtype": "float32",
        "layout": "NCHW",
        "normalisation": {"method": "percentile", "low": 1.0, "high": 99.8},
        "tile_multiple": 16,
        "output_kind": "softmax",
        "classes": ["background", "nucleus"],
    }
    if role == "detector":  # K-1 centre heatmaps, then log box width and height
        example.update(
            input_channels=3,
            output_kind="centres",
            decoding={"threshold": 0.3, "nms_radius": 4, "boxes": False},
        )
    return json.dumps(example, indent=1)
