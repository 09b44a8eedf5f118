"""The cell detector: trained on point and box labels, a CenterNet-style head on the U-Net.

Seeds 000 and 002 label cells on slides by points and boxes, not masks; this model learns
them (docs/training.md). The network is the project's U-Net (`export.unet`) with K-1 + 2 output
channels at full resolution: one centre heatmap per cell class and the log width and height of
the cell's box. Losses are CenterNet's: the penalty-reduced focal loss on the heatmaps (α 2,
β 4, normalised by the number of cells) weighted per class against imbalance (seed 000's class
weights), plus L1 on the log size where boxes say how large a cell is (points: heatmap only).

Full resolution keeps the tablet's tiling exact (every pixel's answer is stitched as for the
U-Nets) and peaks within a pixel. Single process (CPU or one GPU); the segmentation loop's
torchrun support is not repeated here.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from appliance.assist.detection import decode_objects
from appliance.bundles.model_bundle import ModelSpec, write_model_bundle
from appliance.bundles.training_job import read_training_job
from appliance.contract import Contract, Value
from appliance.errors import ApplianceError
from appliance.labels import Box, CellObject, object_centres
from appliance.metrics import match_boxes, match_points
from export.centres import (
    DEFAULT_POINT_SIGMA,
    centre_targets,
    class_weights,
    label_objects,
)
from export.data import NORMALISATION, TILE_MULTIPLE, EpochSampler, normalise, pad_to_multiple
from export.onnx_export import INPUT_NAME, OUTPUT_NAME, cpu_session, export_onnx, measure_latency
from export.train.loop import TrainConfig, learning_rate, plot_curves, resolve_machine
from export.train.runtime import optimiser_step, precision_for, seed_everything, select_runtime
from export.train.ship import split_off_val
from export.unet import UNet

__all__ = [
    "DetDataset",
    "DetSample",
    "DetScores",
    "DetectorResult",
    "build_detector",
    "crop_objects",
    "detector_contract",
    "detector_loss",
    "detector_outputs",
    "focal_loss",
    "samples_from_job_objects",
    "score_objects",
    "train_detector",
    "train_detector_job",
]

FOCAL_ALPHA, FOCAL_BETA = 2.0, 4.0  # CenterNet (Zhou et al. 2019), eq. 1
# CenterNet weighs an L1 on sizes in pixels by 0.1; on log sizes the errors are ~10× smaller
SIZE_WEIGHT = 1.0
PRIOR = 0.1  # initial centre probability (heatmap bias -2.19), CenterNet's focal-loss start
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # tried on validation images after training


@dataclass
class DetSample:
    """One image (float32 C×H×W in [0, 1]) with its cells; targets are drawn per crop."""

    image: np.ndarray
    objects: list[CellObject]


def samples_from_job_objects(
    job_path: Path,
) -> tuple[str, list[str], dict[str, list[DetSample]]]:
    """(job id, class names, samples per split) of a training job, cells as objects."""
    with read_training_job(job_path) as job:
        classes = list(job.classes)
        splits: dict[str, list[DetSample]] = {"train": [], "val": [], "test": []}
        for item in job.items:
            objects = label_objects(item.label)
            splits[item.split].append(DetSample(normalise(item.image()), objects))
        job_id = job.id
    if not any(s.objects for s in splits["train"]):
        raise ApplianceError(
            f"{job_path}: no training image has a point, box or mask to learn cells from"
        )
    return job_id, classes, splits


def crop_objects(objects: list[CellObject], top: int, left: int, side: int) -> list[CellObject]:
    """The cells whose centre lies in a crop, in the crop's coordinates (a cell cut by the
    crop's edge stays whole: its box may reach beyond the crop, as its size says)."""
    xy = object_centres(objects)
    inside = (
        (xy[:, 0] >= left) & (xy[:, 0] < left + side) & (xy[:, 1] >= top) & (xy[:, 1] < top + side)
    )
    return [o.shifted(-left, -top) for o, keep in zip(objects, inside, strict=True) if keep]


class DetDataset(Dataset):
    """Training crops (random crop, rot90, flip, intensity jitter) with their targets, drawn
    for the crop alone (a whole slide region's targets would hold K+2 full-size planes);
    randomness seeded by (seed, epoch, index) as `export.data.SegDataset`."""

    def __init__(
        self,
        samples: list[DetSample],
        n_classes: int,
        patch: int,
        seed: int,
        min_items: int = 1,
        point_sigma: float = DEFAULT_POINT_SIGMA,
    ) -> None:
        if not samples:
            raise ApplianceError("no training images")
        self.samples, self.n_classes, self.seed, self.epoch = samples, n_classes, seed, 0
        self.point_sigma = point_sigma
        smallest = min(min(s.image.shape[1:]) for s in samples)
        self.patch = max(min(patch, smallest - smallest % TILE_MULTIPLE), TILE_MULTIPLE)
        self.length = max(len(samples), min_items)

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        s = self.samples[index % len(self.samples)]
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch + 1, index]))
        p = self.patch
        h, w = s.image.shape[1:]
        top, left = int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1))
        objects = crop_objects(s.objects, top, left, p)
        t = centre_targets(objects, (p, p), self.n_classes, self.point_sigma)
        crop = s.image[:, top : top + p, left : left + p]
        stack = [crop, t.heat, t.size, t.size_mask[None]]
        k, flip = int(rng.integers(0, 4)), bool(rng.integers(0, 2))
        stack = [np.rot90(a, k, axes=(1, 2)) for a in stack]
        if flip:
            stack = [a[..., ::-1] for a in stack]
        if k % 2:  # a quarter turn swaps the box's width and height
            stack[2] = stack[2][::-1]
        jitter = np.clip(stack[0] * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1), 0.0, 1.0)
        x, heat, size, mask = (
            torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
            for a in (jitter, *stack[1:])
        )
        return {"x": x, "heat": heat, "size": size, "mask": mask[0]}


def build_detector(
    in_channels: int, n_classes: int, width: int, depth: int, cell_size: float = 20.0
) -> UNet:
    """The U-Net with K-1 heatmap and 2 size channels, heatmaps starting at probability 0.1
    and sizes at `cell_size` pixels (the training cells' median)."""
    model = UNet(in_channels, n_classes - 1 + 2, width, depth)
    bias = model.head.bias
    assert bias is not None  # a Conv2d built with its default bias=True
    with torch.no_grad():
        bias[: n_classes - 1] = -math.log((1 - PRIOR) / PRIOR)
        bias[n_classes - 1 :] = math.log(cell_size)
    return model


def focal_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss; `weights` (K-1) weigh each class's pixels."""
    p = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    pos_term = torch.log(p) * (1 - p) ** FOCAL_ALPHA * pos
    neg_term = torch.log(1 - p) * p**FOCAL_ALPHA * (1 - target) ** FOCAL_BETA * (1 - pos)
    w = weights.view(1, -1, 1, 1)
    n_pos = pos.sum().clamp(min=1.0)
    return -((pos_term + neg_term) * w).sum() / n_pos


def detector_loss(
    out: torch.Tensor,
    heat: torch.Tensor,
    size: torch.Tensor,
    mask: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """Focal loss on the heatmaps + λ·L1 on the log size where a box gives it."""
    k = heat.shape[1]
    loss = focal_loss(out[:, :k], heat, weights)
    m = mask.unsqueeze(1)
    if m.sum() > 0:
        l1 = (out[:, k:].float() - size).abs() * m
        loss = loss + SIZE_WEIGHT * l1.sum() / (2 * m.sum())
    return loss


@torch.no_grad()
def detector_outputs(model: torch.nn.Module, samples: list[DetSample]) -> list[np.ndarray]:
    """Raw outputs ((K+1)×H×W) on whole images, as the tablet stitches them."""
    model.eval()
    device = next(model.parameters()).device
    outs = []
    for s in samples:
        h, w = s.image.shape[1:]
        x = torch.from_numpy(pad_to_multiple(s.image)[None]).to(device)
        outs.append(model(x)[0, :, :h, :w].float().cpu().numpy())
    return outs


@dataclass(frozen=True)
class DetScores:
    """Pooled over images: detection F1 (any class) and F1 counting only cells found with
    their class. A truth box is found by a box at IoU > 0.5 (seed 000's rule) when boxes are
    decoded, else, as a truth point always is, by a centre within `radius` px."""

    f1: float
    class_f1: float
    n_truth: int
    n_found: int


def _pairs(
    truth: list[CellObject], guess: list[CellObject], radius: float
) -> list[tuple[int, int]]:
    """Matched (truth, guess) indices: boxes by IoU among boxes, the rest by centre distance."""
    tb = [i for i, o in enumerate(truth) if isinstance(o, Box)]
    gb = [j for j, o in enumerate(guess) if isinstance(o, Box)]
    pairs: list[tuple[int, int]] = []
    if tb and gb:
        boxes = match_boxes(
            np.array([truth[i].bounds() for i in tb]), np.array([guess[j].bounds() for j in gb])
        )
        pairs = [(tb[i], gb[j]) for i, j in boxes.pairs]
    else:
        tb = []
    rest_t = [i for i in range(len(truth)) if i not in set(tb)]
    used = {j for _, j in pairs}
    rest_g = [j for j in range(len(guess)) if j not in used]
    m = match_points(
        object_centres([truth[i] for i in rest_t]),
        object_centres([guess[j] for j in rest_g]),
        radius,
    )
    return pairs + [(rest_t[i], rest_g[j]) for i, j in m.pairs]


def score_objects(
    truths: list[list[CellObject]], guesses: list[list[CellObject]], radius: float
) -> DetScores:
    """Pooled detection scores (appliance.metrics.match_boxes and match_points)."""
    matched = correct = n_t = n_g = 0
    for truth, guess in zip(truths, guesses, strict=True):
        pairs = _pairs(truth, guess, radius)
        matched += len(pairs)
        correct += sum(1 for i, j in pairs if truth[i].class_id == guess[j].class_id)
        n_t, n_g = n_t + len(truth), n_g + len(guess)
    total = n_t + n_g
    f1 = 1.0 if total == 0 else 2 * matched / total
    class_f1 = 1.0 if total == 0 else 2 * correct / total
    return DetScores(f1, class_f1, n_t, n_g)


def match_radius(samples: list[DetSample], point_sigma: float) -> float:
    """How far a found centre may lie from the truth's: half the median cell's shorter box
    side, or twice the point sigma when no cell has a box."""
    sides = [
        min(o.x1 - o.x0, o.y1 - o.y0) for s in samples for o in s.objects if isinstance(o, Box)
    ]
    return max(2.0, float(np.median(sides)) / 2 if sides else 2 * point_sigma)


def default_decoding(radius: float, boxes: bool, threshold: float = 0.3) -> dict[str, Value]:
    """The contract's decoding for a detector whose cells are `radius` px apart at least."""
    return {
        "threshold": threshold,
        "nms_radius": max(1, round(radius / 2)),
        "max_objects": 5000,
        "boxes": boxes,
        "box_iou": 0.5,
    }


def _decode_all(
    outs: list[np.ndarray], n_classes: int, decoding: dict[str, Value]
) -> list[list[CellObject]]:
    return [decode_objects(o, n_classes, decoding) for o in outs]


@dataclass
class DetectorResult:
    """The best detector (eval mode, CPU) and how its run went."""

    model: UNet
    best_f1: float
    best_epoch: int
    history: list[dict[str, float]]
    seconds: float
    device: str
    precision: str
    steps: int
    decoding: dict[str, Value]
    config: dict[str, object] = field(default_factory=dict)


def train_detector(
    train: list[DetSample],
    val: list[DetSample],
    n_classes: int,
    config: TrainConfig,
    *,
    point_sigma: float = DEFAULT_POINT_SIGMA,
    run_dir: Path | None = None,
    progress: bool = True,
) -> DetectorResult:
    """Fit the detector for `config.epochs` epochs, keep the weights with the best validation
    class F1, then pick the decoding threshold on the validation images."""
    if not train or not val:
        raise ApplianceError(
            f"training needs training and validation images, got {len(train)} and {len(val)}"
        )
    rt = select_runtime(config.device)
    seed_everything(config.seed)
    batch, workers, budget = resolve_machine(config, rt)
    amp, precision = precision_for(rt.device)
    ds = DetDataset(
        train, n_classes, config.patch, config.seed, config.min_epoch_items, point_sigma
    )
    sampler = EpochSampler(len(ds), config.seed)
    loader = DataLoader(
        ds,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        drop_last=len(sampler) >= 2 * batch,
        pin_memory=rt.device.type == "cuda",
    )
    counts = np.zeros(n_classes - 1, int)
    for s in train:
        for o in s.objects:
            if 1 <= o.class_id < n_classes:
                counts[o.class_id - 1] += 1
    weights = torch.from_numpy(class_weights(counts.tolist())).to(rt.device)
    sides = [max(o.x1 - o.x0, o.y1 - o.y0) for s in train for o in s.objects if isinstance(o, Box)]
    cell_size = float(np.median(sides)) if sides else 20.0
    model = build_detector(
        train[0].image.shape[0], n_classes, config.width, config.depth, cell_size
    )
    model = model.to(rt.device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    boxes = any(isinstance(o, Box) for s in train for o in s.objects)
    radius = match_radius(train, point_sigma)
    decoding = default_decoding(radius, boxes)
    truths = [s.objects for s in val]
    history: list[dict[str, float]] = []
    best_score, best_epoch, best_state = -1.0, 0, None
    start, steps = time.monotonic(), 0
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(range(1, config.epochs + 1), desc="train detector", disable=not progress)
    for epoch in bar:
        sampler.set_epoch(epoch)
        ds.set_epoch(epoch)
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(config, epoch)
        model.train()
        losses = []
        for item in loader:
            x = item["x"].to(rt.device)
            with torch.autocast(rt.device.type, dtype=amp, enabled=amp is not None):
                out = model(x)
            loss = detector_loss(
                out.float(),
                item["heat"].to(rt.device),
                item["size"].to(rt.device),
                item["mask"].to(rt.device),
                weights,
            )
            optimiser_step(optimiser, scaler, loss)
            losses.append(loss.item())
            steps += 1
        scores = score_objects(
            truths, _decode_all(detector_outputs(model, val), n_classes, decoding), radius
        )
        row = {
            "epoch": epoch,
            "loss": float(np.mean(losses)) if losses else float("nan"),
            "val_f1": scores.f1,
            "val_class_f1": scores.class_f1,
            # plot_curves draws val_dice; for the detector it is the class-aware F1
            "val_dice": scores.class_f1,
            "seconds": time.monotonic() - start,
        }
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", val_f1=f"{scores.class_f1:.3f}")
        if scores.class_f1 >= best_score:  # a tie goes to the longer-trained weights
            best_score, best_epoch = scores.class_f1, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if epoch - best_epoch >= config.patience:
            break
        if budget is not None and time.monotonic() - start >= budget * 60:
            break
    bar.close()
    model = model.cpu()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    outs = detector_outputs(model, val)
    tuned = max(
        THRESHOLDS,
        key=lambda t: (
            score_objects(
                truths, _decode_all(outs, n_classes, {**decoding, "threshold": t}), radius
            ).class_f1
        ),
    )
    decoding["threshold"] = tuned
    if run_dir is not None:
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
        if history:
            plot_curves(history, run_dir / "curves.png", f"detector: best val F1 {best_score:.3f}")
    return DetectorResult(
        model=model,
        best_f1=best_score,
        best_epoch=best_epoch,
        history=history,
        seconds=time.monotonic() - start,
        device=str(rt.device),
        precision=precision,
        steps=steps,
        decoding=decoding,
        config={**asdict(config), "batch": batch, "point_sigma": point_sigma},
    )


def detector_contract(
    image_channels: int, classes: list[str], decoding: dict[str, Value]
) -> Contract:
    """The I/O contract of a detector `export.train` trained (role `detector`)."""
    return Contract(
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        input_channels=image_channels,
        output_kind="centres",
        classes=tuple(classes),
        normalisation=NORMALISATION,
        tile_multiple=TILE_MULTIPLE,
        decoding=decoding,
    )


def onnx_objects(
    path: Path, samples: list[DetSample], contract: Contract
) -> list[list[CellObject]]:
    """Objects an exported detector finds on whole images, decoded as the tablet decodes."""
    session = cpu_session(path)
    found = []
    for s in samples:
        h, w = s.image.shape[1:]
        x = pad_to_multiple(s.image)[None].astype(np.float32)
        out = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0][0][:, :h, :w]
        found.append(decode_objects(out, contract.n_classes, contract.decoding))
    return found


def train_detector_job(
    job_path: Path,
    out: Path,
    run_dir: Path,
    config: TrainConfig,
    *,
    point_sigma: float = DEFAULT_POINT_SIGMA,
    progress: bool = True,
) -> tuple[Path, str, dict[str, object]]:
    """Training job → trained detector → ONNX (parity-checked) → signed model bundle.

    Returns the bundle, its id and the metrics it records (held-out scores of the exported
    graph, decoded as the tablet decodes).
    """
    job_id, classes, splits = samples_from_job_objects(job_path)
    train, val, test = splits["train"], splits["val"], splits["test"]
    if not val:
        train, val = split_off_val(train, config.seed, job_path)
    config = replace(config, n_classes=len(classes))
    result = train_detector(
        train, val, len(classes), config, point_sigma=point_sigma, run_dir=run_dir,
        progress=progress,
    )  # fmt: skip
    channels = train[0].image.shape[0]
    onnx_path = run_dir / "model.onnx"
    parity = export_onnx(result.model, channels, onnx_path)
    contract = detector_contract(channels, classes, result.decoding)
    eval_name, eval_set = ("test", test) if test else ("val", val)
    radius = match_radius(train, point_sigma)
    scores = score_objects(
        [s.objects for s in eval_set], onnx_objects(onnx_path, eval_set, contract), radius
    )
    metrics: dict[str, object] = {
        "task": "detect",
        "output_kind": "centres",
        "val_class_f1": round(result.best_f1, 4),
        f"{eval_name}_f1_onnx": round(scores.f1, 4),
        f"{eval_name}_class_f1_onnx": round(scores.class_f1, 4),
        "eval_split": eval_name,
        "match_radius_px": round(radius, 2),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "steps": result.steps,
        "train_seconds": round(result.seconds, 1),
        "device": result.device,
        "precision": result.precision,
        "train_images": len(train),
        "val_images": len(val),
        "test_images": len(test),
        "parity": parity.as_dict(),
        "decoding": dict(result.decoding),
        "latency_ms_512_2threads": round(measure_latency(onnx_path, channels), 1),
        "config": result.config,
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    extra = {n: run_dir / n for n in ("metrics.json", "metrics.jsonl", "curves.png")}
    name = f"unet-w{config.width}-d{config.depth}-centres-detector"
    bundle_id = write_model_bundle(
        out,
        [ModelSpec("detector", name, onnx_path, contract, metrics)],
        job_id=job_id,
        extra_files={k: v for k, v in extra.items() if v.exists()},
    )
    return out, bundle_id, metrics
