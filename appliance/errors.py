"""The one exception type users see.

Everything a user can get wrong (a missing project, a corrupt image, a tampered bundle) raises
`ApplianceError` with one line that names the file and the problem; the CLI prints it and exits
with status 2, the UI shows it in a message box. The environment's failures (a full disk, a
read-only folder: `OSError`) are described in one line by `os_problem`, at the CLI boundary and
in the UI alike. Anything else is a bug and keeps its traceback.
"""

__all__ = ["ApplianceError", "os_problem"]


class ApplianceError(Exception):
    """A user-facing problem described in one line."""


def os_problem(exc: OSError) -> str:
    """A full disk, a read-only folder, a vanished file: the file and the reason, one line."""
    where = exc.filename if exc.filename is not None else "a file"
    return f"{where}: {exc.strerror or exc}"
