"""Microscope files (Zeiss CZI, Nikon ND2, Leica LIF, OME-Zarr) through bioio's plugins.

Only plugins that need no Java runtime are used (bioio-czi, bioio-nd2, bioio-lif,
bioio-ome-zarr; optional extra `microscopy`). A file becomes today's stack: one channel's
planes over T and Z, in T-major order, read one plane at a time (bioio reads lazily), so a
large time-lapse never sits in memory whole. Which channel is the caller's choice; the names
of all channels are reported so the expert can pick another. A file holding several series
(a LIF's images, an ND2's XY positions: bioio's scenes) gives the one chosen by index or name
(default its first), or every one, each its own stack; the channel is then chosen by name in
each series. `probe_file` reads what there is to choose from (metadata only, no pixels), so the
app can ask before an import. A file whose plugin is missing,
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

__all__ = [
    "MICROSCOPE_SUFFIXES",
    "MicroscopeFile",
    "MicroscopeInfo",
    "MicroscopeStack",
    "is_microscope_file",
    "listed",
    "open_file",
    "open_stack",
    "probe_file",
    "same_channels",
]

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
    """One channel of one series of a microscope file as frames (T-major, then Z), read on
    demand."""

    path: Path
    image: Any  # bioio.BioImage
    channel: int
    channel_names: list[str]
    sizes: dict[str, int]
    scenes: tuple[str, ...] = ()
    series: int = 0  # index into `scenes`

    @property
    def frames(self) -> int:
        """Number of planes of the chosen channel (T × Z)."""
        return self.sizes["T"] * self.sizes["Z"]

    @property
    def shape(self) -> tuple[int, int]:
        """(Y, X) of every plane."""
        return self.sizes["Y"], self.sizes["X"]

    @property
    def scene(self) -> str:
        """The name of the series (bioio's scene) this stack comes from."""
        return self.scenes[self.series] if self.scenes else "0"

    @property
    def names(self) -> list[str]:
        """The channels' names, their indices where the file names none."""
        named = len(self.channel_names) == self.sizes["C"]
        return self.channel_names if named else [str(c) for c in range(self.sizes["C"])]

    @property
    def channel_name(self) -> str:
        return self.names[self.channel]

    @property
    def label(self) -> str:
        """The file, and the series where the file holds several: what messages name."""
        return where(self.path, self.scenes, self.series)

    def planes(self) -> Iterator[np.ndarray]:
        """Each plane (Y, X) in its own dtype; RGB files give (Y, X, 3)."""
        rgb = self.sizes.get("S", 1) in (3, 4)
        for t in range(self.sizes["T"]):
            for z in range(self.sizes["Z"]):
                try:
                    if self.scenes:  # the image may have moved on to another series
                        self.image.set_scene(self.series)
                    plane = self.image.get_image_data(
                        "YXS" if rgb else "YX", T=t, C=self.channel, Z=z
                    )
                except Exception as exc:  # plugin and codec errors alike
                    raise ApplianceError(
                        f"{self.label}: cannot read plane t={t} z={z} ({_short(exc)})"
                    ) from exc
                yield np.asarray(plane)[..., :3] if rgb else np.asarray(plane)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:160] or type(exc).__name__).rstrip(".")


def where(path: Path, scenes: tuple[str, ...], index: int) -> str:
    """`FILE`, or `FILE series 'NAME'` where the file holds several series."""
    return f"{path} series {scenes[index]!r}" if len(scenes) > 1 else str(path)


def listed(names: tuple[str, ...] | list[str], most: int = 5) -> str:
    """`a, b, c, d, e and 3 more`: names for a one-line message, the first `most` of them."""
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


@dataclass
class MicroscopeFile:
    """An opened microscope file (metadata read, no pixels): its series, each a stack on
    demand. One series is open at a time (bioio's current scene)."""

    path: Path
    image: Any  # bioio.BioImage
    format: str
    scenes: tuple[str, ...]

    def series_index(self, series: int | str) -> int:
        """The index of `series`: an index, a string of digits, or a series name."""
        if isinstance(series, str) and not series.isdigit():
            if series not in self.scenes:
                raise ApplianceError(
                    f"{self.path}: no series {series!r} (series: {listed(self.scenes)})"
                )
            return self.scenes.index(series)
        index = int(series)
        if not 0 <= index < len(self.scenes):
            raise ApplianceError(f"{self.path}: no series {index} (it has {len(self.scenes)})")
        return index

    def sizes(self, index: int) -> tuple[dict[str, int], list[str]]:
        """Series `index`'s sizes (T, C, Z always present) and channel names, as the file
        gives them."""
        try:
            self.image.set_scene(index)
            dims = self.image.dims
            order = dims.order
            sizes = {axis: int(getattr(dims, axis, 1) or 1) for axis in "TCZYXS" if axis in order}
            names = [str(n) for n in (self.image.channel_names or [])]
        except Exception as exc:  # each plugin raises its own types for a bad file
            raise ApplianceError(
                f"{where(self.path, self.scenes, index)}: not a readable {self.format} file "
                f"({_short(exc)})"
            ) from exc
        for axis in "TCZ":
            sizes.setdefault(axis, 1)
        return sizes, names

    def stack(self, series: int | str = 0, channel: int | str = 0) -> MicroscopeStack:
        """Series `series` (index or name) as the stack of `channel` (index or name)."""
        index = self.series_index(series)
        sizes, names = self.sizes(index)
        label = where(self.path, self.scenes, index)
        if isinstance(channel, str) and not channel.isdigit():
            if channel not in names:
                raise ApplianceError(
                    f"{label}: no channel {channel!r} (channels: {', '.join(names)})"
                )
            c = names.index(channel)
        else:
            c = int(channel)
        if not 0 <= c < sizes["C"]:
            raise ApplianceError(f"{label}: no channel {c} (it has {sizes['C']})")
        return MicroscopeStack(self.path, self.image, c, names, sizes, self.scenes, index)


def open_file(path: Path) -> MicroscopeFile:
    """Open a microscope file (its metadata only); one-line errors for a missing plugin or a
    file the plugin cannot read."""
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
        scenes = tuple(str(s) for s in image.scenes)
    except Exception as exc:  # each plugin raises its own types for a bad file
        raise ApplianceError(f"{path}: not a readable {fmt} file ({_short(exc)})") from exc
    return MicroscopeFile(path, image, fmt, scenes)


def open_stack(path: Path, channel: int | str = 0, series: int | str = 0) -> MicroscopeStack:
    """Open one series (index or name; default the first) of a microscope file for one channel
    (index or name); one-line errors for a missing plugin, an unreadable file or an unknown
    series or channel."""
    return open_file(path).stack(series, channel)


@dataclass(frozen=True)
class MicroscopeInfo:
    """What the expert chooses from before an import: a file's series and the channel names
    of its first series (`0`, `1`, ... where the file names none)."""

    path: Path
    channels: tuple[str, ...]
    series: tuple[str, ...]

    @property
    def asks(self) -> bool:
        """Whether there is anything to choose: several channels or several series."""
        return len(self.channels) > 1 or len(self.series) > 1


def probe_file(path: Path) -> MicroscopeInfo:
    """A microscope file's channels and series from its metadata (no pixels are read)."""
    file = open_file(path)
    stack = file.stack(0, 0)
    return MicroscopeInfo(file.path, tuple(stack.names), file.scenes)


def same_channels(infos: list[MicroscopeInfo]) -> list[list[MicroscopeInfo]]:
    """Files grouped by what the expert is asked (their channel names, and whether they hold
    several series), in the order first met: one question answers a whole group, so 40 CZIs
    of one experiment are one tap, not 40."""
    groups: dict[tuple[tuple[str, ...], bool], list[MicroscopeInfo]] = {}
    for info in infos:
        groups.setdefault((info.channels, len(info.series) > 1), []).append(info)
    return list(groups.values())
