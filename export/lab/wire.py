"""What devices may send: request bodies and, per operation kind, the payload's shape.

The server checks every operation before it numbers it, because every other tablet of the
project will apply it: a malformed or dangling operation accepted once would stop all of them.
Consistency with the store (the labeled image and the parent version exist) is checked by
`LabStore.push_ops` in the same transaction that accepts the operations.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError

from appliance.store.oplog import control_added_problem, image_ref
from appliance.store.project import SOURCES

PROJECT_RE = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
SHA_RE = r"^[0-9a-f]{64}$"
UID_RE = r"^[A-Za-z0-9_-]{8,64}$"
UPLOAD_RE = r"^[0-9a-f]{32}$"


class WireOp(BaseModel):
    uid: str = Field(pattern=UID_RE)
    kind: Literal[
        "image.added", "label.saved", "control.scored", "model.activated", "control.added"
    ]
    ref: str = Field(min_length=1, max_length=80)
    payload: dict[str, Any]
    blob: str | None = Field(default=None, pattern=SHA_RE)


class OpsIn(BaseModel):
    ops: list[WireOp]


class Hashes(BaseModel):
    hashes: list[Annotated[str, Field(pattern=SHA_RE)]] = Field(max_length=10_000)


class BlobRef(BaseModel):
    sha256: str = Field(pattern=SHA_RE)


class EnrollIn(BaseModel):
    code: str = Field(min_length=4, max_length=40)
    name: str | None = Field(default=None, max_length=100)


class ImageAdded(BaseModel):
    sha256: str = Field(pattern=SHA_RE)
    page: int | None = Field(default=None, ge=0, le=100_000)
    name: str = Field(min_length=1, max_length=300)
    suffix: str = Field(pattern=r"^(\.[A-Za-z0-9]{1,8})?$")
    height: int = Field(ge=1, le=1_000_000)
    width: int = Field(ge=1, le=1_000_000)
    channels: int = Field(ge=1, le=4)
    dtype: str = Field(pattern=r"^[a-z0-9]{2,12}$")
    sequence: str | None = Field(default=None, max_length=4096)
    frame: int | None = None


class LabelSaved(BaseModel):
    uid: str = Field(pattern=UID_RE)
    image: str = Field(pattern=r"^[0-9a-f]{64}:[0-9]*$")
    parent: str | None = Field(default=None, pattern=UID_RE)
    author: str = Field(min_length=1, max_length=100)
    source: str
    created: str = Field(max_length=40)
    seconds_spent: float = Field(ge=0)
    coarse: bool
    reviewed: bool
    n_instances: int = Field(ge=0)
    instances: str = Field(pattern=r"^[A-Za-z0-9+/]*={0,2}$")
    classes: str


class ControlScored(BaseModel):
    label: str = Field(pattern=UID_RE)
    annotator: str = Field(min_length=1, max_length=100)
    score: float = Field(ge=0, le=1)


class ModelActivated(BaseModel):
    model_id: str = Field(min_length=1, max_length=80)
    role: str = Field(min_length=1, max_length=40)


def problem(op: WireOp) -> str | None:
    """Why `op` may not be accepted, or None when its payload is well-formed and consistent."""
    try:
        if op.kind == "image.added":
            img = ImageAdded.model_validate(op.payload)
            if op.blob != img.sha256 or op.ref != image_ref(img.sha256, img.page):
                return "blob and ref must name the image's sha256 and page"
        elif op.kind == "label.saved":
            label = LabelSaved.model_validate(op.payload)
            if label.source not in SOURCES:
                return f"unknown label source {label.source!r}"
            if op.ref != label.uid or op.blob is not None:
                return "ref must be the version's uid, and a label names no blob"
            classes = json.loads(label.classes)
            if not isinstance(classes, dict):
                return "classes must be a JSON object"
        elif op.kind == "control.scored":
            scored = ControlScored.model_validate(op.payload)
            if op.ref != scored.label or op.blob is not None:
                return "ref must be the scored version's uid, and a score names no blob"
        elif op.kind == "control.added":
            return control_added_problem(op.ref, op.payload, op.blob)
        elif op.kind == "model.activated":
            ModelActivated.model_validate(op.payload)
            if op.blob is not None:
                return "a model activation names no blob"
    except ValidationError as exc:
        first = exc.errors()[0]
        return f"payload field {'.'.join(str(x) for x in first['loc'])}: {first['msg']}"
    except ValueError:
        return "classes is not JSON"
    return None
