"""Operations written by hand, as a buggy or hostile device would send them."""

from __future__ import annotations

import base64
import json

import cv2
import numpy as np

from appliance.labels import encode_instances


def png(height: int = 8, width: int = 8, seed: int = 0) -> bytes:
    """A real 16-bit grey PNG (a blob whose header the server can check)."""
    img = np.random.default_rng(seed).integers(0, 65535, (height, width), dtype=np.uint16)
    ok, data = cv2.imencode(".png", img)
    assert ok
    return data.tobytes()


def instances_b64(instances: np.ndarray) -> str:
    return base64.b64encode(encode_instances(np.asarray(instances, np.uint32))).decode()


def image_op(uid: str, sha: str, **changes: object) -> dict:
    payload = {
        "sha256": sha,
        "page": None,
        "name": "x.png",
        "suffix": ".png",
        "height": 8,
        "width": 8,
        "channels": 1,
        "dtype": "uint16",
        "sequence": None,
        "frame": 0,
    } | changes
    return {"uid": uid, "kind": "image.added", "ref": f"{sha}:", "payload": payload, "blob": sha}


def label_op(
    uid: str,
    sha: str,
    parent: str | None = None,
    instances: np.ndarray | str | None = None,
    classes: dict[int, int] | str | None = None,
    size: int = 8,
    **changes: object,
) -> dict:
    """A label version of image `sha` (size×size unless `instances` says otherwise); by default
    one instance of class 1. `instances` or `classes` as text are sent as they are."""
    if instances is None:
        instances = np.zeros((size, size), np.uint32)
        instances[2:5, 2:5] = 1
    raw = isinstance(instances, str)
    ids = [] if raw else sorted(int(i) for i in np.unique(instances) if i)
    table = classes if classes is not None else dict.fromkeys(ids, 1)
    text = table if isinstance(table, str) else json.dumps({str(k): v for k, v in table.items()})
    payload = {
        "uid": uid,
        "image": f"{sha}:",
        "parent": parent,
        "author": "a",
        "source": "manual",
        "created": "2026-01-01T00:00:00",
        "seconds_spent": 1.0,
        "coarse": False,
        "reviewed": False,
        "n_instances": len(ids),
        "instances": instances if isinstance(instances, str) else instances_b64(instances),
        "classes": text,
    } | changes
    return {"uid": uid, "kind": "label.saved", "ref": uid, "payload": payload}


def model_op(uid: str, **changes: object) -> dict:
    payload = {"model_id": "m1", "role": "prelabel"} | changes
    return {"uid": uid, "kind": "model.activated", "ref": "m1", "payload": payload}


def control_op(uid: str, label: str, **changes: object) -> dict:
    payload = {"label": label, "annotator": "a", "dice": 0.5, "score": 0.5} | changes
    return {"uid": uid, "kind": "control.scored", "ref": label, "payload": payload}


def slide_op(uid: str, sha: str, **changes: object) -> dict:
    """A slide file (as `testkit.slides.write_svs` writes with the test's sizes)."""
    payload = {
        "sha256": sha,
        "name": "s.svs",
        "suffix": ".svs",
        "width": 320,
        "height": 240,
        "levels": 2,
        "mpp": 0.25,
        "vendor": "aperio",
    } | changes
    return {"uid": uid, "kind": "slide.added", "ref": sha, "payload": payload, "blob": sha}


def region_op(uid: str, image_sha: str, slide_sha: str, **changes: object) -> dict:
    """Image `image_sha` placed on slide `slide_sha` at (8, 8) by the lab."""
    payload = {"image": f"{image_sha}:", "slide": slide_sha, "x": 8, "y": 8, "origin": "lab"}
    payload |= changes
    return {"uid": uid, "kind": "region.added", "ref": payload["image"], "payload": payload}
