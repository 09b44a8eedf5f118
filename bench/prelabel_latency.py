"""Pre-label latency on the tablet's CPU: the workstation's default U-Net at 512×512, one image.

Measures, in one run and on the same weights: onnxruntime fp32, onnxruntime int8 (static QDQ,
calibrated on virtual-microscope images) and PyTorch eager (when torch is installed). Goal (issue
5): ≤ 60 ms median with 2 threads, and at least 2× faster than PyTorch eager. Latency does not
depend on the weights' values, so an untrained network with the default width and depth is used.

The network has the output channels of `--output` (default: the shipped kind), and the decoding
of that output into instances is timed separately (issue 11: the total stays within 60 ms). The
decoding's time depends on the content, so it decodes the output a perfect model would give on
a crowded 512² virtual-microscope image; connected components (today's softmax) run next to it.

    python bench/prelabel_latency.py [--threads 2] [--runs 30] [--width 8] [--depth 4]
        [--output three_class|distance|softmax]
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

from appliance.assist.contract import Contract, decode_label, probabilities
from appliance.assist.instances import INSTANCE_KINDS, default_decoding, output_channels
from bench._machine import table
from export.data import normalise
from export.onnx_export import export_onnx, measure_latency
from export.quantize import quantize_int8
from export.synth import synth_samples
from export.targets import DEFAULT_OUTPUT, TRAINABLE, ideal_logits

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


def decode_latency(kind: str, runs: int) -> tuple[float, float, int]:
    """Median wall and CPU ms to decode a perfect model's output on a crowded 512² image, and
    the cells found. The decoding is single-threaded, so on a loaded machine its CPU time is
    the better estimate of its wall time on an idle tablet."""
    cells = next(iter(synth_samples(1, SIZE, seed=7, crowding=0.5))).cells
    raw: dict[str, object] = {
        "input_name": "image",
        "output_name": "logits",
        "input_channels": 1,
        "output_kind": kind,
        "classes": ["background", "nucleus"],
    }
    if kind in INSTANCE_KINDS:
        raw["decoding"] = default_decoding(kind)
    contract = Contract.parse(raw, kind)
    logits = ideal_logits(cells, kind)
    times, cpu, found = [], [], 0
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        label = decode_label(logits, probabilities(logits, contract), contract)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        found = len(label.ids())
    return 1000.0 * float(np.median(times)), 1000.0 * float(np.median(cpu)), found


def main(argv: list[str] | None = None) -> int:
    from export.unet import DEFAULT_DEPTH, DEFAULT_WIDTH, UNet

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH)
    parser.add_argument("--depth", type=int, default=DEFAULT_DEPTH)
    parser.add_argument("--output", choices=TRAINABLE, default=DEFAULT_OUTPUT["segment"])
    args = parser.parse_args(argv)
    n_out = output_channels(args.output, 2)
    model = UNet(1, n_out, args.width, args.depth).eval()
    calibration = [normalise(s.image)[None] for s in synth_samples(8, SIZE, seed=7)]
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "prelabel.onnx"
        export_onnx(model, 1, fp32)
        int8 = quantize_int8(fp32, Path(tmp) / "prelabel-int8.onnx", calibration)
        ort_fp32 = measure_latency(fp32, 1, SIZE, args.threads, args.runs)
        ort_int8 = measure_latency(int8, 1, SIZE, args.threads, args.runs)
    eager = torch_latency(model, args.threads, args.runs)
    decode_ms, decode_cpu, found = decode_latency(args.output, args.runs)
    cc_ms, cc_cpu, cc_found = decode_latency("softmax", args.runs)

    def verdict(ms: float) -> str:
        ok = "meets" if ms <= GOAL_MS else "misses"
        return f"{ok} the goal; {eager / ms:.1f}× faster than PyTorch eager"

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    rows = [
        ("load average (1, 5, 15 min)", load, "< 1 for trustworthy figures", ""),
        (
            "model",
            f"U-Net width {args.width}, depth {args.depth}, 1→{n_out} channels ({args.output})",
            "",
            "",
        ),
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
        (
            f"decoding {args.output} output (numpy/scikit-image)",
            f"{decode_ms:.1f} ms (CPU {decode_cpu:.1f} ms), {found} cells",
            "",
            f"connected components (softmax): {cc_ms:.1f} ms (CPU {cc_cpu:.1f} ms), "
            f"{cc_found} cells",
        ),
        (
            "total: onnxruntime fp32 + decoding",
            f"{ort_fp32 + decode_ms:.1f} ms",
            f"≤ {GOAL_MS:.0f} ms",
            "meets the goal" if ort_fp32 + decode_ms <= GOAL_MS else "misses the goal",
        ),
        (
            "total: onnxruntime int8 + decoding",
            f"{ort_int8 + decode_ms:.1f} ms",
            f"≤ {GOAL_MS:.0f} ms",
            "meets the goal" if ort_int8 + decode_ms <= GOAL_MS else "misses the goal",
        ),
    ]
    print(table("pre-label latency", rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
