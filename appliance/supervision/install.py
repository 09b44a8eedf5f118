"""Installing a control bundle from the workstation: verified, checked, then imported.

Like a model bundle: `read_control_bundle` verifies every member (size, sha256, names, zip-bomb
guards) and decodes every image and truth map before anything is stored; then class names
must match the project and a bundle installs once. Only then are the items imported
(`controls.add_controls`, which also refuses images the project already holds).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from appliance.bundles.archive import BundleError
from appliance.bundles.control_bundle import read_control_bundle
from appliance.security.trust import learn, trust_policy
from appliance.store import controls as store
from appliance.store.project import Project
from appliance.supervision.controls import add_controls

__all__ = ["install_control_bundle"]


def install_control_bundle(
    project: Project,
    path: Path | str,
    *,
    level: str | None = None,
    plan: dict[str, int] | None = None,
    seed: int = 0,
    allow_unsigned: bool = False,
) -> list[int]:
    """Verify a control bundle and add its items as controls; a refused bundle changes nothing.

    Like a model bundle it must be signed by a pinned lab key unless `allow_unsigned`."""
    bundle = read_control_bundle(path, trust=trust_policy(allow_unsigned))
    names = project.classes()
    for cid in sorted({c for item, _ in bundle.items for c in item.truth.classes.values()}):
        if names.get(cid) != bundle.classes[cid]:
            raise BundleError(
                str(path),
                f"class {cid} is {bundle.classes[cid]!r} in the bundle but "
                f"{names.get(cid)!r} in this project",
            )
    if store.bundle_installed(project, bundle.id):
        raise BundleError(str(path), f"control bundle {bundle.id} is already installed")
    with tempfile.TemporaryDirectory(prefix="controls-") as tmp:
        files = []
        for item, _pixels in bundle.items:
            file = Path(tmp) / item.name
            file.write_bytes(item.image_bytes)
            files.append((file, item.truth, "synthetic"))
        ids = add_controls(project, files, level=level, plan=plan, seed=seed, bundle_id=bundle.id)
    if bundle.verdict is not None:
        learn(bundle.verdict)
    return ids
