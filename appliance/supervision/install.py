"""Installing a control bundle from the workstation: verified, checked, then imported.

Like a model bundle: `read_control_bundle` verifies every member (size, sha256, names, zip-bomb
guards) and decodes every image and truth map before anything is stored; then class names
must match the project and a bundle installs once. Only then are the items imported
(`controls.add_controls`, which also refuses images the project already holds). An item
composed on a slide region becomes a region of the slide the project holds with that hash, at
the same place, which must be free (docs/supervision.md "Controls on slide regions").
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from appliance.bundles.archive import BundleError
from appliance.bundles.control_bundle import ControlItem, read_control_bundle
from appliance.errors import ApplianceError
from appliance.security.trust import learn, trust_policy
from appliance.store import controls as store
from appliance.store.project import Project
from appliance.store.slides import regions, slides
from appliance.supervision.controls import add_controls, check_region_place

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
    places = _places(project, str(path), bundle.items)
    with tempfile.TemporaryDirectory(prefix="controls-") as tmp:
        files = []
        for item, _pixels in bundle.items:
            file = Path(tmp) / item.name
            file.write_bytes(item.image_bytes)
            files.append((file, item.truth, "synthetic"))
        ids = add_controls(
            project,
            files,
            level=level,
            plan=plan,
            seed=seed,
            bundle_id=bundle.id,
            places=places,
        )
    if bundle.verdict is not None:
        learn(bundle.verdict)
    return ids


def _places(
    project: Project, path: str, items: list[tuple[ControlItem, np.ndarray]]
) -> list[tuple[int, int, int] | None]:
    """(slide id, x, y) of each item composed on a slide region, None for the others: the
    project must hold the slide (by hash) and the place must be free (`check_region_place`)."""
    held = {s.sha256: s for s in slides(project)}
    taken: dict[int, list[tuple[int, int, int, int]]] = {}
    out: list[tuple[int, int, int] | None] = []
    for k, (item, pixels) in enumerate(items):
        if item.region is None:
            out.append(None)
            continue
        record = held.get(item.region["slide_sha256"])
        if record is None:
            raise BundleError(
                path,
                f"item {k} lies on slide {item.region['slide']!r}, which this project does "
                "not hold; import that slide first",
            )
        if item.suffix.lower() != ".png":
            raise BundleError(path, f"item {k}: a slide region's pixels must be a PNG")
        if record.id not in taken:
            taken[record.id] = [(r.x, r.y, r.width, r.height) for r in regions(project, record.id)]
        x, y = int(item.region["x"]), int(item.region["y"])
        try:
            check_region_place(record, x, y, pixels, taken[record.id])
        except ApplianceError as exc:
            raise BundleError(path, f"item {k}: {exc}") from exc
        out.append((record.id, x, y))
    return out
