"""Drawing synthetic cells on the tablet from an installed `generator` model (numpy + ORT).

`Generator.sample` returns `Cell`s: pixels in the normalised [0, 1] scale the models see, the
cell's mask (its exact truth) and its class. Where a kind needs a mask (diffusion,
label-to-image), masks come from the caller, typically real outlines of that class from the
project (`project_masks`), else from `random_masks` (irregular ellipses).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from appliance.contract import GeneratorContract
from appliance.errors import ApplianceError
from appliance.generators.ddim import ddim_sample
from appliance.store import Project

__all__ = ["Cell", "Generator", "project_masks", "random_masks"]


@dataclass(frozen=True)
class Cell:
    """One synthetic cell: `pixels` H×W (grey) or H×W×3 float32 in [0, 1], `mask` H×W bool."""

    pixels: np.ndarray
    mask: np.ndarray
    class_name: str


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own unexported exception types
        raise ApplianceError(f"{path}: onnxruntime cannot load the generator ({exc})") from exc


class Generator:
    """An ONNX generator and its contract, ready to sample on `threads` CPU threads."""

    def __init__(self, path: Path, contract: GeneratorContract, threads: int = 2) -> None:
        self.path, self.contract = Path(path), contract
        self.session = _session(self.path, threads)

    @classmethod
    def from_project(cls, project: Project, threads: int = 2) -> Generator:
        """The project's active generator; an ApplianceError when none is installed."""
        from appliance.store.models import active_model

        row = active_model(project, "generator")
        if row is None:
            raise ApplianceError(
                f"{project.root}: no generator installed (install-model a generator bundle)"
            )
        if not isinstance(row.contract, GeneratorContract):  # the store parses by role
            raise ApplianceError(f"model {row.id}: a generator without a generator contract")
        return cls(row.path, row.contract, threads)

    def _run(self, **inputs: np.ndarray) -> np.ndarray:
        return self.session.run([self.contract.output_name], inputs)[0]

    def denoise(self, x: np.ndarray, t: np.ndarray, c: np.ndarray, m: np.ndarray) -> np.ndarray:
        """The diffusion denoiser as the DDIM loop calls it."""
        return self._run(x=x, t=t, **{"class": c}, mask=m)

    def sample(
        self,
        class_name: str,
        n: int,
        rng: np.random.Generator,
        masks: np.ndarray | None = None,
        sources: np.ndarray | None = None,
        size: int | None = None,
    ) -> list[Cell]:
        """`n` cells of `class_name`. `masks` (n×S×S bool) for diffusion and label2image;
        `sources` (n×S×S or n×S×S×C in [0, 1]) for label2image: the pixels it rearranges."""
        c = self.contract
        k = c.class_index(class_name, str(self.path))
        s = size or c.size
        if n < 1:
            raise ApplianceError(f"--n must be at least 1, got {n}")
        if s != c.size and (not c.size_multiple or s % c.size_multiple):
            raise ApplianceError(
                f"{self.path}: this {c.kind} draws {c.size}×{c.size}"
                + (f" or multiples of {c.size_multiple}" if c.size_multiple else " only")
            )
        if c.kind == "cgan":
            z = rng.standard_normal((n, c.latent_dim)).astype(np.float32)
            out = self._run(z=z, **{"class": np.full((n,), k, np.int64)})
            images, cell_masks = out[:, :-1], out[:, -1] > 0
        else:
            if masks is None:
                masks = random_masks(n, s, rng)
            cell_masks = np.asarray(masks, bool)
            if cell_masks.shape != (n, s, s):
                raise ApplianceError(f"masks have shape {cell_masks.shape}, need {(n, s, s)}")
            m = cell_masks[:, None].astype(np.float32)
            if c.kind == "diffusion":
                assert c.schedule is not None
                noise = rng.standard_normal((n, c.channels, s, s)).astype(np.float32)
                step_noise = (
                    [
                        rng.standard_normal(noise.shape).astype(np.float32)
                        for _ in c.schedule.timesteps
                    ]
                    if c.schedule.eta > 0
                    else None
                )
                images = ddim_sample(
                    self.denoise,
                    c.schedule,
                    noise,
                    np.full((n,), k),
                    m,
                    c.guidance,
                    c.null_class,
                    step_noise,
                )
            else:
                if sources is None:
                    raise ApplianceError("a label2image generator needs source pixels")
                src = np.asarray(sources, np.float32)
                src = src[:, None] if src.ndim == 3 else np.moveaxis(src, -1, 1)
                label = np.stack(
                    [~cell_masks]
                    + [
                        cell_masks if j == k else np.zeros_like(cell_masks)
                        for j in range(len(c.classes))
                    ],
                    1,
                )
                images = self._run(source=src * 2 - 1, label=label.astype(np.float32))
        lo, hi = c.output_range
        pixels = np.clip((images - lo) / (hi - lo), 0, 1).astype(np.float32)
        return [
            Cell(p[0] if c.channels == 1 else np.moveaxis(p, 0, -1), mk, class_name)
            for p, mk in zip(pixels, cell_masks, strict=True)
        ]


def random_masks(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """n×size×size irregular, centred blobs (radius about a quarter of the side)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2
    out = np.zeros((n, size, size), bool)
    for i in range(n):
        r = size * rng.uniform(0.18, 0.3)
        theta = rng.uniform(0, np.pi)
        elong = rng.uniform(1.0, 1.4)
        u = xx * np.cos(theta) + yy * np.sin(theta)
        v = -xx * np.sin(theta) + yy * np.cos(theta)
        rho = np.hypot(u / np.sqrt(elong), v * np.sqrt(elong))
        phi = np.arctan2(v, u)
        wobble = 1 + sum(
            rng.normal(0, 0.08 / k) * np.cos(k * phi + rng.uniform(0, 2 * np.pi)) for k in (2, 3)
        )
        out[i] = rho <= r * wobble
    return out


def project_masks(
    project: Project, class_name: str, n: int, size: int, rng: np.random.Generator
) -> np.ndarray | None:
    """n masks of real `class_name` outlines from the project's labels, centred in size×size
    windows with a random flip and quarter turn; None when the project has none that fit."""
    by_name = {name: cid for cid, name in project.classes().items()}
    class_id = by_name.get(class_name)
    pool: list[np.ndarray] = []
    for rec in project.images():
        version = project.latest_label(rec.id)
        if version is None or class_id is None:
            continue
        label = version.label
        for p in label.props():
            y0, x0, y1, x1 = p.bbox
            if p.class_id != class_id or max(y1 - y0, x1 - x0) > size - 4 or p.area < 12:
                continue
            cut = label.instances[y0:y1, x0:x1] == p.id
            win = np.zeros((size, size), bool)
            oy, ox = (size - cut.shape[0]) // 2, (size - cut.shape[1]) // 2
            win[oy : oy + cut.shape[0], ox : ox + cut.shape[1]] = cut
            pool.append(win)
        if len(pool) >= 200:
            break
    if not pool:
        return None
    picks = [pool[int(i)] for i in rng.integers(0, len(pool), n)]
    return np.stack(
        [np.rot90(m, int(rng.integers(4))) if rng.random() < 0.5 else m[:, ::-1] for m in picks]
    )
