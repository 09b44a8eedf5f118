"""Touch-move → overlay texture updated, on a 2048×2048 label with 500 instances, brush 20 px.

Runs the real `LabelCanvas` in a real Kivy window (Xvfb started here when there is no display,
so under Mesa's software GL) and dispatches pen moves through Kivy's input path. Each sample is
the time from posting one `update` event to the end of `glFinish()` after the handler: the
editing core stamps the dab, the overlay renderer colours the dirty rectangle (plus outline
margin) and `blit_buffer` uploads it. The same stroke is then replayed with a full-texture
re-render and re-upload per event, the way an editor without dirty rectangles would work.

    python bench/ui_latency.py [--events 400] [--full-events 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZE, INSTANCES, BRUSH = 2048, 500, 20


def ensure_display() -> subprocess.Popen | None:
    if os.environ.get("DISPLAY") or shutil.which("Xvfb") is None:
        return None
    read, write = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1920x1200x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as fh:
        os.environ["DISPLAY"] = ":" + fh.readline().strip()
    return proc


def label_with_instances(rng: np.random.Generator):
    """500 non-overlapping round cells on a jittered grid, alternating between two classes."""
    import cv2

    from appliance.labels import Label

    inst = np.zeros((SIZE, SIZE), np.uint32)
    step = SIZE // 23  # 23 × 22 grid cells ≥ 500, 89 px apart: radius ≤ 30 never overlaps
    cells = [(r, c) for r in range(22) for c in range(23)][:INSTANCES]
    for i, (r, c) in enumerate(cells, start=1):
        cx = c * step + step // 2 + int(rng.integers(-10, 11))
        cy = r * step + step // 2 + int(rng.integers(-10, 11))
        cv2.circle(inst, (cx, cy), int(rng.integers(8, 31)), i, -1)
    return Label(inst, {i: 1 + i % 2 for i in range(1, len(cells) + 1)})


def stroke_points(n: int) -> list[tuple[float, float]]:
    """A zigzag across the image, 3 image pixels per event (a pen sampled at ~120 Hz)."""
    pts, x, y, dx = [], 100.0, 100.0, 3.0
    for _ in range(n):
        x += dx
        if not 100 <= x <= SIZE - 100:
            dx, y = -dx, y + 40
        pts.append((x, y))
    return pts


def measure(canvas, points, full: bool) -> np.ndarray:
    from kivy.base import EventLoop
    from kivy.graphics.opengl import glFinish

    from testkit.touch import SynthTouch

    x, y = canvas.to_window(*points[0])
    touch = SynthTouch("pen", x, y, pressure=1.0).down()
    samples = []
    for ix, iy in points[1:]:
        wx, wy = canvas.to_window(ix, iy)
        t0 = time.perf_counter()
        touch.move_to(wx, wy, 1.0)
        if full:  # a naive editor: every change re-renders and re-uploads the whole overlay
            canvas.refresh(None)
        glFinish()
        samples.append(time.perf_counter() - t0)
        EventLoop.idle()  # draw the frame, as the app would between events
    touch.up()
    return np.array(samples) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=400, help="moves with dirty rectangles")
    parser.add_argument("--full-events", type=int, default=100, help="moves with full uploads")
    args = parser.parse_args()
    xvfb = ensure_display()
    os.environ.update(
        KIVY_NO_ARGS="1",
        KIVY_NO_CONSOLELOG="1",
        KIVY_NO_FILELOG="1",
        KIVY_HOME=tempfile.mkdtemp(prefix="kivy-bench-"),
        KIVY_CLIPBOARD="sdl2",
    )
    from kivy.config import Config

    Config.set("graphics", "width", "1920")
    Config.set("graphics", "height", "1200")
    from kivy.base import EventLoop
    from kivy.core.window import Window

    from appliance.editing import EditSession
    from appliance.ui.canvas import LabelCanvas

    rng = np.random.default_rng(0)
    label = label_with_instances(rng)
    image = rng.integers(0, 255, (SIZE, SIZE), dtype=np.uint8)
    canvas = LabelCanvas(size=Window.size, pos=(0, 0))
    Window.add_widget(canvas)
    EventLoop.ensure_window()
    canvas.brush_size = BRUSH
    rows = []
    runs = (("dirty rectangle", False, args.events), ("full re-upload", True, args.full_events))
    for name, full, events in runs:
        canvas.set_image(image, EditSession(label))
        for _ in range(3):
            EventLoop.idle()
        ms = measure(canvas, stroke_points(events), full)
        rows.append((name, float(np.median(ms)), float(np.percentile(ms, 99)), ms.size))
    from kivy.graphics.opengl import GL_RENDERER, glGetString

    gl = glGetString(GL_RENDERER).decode(errors="replace")
    print(
        f"touch-move → overlay texture updated; {SIZE}×{SIZE}, {len(label.classes)} instances,"
        f" brush {BRUSH} px; GL: {gl}"
    )
    print("| update | median ms | p99 ms | events |\n|---|---:|---:|---:|")
    for name, med, p99, n in rows:
        print(f"| {name} | {med:.2f} | {p99:.2f} | {n} |")
    print(
        f"ratio full/dirty: median {rows[1][1] / rows[0][1]:.0f}×, p99 "
        f"{rows[1][2] / rows[0][2]:.0f}×"
    )
    goal = rows[0][1] <= 8 and rows[0][2] <= 16
    print(f"goal (≤ 8 ms median, ≤ 16 ms p99): {'met' if goal else 'NOT met'}")
    if xvfb is not None:
        xvfb.terminate()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # Kivy's logger swallows tracebacks when its console log is off
        traceback.print_exc(file=sys.__stderr__)
        sys.exit(1)
