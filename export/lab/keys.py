"""The lab's bundle-signing key: made at first start, kept owner-only in the lab folder.

Tablets pin its public half when they enroll; every model bundle a workstation pushes is
verified and then re-signed with it, so tablets install what this lab hands out and nothing
else (docs/security.md). `appliance-lab rotate-key` replaces it by a key it vouches for.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from appliance.bundles.archive import sign_bundle
from appliance.errors import ApplianceError
from appliance.security.signing import SigningKey

__all__ = ["KEY_FILE", "lab_signing_key", "rotate_lab_key", "signed_copy"]

KEY_FILE = "lab-signing.key"


def lab_signing_key(root: Path) -> SigningKey:
    """The lab's key, made on first use."""
    path = Path(root) / KEY_FILE
    if not path.exists():
        SigningKey.generate().save(path)
    return SigningKey.load(path)


def rotate_lab_key(root: Path) -> tuple[SigningKey, SigningKey]:
    """Replace the lab's key by a new one it signs; the old one is kept as `.retired-<id>`."""
    path = Path(root) / KEY_FILE
    old = lab_signing_key(root)
    retired = path.with_name(f"{KEY_FILE}.retired-{old.public.id}")
    if retired.exists():
        raise ApplianceError(f"{retired}: already there; not overwritten")
    new = old.rotate()
    old.save(retired, retired.with_name(retired.name + ".pub"))
    new.save(path)
    return old, new


def signed_copy(bundle: Path, key: SigningKey) -> tuple[str, bytes]:
    """The bundle signed by the lab (its members unchanged): its sha256 and bytes."""
    with tempfile.TemporaryDirectory(prefix="lab-sign-") as tmp:
        out = Path(tmp) / "signed.zip"
        sign_bundle(bundle, key, out)
        data = out.read_bytes()
    return hashlib.sha256(data).hexdigest(), data
