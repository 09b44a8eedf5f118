"""`appliance` command line: one module per area registers its sub-commands.

A user error (`ApplianceError`) becomes one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from appliance import __version__
from appliance.errors import ApplianceError

__all__ = ["AREAS", "build_parser", "main", "run_command"]

AREAS = ("store_cmds", "bundle_cmds", "assist_cmds", "supervision_cmds", "ui_cmds")


def build_parser() -> argparse.ArgumentParser:
    """The `appliance` parser with every area's sub-commands registered."""
    parser = argparse.ArgumentParser(
        prog="appliance",
        description="Offline annotation appliance for biomedical images (tablet side).",
    )
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for area in AREAS:
        importlib.import_module(f"appliance.cli.{area}").register(sub)
    return parser


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse and dispatch; a user error is one line on stderr and exit status 2.

    Shared with the workstation's `python -m export`, so both CLIs fail the same way.
    """
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ApplianceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `appliance` command line on `argv` (default: sys.argv); returns the exit status."""
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
