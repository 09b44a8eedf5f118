"""Generators on virtual-microscope cells: realism (C2ST), diversity, composed controls, speed.

For each generator (cGAN conv, diffusion, MIPR label-to-image) this trains on a virtual job
(round cells + lobed granulocytes) within a time budget, exports to ONNX and samples through
the tablet's own runtime (`appliance.generators`, numpy + onnxruntime), then runs a classifier
two-sample test (C2ST: held-out accuracy of a small CNN told to separate real from generated;
0.5 = indistinguishable) against real crops of the same classes. The baseline compares two
disjoint halves of the real crops. Diversity is the mean pairwise distance of the generated
crops of a class over that of as many real crops (about 1 for real variety, 0 for a collapsed
generator).

Composed controls (`export.controls.compose`, each matched to a context image of the job) are
judged in context: image regions centred on a planted cell against regions centred on a real
cell of other images, and cell-free background regions of both; the planted cells' measured
size, brightness, texture and focus are set beside the real cells' (seed 000's concern that
fakes show by "their differing background and size").

    python bench/generators.py --preset smoke                  # seconds: checks the script
    python bench/generators.py --minutes 8 --docs docs/generators   # the CPU run in the docs
    python bench/generators.py --preset full                   # seed 000/001 settings, a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import table

from appliance.bundles.training_job import read_training_job
from appliance.contract import GeneratorContract
from appliance.generators.context import FEATURES, cell_features
from appliance.generators.runtime import Generator
from appliance.imageio import percentile_normalise
from appliance.labels import Label
from export.generators.bundle import GeneratorSettings, fit_generator
from export.generators.c2st import c2st
from export.generators.common import save_grid
from export.generators.data import CropSet, cell_crops, crop_centred, scenes
from export.generators.onnx import export_generator
from export.generators.virtual import cell_job

Row = tuple[str, str, str, str]


@dataclass(frozen=True)
class Settings:
    images: int
    labeled: int
    image_size: int
    size: int
    crop: int
    cgan_steps: int
    diffusion_steps: int
    l2i_steps: int
    width: int
    batch: int
    minutes: float  # per generator training; 0 = steps only


PRESETS = {
    "smoke": Settings(12, 10, 96, 16, 32, 20, 20, 10, 8, 16, 0),
    "cpu": Settings(48, 40, 128, 32, 40, 20000, 20000, 5000, 16, 32, 8),
    "full": Settings(400, 300, 256, 64, 64, 20000, 20000, 5000, 32, 64, 0),
}
GOALS = {
    "cgan": "diversity ≈ 1 (not collapsed)",
    "diffusion": "≤ 0.70 CPU 30 min; ≤ 0.60 GPU",
    "label2image": "—",
    "controls": "≤ 0.65",
}


def _generated_crops(
    model_dir: Path, contract: GeneratorContract, real: CropSet, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """n crops per class drawn through the tablet runtime (ONNX), in [-1, 1]; mask-conditioned
    kinds follow real outlines of that class."""
    gen = Generator(model_dir / "generator.onnx", contract, threads=torch.get_num_threads())
    rng = np.random.default_rng(7)
    out, labels = [], []
    for k, name in enumerate(contract.classes):
        idx = np.flatnonzero(real.labels == k)
        if not len(idx):
            continue
        masks = real.masks[rng.choice(idx, n), 0] > 0.5
        cells = []
        for start in range(0, n, 16):
            m = masks[start : start + 16]
            cells += gen.sample(name, len(m), rng, masks=m)
        out += [np.atleast_3d(c.pixels).transpose(2, 0, 1) * 2 - 1 for c in cells]
        labels += [k] * len(cells)
    return np.stack(out).astype(np.float32), np.asarray(labels)


def diversity(fake: np.ndarray, fake_labels: np.ndarray, real: CropSet) -> dict[str, float]:
    """Per class: mean pairwise L2 distance of generated crops / that of real crops."""
    out = {}
    for k, name in enumerate(real.classes):
        f = fake[fake_labels == k].reshape((fake_labels == k).sum(), -1)
        r = real.images[real.labels == k]
        r = r.reshape(len(r), -1)
        n = min(len(f), len(r), 200)
        if n < 2:
            continue

        def spread(x: np.ndarray) -> float:
            d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
            return float(d[np.triu_indices(len(x), 1)].mean())

        out[name] = round(spread(f[:n]) / max(spread(r[:n]), 1e-9), 3)
    return out


def _l2i_crops(
    model: torch.nn.Module, job: Path, s: Settings
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cells in images rendered from held-out labels (deformed) and a shuffled held-out image,
    and the real cells of the held-out images (both cropped around each instance)."""
    from export.generators.label2image import patch_shuffle, render
    from export.generators.mipr import deform_label

    with read_training_job(job) as j:
        held = scenes(j, ("test", "val")) or scenes(j, ("train",))
        n_classes = len(j.classes)
    rng = np.random.default_rng(3)
    buckets: dict[bool, tuple[list[np.ndarray], list[int]]] = {False: ([], []), True: ([], [])}
    for sc in held:
        for fake in (False, True):
            img, target = sc.image, sc.target
            if fake:
                target = deform_label(sc.target, rng)
                img = render(model, patch_shuffle(sc.image, 2, rng), target, n_classes)
            label = Label.from_semantic(target.astype(np.uint16))
            for p in label.props():
                if p.area < 12:
                    continue
                crop = crop_centred(img, p.centroid[0], p.centroid[1], s.crop)
                crop = np.stack([cv2.resize(c, (s.size, s.size)) for c in crop])
                buckets[fake][0].append(crop)
                buckets[fake][1].append(p.class_id - 1)
    (ri, rl), (fi, fl) = buckets[False], buckets[True]
    return (
        np.stack(ri).astype(np.float32),
        np.asarray(rl),
        np.stack(fi).astype(np.float32),
        np.asarray(fl),
    )


def _region(image: np.ndarray, cy: float, cx: float, side: int, size: int) -> np.ndarray:
    """A side×side window of a normalised image around (cy, cx), resized, in [-1, 1]."""
    win = crop_centred(image[None], cy, cx, side)[0]
    return cv2.resize(win.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) * 2 - 1


def _free_centres(
    occupied: np.ndarray, side: int, n: int, rng: np.random.Generator
) -> list[tuple[float, float]]:
    """Up to n centres whose side×side window holds no labelled pixel."""
    clear = cv2.erode((~occupied).astype(np.uint8), np.ones((side, side), np.uint8), borderValue=0)
    ys, xs = np.nonzero(clear)
    if not ys.size:
        return []
    pick = rng.choice(ys.size, min(n, ys.size), replace=False)
    return [(float(ys[i]), float(xs[i])) for i in pick]


def _c2st_single(real: list[np.ndarray], fake: list[np.ndarray]) -> dict[str, object]:
    """C2ST of two lists of grey S×S regions (one class)."""
    zeros = np.zeros
    return c2st(
        np.stack(real)[:, None], np.stack(fake)[:, None], zeros(len(real), int),
        zeros(len(fake), int), ["region"],
    )  # fmt: skip


def controls_in_context(job: Path, s: Settings, docs: Path | None) -> tuple[list[Row], dict]:
    """C2ST of regions around planted vs real cells, of cell-free regions, and the feature
    comparison; half the labelled images are contexts, the other half the real side."""
    from export.controls import CellSource, compose

    with read_training_job(job) as j:
        items = [(it.name, it.image(), it.label) for it in j.items if it.label.ids().size]
    rng = np.random.default_rng(5)
    order = rng.permutation(len(items))
    contexts = [items[i] for i in order[: len(items) // 2]]
    reals = [items[i] for i in order[len(items) // 2 :]]
    side = max(s.crop, 48)
    region_real, region_fake, free_real, free_fake = [], [], [], []
    feats_real, feats_fake = [], []
    source = CellSource(rng)
    shown: list[tuple[np.ndarray, np.ndarray, Label]] = []
    t0 = time.monotonic()
    for _name, image, label in contexts:
        control = compose(image, label, rng, source)
        if len(shown) < 2:
            shown.append((image, control.image, control.truth))
        norm = percentile_normalise(control.image)
        feats_fake += cell_features(control.image, control.truth)
        for p in control.truth.props():
            region_fake.append(_region(norm, p.centroid[0], p.centroid[1], side, s.size))
        for cy, cx in _free_centres(control.truth.instances > 0, side // 2, 4, rng):
            free_fake.append(_region(norm, cy, cx, side // 2, s.size))
    seconds = (time.monotonic() - t0) / max(len(contexts), 1)
    for _name, image, label in reals:
        norm = percentile_normalise(image)
        feats_real += cell_features(image, label)
        for p in label.props():
            if p.area >= 12:
                region_real.append(_region(norm, p.centroid[0], p.centroid[1], side, s.size))
        for cy, cx in _free_centres(label.instances > 0, side // 2, 4, rng):
            free_real.append(_region(norm, cy, cx, side // 2, s.size))
    cells = _c2st_single(region_real, region_fake)
    rows: list[Row] = [
        (
            f"C2ST composed controls in context ({side}² regions around a cell)",
            f"{cells['accuracy']:.3f} (n_test {cells['n_test']})",
            GOALS["controls"],
            "met" if float(cells["accuracy"]) <= 0.65 else "not met",  # type: ignore[arg-type]
        )
    ]
    report: dict[str, object] = {"c2st_regions": cells, "seconds_per_control": seconds}
    if free_real and free_fake:
        bg = _c2st_single(free_real, free_fake)
        report["c2st_background"] = bg
        rows.append(
            (
                f"C2ST controls: cell-free background ({side // 2}² regions)",
                f"{bg['accuracy']:.3f} (n_test {bg['n_test']})",
                "≈ 0.5",
                "—",
            )
        )
    from scipy.stats import ks_2samp

    compare = {}
    for f in FEATURES:
        a = np.array([x.value(f) for x in feats_real])
        b = np.array([x.value(f) for x in feats_fake])
        ks = ks_2samp(a, b)
        compare[f] = {
            "real_median": round(float(np.median(a)), 3),
            "planted_median": round(float(np.median(b)), 3),
            "ks": round(float(ks.statistic), 3),
            "p": round(float(ks.pvalue), 3),
        }
        rows.append(
            (
                f"controls: cell {f}, median real / planted (n {len(a)} / {len(b)})",
                f"{np.median(a):.3g} / {np.median(b):.3g}",
                "alike",
                f"KS {ks.statistic:.2f} (p {ks.pvalue:.2f})",
            )
        )
    report["features"] = compare
    if docs is not None:
        _control_figure(shown, docs / "control-context.png")
        n = min(8, len(region_real), len(region_fake))
        save_grid(
            [np.stack(region_real[:n])[:, None], np.stack(region_fake[:n])[:, None]],
            docs / "control-regions.png",
            ["real cell", "planted cell"],
        )
    return rows, report


def _control_figure(shown: list[tuple[np.ndarray, np.ndarray, Label]], path: Path) -> None:
    """Per context: the context image, the control, the control with its truth outlined."""
    from appliance.imageio import to_display

    tiles = []
    for context, image, truth in shown:
        a, b = to_display(context), to_display(image)
        c = cv2.cvtColor(b, cv2.COLOR_GRAY2BGR)
        edge = cv2.morphologyEx(
            (truth.instances > 0).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3))
        )
        c[edge > 0] = (0, 0, 255)
        gap = np.full((a.shape[0], 4, 3), 255, np.uint8)
        tiles.append(
            np.concatenate(
                [
                    cv2.cvtColor(a, cv2.COLOR_GRAY2BGR),
                    gap,
                    cv2.cvtColor(b, cv2.COLOR_GRAY2BGR),
                    gap,
                    c,
                ],
                1,
            )
        )
    gap = np.full((4, tiles[0].shape[1], 3), 255, np.uint8)
    cv2.imwrite(str(path), np.concatenate([t for tile in tiles for t in (tile, gap)][:-1], 0))


def _generator_rows(
    kind: str, job: Path, s: Settings, real: CropSet, base: dict, tmp: Path, docs: Path | None
) -> tuple[list[Row], dict]:
    steps = {"cgan": s.cgan_steps, "diffusion": s.diffusion_steps, "label2image": s.l2i_steps}
    run = tmp / f"run-{kind}"
    settings = GeneratorSettings(
        kind=kind,
        size=s.size,
        crop=s.crop,
        steps=steps[kind],
        batch=s.batch if kind != "label2image" else 4,
        width=s.width,
        seed=0,
        max_minutes=s.minutes,
    )
    fitted = fit_generator(job, settings, run, progress=False)
    assert fitted is not None
    model, contract, metrics = fitted
    export_generator(model, contract, run / "generator.onnx")
    report: dict[str, object] = {
        "train_seconds": metrics["train_seconds"],
        "steps": metrics["steps"],
        "stopped": metrics["stopped"],
    }
    variants: list[tuple[str, GeneratorContract]] = [("", contract)]
    if kind == "diffusion" and contract.schedule is not None:
        stochastic = replace(contract, schedule=replace(contract.schedule, eta=1.0))
        variants.append((" η=1", stochastic))
    rows: list[Row] = []
    for suffix, con in variants:
        if kind == "label2image":
            r_img, r_lab, f_img, f_lab = _l2i_crops(model, job, s)
        else:
            f_img, f_lab = _generated_crops(run, con, real, max(32, len(real) // 2))
            r_img, r_lab = real.images, real.labels
        result = c2st(r_img, f_img, r_lab, f_lab, real.classes)
        div = diversity(f_img, f_lab, real) if kind != "label2image" else {}
        key = kind + suffix.replace(" η=", "-eta")
        report[key] = {"c2st": result, "diversity": div}
        per_class: dict[str, dict[str, float]] = result["per_class"]  # type: ignore[assignment]
        per = ", ".join(f"{c} {v['accuracy']:.2f}" for c, v in per_class.items())
        acc = float(result["accuracy"])  # type: ignore[arg-type]
        rows.append(
            (
                f"C2ST {kind}{suffix} ({s.size}², {metrics['steps']} steps, "
                f"{metrics['train_seconds']:.0f} s)",
                f"{acc:.3f} (n_test {result['n_test']}; {per})",
                GOALS[kind],
                f"{acc / max(float(base['accuracy']), 1e-9):.2f}× baseline",
            )
        )
        if div:
            rows.append(
                (
                    f"diversity {kind}{suffix} (pairwise distance / real's)",
                    ", ".join(f"{c} {v:.2f}" for c, v in div.items()),
                    "≈ 1",
                    "collapsed" if min(div.values()) < 0.5 else "not collapsed",
                )
            )
        if docs is not None and kind != "label2image":
            grid, captions = [], []
            for k, name in enumerate(real.classes):
                grid += [real.images[real.labels == k][:8], f_img[f_lab == k][:8]]
                captions += [f"{name} real", f"{name} {kind}{suffix}"]
            tag = suffix.strip().replace("η=", "eta")
            save_grid(grid, docs / f"{kind}{'-' + tag if tag else ''}-samples.png", captions)
    if docs is not None:
        import shutil

        shutil.copy(run / "curves.png", docs / f"{kind}-curves.png")
        if kind == "label2image":
            shutil.copy(run / "samples.png", docs / "label2image-samples.png")
    return rows, report


def mipr_rows(tmp: Path, s: Settings, preset: str) -> tuple[list[Row], dict]:
    """MIPR on a virtual job with few labelled and many unlabeled images (seed 001, Table 1):
    test Dice of the U-Net per iteration; every training within the budget."""
    from export.generators.mipr import MiprConfig, mipr_job

    # images, labelled, side, U-Net epochs, G steps, G crop side, iterations
    sizes = {"smoke": (10, 6, 64, 2, 2, 16, 3), "cpu": (80, 20, 96, 200, 2000, 32, 3)}
    n, labelled, side, epochs, g_steps, g_size, iterations = sizes.get(
        preset, (400, 40, 256, 100, 5000, 64, 3)
    )
    job = cell_job(tmp / "mipr-job", n, labelled, side, seed=21, split=(0.3, 0.2, 0.5))
    config = MiprConfig(
        iterations=iterations,
        seg_epochs=epochs,
        seg_width=8 if preset != "full" else None,
        g_steps=g_steps,
        g_width=16 if preset != "full" else 32,
        g_size=g_size,
        max_minutes=s.minutes / 4 if s.minutes else 0,
        seed=0,
    )
    t0 = time.monotonic()
    metrics = mipr_job(job, tmp / "mipr.zip", tmp / "run-mipr", config, progress=False)
    assert metrics is not None
    its: list[dict[str, object]] = metrics["iterations"]  # type: ignore[assignment]
    rows: list[Row] = [
        (
            f"MIPR[{r['iteration']}] test Dice ({r['train_images']} training images, "
            f"{r['pseudo_pairs']} generated pairs)",
            f"{r['test_dice']:.3f}",
            "rises over iterations",
            "—" if i == 0 else f"{float(r['test_dice']) - float(its[0]['test_dice']):+.3f}",  # type: ignore[arg-type]
        )
        for i, r in enumerate(its)
    ]
    report = {
        "job": {"images": n, "labelled": labelled, "side": side, "split": [0.3, 0.2, 0.5]},
        "config": config.__dict__,
        "iterations": its,
        "seconds": round(time.monotonic() - t0, 1),
    }
    return rows, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="sizes (cpu)")
    parser.add_argument(
        "--minutes", type=float, help="training budget per generator (cpu preset: 8; 0: none)"
    )
    parser.add_argument(
        "--only",
        default="cgan,diffusion,label2image,controls",
        help="comma-separated parts to run (default: cgan,diffusion,label2image,controls; "
        "mipr on request)",
    )
    parser.add_argument("--docs", type=Path, help="write sample grids (PNG) into this folder")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--out", type=Path, help="keep run folders here (default: temporary)")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch and onnxruntime threads (default: all cores on a quiet machine, 1 when the "
        "load average exceeds the cores: two threads on a shared 2-core machine made a cGAN "
        "step 15× slower than one, as each waits for the other to be scheduled)",
    )
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    threads = args.threads or (1 if os.getloadavg()[0] > cores else cores)
    torch.set_num_threads(threads)
    s = PRESETS[args.preset]
    if args.minutes is not None:
        s = replace(s, minutes=args.minutes)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    if args.docs:
        args.docs.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    report: dict[str, object] = {
        "settings": s.__dict__,
        "threads": threads,
        "load_before": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = args.out or Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        job = cell_job(tmp / "virtual", s.images, s.labeled, s.image_size, seed=11)
        with read_training_job(job) as j:
            real = cell_crops(j, s.size, s.crop)
        print(f"virtual job: {real.counts()} crops ({time.monotonic() - t0:.0f} s)", flush=True)
        half = np.random.default_rng(0).permutation(len(real))
        a, b = half[: len(real) // 2], half[len(real) // 2 :]
        base = c2st(real.images[a], real.images[b], real.labels[a], real.labels[b], real.classes)
        report["c2st_real_vs_real"] = base
        rows.append(
            (
                "C2ST real vs real (baseline)",
                f"{base['accuracy']:.3f} (n_test {base['n_test']})",
                "0.5",
                "—",
            )
        )
        for kind in ("cgan", "diffusion", "label2image"):
            if kind in parts:
                got, rep = _generator_rows(kind, job, s, real, base, tmp, args.docs)
                rows += got
                report[kind] = rep
                print(*got, sep="\n", flush=True)
        if "controls" in parts:
            got, rep = controls_in_context(job, s, args.docs)
            rows += got
            report["controls"] = rep
            print(*got, sep="\n", flush=True)
        if "mipr" in parts:
            got, rep = mipr_rows(tmp, s, args.preset)
            rows += got
            report["mipr"] = rep
            print(*got, sep="\n", flush=True)
            if args.docs:
                import shutil

                for name in ("mipr.png", "pairs.png"):
                    shutil.copy(tmp / "run-mipr" / name, args.docs / f"mipr-{name}")
    report["load_after"] = os.getloadavg()
    title = f"Generators ({args.preset} preset, {s.minutes or 'no'} min budget per generator)"
    print()
    print(table(title, rows))
    print(f"\nload average before / after: {report['load_before']} / {report['load_after']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
