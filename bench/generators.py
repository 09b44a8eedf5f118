"""Generators on virtual-microscope cells: realism (C2ST), tablet speed, training time, MIPR.

For each generator (cGAN conv, diffusion, MIPR label-to-image) this trains on a virtual job
(round cells + lobed granulocytes), exports to ONNX and samples through the tablet's own runtime
(`appliance.generators`, numpy + onnxruntime), then runs a classifier two-sample test against
real crops of the same classes. The baseline C2ST compares two disjoint halves of the real
crops (what "indistinguishable" scores with this many crops). Speed rows time one sample on 2
CPU threads at 64² and 128² for the default widths (untrained weights: cost does not depend on
them), and one synthetic control (4 diffusion cells composed into a 256² image).

    python bench/generators.py            # reduced CPU settings (32² crops, minutes)
    python bench/generators.py --full     # seed 000/001 settings (64² crops), meant for a GPU
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import table

from appliance.bundles.training_job import read_training_job
from appliance.contract import GeneratorContract
from appliance.generators.compose import compose_control
from appliance.generators.runtime import Generator, random_masks
from export.generators.bundle import GeneratorSettings, fit_generator
from export.generators.c2st import c2st
from export.generators.data import CropSet, cell_crops, crop_centred, scenes
from export.generators.onnx import export_generator
from export.generators.virtual import cell_job


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
    mipr_epochs: int


REDUCED = Settings(40, 32, 128, 32, 40, 300, 400, 150, 16, 32, 8)
FULL = Settings(400, 300, 256, 64, 64, 20000, 20000, 5000, 32, 64, 100)


def _generated_crops(
    kind: str, model_dir: Path, contract: GeneratorContract, real: CropSet, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """n crops per class drawn through the tablet runtime (ONNX), in [-1, 1]."""
    gen = Generator(model_dir / "generator.onnx", contract, threads=2)
    rng = np.random.default_rng(7)
    out, labels = [], []
    for k, name in enumerate(contract.classes):
        idx = np.flatnonzero(real.labels == k)
        if not len(idx):
            continue
        masks = real.masks[rng.choice(idx, n), 0] > 0.5  # real outlines of that class
        cells = []
        for start in range(0, n, 16):
            m = masks[start : start + 16]
            cells += gen.sample(name, len(m), rng, masks=m)
        out += [c.pixels[None] * 2 - 1 for c in cells]
        labels += [k] * len(cells)
    return np.stack(out).astype(np.float32), np.asarray(labels)


def _l2i_crops(
    model: torch.nn.Module, job: Path, s: Settings, classes: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cells in images rendered from held-out labels (deformed) and a shuffled held-out image,
    and the real cells of the held-out images (both cropped around each instance)."""
    from appliance.labels import Label
    from export.generators.label2image import patch_shuffle, render
    from export.generators.mipr import deform_label

    with read_training_job(job) as j:
        held = scenes(j, ("test", "val")) or scenes(j, ("train",))
    rng = np.random.default_rng(3)
    fake: list[np.ndarray] = []
    real: list[np.ndarray] = []
    fl: list[int] = []
    rl: list[int] = []
    for sc in held:
        for source_target, bucket, lab in ((None, real, rl), (True, fake, fl)):
            if source_target is None:
                img, target = sc.image, sc.target
            else:
                target = deform_label(sc.target, rng)
                img = render(model, patch_shuffle(sc.image, 2, rng), target, len(classes) + 1)
            label = Label.from_semantic(target.astype(np.uint16))
            for p in label.props():
                if p.area < 12:
                    continue
                cy, cx = p.centroid
                crop = crop_centred(img, cy, cx, s.crop)
                if s.crop != s.size:
                    import cv2

                    crop = np.stack([cv2.resize(c, (s.size, s.size)) for c in crop])
                bucket.append(crop)
                lab.append(p.class_id - 1)
    return (
        np.stack(real).astype(np.float32),
        np.asarray(rl),
        np.stack(fake).astype(np.float32),
        np.asarray(fl),
    )


def _raw_contract(kind: str, size: int, classes: list[str]) -> dict[str, object]:
    """The contract of an untrained default-width generator (for the speed rows)."""
    from export.generators.cgan import LATENT_DIM
    from export.generators.diffusion import ddim_schedule

    raw: dict[str, object] = {
        "kind": kind,
        "channels": 1,
        "size": size,
        "classes": classes,
        "output_range": [-1, 1],
    }
    if kind == "cgan":
        return {**raw, "inputs": ["z", "class"], "output_name": "image", "latent_dim": LATENT_DIM}
    if kind == "label2image":
        return {**raw, "inputs": ["source", "label"], "output_name": "image", "size_multiple": 8}
    sched = ddim_schedule(20)
    return {
        **raw,
        "inputs": ["x", "t", "class", "mask"],
        "output_name": "eps",
        "size_multiple": 4,
        "guidance": 2.0,
        "schedule": {
            "kind": sched.kind,
            "train_steps": sched.train_steps,
            "timesteps": list(sched.timesteps),
            "alphas_cumprod": list(sched.alphas_cumprod),
        },
    }


def _speed(kind: str, size: int, tmp: Path, classes: list[str]) -> float:
    """Seconds for one sample through onnxruntime on 2 threads (default widths)."""
    from export.generators.cgan import ConvGenerator
    from export.generators.diffusion import Denoiser
    from export.generators.label2image import LabelToImage

    model: torch.nn.Module
    if kind == "cgan":
        model = ConvGenerator(len(classes), 1, size)
    elif kind == "diffusion":
        model = Denoiser(1, len(classes))
    else:
        model = LabelToImage(1, len(classes) + 1)
    raw = _raw_contract(kind, size, classes)
    contract = GeneratorContract.parse(raw, "bench")
    path = tmp / f"speed-{kind}-{size}.onnx"
    export_generator(model.eval(), contract, path)
    gen = Generator(path, contract, threads=2)
    rng = np.random.default_rng(0)
    src = rng.random((1, size, size), dtype=np.float32)
    gen.sample(classes[0], 1, rng, sources=src)  # warm-up
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        gen.sample(classes[0], 1, rng, sources=src)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _ratio(result: dict[str, object], base: dict[str, object]) -> float:
    return float(result["accuracy"]) / max(float(base["accuracy"]), 1e-9)  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="paper-like settings (GPU)")
    parser.add_argument("--out", type=Path, help="keep run folders here (default: temporary)")
    args = parser.parse_args()
    s = FULL if args.full else REDUCED
    rows: list[tuple[str, str, str, str]] = []
    report: dict[str, object] = {"settings": s.__dict__}
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
        for kind, steps in (
            ("cgan", s.cgan_steps),
            ("diffusion", s.diffusion_steps),
            ("label2image", s.l2i_steps),
        ):
            run = tmp / f"run-{kind}"
            settings = GeneratorSettings(
                kind=kind,
                size=s.size,
                crop=s.crop,
                steps=steps,
                batch=s.batch if kind != "label2image" else 4,
                width=s.width,
                seed=0,
            )
            fitted = fit_generator(job, settings, run, progress=False)
            assert fitted is not None
            model, contract, metrics = fitted
            export_generator(model, contract, run / "generator.onnx")
            if kind == "label2image":
                r_img, r_lab, f_img, f_lab = _l2i_crops(model, job, s, real.classes)
            else:
                f_img, f_lab = _generated_crops(kind, run, contract, real, max(32, len(real) // 2))
                r_img, r_lab = real.images, real.labels
            result = c2st(r_img, f_img, r_lab, f_lab, real.classes)
            report[kind] = {
                "c2st": result,
                "train_seconds": metrics["train_seconds"],
                "steps": steps,
            }
            per_class: dict[str, dict[str, float]] = result["per_class"]  # type: ignore[assignment]
            per = ", ".join(
                f"{c} {v['accuracy']:.2f} (n {v['n_test']})" for c, v in per_class.items()
            )
            goal = {"diffusion": "≤ 0.60 (--full, GPU)", "label2image": "≤ 0.70"}.get(kind, "—")
            rows.append(
                (
                    f"C2ST {kind} ({s.size}², {steps} steps)",
                    f"{result['accuracy']:.3f} (n_test {result['n_test']}; {per})",
                    goal,
                    f"{_ratio(result, base):.2f}× baseline",
                )
            )
            rows.append(
                (
                    f"training time {kind}",
                    f"{metrics['train_seconds']} s ({metrics['device']})",
                    "minutes on CPU",
                    "—",
                )
            )
            print(rows[-2], rows[-1], flush=True)
        for kind in ("cgan", "diffusion", "label2image"):
            for size in (64, 128):
                sec = _speed(kind, size, tmp, real.classes)
                label = "20 DDIM steps, guidance 2" if kind == "diffusion" else "one pass"
                rows.append(
                    (f"s/sample {kind} {size}² ({label}, 2 threads)", f"{sec:.3f} s", "—", "—")
                )
                report[f"speed_{kind}_{size}"] = sec
                print(rows[-1], flush=True)
        # one synthetic control: 4 diffusion cells (default width, 64²) into a 256² image
        from appliance.labels import Label
        from export.synth import synth_samples

        bg = next(synth_samples(1, 256, 99, "mixed"))
        inst = np.where(bg.others > 0, bg.others + bg.cells.max(), bg.cells).astype(np.uint32)
        path = tmp / "speed-diffusion-64.onnx"
        contract = GeneratorContract.parse(_raw_contract("diffusion", 64, real.classes), "bench")
        t0 = time.perf_counter()
        gen = Generator(path, contract, threads=2)
        rng = np.random.default_rng(1)
        cells = gen.sample(real.classes[0], 4, rng, masks=random_masks(4, 64, rng))
        comp = compose_control(
            bg.image, cells, {real.classes[0]: 1}, rng, label=Label(inst, {}), blend="poisson"
        )
        sec = time.perf_counter() - t0
        rows.append(
            (
                "one synthetic control (4 diffusion cells, 256², Poisson)",
                f"{sec:.2f} s",
                "≤ 15 s",
                f"{sec / 15:.2f}× goal",
            )
        )
        report["control_seconds"] = sec
        report["control_added"] = len(comp.added)
    print()
    print(table(f"Generators ({'full' if args.full else 'reduced CPU'} settings)", rows))
    print()
    print(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
