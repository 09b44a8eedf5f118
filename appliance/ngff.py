"""Labels as OME-Zarr (NGFF 0.4) for napari and other OME-Zarr viewers.

Each exported image is `OUT/<stem>.ome.zarr`: the image itself at `0` (axes y, x, and c for
RGB, first) and its label at `labels/cells/0` (uint32 instance ids) with the `image-label`
metadata: one colour per instance (its class's colour) and a `class` property naming the
class, so a viewer can colour or filter by class. A slide region carries its level-0 place as
a translation, so regions of one slide line up in the viewer. Zarr format 2 (what NGFF 0.4
specifies); each folder is written beside its target and renamed into place, so an
interrupted export never leaves a half-written store where a whole one was.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from appliance.errors import ApplianceError
from appliance.importer import printable
from appliance.label_io import exportable
from appliance.overlay import class_colour
from appliance.store.classes import colours
from appliance.store.project import Project
from appliance.store.slides import region_of

__all__ = ["LABEL_NAME", "export_ngff"]

LABEL_NAME = "cells"
_CHUNK = 1024


def _multiscales(axes: list[str], translation: list[float]) -> list[dict[str, Any]]:
    kinds = {"c": "channel", "y": "space", "x": "space"}
    transforms: list[dict[str, Any]] = [{"type": "scale", "scale": [1.0] * len(axes)}]
    if any(translation):
        transforms.append({"type": "translation", "translation": translation})
    return [
        {
            "version": "0.4",
            "axes": [{"name": a, "type": kinds[a]} for a in axes],
            "datasets": [{"path": "0", "coordinateTransformations": transforms}],
        }
    ]


def _array(group: zarr.Group, data: np.ndarray) -> None:
    chunks = tuple(min(n, _CHUNK) if k >= data.ndim - 2 else n for k, n in enumerate(data.shape))
    arr = group.create_array("0", shape=data.shape, dtype=data.dtype, chunks=chunks)
    arr[...] = data


def export_ngff(project: Project, out: Path) -> dict[str, int]:
    """Every labeled image (control items left out) as an OME-Zarr with its label."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ApplianceError(f"{printable(out)}: cannot create folder ({exc.strerror})") from exc
    names = project.classes()
    chosen = colours(project)
    counts = {"images": 0, "objects_left_out": 0}
    for item in exportable(project):
        label = item.version.label
        pixels = project.load_pixels(item.record.id)
        region = region_of(project, item.record.id)
        dx, dy = (region.x, region.y) if region is not None else (0, 0)
        target = out / f"{item.stem}.ome.zarr"
        try:
            _write(target, pixels, label.instances, label, names, chosen, (dy, dx))
        except OSError as exc:
            raise ApplianceError(f"{printable(target)}: cannot write ({exc.strerror})") from exc
        counts["images"] += 1
        counts["objects_left_out"] += len(label.objects)
    return counts


def _write(
    target: Path,
    pixels: np.ndarray,
    instances: np.ndarray,
    label: Any,
    names: dict[int, str],
    chosen: dict[int, tuple[int, int, int]],
    offset: tuple[int, int],
) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as tmp:
        staged = Path(tmp) / target.name
        root = zarr.open_group(str(staged), mode="w", zarr_format=2)
        image = np.moveaxis(pixels, -1, 0) if pixels.ndim == 3 else pixels
        axes = ["c", "y", "x"] if pixels.ndim == 3 else ["y", "x"]
        _array(root, np.ascontiguousarray(image))
        shift = [0.0] * (len(axes) - 2) + [float(offset[0]), float(offset[1])]
        root.attrs["multiscales"] = _multiscales(axes, shift)
        labels = root.create_group("labels")
        labels.attrs["labels"] = [LABEL_NAME]
        cells = labels.create_group(LABEL_NAME)
        _array(cells, np.ascontiguousarray(instances, np.uint32))
        cells.attrs["multiscales"] = _multiscales(["y", "x"], [float(offset[0]), float(offset[1])])
        ids = [int(i) for i in label.ids()]
        cells.attrs["image-label"] = {
            "version": "0.4",
            "colors": [
                {
                    "label-value": i,
                    "rgba": [*chosen.get(label.class_of(i), class_colour(label.class_of(i))), 255],
                }
                for i in ids
            ],
            "properties": [
                {"label-value": i, "class": names.get(label.class_of(i), str(label.class_of(i)))}
                for i in ids
            ],
            "source": {"image": "../../"},
        }
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
