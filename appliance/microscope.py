"""Microscope files (Zeiss CZI, Nikon ND2, Leica LIF, OME-Zarr) through bioio's plugins.

Only plugins that need no Java runtime are used (bioio-czi, bioio-nd2, bioio-lif,
bioio-ome-zarr; optional extra `microscopy`). A file becomes today's stack: one channel's
planes over T and Z, in T-major order, read one plane at a time (bioio reads lazily), so a
large time-lapse never sits in memory whole. Which channel is the caller's choice; the names
of all channels are reported so the expert can pick another. A file holding several series
(a LIF's images, an ND2's XY positions: bioio's scenes) gives its first; the others are named
so that the summary can say they were not imported. A file whose plugin is missing,
or that the plugin cannot read, is one `ApplianceError` naming the file and what is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from appliance.errors import ApplianceError

__all__ = ["MICROSCOPE_SUFFIXES", "MicroscopeStack", "is_microscope_file", "open_stack"]

# suffix -> (format, bioio plugin package, its module)
_PLUGINS = {
    ".czi": ("Zeiss CZI", "bioio-czi", "bioio_czi"),
    ".nd2": ("Nikon ND2", "bioio-nd2", "bioio_nd2"),
    ".lif": ("Leica LIF", "bioio-lif", "bioio_lif"),
    ".zarr": ("OME-Zarr", "bioio-ome-zarr", "bioio_ome_zarr"),
}
MICROSCOPE_SUFFIXES = tuple(_PLUGINS)
_EXTRA = "pip install 'annotation-appliance[microscopy]'"


def is_microscope_file(path: Path) -> bool:
    """CZI, ND2, LIF files and OME-Zarr folders (`*.zarr`, `*.ome.zarr`)."""
    return Path(path).suffix.lower() in _PLUGINS


@dataclass
class MicroscopeStack:
    """One channel of a microscope file as frames (T-major, then Z), read on demand."""

    path: Path
    image: Any  # bioio.BioImage
    channel: int
    channel_names: list[str]
    sizes: dict[str, int]
    scenes: tuple[str, ...] = ()

    @property
    def frames(self) -> int:
        """Number of planes of the chosen channel (T × Z)."""
        return self.sizes["T"] * self.sizes["Z"]

    @property
    def shape(self) -> tuple[int, int]:
        """(Y, X) of every plane."""
        return self.sizes["Y"], self.sizes["X"]

    def planes(self) -> Iterator[np.ndarray]:
        """Each plane (Y, X) in its own dtype; RGB files give (Y, X, 3)."""
        rgb = self.sizes.get("S", 1) in (3, 4)
        for t in range(self.sizes["T"]):
            for z in range(self.sizes["Z"]):
                try:
                    plane = self.image.get_image_data(
                        "YXS" if rgb else "YX", T=t, C=self.channel, Z=z
                    )
                except Exception as exc:  # plugin and codec errors alike
                    raise ApplianceError(
                        f"{self.path}: cannot read plane t={t} z={z} ({_short(exc)})"
                    ) from exc
                yield np.asarray(plane)[..., :3] if rgb else np.asarray(plane)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:160] or type(exc).__name__).rstrip(".")


def open_stack(path: Path, channel: int | str = 0) -> MicroscopeStack:
    """Open a microscope file for one channel (index or name); one-line errors for a missing
    plugin, an unreadable file or an unknown channel."""
    path = Path(path)
    fmt, package, module = _PLUGINS[path.suffix.lower()]
    if importlib.util.find_spec("bioio") is None or importlib.util.find_spec(module) is None:
        raise ApplianceError(
            f"{path}: reading {fmt} files needs the package {package}, which is not installed "
            f"({_EXTRA})"
        )
    from bioio import BioImage

    reader = importlib.import_module(module).Reader
    try:
        image = BioImage(path, reader=reader)
        dims = image.dims
        sizes = {axis: int(getattr(dims, axis, 1) or 1) for axis in "TCZYXS" if axis in dims.order}
        names = [str(n) for n in (image.channel_names or [])]
        scenes = tuple(str(s) for s in image.scenes)
    except ApplianceError:
        raise
    except Exception as exc:  # each plugin raises its own types for a bad file
        raise ApplianceError(f"{path}: not a readable {fmt} file ({_short(exc)})") from exc
    for axis in "TCZ":
        sizes.setdefault(axis, 1)
    if isinstance(channel, str) and not channel.isdigit():
        if channel not in names:
            raise ApplianceError(f"{path}: no channel {channel!r} (channels: {', '.join(names)})")
        index = names.index(channel)
    else:
        index = int(channel)
    if not 0 <= index < sizes["C"]:
        raise ApplianceError(f"{path}: no channel {index} (it has {sizes['C']})")
    return MicroscopeStack(path, image, index, names, sizes, scenes)
