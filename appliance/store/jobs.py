"""Which images went into which exported training job.

A model bundle names the job it was trained on (`models.job_id`); this table names the job's
images, so a model is judged only on images it never saw (seed 004, eq. 4 and Fig. 8 use
images outside the training set). Jobs exported by another project are simply unknown here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["MIGRATION", "job_image_ids", "record_job_items"]

MIGRATION = (
    "0003_seams_job_items",
    """
CREATE TABLE job_items (
    job_id TEXT NOT NULL,
    image_id INTEGER NOT NULL REFERENCES images (id),
    split TEXT NOT NULL,
    PRIMARY KEY (job_id, image_id)
);
""",
)


def record_job_items(project: Any, job_id: str, items: Iterable[tuple[int, str]]) -> None:
    """Remember the (image id, split) pairs of an exported job, in one transaction."""
    with project.transaction():
        project.db.executemany(
            "INSERT OR REPLACE INTO job_items (job_id, image_id, split) VALUES (?, ?, ?)",
            [(job_id, image_id, split) for image_id, split in items],
        )


def job_image_ids(project: Any, job_id: str | None) -> set[int]:
    """Images of a job exported from this project (empty for None or an unknown job)."""
    if job_id is None:
        return set()
    rows = project.db.execute("SELECT image_id FROM job_items WHERE job_id = ?", (job_id,))
    return {int(r[0]) for r in rows}
