"""Build the tablet app: a one-folder PyInstaller bundle in `dist/appliance/` (`make package`).

The build has its own virtual environment, `.venv-package`, so that what ships is exactly the
tablet's dependencies (`packaging/requirements-tablet.txt`: onnxruntime's CPU build, Kivy, no
torch) and not whatever the development environment holds. `--gpu` ships onnxruntime-gpu
instead (about 300 MB more; the app falls back to the CPU when no CUDA device is present).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-package"
SPEC = ROOT / "packaging" / "appliance-tablet.spec"
REQUIREMENTS = ROOT / "packaging" / "requirements-tablet.txt"


def _bin(name: str) -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / name


def ensure_venv(gpu: bool) -> None:
    """Create the build environment once; pip makes later runs a quick no-op."""
    if not _bin("python").exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(_bin("python")), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    runtime = "onnxruntime-gpu" if gpu else "onnxruntime"
    other = "onnxruntime" if gpu else "onnxruntime-gpu"
    subprocess.run([str(_bin("python")), "-m", "pip", "uninstall", "-q", "-y", other], check=True)
    subprocess.run([*pip, runtime], check=True)


def build(dist: Path, gpu: bool = False) -> Path:
    """Build and return the app folder (`dist/appliance`)."""
    ensure_venv(gpu)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the hooks import `appliance` to list it
    cmd = [str(_bin("pyinstaller")), "--noconfirm", "--log-level", "WARN", "--distpath",
           str(dist), "--workpath", str(ROOT / "build" / "pyinstaller"), str(SPEC)]  # fmt: skip
    print("building the tablet app (about a minute)", flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    app = dist / "appliance"
    print(f"built {app}", flush=True)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder")
    parser.add_argument("--gpu", action="store_true", help="ship onnxruntime-gpu (CUDA)")
    args = parser.parse_args(argv)
    try:
        build(args.dist, gpu=args.gpu)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"error: the tablet app did not build ({exc})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
