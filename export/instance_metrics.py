"""How well predicted instances match true ones: F1 at an IoU threshold and COCO AP.

F1 at IoU 0.5 is the detection score StarDist and Cellpose report on nuclei: at IoU > 0.5 a true
cell can match at most one predicted cell, so matching by IoU alone is one-to-one. COCO AP
0.5:0.95 comes from pycocotools (the reference implementation) on RLE masks; every predicted
instance gets the score 1 (the decoders give no per-instance confidence), so AP here measures
mask quality over IoU thresholds rather than ranking.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as coco_mask

from appliance.metrics import match_instances


def iou_matrix(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU of every true instance (rows, ids 1..) with every predicted one (columns)."""
    t_ids, t = np.unique(truth, return_inverse=True)
    p_ids, p = np.unique(pred, return_inverse=True)
    inter = np.bincount(
        t.ravel() * p_ids.size + p.ravel(), minlength=t_ids.size * p_ids.size
    ).reshape(t_ids.size, p_ids.size)
    area_t, area_p = inter.sum(axis=1), inter.sum(axis=0)
    union = area_t[:, None] + area_p[None, :] - inter
    iou = inter / np.maximum(union, 1)
    rows, cols = t_ids > 0, p_ids > 0
    return iou[rows][:, cols]


@dataclass
class Counts:
    """True positives, false positives and false negatives, pooled over images."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, truth: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> None:
        if threshold >= 0.5:  # one-to-one by IoU alone: the tablet's own matching
            match = match_instances(truth, pred, threshold)
            matched, n_truth, n_pred = len(match.pairs), match.n_truth, match.n_guess
        else:
            iou = iou_matrix(truth, pred)
            matched, (n_truth, n_pred) = _greedy(iou, threshold), iou.shape
        self.tp += matched
        self.fp += n_pred - matched
        self.fn += n_truth - matched

    @property
    def f1(self) -> float:
        denom = 2 * self.tp + self.fp + self.fn
        return 1.0 if denom == 0 else 2 * self.tp / denom


def _greedy(iou: np.ndarray, threshold: float) -> int:
    """One-to-one matches above `threshold` by falling IoU (needed only below 0.5)."""
    pairs = np.argwhere(iou > threshold)
    order = np.argsort(-iou[pairs[:, 0], pairs[:, 1]])
    used_t, used_p, n = set(), set(), 0
    for r, c in pairs[order]:
        if r not in used_t and c not in used_p:
            used_t.add(r)
            used_p.add(c)
            n += 1
    return n


def f1_at(
    truths: Sequence[np.ndarray], preds: Sequence[np.ndarray], threshold: float = 0.5
) -> float:
    """F1 of instance detection pooled over images (a match needs IoU > `threshold`)."""
    counts = Counts()
    for t, p in zip(truths, preds, strict=True):
        counts.add(t, p, threshold)
    return counts.f1


def dice(truths: Sequence[np.ndarray], preds: Sequence[np.ndarray]) -> float:
    """Foreground Dice pooled over images."""
    inter = total = 0
    for t, p in zip(truths, preds, strict=True):
        inter += int(((t > 0) & (p > 0)).sum())
        total += int((t > 0).sum() + (p > 0).sum())
    return 1.0 if total == 0 else 2 * inter / total


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
