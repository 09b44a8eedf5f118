"""COCO mask AP 0.5:0.95 of predicted instances, for the workstation's benchmarks.

Dice and instance F1 (IoU > 0.5, the detection score StarDist and Cellpose report on nuclei)
are `appliance.metrics`, the one implementation the tablet, training and benchmarks share. COCO
AP comes from pycocotools (the reference implementation) on RLE masks; every predicted instance
gets the score 1 (the decoders give no per-instance confidence), so AP here measures mask
quality over IoU thresholds rather than ranking.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
from pycocotools import mask as coco_mask


def _rles(inst: np.ndarray) -> list[tuple[dict, int]]:
    out = []
    for i in np.unique(inst):
        if i == 0:
            continue
        rle = coco_mask.encode(np.asfortranarray((inst == i).astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        out.append((rle, int(coco_mask.area(rle))))
    return out


def coco_ap(truths: Sequence[np.ndarray], preds: Sequence[np.ndarray]) -> float:
    """COCO mask AP averaged over IoU 0.50:0.05:0.95 (pycocotools COCOeval, one class)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images: list[dict] = []
    gts: list[dict] = []
    dts: list[dict] = []
    for k, (t, p) in enumerate(zip(truths, preds, strict=True), start=1):
        h, w = t.shape
        images.append({"id": k, "height": h, "width": w})
        for rle, area in _rles(t):
            x, y, bw, bh = coco_mask.toBbox(rle).tolist()
            gts.append(
                {
                    "id": len(gts) + 1,
                    "image_id": k,
                    "category_id": 1,
                    "segmentation": rle,
                    "area": area,
                    "bbox": [x, y, bw, bh],
                    "iscrowd": 0,
                }
            )
        for rle, area in _rles(p):
            dts.append(
                {"image_id": k, "category_id": 1, "segmentation": rle, "area": area, "score": 1.0}
            )
    if not gts:
        return 1.0 if not dts else 0.0
    if not dts:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):  # COCO prints progress lines
        gt = COCO()
        gt.dataset = {"images": images, "annotations": gts, "categories": [{"id": 1}]}
        gt.createIndex()
        dt = gt.loadRes(dts)
        ev = COCOeval(gt, dt, iouType="segm")
        ev.params.maxDets = [1, 10, max(1000, len(dts))]
        ev.evaluate()
        ev.accumulate()
    # summarize() reads AP at 100 detections per image; a crowded field may hold more cells
    precision = ev.eval["precision"][:, :, 0, 0, -1]  # IoU × recall, all areas, most dets
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else 0.0
