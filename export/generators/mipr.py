"""MIPR (seed 001): unlabeled images become (image, label) pairs in a self-training loop.

1. Train the label-to-image generator G and the segmentation net S on the few labelled images.
2. Each iteration: S labels the unlabeled images (pseudo-labels); each pseudo-label is deformed
   (flip, rot90 and a smooth elastic warp) and G renders the source image's pixels into that
   layout, so the pair (G(x, t'), t') is correct by construction even where S was wrong.
3. The pairs join the training set, most confident first: iteration i of n adds the i/n most
   confident share of the unlabeled images (skipping empty pseudo-labels), so the set grows per
   iteration as in seed 001's Table 1; S is retrained and its held-out Dice is reported.

The final S ships as a `prelabel` model bundle with the per-iteration report and plots.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from appliance.errors import ApplianceError
from appliance.labels import Label
from export.data import Sample, SegDataset
from export.generators.common import save_grid
from export.generators.data import Scene
from export.train import TrainConfig, evaluate, train_model


@dataclass
class MiprConfig:
    iterations: int = 3
    seg_epochs: int = 100  # seed 001: 100 epochs, cosine-annealed learning rate
    seg_width: int | None = None
    g_steps: int = 5000
    g_width: int = 32
    g_size: int = 64
    batch: int | None = None
    device: str = "auto"
    seed: int = 0
    max_minutes: float | None = None  # per training (G, each S); None: machine default; 0: none


def deform_label(target: np.ndarray, rng: np.random.Generator, strength: float = 4.0) -> np.ndarray:
    """A pseudo-label moved by flip, rot90 and a smooth random warp (nearest neighbour)."""
    t = np.rot90(target, int(rng.integers(4)))
    if rng.random() < 0.5:
        t = t[:, ::-1]
    t = np.ascontiguousarray(t)
    h, w = t.shape
    sigma = max(h, w) / 8
    dy, dx = (
        cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigma)
        for _ in range(2)
    )
    scale = strength / max(float(np.abs(np.stack([dy, dx])).max()), 1e-6)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    warped = cv2.remap(
        t.astype(np.float32),
        xx + dx * scale,
        yy + dy * scale,
        cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_REFLECT,
    )
    return warped.astype(np.int64)


@torch.no_grad()
def pseudo_labels(
    model: torch.nn.Module, images: list[np.ndarray]
) -> list[tuple[np.ndarray, float]]:
    """(class map, confidence = mean max-probability) per [0, 1] image C×H×W."""
    from export.data import pad_to_multiple

    model.eval()
    out = []
    for img in images:
        h, w = img.shape[-2:]
        x = torch.from_numpy(np.ascontiguousarray(pad_to_multiple(img))[None]).float()
        probs = torch.softmax(model(x), 1)[0, :, :h, :w]
        out.append((probs.argmax(0).numpy().astype(np.int64), float(probs.max(0).values.mean())))
    return out


def _pair_sample(image: np.ndarray, target: np.ndarray) -> Sample:
    """A training sample from a generated [-1, 1] image and its class map."""
    label = Label.from_semantic(target.astype(np.uint16))
    return Sample(
        image=np.clip((image + 1) / 2, 0, 1).astype(np.float32),
        target=target.astype(np.int64),
        instances=label.instances,
    )


def _test_dice(model: torch.nn.Module, test: SegDataset) -> float:
    """Pooled test Dice of a softmax U-Net (`evaluate`'s instance F1 is None for softmax)."""
    dice, _ = evaluate(model, test, torch.device("cpu"))
    return round(dice, 4)


def run_mipr(
    train: list[Sample],
    val: list[Sample],
    test: list[Sample],
    unlabeled: list[np.ndarray],
    n_classes: int,
    config: MiprConfig,
    run_dir: Path,
    progress: bool = True,
) -> tuple[torch.nn.Module, list[dict[str, object]]]:
    """The loop; returns the last segmentation net and one report row per iteration (0 = S
    trained on the labelled images only). `unlabeled` holds [0, 1] C×H×W images."""
    from export.generators.label2image import Label2ImageConfig, render, train_label2image

    if not unlabeled:
        raise ApplianceError("MIPR needs unlabeled images: export the job with --include-unlabeled")
    run_dir.mkdir(parents=True, exist_ok=True)
    scenes = [Scene(s.image * 2 - 1, s.target) for s in train]
    g_config = Label2ImageConfig(
        width=config.g_width,
        d_width=config.g_width,
        size=config.g_size,
        steps=config.g_steps,
        device=config.device,
        seed=config.seed,
        max_minutes=config.max_minutes,
    )
    gen = train_label2image(scenes, n_classes, g_config, run_dir, progress).generator
    seg_config = TrainConfig(
        n_classes=n_classes,
        epochs=config.seg_epochs,
        batch=config.batch,
        patience=config.seg_epochs,
        device=config.device,
        seed=config.seed,
        max_minutes=config.max_minutes,
        patch=min(256, *(min(s.target.shape) for s in train)),
        min_epoch_items=16,
    )
    if config.seg_width:
        seg_config = replace(seg_config, width=config.seg_width)
    test_ds = SegDataset(test, "segment", train=False)
    rng = np.random.default_rng(config.seed)
    result = train_model(train, val, seg_config, run_dir / "iter0", progress)
    rows: list[dict[str, object]] = [
        {
            "iteration": 0,
            "train_images": len(train),
            "pseudo_pairs": 0,
            "test_dice": _test_dice(result.model, test_ds),
        }
    ]
    grid: list[np.ndarray] = []  # rows of (unlabeled image, deformed pseudo-label, rendering)
    for it in range(1, config.iterations + 1):
        labels = pseudo_labels(result.model, unlabeled)
        order = np.argsort([-conf for _, conf in labels])
        take = order[: int(np.ceil(it / config.iterations * len(unlabeled)))]
        # an empty pseudo-label teaches only "no cells here", and S is not sure of that
        take = np.array([i for i in take if labels[i][0].any()], dtype=np.int64)
        pairs = []
        for i in take:
            t_new = deform_label(labels[i][0], rng)
            x_new = render(gen, unlabeled[i] * 2 - 1, t_new, n_classes)
            pairs.append(_pair_sample(x_new, t_new))
            if it == config.iterations and len(grid) < 6:
                lab = (t_new[None] / max(n_classes - 1, 1)) * 2 - 1
                grid.append(np.stack([unlabeled[i][:1] * 2 - 1, lab, x_new[:1]]))
        grown = train + pairs
        result = train_model(grown, val, seg_config, run_dir / f"iter{it}", progress)
        rows.append(
            {
                "iteration": it,
                "train_images": len(grown),
                "pseudo_pairs": len(pairs),
                "mean_confidence": round(float(np.mean([labels[i][1] for i in take] or [0])), 4),
                "test_dice": _test_dice(result.model, test_ds),
            }
        )
    if grid:
        side = min(min(g.shape[-2:]) for g in grid)
        save_grid([g[..., :side, :side] for g in grid], run_dir / "pairs.png")
    _plot(rows, run_dir / "mipr.png")
    (run_dir / "mipr.json").write_text(json.dumps(rows, indent=2) + "\n")
    return result.model, rows


def _plot(rows: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    its = [int(r["iteration"]) for r in rows]  # type: ignore[call-overload]
    ax.plot(its, [float(r["test_dice"]) for r in rows], "o-")  # type: ignore[arg-type]
    for r in rows:
        ax.annotate(f"{r['train_images']}", (r["iteration"], r["test_dice"]), fontsize=8)
    ax.set_xlabel("iteration (0: labelled only; labels: training images)")
    ax.set_ylabel("test Dice")
    ax.set_xticks(its)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def mipr_job(
    job_path: Path, out: Path, run_dir: Path, config: MiprConfig, progress: bool = True
) -> dict[str, object] | None:
    """Training-job bundle (with unlabeled images) → MIPR → `prelabel` model bundle."""
    from appliance.bundles.model_bundle import ModelSpec, write_model_bundle
    from appliance.bundles.training_job import read_training_job
    from export.data import normalise, samples_from_job
    from export.onnx_export import export_onnx
    from export.train import segmentation_contract, split_off_val

    with read_training_job(job_path) as job:
        splits, classes = samples_from_job(job, "segment")
        unlabeled = [normalise(u.image()) for u in job.unlabeled]
        job_id = job.id
    train, val, test = splits["train"], splits["val"], splits["test"]
    if not val:
        train, val = split_off_val(train, config.seed, job_path)
    model, rows = run_mipr(
        train, val, test or val, unlabeled, len(classes), config, run_dir, progress
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    channels = train[0].image.shape[0]
    parity = export_onnx(model, channels, run_dir / "model.onnx")
    metrics: dict[str, object] = {
        "task": "segment",
        "method": "MIPR",
        "iterations": rows,
        f"{'test' if test else 'val'}_dice": rows[-1]["test_dice"],
        "unlabeled_images": len(unlabeled),
        "parity": parity.as_dict(),
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    extra = {
        n: run_dir / n for n in ("mipr.json", "mipr.png", "metrics.json") if (run_dir / n).exists()
    }
    if (run_dir / "pairs.png").exists():
        extra["pairs.png"] = run_dir / "pairs.png"
    metrics["bundle_id"] = write_model_bundle(
        out,
        [
            ModelSpec(
                "prelabel",
                f"unet-mipr{config.iterations}",
                run_dir / "model.onnx",
                segmentation_contract(channels, "segment", classes),
                metrics,
            )
        ],
        job_id=job_id,
        extra_files=extra,
    )
    return metrics
