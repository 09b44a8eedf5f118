"""Pre-label latency on the tablet's CPU: the workstation's default U-Net at 512×512, one image.

Measures, in one run and on the same weights: onnxruntime fp32, onnxruntime int8 (static QDQ,
calibrated on virtual-microscope images) and PyTorch eager (when torch is installed). Goal (issue
5): ≤ 60 ms median with 2 threads, and at least 2× faster than PyTorch eager. Latency does not
depend on the weights' values, so an untrained network with the default width and depth is used.

    python bench/prelabel_latency.py [--threads 2] [--runs 30] [--width 8] [--depth 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._machine import table
from export.data import normalise
from export.onnx_export import export_onnx, measure_latency
from export.quantize import quantize_int8
from export.synth import synth_samples

SIZE = 512
GOAL_MS = 60.0


def torch_latency(model, threads: int, runs: int) -> float:
    """Median ms of PyTorch eager (inference mode) on one SIZE×SIZE image."""
    import torch

    torch.set_num_threads(threads)
    x = torch.rand(1, 1, SIZE, SIZE)
    times = []
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        for _ in range(runs):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    from export.unet import DEFAULT_DEPTH, DEFAULT_WIDTH, UNet

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH)
    parser.add_argument("--depth", type=int, default=DEFAULT_DEPTH)
    args = parser.parse_args(argv)
    model = UNet(1, 2, args.width, args.depth).eval()
    calibration = [normalise(s.image)[None] for s in synth_samples(8, SIZE, seed=7)]
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "prelabel.onnx"
        export_onnx(model, 1, fp32)
        int8 = quantize_int8(fp32, Path(tmp) / "prelabel-int8.onnx", calibration)
        ort_fp32 = measure_latency(fp32, 1, SIZE, args.threads, args.runs)
        ort_int8 = measure_latency(int8, 1, SIZE, args.threads, args.runs)
    eager = torch_latency(model, args.threads, args.runs)

    def verdict(ms: float) -> str:
        ok = "meets" if ms <= GOAL_MS else "misses"
        return f"{ok} the goal; {eager / ms:.1f}× faster than PyTorch eager"

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    rows = [
        ("load average (1, 5, 15 min)", load, "< 1 for trustworthy figures", ""),
        ("model", f"U-Net width {args.width}, depth {args.depth}, 1→2 channels", "", ""),
        ("input", f"1 image, {SIZE}×{SIZE}, {args.threads} threads, median of {args.runs}", "", ""),
        (
            "onnxruntime fp32",
            f"{ort_fp32:.1f} ms",
            f"≤ {GOAL_MS:.0f} ms, ≥ 2× eager",
            verdict(ort_fp32),
        ),
        (
            "onnxruntime int8 (QDQ)",
            f"{ort_int8:.1f} ms",
            f"≤ {GOAL_MS:.0f} ms, ≥ 2× eager",
            verdict(ort_int8),
        ),
        ("PyTorch eager (same weights)", f"{eager:.1f} ms", "reference", ""),
    ]
    print(table("pre-label latency", rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
