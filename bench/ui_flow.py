"""Save & next → the next image on screen with its pre-label, in the real app under Xvfb.

The expert works on an image for `--think` seconds (a pen stroke, then nothing), taps
Save & next (the label is stored, the post-assistance check runs, the selector's next image
opens) and waits for the next image with its pre-label outlined. Timed on the UI thread from
the tap to the first frame drawn after the pre-label arrived. Measured with the background
prefetch (next image decoded and pre-labeled while the expert works) and, as the baseline in
the same run, without it (decode and pre-label start at the tap).

    python bench/ui_flow.py [--sizes 512 2048] [--method model] [--rounds 3] [--think 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._machine import machine


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 2048])
    ap.add_argument("--method", default="model", choices=("model", "otsu"))
    ap.add_argument("--rounds", type=int, default=3, help="Save & next taps per setting")
    ap.add_argument("--think", type=float, default=5.0, help="seconds spent on each image")
    args = ap.parse_args()

    from appliance.ui.display import emulate_tablet, start_virtual_display

    if not start_virtual_display():
        print("needs a display or Xvfb", file=sys.stderr)
        return 2
    emulate_tablet()
    os.environ.update(KIVY_NO_ARGS="1", KIVY_NO_CONSOLELOG="1", KIVY_NO_FILELOG="1")
    os.environ["KIVY_HOME"] = tempfile.mkdtemp(prefix="kivy-home-")
    from kivy.config import Config

    from appliance.ui.launch import configure_kivy

    configure_kivy()
    Config.set("graphics", "width", "1920")
    Config.set("graphics", "height", "1200")
    from kivy.base import EventLoop

    from appliance import settings
    from appliance.bundles.install import install_model_bundle
    from appliance.ui.app import ApplianceApp
    from tests.ui.projects import make_project, prelabel_bundle

    root = Path(tempfile.mkdtemp(prefix="ui-flow-"))
    (root / "tablet.json").write_text('{"annotator": "Bench"}')
    app = ApplianceApp(root)
    app._run_prepare()

    def pump(until, timeout=120.0):
        end = time.monotonic() + timeout
        while not until():
            if time.monotonic() > end:
                raise TimeoutError("the app did not get there")
            EventLoop.idle()

    rows = []
    for size in args.sizes:
        project = make_project(root / f"p{size}", n=2 * args.rounds + 2, size=size)
        settings.PRELABEL.set(project, args.method)
        settings.INSPECTION.set(project, {"gamma0": 0.0})
        if args.method == "model":
            install_model_bundle(project, prelabel_bundle(root / f"b{size}"))
        project.close()
        for prefetch in (False, True):
            app.open_project(root / f"p{size}")
            screen = app.sm.get_screen("annotate")
            presenter = screen.presenter
            presenter.prefetch = prefetch
            pump(lambda: presenter.work is not None and presenter.offer is not None)
            times = []
            for _ in range(args.rounds):
                work = presenter.work
                presenter.accept_offer(edit=True)
                canvas = screen.canvas_view
                x, y = canvas.to_window(size * 0.1, size * 0.1)
                canvas.refresh(work.session.begin_stroke(*canvas.to_image(x, y), 6.0))
                canvas.refresh(work.session.end_stroke())
                think_end = time.monotonic() + args.think
                pump(lambda: time.monotonic() > think_end)  # the expert works; jobs run
                t0 = time.perf_counter()
                screen.buttons["save_next"].dispatch("on_release")
                pump(
                    lambda w=work: (
                        presenter.review is not None
                        or (presenter.work not in (None, w) and presenter.offer is not None)
                    )
                )
                if presenter.review is not None:
                    presenter.review_done()
                    pump(lambda w=work: presenter.work not in (None, w) and presenter.offer)
                EventLoop.idle()  # the frame that shows it
                times.append((time.perf_counter() - t0) * 1000)
            rows.append((size, prefetch, statistics.median(times), max(times)))
            app.go("home")
    app.stop()
    print("## Save & next → next image shown with its pre-label (real app, Xvfb)\n")
    print(
        f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}; "
        f"pre-label: {args.method}; {args.think:.0f} s on each image; {args.rounds} taps each\n"
    )
    print("| image | without prefetch (baseline) ms | with prefetch ms | ratio | goal |")
    print("| --- | ---: | ---: | ---: | --- |")
    goals = {512: 300.0, 2048: 1500.0}
    for size in args.sizes:
        base = next(r for r in rows if r[0] == size and not r[1])
        fast = next(r for r in rows if r[0] == size and r[1])
        goal = goals.get(size)
        verdict = f"≤ {goal:.0f} ms: {'met' if fast[2] <= goal else 'missed'}" if goal else "-"
        print(
            f"| {size}² | {base[2]:.0f} (max {base[3]:.0f}) | {fast[2]:.0f} (max {fast[3]:.0f}) "
            f"| {base[2] / fast[2]:.1f}× | {verdict} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
