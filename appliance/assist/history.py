"""Which label versions a person made or checked: the only ones assistance trusts as truth.

Pre-labels and upgrades are machine guesses until someone saves over them or marks them
reviewed. Judging a pre-labeler against them would let it vote for itself, chaining
"previous" pre-labels would smear one guess over a whole sequence, and counting them as
labeled would let `prelabel --all` empty the selector's queue. One definition, used by all.
"""

from __future__ import annotations

from typing import Any

HUMAN_SOURCES = ("manual", "postprocess", "import")
HUMAN = f"(reviewed = 1 OR source IN ({', '.join(repr(s) for s in HUMAN_SOURCES)}))"
LABELED_IMAGES_SQL = f"SELECT DISTINCT image_id FROM labels WHERE {HUMAN}"


def latest_human_versions(project: Any, limit: int) -> list[tuple[int, int]]:
    """(image id, newest human version id) for the `limit` most recently labeled images.

    Control items are left out: a person's label of one is a test answer (a lazy annotator's
    accepted planted pre-label would teach the judges its planted errors).
    """
    rows = project.db.execute(
        f"SELECT image_id, MAX(id) FROM labels WHERE {HUMAN} "
        "AND image_id NOT IN (SELECT image_id FROM controls) "
        "GROUP BY image_id ORDER BY MAX(id) DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [(int(r[0]), int(r[1])) for r in rows]
