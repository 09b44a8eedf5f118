"""Every command of both command lines explains itself: `--help` shows what the command does
and what each argument and option means."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence

import pytest

from appliance.cli import build_parser as appliance_parser
from appliance.cli import main as appliance_main
from export.cli import build_parser as export_parser
from export.cli import main as export_main

CLIS: dict[str, tuple[Callable[[], argparse.ArgumentParser], Callable[[Sequence[str]], int]]] = {
    "appliance": (appliance_parser, appliance_main),
    "export": (export_parser, export_main),
}


def commands(cli: str) -> dict[str, argparse.ArgumentParser]:
    parser = CLIS[cli][0]()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def test_both_command_lines_have_their_commands() -> None:
    """Guards the parametrisation below: a registry that lost its commands would test nothing."""
    assert {"init", "import", "status", "export-job", "prelabel", "run"} <= set(
        commands("appliance")
    )
    assert {"synth", "train", "demo"} <= set(commands("export"))


def flat(text: str) -> str:
    """Text as argparse shows it, line breaks undone: it wraps lines, also after hyphens."""
    return re.sub(r"-\s+", "-", " ".join(text.split()))


@pytest.mark.parametrize(
    ("cli", "command"),
    [(cli, name) for cli in CLIS for name in commands(cli)],
)
def test_help_for_every_command(cli: str, command: str, capsys) -> None:
    parser = commands(cli)[command]
    with pytest.raises(SystemExit) as exit_info:
        CLIS[cli][1]([command, "--help"])
    assert exit_info.value.code == 0
    text = flat(capsys.readouterr().out)
    assert text.startswith("usage:")
    assert parser.description and len(parser.description.split()) >= 3, "no description"
    assert flat(parser.description) in text
    for action in arguments(parser):
        name = action.option_strings[0] if action.option_strings else action.metavar or action.dest
        assert action.help and action.help != argparse.SUPPRESS, f"{name} has no help"
        assert name in text
        shown = flat(action.help).split("%(")[0]  # %(default)s is expanded
        assert shown[:40] in text, f"{name}: help text not shown"
