"""The one place that turns an installed model into predictions (onnxruntime).

Provider choice: the GPU build of onnxruntime lists CUDA and TensorRT even on a tablet without
an NVIDIA GPU, and asking for them there prints red error lines from native code. So a GPU
provider is tried only when the CUDA driver reports a device, the attempt runs with native
stderr captured (re-logged at debug level), and the result is trusted only if
`get_providers()` really starts with it. Everything else runs on the CPU provider, passed
explicitly. The probe runs once per process; sessions are cached per model file and threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from appliance import settings
from appliance.assist.contract import class_ids, decode_label, model_input, probabilities
from appliance.contract import Contract
from appliance.errors import ApplianceError
from appliance.labels import Label
from appliance.store import Project
from appliance.store.models import active_model as installed_model

__all__ = [
    "CPU",
    "GPU_PROVIDERS",
    "MARGIN",
    "MAX_SINGLE_PASS_PIXELS",
    "TILE",
    "InferenceModel",
    "Prediction",
    "active_model",
    "choose_providers",
    "cuda_device_count",
    "default_threads",
    "release_sessions",
    "session",
    "tile_starts",
]

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
# Above this many pixels the image is tiled. Measured with the workstation's default U-Net
# (width 8, depth 4) on a 2048² image: a single pass needs ~1.1 GB on top of the process,
# 1024² tiles ~560 MB, 512² tiles ~220 MB at about the same speed, so a tablet tiles at 512.
MAX_SINGLE_PASS_PIXELS = 1024 * 1024
TILE = 512
MARGIN = 64  # per side; covers that U-Net's receptive radius (~45 px), so tiles == single pass

_probe_lock = threading.Lock()
_probed: list[str] | None = None
_sessions_lock = threading.Lock()
_sessions: dict[tuple[str, int, int, int | None, tuple[str, ...]], Any] = {}


def cuda_device_count() -> int:
    """Devices the CUDA driver reports; 0 without a driver (never raises, never prints)."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    return 0


@contextlib.contextmanager
def _native_stderr_to_debug() -> Iterator[None]:
    """Send what native code writes to fd 2 into the debug log instead of the terminal."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(fd, 2)
            os.close(fd)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace").strip()
            if text:
                log.debug("onnxruntime while probing GPU providers: %s", text)


def _new_session(path: str, providers: list[str], threads: int | None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # Spinning threads keep a core at 100 % between runs: a battery drain on an idle tablet.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    opts.intra_op_num_threads = int(threads) if threads else default_threads()
    return ort.InferenceSession(path, opts, providers=providers)


def default_threads() -> int:
    """Inference threads when the project does not say: every core but one, which stays with
    the tablet's UI thread (with all cores busy a 2048² pre-label left frames 0.4-0.9 s apart)."""
    return max(1, (os.cpu_count() or 2) - 1)


def choose_providers(model_path: str, threads: int | None = None) -> list[str]:
    """Providers that really load on this machine, probed once per process with `model_path`."""
    global _probed
    with _probe_lock:
        if _probed is not None:
            return list(_probed)
        import onnxruntime as ort

        available = ort.get_available_providers()
        wanted = [p for p in GPU_PROVIDERS if p in available]
        chosen = [CPU]
        if wanted and cuda_device_count() > 0:
            for i, provider in enumerate(wanted):
                with _native_stderr_to_debug():
                    try:
                        sess = _new_session(model_path, [*wanted[i:], CPU], threads)
                        loaded = sess.get_providers()
                    except Exception as exc:  # any failure means "not this provider"
                        log.debug("%s failed to start: %s", provider, exc)
                        continue
                if loaded and loaded[0] == provider:
                    # TensorRT leaves the ops it cannot compile to CUDA when CUDA is there too
                    chosen = [p for p in loaded if p in GPU_PROVIDERS] + [CPU]
                    break
        elif wanted:
            log.debug("GPU providers %s are built in but no CUDA device is present", wanted)
        log.info("inference providers: %s", chosen)
        _probed = chosen
        return list(chosen)


def session(path: Path, threads: int | None = None) -> Any:
    """Cached onnxruntime session for a model file (a changed file gets a new session)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise ApplianceError(f"{p}: model file missing ({exc.strerror})") from exc
    providers = tuple(choose_providers(str(p), threads))
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size, threads, providers)
    with _sessions_lock:
        if key not in _sessions:
            try:
                _sessions[key] = _new_session(str(p), list(providers), threads)
            except Exception as exc:  # onnxruntime raises its own types for corrupt graphs
                raise ApplianceError(f"{p}: model does not load ({exc})") from exc
        return _sessions[key]


def release_sessions() -> None:
    """Drop every cached session and its memory arena (after a model switch, or to free RAM).

    onnxruntime's CPU arena keeps the peak working memory of a session for reuse; that is what
    makes repeated runs fast, and also why a session that once saw a huge image stays large.
    """
    with _sessions_lock:
        _sessions.clear()


def tile_starts(size: int, tile: int, margin: int) -> list[int]:
    """Tile origins along one axis; consecutive kept regions (tile minus margins) touch."""
    if size <= tile:
        return [0]
    step = tile - 2 * margin
    starts = [0]
    while starts[-1] + tile < size:
        starts.append(min(starts[-1] + step, size - tile))
    return starts


def _pad_to_multiple(chw: np.ndarray, multiple: int) -> np.ndarray:
    h, w = chw.shape[1:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return chw
    # Reflection needs at least two pixels; a one-pixel side can only be repeated.
    reflect = min(h, w) > 1 and ph < h and pw < w
    widths = ((0, 0), (0, ph), (0, pw))
    return np.pad(chw, widths, mode="reflect") if reflect else np.pad(chw, widths, mode="edge")


def _pad_to_at_least(chw: np.ndarray, size: int) -> np.ndarray:
    """Pad height and width up to `size` (edge values: reflection needs the image to be larger
    than the pad, which a small image under a large fixed-size model is not)."""
    h, w = chw.shape[1:]
    if h >= size and w >= size:
        return chw
    return np.pad(chw, ((0, 0), (0, max(0, size - h)), (0, max(0, size - w))), mode="edge")


@dataclass
class Prediction:
    """A model's answer for one image: class probabilities (K×H×W) and the instances."""

    probs: np.ndarray
    label: Label


class InferenceModel:
    """An installed model: its contract plus a cached session; safe to call from a worker."""

    def __init__(
        self,
        path: Path,
        contract: Contract,
        model_id: str = "",
        threads: int | None = None,
        lut: np.ndarray | None = None,
        job_id: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.job_id = job_id  # the training job it learned from (its images judge it unfairly)
        self.contract = contract
        self.model_id = model_id or self.path.name
        self.threads = threads
        self.lut = lut  # model class index -> project class id (see contract.class_ids)

    def _run(self, chw: np.ndarray) -> np.ndarray:
        c = self.contract
        batch = chw[None].astype(c.dtype, copy=False)  # the contract's one layout: NCHW
        sess = session(self.path, self.threads)
        try:
            out = sess.run([c.output_name], {c.input_name: batch})[0]
        except Exception as exc:  # onnxruntime's errors are not a public hierarchy
            raise ApplianceError(f"{self.path}: inference failed ({exc})") from exc
        return np.asarray(out, np.float32)[0]

    def logits(
        self,
        chw: np.ndarray,
        max_pixels: int = MAX_SINGLE_PASS_PIXELS,
        tile: int = TILE,
        margin: int = MARGIN,
        check: Callable[[], None] | None = None,
    ) -> np.ndarray:
        """Raw K×H×W output for a prepared C×H×W input, tiled when it is larger than `max_pixels`.

        The input is padded to the tile multiple once; tiles start at multiples of it (so pooling
        grids line up) and keep only their centre, `margin` pixels from any inner edge.
        `check` runs between tiles, so a superseded job stops early.
        """
        h, w = chw.shape[1:]
        m = self.contract.tile_multiple
        fixed = self.contract.fixed_size
        padded = _pad_to_multiple(chw, m)
        if fixed is not None:  # a fixed-size model: pad up to it, then tile at exactly it
            padded = _pad_to_at_least(padded, fixed)
            tile, margin = fixed, min(margin, fixed // 4 - (fixed // 4) % m)
        hp, wp = padded.shape[1:]
        if fixed is None and hp * wp <= max_pixels:
            return self._run(padded)[:, :h, :w]
        tile = max(m, tile - tile % m)
        margin = -(-margin // m) * m
        if tile <= 2 * margin:
            raise ApplianceError(f"tile {tile} must exceed twice the margin {margin}")
        out: np.ndarray | None = None
        ys, xs = tile_starts(hp, tile, margin), tile_starts(wp, tile, margin)
        for y in ys:
            for x in xs:
                if check is not None:
                    check()
                part = self._run(padded[:, y : y + tile, x : x + tile])
                if out is None:
                    out = np.empty((part.shape[0], hp, wp), np.float32)
                top = margin if y > 0 else 0
                left = margin if x > 0 else 0
                th, tw = part.shape[1:]
                bottom = th - margin if y + th < hp else th
                right = tw - margin if x + tw < wp else tw
                out[:, y + top : y + bottom, x + left : x + right] = part[:, top:bottom, left:right]
        assert out is not None
        return out[:, :h, :w]

    def predict(
        self,
        image: np.ndarray,
        mask: np.ndarray | None = None,
        check: Callable[[], None] | None = None,
        **tiling: int,
    ) -> Prediction:
        """Probabilities and instances for one stored image (and coarse label for upgrade).

        Instances are decoded once, from the output stitched for the whole image: a cell across
        a tile border is neither split nor counted twice.
        """
        chw = model_input(image, self.contract, mask)
        logits = self.logits(chw, check=check, **tiling)
        probs = probabilities(logits, self.contract)
        return Prediction(probs, decode_label(logits, probs, self.contract, self.lut))


def active_model(project: Project, role: str, threads: int | None = None) -> InferenceModel | None:
    """The project's active model for `role` ("prelabel" or "upgrade"), or None.

    Threads default to the project setting `inference.threads` (None: onnxruntime's choice).
    """
    row = installed_model(project, role)
    if row is None:
        return None
    contract = row.contract
    if not isinstance(contract, Contract):  # a generator: not an image-to-label model
        raise ApplianceError(f"model {row.id} is a generator, not a {role} model")
    if threads is None:
        threads = settings.INFERENCE_THREADS.get(project)
    lut = class_ids(contract, project.classes())
    return InferenceModel(
        row.path, contract, model_id=row.id, threads=threads, lut=lut, job_id=row.job_id
    )
