"""Importing image files and folders into a project, past bad files, with a summary.

Each folder is a sequence (natural sort: `img2` before `img10`); a multi-page TIFF is a sequence
of its own. Files are identified by content (sha256), so importing the same folder twice adds
nothing. Every file is checked from its header (size guard) and decoded once (truncation,
corruption) before it is stored.

A microscope file (CZI, ND2, LIF, OME-Zarr; `appliance.microscope`) becomes a stack like a
multi-page TIFF: the chosen channel's planes over T and Z are read one at a time into a
lossless multi-page TIFF, which is then stored and imported as any stack. The channel and the
series are chosen per file (`StackChoice`; the app asks the expert after `microscope_files`
has listed what each file holds) or once for all files (the command line).

A whole-slide image (SVS, NDPI, SCN, pyramidal TIFF) is never decoded whole: its header is
checked (`appliance.slides.open_slide`), the file is stored once under its hash, and the
regions to annotate (given by the lab, or found on the tissue) become images of their own,
their level-0 pixels read tile by tile. All regions are read before anything is stored, so a
slide that fails leaves nothing behind.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import tifffile

from appliance.durable import file_sha256
from appliance.errors import ApplianceError
from appliance.imageio import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    MAX_PAGES,
    UNSUPPORTED_SUFFIXES,
    check_pixels,
    iter_frames,
    probe,
)
from appliance.microscope import (
    MICROSCOPE_SUFFIXES,
    MicroscopeInfo,
    MicroscopeStack,
    is_microscope_file,
    listed,
    open_file,
    probe_file,
)
from appliance.slides import (
    MAX_REGION_SIDE,
    SLIDE_SUFFIXES,
    Slide,
    is_slide,
    open_slide,
    tissue_regions,
)
from appliance.store.images import NewImage, add_images
from appliance.store.project import Project
from appliance.store.slides import SlideRecord, add_slide, region_linker

__all__ = [
    "MAX_REGION_SIDE",
    "ImportSummary",
    "SlideRegions",
    "StackChoice",
    "add_regions",
    "collect",
    "import_paths",
    "microscope_files",
    "natural_key",
    "printable",
]


@dataclass(frozen=True)
class SlideRegions:
    """Which regions of an imported slide to annotate: the lab's own (x, y, width, height in
    level-0 pixels), else up to `tissue` squares of `side` pixels found on the tissue."""

    lab: tuple[tuple[int, int, int, int], ...] = ()
    tissue: int = 8
    side: int = 1024


@dataclass
class ImportSummary:
    """What an import did: new image ids, duplicate names and failed files with reasons."""

    imported: list[int] = field(default_factory=list)  # new image ids
    duplicates: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    notes: list[str] = field(default_factory=list)  # how stacks were read, originals restored

    def lines(self) -> list[str]:
        """The summary line, `note:` lines, then one `failed: FILE: REASON` line per failure."""
        out = [
            f"imported {len(self.imported)}, duplicates {len(self.duplicates)}, "
            f"failed {len(self.failed)}"
        ]
        out += [f"note: {note}" for note in self.notes]
        out += [f"failed: {name}: {reason}" for name, reason in self.failed]
        return out


def natural_key(name: str) -> list[object]:
    """Sort key that orders embedded numbers by value (`img2` before `img10`).

    Examples
    --------
    >>> sorted(["img10.tif", "img2.tif", "IMG1.tif"], key=natural_key)
    ['IMG1.tif', 'img2.tif', 'img10.tif']
    """
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def printable(path: Path | str) -> str:
    """A path as text that SQLite and a one-line message can hold: bytes that are not UTF-8
    become U+FFFD and control characters (a newline in a file name) become escapes."""
    text = str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# what an import reads: the chooser lists these files (and folders), nothing else
IMPORTED_SUFFIXES = IMAGE_SUFFIXES + SLIDE_SUFFIXES + MICROSCOPE_SUFFIXES


def collect(
    paths: Iterable[Path], suffixes: tuple[str, ...] = IMAGE_SUFFIXES
) -> dict[Path, list[Path]]:
    """Image-like files grouped by folder, each group naturally sorted.

    Missing paths raise; a folder's non-image files (notes, hidden files) are left out, except
    GIF and WebP files, which are kept so that the import reports them instead of skipping them
    without a word.
    """
    groups: dict[Path, list[Path]] = {}
    wanted = suffixes + UNSUPPORTED_SUFFIXES + SLIDE_SUFFIXES + MICROSCOPE_SUFFIXES
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and not is_microscope_file(path):
            files = [
                f
                for f in path.rglob("*")
                if (f.is_file() or is_microscope_file(f))  # an OME-Zarr is a folder
                and not any(part.startswith(".") for part in f.relative_to(path).parts)
                and not any(p.suffix.lower() == ".zarr" for p in f.relative_to(path).parents)
                and f.suffix.lower() in wanted
            ]
        elif path.exists():
            files = [path]  # a FIFO or device is refused by the reader, one line
        else:
            raise ApplianceError(f"{printable(path)}: no such file or folder")
        for f in files:
            groups.setdefault(f.parent.resolve(), []).append(f)
    return {
        folder: sorted(set(fs), key=lambda f: natural_key(f.name)) for folder, fs in groups.items()
    }


@dataclass(frozen=True)
class StackChoice:
    """Which part of a microscope file to import: one `channel` (index or name) of one
    `series` (index or name), or of every series (`series` None), each its own stack."""

    channel: int | str = 0
    series: int | str | None = 0


def microscope_files(paths: Iterable[Path]) -> list[MicroscopeInfo]:
    """The channels and series of each microscope file an import of `paths` would take, from
    their metadata (no pixels), so the expert can choose before the import starts. A file
    that cannot be read is left out: the import reports it, one line, as for any bad file."""
    found = []
    for files in collect(paths).values():
        for path in files:
            if is_microscope_file(path):
                try:
                    found.append(probe_file(path))
                except ApplianceError:
                    continue
    return found


def import_paths(
    project: Project,
    paths: Iterable[Path],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    slide_regions: SlideRegions | None = None,
    channel: int | str = 0,
    series: int | str | None = 0,
    choices: Mapping[Path, StackChoice] | None = None,
) -> ImportSummary:
    """Import image files and folders, each folder a sequence; bad files are reported, not fatal.

    Returns the new image ids, the duplicates skipped and the failures with their reasons.
    Slides become regions as `slide_regions` says (default: up to 8 tissue squares of 1024);
    a microscope file becomes the stack(s) its entry in `choices` (keyed by the file's path as
    given or resolved) names, else those of `channel` and `series` (see `StackChoice`).
    """
    summary = ImportSummary()
    chosen = {Path(p).resolve(): c for p, c in (choices or {}).items()}
    default = StackChoice(channel, series)
    for folder, files in collect(paths).items():
        for path in files:
            try:
                if is_microscope_file(path):
                    choice = chosen.get(path.resolve())
                    _import_microscope(
                        project, path, choice or default, max_pixels, summary, choice is not None
                    )
                    continue
                if is_slide(path):
                    _import_slide(project, path, slide_regions or SlideRegions(), summary)
                    continue
                _import_file(project, path, printable(folder), max_pixels, summary)
            except ApplianceError as exc:
                shown = printable(path)
                summary.failed.append((shown, _reason(shown, exc)))
    return summary


def _import_file(
    project: Project,
    path: Path,
    sequence: str,
    max_pixels: int,
    summary: ImportSummary,
    source_path: str | None = None,
    noted: bool = True,
) -> None:
    """Import every frame of one file: headers checked first, pages decoded one at a time (to
    prove them complete) and dropped, then the file and its rows stored in one transaction.
    `noted` False: the caller writes the note (a microscope stack, whose TIFF is temporary)."""
    label = printable(path)
    found = probe(path, label)
    multi = len(found.frames) > 1
    frames = []
    for frame, img in iter_frames(path, label, max_pixels):
        frames.append(
            NewImage(
                page=frame.page if multi else None,
                name=f"{printable(path.name)}[{frame.page}]" if multi else printable(path.name),
                height=img.shape[0],
                width=img.shape[1],
                channels=1 if img.ndim == 2 else img.shape[2],
                dtype=str(img.dtype),
            )
        )
    try:
        sha = file_sha256(path)
    except OSError as exc:
        raise ApplianceError(f"{label}: cannot read ({exc.strerror})") from exc
    source = source_path or printable(path.resolve())
    try:
        added = add_images(
            project, path, sha, frames, sequence=source if multi else sequence, source_path=source
        )
    except OSError as exc:  # a full disk or a read-only project: this file is not stored
        raise ApplianceError(f"{label}: cannot store ({exc.strerror or exc})") from exc
    summary.imported += added.ids
    summary.duplicates += added.duplicates
    if found.note and noted:
        summary.notes.append(f"{label}: {found.note}")
    if added.restored:
        summary.notes.append(f"{label}: restored the missing stored original")


def _import_slide(project: Project, path: Path, want: SlideRegions, summary: ImportSummary) -> None:
    """Check the slide, read its regions (each as a PNG in a temporary folder, so memory holds
    one region at a time), then store the slide and the regions."""
    label = printable(path)
    with open_slide(path) as slide, tempfile.TemporaryDirectory() as tmp:
        info = slide.info
        boxes = list(want.lab) or tissue_regions(slide.overview(), info, want.side, want.tissue)
        if not boxes:
            summary.notes.append(
                f"{label}: no tissue found; add regions with `appliance add-region`"
            )
        files = _read_regions(slide, boxes, Path(tmp))
        try:
            record, new = add_slide(
                project,
                path,
                name=printable(path.name),
                width=info.width,
                height=info.height,
                levels=info.levels,
                mpp=info.mpp,
                vendor=info.vendor,
                source_path=printable(path.resolve()),
            )
        except OSError as exc:
            raise ApplianceError(f"{label}: cannot store ({exc.strerror or exc})") from exc
        origin = "lab" if want.lab else "tissue"
        for box, file in files:
            _store_region(project, record, box, file, origin, summary)
    mpp = f", {info.mpp:g} µm/px" if info.mpp else ""
    summary.notes.append(
        f"{label}: slide {info.width}×{info.height}, {info.levels} levels{mpp}"
        f"{'' if new else ' (already stored)'}; {len(files)} regions ({origin})"
    )


def _read_regions(
    slide: Slide, boxes: list[tuple[int, int, int, int]], folder: Path
) -> list[tuple[tuple[int, int, int, int], Path]]:
    """Every region checked, read tile by tile and written as a lossless PNG under `folder`."""
    info, name = slide.info, printable(slide.path)
    out = []
    for k, (x, y, w, h) in enumerate(boxes):
        if not (0 < w <= MAX_REGION_SIDE and 0 < h <= MAX_REGION_SIDE):
            raise ApplianceError(
                f"{name}: region {w}×{h} (sides 1..{MAX_REGION_SIDE} px at level 0)"
            )
        if x < 0 or y < 0 or x + w > info.width or y + h > info.height:
            raise ApplianceError(
                f"{name}: region ({x}, {y}, {w}×{h}) leaves the slide ({info.width}×{info.height})"
            )
        img = slide.read_region(x, y, w, h)
        ok, png = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        assert ok  # encoding a uint8 RGB array in memory cannot fail
        file = folder / f"region-{k}.png"
        try:
            file.write_bytes(png.tobytes())
        except OSError as exc:
            raise ApplianceError(f"{name}: cannot write a region ({exc.strerror})") from exc
        out.append(((x, y, w, h), file))
    return out


def _store_region(
    project: Project,
    record: SlideRecord,
    box: tuple[int, int, int, int],
    file: Path,
    origin: str,
    summary: ImportSummary,
) -> None:
    """The region's pixels (a lossless PNG) as an image, linked to its place on the slide."""
    x, y, w, h = box
    frame = NewImage(None, f"{record.name}[{x},{y},{w}x{h}]", h, w, 3, "uint8")
    try:
        added = add_images(
            project,
            file,
            file_sha256(file),
            [frame],
            sequence=record.name,
            source_path=f"{record.path.name}@{x},{y}",
            link=region_linker(record.id, x, y, origin),
        )
    except OSError as exc:
        raise ApplianceError(f"{record.name}: cannot store ({exc.strerror or exc})") from exc
    summary.imported += added.ids
    summary.duplicates += added.duplicates


def add_regions(
    project: Project, record: SlideRecord, boxes: list[tuple[int, int, int, int]], origin: str
) -> ImportSummary:
    """Regions picked later (by the lab or the expert panning the slide) as new images."""
    summary = ImportSummary()
    slide = open_slide(record.path, lambda: project.open_original(record.path))
    with slide, tempfile.TemporaryDirectory() as tmp:
        for box, file in _read_regions(slide, boxes, Path(tmp)):
            _store_region(project, record, box, file, origin, summary)
    return summary


def _import_microscope(
    project: Project,
    path: Path,
    choice: StackChoice,
    max_pixels: int,
    summary: ImportSummary,
    chosen: bool = False,
) -> None:
    """The chosen series of the file (or every one, each its own stack), as `_import_stack`
    imports it; with every series, a series that fails is reported and the others go on.
    `chosen`: the expert picked from the file's own channels, so the note does not tell them
    how to pick."""
    label = printable(path)
    file = open_file(path)
    hint = "" if chosen else " (choose with --channel)"
    if choice.series is not None or len(file.scenes) == 1:
        stack = file.stack(choice.series or 0, choice.channel)
        _import_stack(project, stack, max_pixels, summary)
        note = f"{label}: {_planes(stack)}" + _channels(stack, hint)
        if len(file.scenes) > 1:  # say which were left out
            others = file.scenes[: stack.series] + file.scenes[stack.series + 1 :]
            note += (
                f"; series {stack.series + 1} of {len(file.scenes)} ({stack.scene}) only, "
                f"not {listed(others)}{'' if chosen else ' (choose with --series)'}"
            )
        summary.notes.append(printable(note))  # series names are the file's own text
        return
    done: list[MicroscopeStack] = []
    for index in range(len(file.scenes)):
        try:
            stack = file.stack(index, choice.channel)
            _import_stack(project, stack, max_pixels, summary)
        except ApplianceError as exc:  # this series only; the file's other series go on
            summary.failed.append((label, _reason(label, exc)))
            continue
        done.append(stack)
    if done:
        names = [stack.scene for stack in done]
        note = (
            f"{label}: {len(done)} of {len(file.scenes)} series ({listed(names)}), each a stack "
            f"of channel {done[0].channel_name}" + _channels(done[0], hint)
        )
        summary.notes.append(printable(note))


def _reason(shown: str, exc: ApplianceError) -> str:
    """The message without the file's name it starts with (`FILE: why` -> `why`, `FILE series
    'B': why` -> `series 'B': why`), for a `failed: FILE: ...` line."""
    text = str(exc)
    return text[len(shown) :].lstrip(": ") if text.startswith(shown) else text


def _planes(stack: MicroscopeStack) -> str:
    return f"{stack.sizes['T']} × {stack.sizes['Z']} planes (T × Z) of channel {stack.channel_name}"


def _channels(stack: MicroscopeStack, hint: str) -> str:
    """The file's channels, and how to pick another (`hint`) for whoever did not pick from
    them."""
    if stack.sizes["C"] < 2:
        return ""
    return f"; channels {', '.join(stack.names)}{hint}"


def _import_stack(
    project: Project, stack: MicroscopeStack, max_pixels: int, summary: ImportSummary
) -> None:
    """One channel's planes, read one at a time into a lossless multi-page TIFF, imported: its
    images are named after the file (and the series, unless it is the first), so that two
    series of one file are told apart in the gallery and make sequences of their own."""
    path = stack.path
    label = printable(stack.label)
    check_pixels(stack.shape, label, max_pixels)
    if stack.frames > MAX_PAGES:
        raise ApplianceError(f"{label}: {stack.frames} planes (at most {MAX_PAGES})")
    tag = f" ({_file_safe(stack.scene)})" if stack.series else ""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{path.name}{tag}.c{stack.channel}.tif"
        with tifffile.TiffWriter(out) as tif:
            for plane in stack.planes():
                tif.write(plane, compression="zlib", metadata=None)
        sequence = printable(
            f"{path.resolve()} [{stack.scene}]" if stack.series else path.resolve()
        )
        _import_file(project, out, sequence, max_pixels, summary, sequence, noted=False)


def _file_safe(name: str) -> str:
    """A series name as part of a file name: no separators, at most 60 characters."""
    return re.sub(r"[\\/\x00]", "_", name)[:60]
