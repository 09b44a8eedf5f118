"""`appliance` command line: one module per area registers its sub-commands.

A user error (`ApplianceError`) becomes one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from appliance import __version__
from appliance.errors import ApplianceError, os_problem
from appliance.store.db import DatabaseError
from appliance.store.project import DB_NAME

__all__ = ["AREAS", "build_parser", "main", "run_command"]

AREAS = (
    "store_cmds",
    "bundle_cmds",
    "assist_cmds",
    "supervision_cmds",
    "ui_cmds",
    "sync_cmds",
    "generate_cmds",
    "interop_cmds",
    "slide_cmds",
    "security_cmds",
)


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

    Shared with the workstation's `python -m export` and the lab's `appliance-lab`, so all
    CLIs fail the same way, and all take `--debug`: after the one line, the chain of causes
    (`raise ... from exc`) with their tracebacks, for a bug report.
    """
    parser.add_argument(
        "--debug",
        action="store_true",
        help="after a one-line error, print the chain of causes with tracebacks",
    )
    given = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in given  # accepted anywhere, also after the sub-command
    args = parser.parse_args([a for a in given if a != "--debug"])
    args.debug = debug
    from appliance.cli.security_cmds import ask_key
    from appliance.store import at_rest

    at_rest.set_asker(ask_key)  # an encrypted project's PIN: APPLIANCE_PASSPHRASE or a prompt
    try:
        return int(args.func(args) or 0)
    except ApplianceError as exc:
        return _fail(str(exc), exc, args.debug)
    except DatabaseError as exc:
        return _fail(database_problem(args, exc), exc, args.debug)
    except OSError as exc:
        return _fail(os_problem(exc), exc, args.debug)
    except MemoryError as exc:
        message = "not enough memory for this command (is an input far larger than usual?)"
        return _fail(message, exc, args.debug)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:  # keys unlocked for this command go with it (tests run many in one process)
        at_rest.set_asker(None)
        at_rest.forget()


def require_range(option: str, value: float | None, low: float, high: float | None = None) -> None:
    """Refuse an out-of-range option in one line (argparse would print its usage too)."""
    if value is None:
        return
    if value < low or (high is not None and value > high):
        bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise ApplianceError(f"{option} must be {bound}, got {value:g}")


def _fail(message: str, exc: BaseException, debug: bool) -> int:
    """One line on stderr, whatever the message holds (a file name with a newline included);
    with `debug`, then the exception and its causes as Python prints them."""
    print(f"error: {' '.join(message.splitlines())}", file=sys.stderr)
    if debug:
        print("".join(traceback.format_exception(exc)), end="", file=sys.stderr)
    return 2


def database_problem(args: argparse.Namespace, exc: Exception) -> str:
    """SQLite errors name no file: name the project's database and what to do."""
    folder = getattr(args, "dir", None) or getattr(args, "project", None)
    if folder is None:
        return f"database error ({exc})"
    return (
        f"{Path(folder) / DB_NAME}: {exc}; nothing more was written "
        f"(check it with `appliance check {folder}`, free space or permissions)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `appliance` command line on `argv` (default: sys.argv); returns the exit status."""
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
