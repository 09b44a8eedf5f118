"""The one exception type users see.

Everything a user can get wrong (a missing project, a corrupt image, a tampered bundle) raises
`ApplianceError` with one line that names the file and the problem; the CLI prints it and exits
with status 2, the UI shows it in a message box. Anything else is a bug and keeps its traceback.
"""

__all__ = ["ApplianceError"]


class ApplianceError(Exception):
    """A user-facing problem described in one line."""
