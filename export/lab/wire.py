"""What devices may send: the shape of request bodies.

Operations are only framed here (id, kind, ref, payload object, blob hash); everything else
about them is checked by the core's `appliance.store.opcheck.check_operation`, which
`LabStore.push_ops` runs in the transaction that numbers them, the check every tablet runs
before applying one.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

PROJECT_RE = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
SHA_RE = r"^[0-9a-f]{64}$"
UID_RE = r"^[A-Za-z0-9_-]{8,64}$"
UPLOAD_RE = r"^[0-9a-f]{32}$"


class WireOp(BaseModel):
    uid: str = Field(pattern=UID_RE)
    kind: str = Field(min_length=1, max_length=40)
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
    # the token the device proposes (at least 192 random bits): a retry with the same code
    # and token after a lost reply gets the same device instead of a burnt code
    token: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{32,100}$")
