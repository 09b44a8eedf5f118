"""Virtual-microscope training jobs for generator tests and benchmarks.

Two cell classes from `export.synth`'s "mixed" kind: round cells (class 1) and lobed
granulocytes (class 2). The first `labeled` images get their exact truth as manual labels, the
rest stay unlabeled; the job is exported with the unlabeled images, as MIPR needs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from appliance.bundles.training_job import write_training_job
from appliance.imageio import write_tiff
from appliance.importer import import_paths
from appliance.labels import Label
from appliance.store import Project
from export.synth import synth_samples

CLASSES = ["cell", "granulocyte"]


def cell_job(
    folder: Path, n: int, labeled: int, size: int = 64, seed: int = 0, split=(0.7, 0.15, 0.15)
) -> Path:
    """Write images, a project and `folder/job.zip`; returns the job's path."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    truths = []
    for i, s in enumerate(synth_samples(n, size, seed, "mixed")):
        write_tiff(images / f"v{i:03d}.tif", s.image)
        inst = s.cells.astype(np.uint32)
        others = s.others.astype(np.uint32)
        offset = int(inst.max())
        inst = np.where(others > 0, others + offset, inst).astype(np.uint32)
        classes = {int(k): 1 for k in np.unique(s.cells) if k} | {
            int(k) + offset: 2 for k in np.unique(others) if k
        }
        truths.append(Label(inst, classes))
    project = Project.create(folder / "project", CLASSES)
    import_paths(project, [images])
    for rec in sorted(project.images(), key=lambda r: r.name)[:labeled]:
        project.save_label(
            rec.id, truths[int(rec.name[1:4])], author="truth", source="manual", reviewed=True
        )
    job = folder / "job.zip"
    write_training_job(project, job, split=split, seed=seed, include_unlabeled=True)
    project.close()
    return job
