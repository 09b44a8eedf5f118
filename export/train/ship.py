"""From a training-job bundle to a checked model bundle: load, train, export, measure, ship.

`train_job` is what `python -m export train` runs. The loop (`export.train.loop`) knows nothing
of bundles; this module reads the job, picks the perturbation and output kind, and after training
exports the model to ONNX, tunes the instance decoding on validation images, scores the exported
graph on the held-out split (optionally int8-quantised) and writes the bundle with its metrics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from appliance.assist.instances import INSTANCE_KINDS
from appliance.bundles.model_bundle import ModelSpec, write_model_bundle
from appliance.bundles.training_job import read_training_job
from appliance.errors import ApplianceError
from appliance.perturb import PerturbSpec
from export.data import Sample, SegDataset, samples_from_job
from export.decoding import tune_decoding
from export.onnx_export import export_onnx, measure_latency
from export.quantize import quantize_int8
from export.targets import output_for
from export.train.loop import (
    FELZENSZWALB_PERTURB,
    UPGRADE_PERTURB,
    TrainConfig,
    TrainResult,
    train_model,
)
from export.train.onnx_model import onnx_outputs, onnx_scores, segmentation_contract

if TYPE_CHECKING:
    from export.object_masks import Relabel

__all__ = ["JobResult", "split_off_val", "train_job"]

S = TypeVar("S")  # a segmentation `Sample` or a detector's `DetSample`


def split_off_val(train: list[S], seed: int, job: Path) -> tuple[list[S], list[S]]:
    """80/20 split of the training items when the job has no validation items (seed 003)."""
    if len(train) < 2:
        raise ApplianceError(
            f"{job}: training needs at least 2 labelled images, the job has {len(train)}"
        )
    order = np.random.default_rng(seed).permutation(len(train))
    n_val = max(1, round(0.2 * len(train)))
    return [train[i] for i in order[n_val:]], [train[i] for i in order[:n_val]]


@dataclass(frozen=True)
class JobResult:
    """What `train_job` shipped: the bundle, and the metrics it records."""

    bundle: Path
    bundle_id: str
    eval_split: str  # "test", or "val" when the job has no test items
    eval_dice: float  # the shipped ONNX model's pooled Dice on that split
    result: TrainResult
    metrics: dict[str, object]


@dataclass(frozen=True)
class _JobData:
    """A training job read once: its id, class names and samples per split."""

    job_id: str
    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]


def _load_job(job_path: Path, task: str, seed: int, relabel: Relabel | None = None) -> _JobData:
    with read_training_job(job_path) as job:
        splits, classes = samples_from_job(job, task, relabel)
        job_id = job.id
    train, val, test = splits["train"], splits["val"], splits["test"]
    if not val:
        train, val = split_off_val(train, seed, job_path)
    return _JobData(job_id, classes, train, val, test)


def train_job(
    job_path: Path,
    out: Path,
    run_dir: Path,
    config: TrainConfig,
    *,
    perturb: PerturbSpec | None = None,
    quantize: bool = False,
    progress: bool = True,
    relabel: Relabel | None = None,
) -> JobResult | None:
    """Training-job bundle → trained, exported, checked model bundle.

    `config.n_classes` comes from the job; `config.output` "auto" picks the task's default
    output kind (`export.targets.DEFAULT_OUTPUT`); `perturb` None picks the upgrade perturbation for
    the job (other objects to include, or Felzenszwalb segments). Returns None on the non-zero
    ranks of a torchrun launch (rank 0 exports and writes everything). `relabel` turns each
    label into the one trained on (`--targets masks`, `export.object_masks`).
    """
    data = _load_job(job_path, config.task, config.seed, relabel)
    default = (
        UPGRADE_PERTURB if any(s.others is not None for s in data.train) else FELZENSZWALB_PERTURB
    )
    config = replace(
        config,
        n_classes=len(data.classes),
        perturb=perturb or default,
        output=output_for(config.task, config.output),
    )
    result = train_model(data.train, data.val, config, run_dir, progress=progress)
    if result.rank != 0:
        return None
    return _ship(data, config, result, out, run_dir, quantize)


def _ship(
    data: _JobData,
    config: TrainConfig,
    result: TrainResult,
    out: Path,
    run_dir: Path,
    quantize: bool,
) -> JobResult:
    """Export to ONNX, measure it on the held-out split, and write the model bundle."""
    task, seed, output = config.task, config.seed, config.output
    image_channels = data.train[0].image.shape[0]
    in_channels = image_channels + config.in_channels_extra
    fp32 = run_dir / "model.onnx"
    parity = export_onnx(result.model, in_channels, fp32)
    tuned = None
    if output in INSTANCE_KINDS:  # seed parameters that suit this model, on its val images
        val_ds = SegDataset(
            data.val, task, config.perturb, False, config.patch, seed, output=output
        )
        truths = [s.instances for s in data.val]
        tuned = tune_decoding(onnx_outputs(fp32, val_ds), truths, output, config.n_classes)
    decoding = tuned.decoding if tuned else None
    contract = segmentation_contract(image_channels, task, data.classes, output, decoding)
    eval_name = "test" if data.test else "val"
    eval_ds = SegDataset(
        data.test or data.val, task, config.perturb, False, config.patch, seed, output=output
    )
    fp32_dice, fp32_f1 = onnx_scores(fp32, eval_ds, contract)
    metrics: dict[str, object] = {
        "task": task,
        "output_kind": output,
        "val_dice": round(result.best_val_dice, 4),
        f"{eval_name}_dice_onnx_fp32": round(fp32_dice, 4),
        f"{eval_name}_instance_f1_onnx_fp32": round(fp32_f1, 4),
        "eval_split": eval_name,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped": result.stopped,
        "train_seconds": round(result.seconds, 1),
        "images_per_second": round(result.images_per_second, 1),
        "device": result.device,
        "precision": result.precision,
        "train_images": len(data.train),
        "val_images": len(data.val),
        "test_images": len(data.test),
        "parity": parity.as_dict(),
        **(tuned.as_dict() if tuned else {}),
        "config": result.config,
    }
    shipped, shipped_dice = fp32, fp32_dice
    if quantize:
        cal_ds = SegDataset(
            data.train, task, config.perturb, False, config.patch, seed, output=output
        )
        calibration = [cal_ds[i]["x"][None].numpy() for i in range(min(len(cal_ds), 32))]
        shipped = quantize_int8(fp32, run_dir / "model-int8.onnx", calibration)
        shipped_dice, int8_f1 = onnx_scores(shipped, eval_ds, contract)
        metrics[f"{eval_name}_dice_onnx_int8"] = round(shipped_dice, 4)
        metrics[f"{eval_name}_instance_f1_onnx_int8"] = round(int8_f1, 4)
        metrics["int8_dice_drop"] = round(fp32_dice - shipped_dice, 4)
    metrics["quantized"] = quantize
    metrics["latency_ms_512_2threads"] = round(measure_latency(shipped, in_channels), 1)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    role = "prelabel" if task == "segment" else "upgrade"
    extra = {"curves.png": run_dir / "curves.png", "metrics.jsonl": run_dir / "metrics.jsonl"}
    extra["metrics.json"] = run_dir / "metrics.json"
    name = f"unet-w{config.width}-d{config.depth}-{output}-{role}"
    bundle_id = write_model_bundle(
        out,
        [ModelSpec(role, name, shipped, contract, metrics)],
        job_id=data.job_id,
        extra_files=extra,
    )
    return JobResult(out, bundle_id, eval_name, shipped_dice, result, metrics)
