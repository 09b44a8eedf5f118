"""What one frame of the annotate screen costs to draw, and which part costs what (issue 25).

Kivy redraws the whole window for any change, so the cost of one frame is the floor of every
frame gap the expert feels. Under Xvfb the frame is drawn by Mesa's llvmpipe on the CPU; this
opens the real app at 1920×1200 on a `--size`² image with `--objects` cells and, in four
states (a model pre-label on offer, after Accept and edit, with the object list open, zoomed
in 4×), forces `--frames` redraws and reports per frame: the pixels rasterised (in windows,
`testkit.overdraw`), the CPU time of the GL threads (llvmpipe's rasteriser threads and the UI
thread: robust to the load, unlike wall time) and the wall time of drawing and swapping; then
the same with each part of the screen taken out in turn (the image canvas, the tools panel,
the side panel, the top bar), so the difference is what that part costs.

    python bench/frame_cost.py --bundle ZIP [--size 2048] [--objects 250] [--frames 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._machine import machine


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True, help="a pre-label model bundle")
    ap.add_argument("--size", type=int, default=2048, help="image side")
    ap.add_argument("--objects", type=int, default=250, help="cells in the image")
    ap.add_argument("--frames", type=int, default=15, help="redraws per measurement")
    args = ap.parse_args()

    from appliance.session.display import emulate_tablet, start_virtual_display

    if not start_virtual_display((1920, 1920)):
        print("needs a display or Xvfb", file=sys.stderr)
        return 2
    emulate_tablet()
    os.environ.update(KIVY_NO_ARGS="1", KIVY_NO_FILELOG="1", KIVY_NO_CONSOLELOG="1")
    os.environ["KIVY_HOME"] = tempfile.mkdtemp(prefix="kivy-home-")
    from kivy.config import Config

    from appliance.ui.launch import configure_kivy

    configure_kivy()
    Config.set("graphics", "width", "1920")
    Config.set("graphics", "height", "1200")
    from kivy.base import EventLoop

    from appliance.ui.app import ApplianceApp

    root = Path(tempfile.mkdtemp(prefix="frame-cost-"))
    (root / "tablet.json").write_text('{"annotator": "Bench"}')
    app = ApplianceApp(root)
    app._run_prepare()
    for _ in range(5):
        EventLoop.idle()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    print(f"{args.size}² image, {args.objects} cells, window 1920×1200, {args.frames} frames each")
    print("cells: windows of pixels rasterised / CPU ms of the GL threads / wall ms, per frame\n")
    for state, parts in _states(app, root, args):
        print(f"## {state}\n")
        print("| drawn | windows | CPU ms | wall ms |")
        print("| --- | ---: | ---: | ---: |")
        for name, (share, cpu, wall) in parts:
            print(f"| {name} | {share:.2f} | {cpu:.1f} | {wall:.1f} |")
        print()
    app.stop()
    return 0


Cost = tuple[float, float, float]


def _states(app, root: Path, args) -> list[tuple[str, list[tuple[str, Cost]]]]:
    import tifffile
    from kivy.base import EventLoop

    from appliance import settings
    from appliance.bundles.install import install_model_bundle
    from appliance.importer import import_paths
    from appliance.store.project import Project
    from testkit.projects import cell_image

    src = root / "src"
    src.mkdir()
    tifffile.imwrite(src / "big.tif", cell_image(0, args.size, cells=args.objects))
    project = Project.create(root / "p", ["nucleus", "debris"])
    import_paths(project, [src])
    install_model_bundle(project, args.bundle, allow_unsigned=True)  # bench: no lab key
    settings.PRELABEL.set(project, "model")
    project.close()
    app.open_project(root / "p")
    screen = app.sm.get_screen("annotate")
    canvas, presenter = screen.canvas_view, screen.presenter

    def settle(done: Callable[[], bool]) -> None:
        while not done() or app.busy or canvas.bands_pending:
            EventLoop.idle()
        for _ in range(5):
            EventLoop.idle()

    states = []
    settle(lambda: presenter.offer is not None)
    states.append(("a model pre-label on offer", _parts(screen, args.frames)))
    presenter.accept_offer(edit=True)
    settle(lambda: presenter.offer is None and not presenter.work.dirty)
    states.append(("after Accept and edit", _parts(screen, args.frames)))
    screen.show_objects(True)
    settle(lambda: True)
    states.append(("the object list open", _parts(screen, args.frames)))
    screen.show_objects(False)
    canvas.zoom_about(canvas.zoom * 4, *canvas.center)
    settle(lambda: True)
    states.append(("zoomed in 4×", _parts(screen, args.frames)))
    return states


def _parts(screen, frames: int) -> list[tuple[str, Cost]]:
    """The whole frame, then without each part (its canvas taken out and put back)."""
    parts = [("the whole screen", _cost(frames))]
    for name, widget in (
        ("without the image canvas", screen.canvas_view),
        ("without the tools panel", screen.tools_panel),
        ("without the side panel", screen.side_panel),
        ("without the top bar", screen.top_bar),
    ):
        group = widget.parent.canvas
        index = group.indexof(widget.canvas)
        group.remove(widget.canvas)
        parts.append((name, _cost(frames)))
        group.insert(index, widget.canvas)
    return parts


def _cost(frames: int) -> Cost:
    from kivy.base import EventLoop
    from kivy.graphics.opengl import glFinish

    from testkit.overdraw import rasterised

    window = EventLoop.window
    walls = []
    start = _gl_cpu_ms()
    for _ in range(frames):
        t = time.perf_counter()
        window.canvas.ask_update()
        window.dispatch("on_draw")
        glFinish()
        window.flip()
        walls.append((time.perf_counter() - t) * 1000)
    cpu = (_gl_cpu_ms() - start) / frames
    share = rasterised(window.canvas, window.size).pixels / (window.width * window.height)
    return share, cpu, statistics.median(walls)


def _gl_cpu_ms() -> float:
    """CPU time of this process's llvmpipe threads and its main thread, in ms (Linux)."""
    total = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            if name.startswith("llvmpipe") or tid == str(os.getpid()):
                total += int(Path(f"/proc/self/task/{tid}/schedstat").read_text().split()[0])
        except OSError:
            continue  # a thread that ended meanwhile
    return total / 1e6


if __name__ == "__main__":
    raise SystemExit(main())
