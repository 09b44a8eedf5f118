"""`appliance run DIR --smoke-report OUT.json`: prove a build works, then quit.

The packaged app is checked the way an expert would first meet it: it starts on a project,
draws the annotate screen, runs the project's active segmentation model through onnxruntime,
calls each native library function the core uses (Pillow, tifffile, pycocotools, scipy,
scikit-image) and saves what the screen shows. The report says how long each step took
(seconds since the epoch, so a caller outside can subtract its own launch time), whether this is
a frozen build and whether torch was ever imported; the screenshot lands beside the report. A
build that cannot do this is broken, however well it built.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from kivy.clock import Clock
from kivy.core.window import Window

from appliance import __version__

SETTLE_FRAMES = 3  # frames drawn with nothing in flight before the picture is taken
GIVE_UP_S = 60.0


def _model_check(app: Any) -> dict[str, Any]:
    """Run the active pre-label model on the project's first image, as the annotate flow does."""
    from appliance.assist.runtime import active_model

    project = app.project
    if project is None:
        return {"model": None, "why": "no project open"}
    model = active_model(project, "prelabel")
    if model is None:
        return {"model": None, "why": "no active pre-label model"}
    images = project.images()
    if not images:
        return {"model": model.model_id, "why": "no images"}
    start = time.perf_counter()
    prediction = model.predict(project.load_pixels(images[0].id))
    return {
        "model": model.model_id,
        "prelabel_objects": len(prediction.label.classes),
        "prelabel_s": round(time.perf_counter() - start, 4),
    }


def _library_check() -> dict[str, str]:
    """Call each native library function the core uses, on tiny inputs: "ok" or the error.

    The build leaves out parts of scipy, scikit-image and Pillow and strips symbols from
    libraries (packaging/appliance-tablet.spec); a library that no longer loads, or a module
    left out that the core needs, shows up here instead of on an expert's tablet."""
    import io

    import cv2
    import numpy as np

    img = (np.indices((32, 32)).sum(axis=0) % 7 > 3).astype(np.uint8)

    def pillow() -> None:
        from PIL import Image

        for ext in (".png", ".jpg", ".tif", ".bmp"):
            _ok, data = cv2.imencode(ext, img * 200)
            with Image.open(io.BytesIO(data.tobytes())) as im:
                im.load()

    def tiff() -> None:
        import tifffile

        buf = io.BytesIO()
        tifffile.imwrite(buf, img.astype(np.uint16))
        tifffile.imread(io.BytesIO(buf.getvalue()))

    def coco() -> None:
        from pycocotools import mask

        mask.decode(mask.encode(np.asfortranarray(img)))

    def scipy_parts() -> None:
        from scipy import ndimage
        from scipy.optimize import linear_sum_assignment
        from scipy.sparse import coo_matrix
        from scipy.sparse.linalg import spsolve
        from scipy.special import stdtrit

        linear_sum_assignment(np.eye(3))
        stdtrit(4, 0.975)  # score intervals (appliance.supervision.stats)
        spsolve(coo_matrix(np.eye(3) * 2).tocsr(), np.ones(3))
        ndimage.distance_transform_edt(img)
        ndimage.label(img)

    def skimage_parts() -> None:
        from skimage.filters import threshold_otsu
        from skimage.measure import label
        from skimage.morphology import h_maxima
        from skimage.segmentation import felzenszwalb, watershed

        threshold_otsu(img.astype(float) + np.eye(32))
        markers = label(img)
        watershed(-img.astype(float), markers, mask=img > 0)
        h_maxima(img.astype(float), 0.5)
        felzenszwalb(np.dstack([img] * 3).astype(float))

    checks = {"pillow": pillow, "tifffile": tiff, "pycocotools": coco}
    checks.update(scipy=scipy_parts, skimage=skimage_parts)
    results = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # the report names it; the caller decides
            results[name] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    return results


def schedule_smoke(app: Any, report: Path) -> None:
    """Once the annotate screen has settled: check the model, take the screenshot, write, stop."""
    started = time.time()
    state: dict[str, Any] = {"settled": 0, "first_frame": None}

    def tick(_dt: float) -> bool:
        screen = app.sm.current if app.sm is not None else ""
        if time.time() - started > GIVE_UP_S:
            finish({"error": f"the app did not settle within {GIVE_UP_S:.0f} s (on '{screen}')"})
            return False
        if app.busy or screen != "annotate":
            state["settled"] = 0
            return True
        if state["first_frame"] is None:
            state["first_frame"] = time.time()
        state["settled"] += 1
        if state["settled"] < SETTLE_FRAMES:
            return True
        result = {"first_frame": state["first_frame"], **(app.safely(_model_check, app) or {})}
        result["libraries"] = _library_check()
        shot = Window.screenshot(name=str(report.with_suffix(".png")))
        if shot:
            os.replace(shot, report.with_suffix(".png"))
            result["screenshot"] = str(report.with_suffix(".png"))
        finish(result)
        return False

    def finish(result: dict[str, Any]) -> None:
        result.update(
            version=__version__,
            frozen=bool(getattr(sys, "frozen", False)),
            torch_imported="torch" in sys.modules,
            errors=[f"{type(e).__name__}: {e}" for e in app.errors],
        )
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result, indent=1))
        app.stop()

    Clock.schedule_interval(tick, 0)
