"""The packaged tablet app: folder size, and time to first frame against `python -m appliance run`.

Builds `dist/appliance` when missing (`packaging/build.py`). The project opened is the tablet's
usual one: 8 virtual-microscope images at 512² and the workstation's default U-Net (untrained
weights: start-up does not depend on their values), installed as a model bundle. Each start
goes to the annotate screen, runs the model once and draws; time to first frame is the wall
time from launching the process to the first frame of the annotate screen. Both ways of
starting run alternately in the same session, so they share the machine's state.
Goals (issue 16): ≤ 400 MB and ≤ 3 s to first frame.

    python bench/package.py [--runs 5] [--rebuild]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._machine import table  # noqa: E402

GOAL_MB, GOAL_S = 400.0, 3.0


def folder_bytes(path: Path) -> int:
    """Bytes on disk of the files (links to libraries are counted once, as their targets)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def make_workspace(root: Path) -> Path:
    """One project with images and the default U-Net as its active pre-label model."""
    from appliance.bundles.install import install_model_bundle
    from appliance.importer import import_paths
    from appliance.store import Project
    from export.bundle import from_torch
    from export.synth import write_dataset
    from export.unet import UNet

    write_dataset(root / "data", 8, 512, 0, "nuclei")
    project = Project.create(root / "ws" / "Nuclei", ["nucleus"])
    import_paths(project, [root / "data" / "images"])
    contract = {
        "input_name": "image",
        "output_name": "logits",
        "input_channels": 1,
        "output_kind": "softmax",
        "classes": ["background", "nucleus"],
    }
    bundle = root / "unet.zip"
    from_torch(UNet(1, 2).eval(), contract, out=bundle, name="unet", progress=lambda _l: None)
    install_model_bundle(project, bundle, allow_unsigned=True)  # a bench, not a lab: no key
    project.close()
    (root / "ws" / "Nuclei" / "tablet.json").write_text(json.dumps({"annotator": "Bench"}))
    return root / "ws" / "Nuclei"


def first_frame_s(cmd: list[str], report: Path, env: dict[str, str]) -> float:
    report.unlink(missing_ok=True)
    start = time.time()
    subprocess.run([*cmd, "--smoke-report", str(report)], env=env, check=True, timeout=300,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    result = json.loads(report.read_text())
    if "error" in result or result.get("model") is None:
        raise SystemExit(f"the app did not start properly: {result}")
    return float(result["first_frame"]) - start


def drop_caches() -> bool:
    """Cold start where the kernel lets us (root on bare metal), else the figures are warm."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    app = ROOT / "dist" / "appliance"
    if args.rebuild or not (app / "appliance").exists():
        subprocess.run([sys.executable, str(ROOT / "packaging" / "build.py")], check=True)
    with tempfile.TemporaryDirectory(prefix="bench-package-") as tmp:
        project = make_workspace(Path(tmp))
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DISPLAY")}
        dev_env = {**env, "PYTHONPATH": str(ROOT)}
        frozen_cmd = [str(app / "appliance"), "run", str(project)]
        python_cmd = [sys.executable, "-m", "appliance", "run", str(project)]
        frozen, python, cold = [], [], []
        for _ in range(args.runs):
            cold.append(drop_caches())
            frozen.append(first_frame_s(frozen_cmd, Path(tmp) / "f.json", env))
            drop_caches()
            python.append(first_frame_s(python_cmd, Path(tmp) / "p.json", dev_env))
    size = folder_bytes(app) / 1e6
    mib = folder_bytes(app) / 2**20
    f_med, p_med = statistics.median(frozen), statistics.median(python)
    caches = "page cache dropped before each start" if all(cold) else "warm page cache"
    rows = [
        ("app folder size", f"{size:.0f} MB ({mib:.0f} MiB)", f"≤ {GOAL_MB:.0f} MB",
         "meets" if size <= GOAL_MB else f"misses by {size - GOAL_MB:.0f} MB"),
        ("first frame, frozen app (median)", f"{f_med:.2f} s", f"≤ {GOAL_S:.0f} s",
         "meets" if f_med <= GOAL_S else "misses"),
        ("first frame, python -m appliance run (median)", f"{p_med:.2f} s", "baseline",
         f"frozen/python {f_med / p_med:.2f}×"),
        ("runs each", str(args.runs), "", caches),
        ("load average at the end", f"{os.getloadavg()[0]:.1f}", "", "figures grow with load"),
    ]  # fmt: skip
    print(table("Packaged tablet app (includes Xvfb start, project open, one model run)", rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
