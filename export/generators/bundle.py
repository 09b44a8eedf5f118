"""Training-job bundle → trained generator → ONNX with parity → `generator` model bundle.

The run folder and the bundle's extra files hold the loss curves (`curves.png`, `metrics.jsonl`),
a sample grid (`samples.png`: per class a row of real crops, then rows of generated ones) and
`metrics.json`. The bundle's contract is `appliance.contract.GeneratorContract`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from appliance.contract import GENERATOR_INPUTS, GENERATOR_OUTPUTS, GeneratorContract
from appliance.errors import ApplianceError
from export.data import NORMALISATION
from export.generators.common import plot_losses, save_grid, write_history

KINDS = ("cgan", "diffusion", "label2image")


@dataclass
class GeneratorSettings:
    """What the command line sets; None picks the kind's default (seed 000/001 settings)."""

    kind: str
    size: int = 64
    crop: int | None = None
    steps: int | None = None
    epochs: int = 200
    batch: int | None = None
    width: int | None = None
    arch: str = "conv"
    sample_steps: int = 20
    eta: float = 0.0
    guidance: float = 2.0
    device: str = "auto"
    seed: int = 0
    max_minutes: float | None = None  # None: 30 on a CPU, none on a GPU; 0: no budget


def _contract(
    kind: str, channels: int, size: int, classes: list[str], **extra: object
) -> GeneratorContract:
    raw = {
        "kind": kind,
        "inputs": list(GENERATOR_INPUTS[kind]),
        "output_name": GENERATOR_OUTPUTS[kind],
        "channels": channels,
        "size": size,
        "classes": classes,
        "output_range": [-1.0, 1.0],
        "normalisation": {"low": NORMALISATION.low, "high": NORMALISATION.high},
        **extra,
    }
    return GeneratorContract.parse(raw, f"{kind} contract")


def fit_generator(
    job_path: Path, settings: GeneratorSettings, run_dir: Path, progress: bool = True
) -> tuple[torch.nn.Module, GeneratorContract, dict[str, object]] | None:
    """Train one generator on the job; returns (model, contract, metrics) on rank 0, else None.

    Writes curves, history and the sample grid into `run_dir`.
    """
    from appliance.bundles.training_job import read_training_job
    from export.generators import data as gdata

    if settings.kind not in KINDS:
        raise ApplianceError(f"unknown generator kind {settings.kind!r} ({', '.join(KINDS)})")
    run_dir.mkdir(parents=True, exist_ok=True)
    with read_training_job(job_path) as job:
        if settings.kind == "label2image":
            scenes = gdata.scenes(job, ("train", "val"))
            classes = list(job.classes[1:])
            crops = None
        else:
            crops = gdata.cell_crops(job, settings.size, settings.crop)
            classes = crops.classes
    rank0 = int(os.environ.get("RANK", "0")) == 0
    grid_rows: list[str] = []
    run: Any  # the trainer's result: history, seconds, device, precision, config
    if settings.kind == "cgan":
        from export.generators.cgan import LATENT_DIM, CganConfig, sample_cgan, train_cgan

        assert crops is not None
        cg = CganConfig(
            arch=settings.arch,
            epochs=settings.epochs,
            batch=settings.batch or 64,
            width=settings.width,
            device=settings.device,
            seed=settings.seed,
            max_steps=settings.steps,
            max_minutes=settings.max_minutes,
        )
        res = train_cgan(crops, cg, run_dir, progress)
        model: torch.nn.Module = res.generator
        contract = _contract(
            "cgan", crops.images.shape[1], settings.size, classes, latent_dim=LATENT_DIM
        )
        grid, grid_rows = [], []
        for k, name in enumerate(classes):
            if not (crops.labels == k).any():
                continue
            grid.append(_real_row(crops, k))
            fake = sample_cgan(model, np.full(8, k), settings.seed + k)
            grid.append(fake[:, :-1])
            grid_rows += [f"{name} real", f"{name} cGAN"]
        run = res
    elif settings.kind == "diffusion":
        from export.generators.diffusion import (
            DiffusionConfig,
            ddim_sample_torch,
            train_diffusion,
        )

        assert crops is not None
        steps = settings.steps or settings.epochs * max(1, -(-len(crops) // (settings.batch or 64)))
        dc = DiffusionConfig(
            width=settings.width or 32,
            steps=steps,
            batch=settings.batch or 64,
            sample_steps=settings.sample_steps,
            eta=settings.eta,
            guidance=settings.guidance,
            device=settings.device,
            seed=settings.seed,
            max_minutes=settings.max_minutes,
        )
        dres = train_diffusion(crops, dc, run_dir, progress)
        model = dres.model
        sched = dres.schedule
        contract = _contract(
            "diffusion",
            crops.images.shape[1],
            settings.size,
            classes,
            size_multiple=dres.model.multiple,
            guidance=settings.guidance,
            schedule={
                "kind": sched.kind,
                "train_steps": sched.train_steps,
                "timesteps": list(sched.timesteps),
                "alphas_cumprod": list(sched.alphas_cumprod),
                "eta": sched.eta,
            },
        )
        grid = []
        gen = torch.Generator().manual_seed(settings.seed)
        for k, name in enumerate(classes):
            real = crops.subset(np.flatnonzero(crops.labels == k)[:8])
            if not len(real):
                continue
            grid.append(_real_row(crops, k))
            masks = torch.from_numpy(real.masks)
            noise = torch.randn(len(real), crops.images.shape[1], *masks.shape[-2:], generator=gen)
            labels = torch.full((len(real),), k, dtype=torch.int64)
            out = ddim_sample_torch(
                model, sched, noise, labels, masks, settings.guidance, len(classes)
            )
            grid.append(out.numpy())
            grid_rows += [f"{name} real", f"{name} DDIM"]
        run = dres
    else:
        from export.generators.label2image import (
            MULTIPLE,
            Label2ImageConfig,
            random_pairs,
            render,
            train_label2image,
        )

        lc = Label2ImageConfig(
            width=settings.width or 32,
            size=settings.size,
            steps=settings.steps or 5000,
            batch=settings.batch or 16,
            device=settings.device,
            seed=settings.seed,
            max_minutes=settings.max_minutes,
        )
        lres = train_label2image(scenes, len(classes) + 1, lc, run_dir, progress)
        model = lres.generator
        size = int(lres.config["size"])  # type: ignore[call-overload]
        contract = _contract(
            "label2image", scenes[0].image.shape[0], size, classes, size_multiple=MULTIPLE
        )
        src, lab, tgt = random_pairs(scenes, 8, size, len(classes) + 1, np.random.default_rng(1))
        fake = np.stack(
            [
                render(model, s, lb.argmax(0), len(classes) + 1)
                for s, lb in zip(src, lab, strict=True)
            ]
        )
        label_img = lab.argmax(1)[:, None].astype(np.float32) / max(len(classes), 1) * 2 - 1
        grid = [src, label_img, fake, tgt]
        grid_rows = ["source (shuffled)", "label", "generated", "real"]
        run = lres
    if not rank0:
        return None
    history, seconds, device, precision = run.history, run.seconds, run.device, run.precision
    cfg: dict[str, object] = run.config
    write_history(history, run_dir / "metrics.jsonl")
    plot_losses(history, run_dir / "curves.png", f"{settings.kind} training")
    save_grid(grid, run_dir / "samples.png", grid_rows)
    first, last = _ends(history)
    metrics: dict[str, object] = {
        "kind": settings.kind,
        "train_seconds": round(seconds, 1),
        "steps": len(history),
        "stopped": run.stopped,
        "device": device,
        "precision": precision,
        "loss_first_10": first,
        "loss_last_10": last,
        "crops": crops.counts() if crops is not None else {"scenes": len(scenes)},
        "config": {k: v for k, v in cfg.items() if isinstance(v, int | float | str | list)},
    }
    return model, contract, metrics


def _real_row(crops: object, k: int) -> np.ndarray:
    from export.generators.data import CropSet

    assert isinstance(crops, CropSet)
    return crops.images[np.flatnonzero(crops.labels == k)[:8]]


def _ends(history: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean of each loss column over the first and the last ten steps."""
    keys = [k for k in history[0] if k not in ("step", "seconds")]
    head, tail = history[:10], history[-10:]
    return (
        {k: round(float(np.mean([h[k] for h in head])), 4) for k in keys},
        {k: round(float(np.mean([h[k] for h in tail])), 4) for k in keys},
    )


def train_generator(
    job_path: Path, settings: GeneratorSettings, out: Path, run_dir: Path, progress: bool = True
) -> dict[str, object] | None:
    """Train, export with parity, and write the `generator` model bundle `out`."""
    from appliance.bundles.model_bundle import ModelSpec, write_model_bundle
    from appliance.bundles.training_job import read_training_job
    from export.generators.onnx import export_generator

    fitted = fit_generator(job_path, settings, run_dir, progress)
    if fitted is None:
        return None
    model, contract, metrics = fitted
    onnx_path = run_dir / "generator.onnx"
    parity = export_generator(model, contract, onnx_path)
    metrics["parity"] = parity.as_dict()
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    with read_training_job(job_path) as job:
        job_id = job.id
    extra = {
        name: run_dir / name
        for name in ("curves.png", "samples.png", "metrics.jsonl", "metrics.json")
    }
    torch.save({"state": model.state_dict(), "contract": contract.to_dict()}, run_dir / "model.pt")
    name = f"{settings.kind}" + (f"-{settings.arch}" if settings.kind == "cgan" else "")
    metrics["bundle_id"] = write_model_bundle(
        out,
        [ModelSpec("generator", name, onnx_path, contract, metrics)],
        job_id=job_id,
        extra_files=extra,
    )
    return metrics
