"""Run the examples in the core's docstrings, so they stay true (numpydoc `Examples`)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def modules_with_examples() -> list[str]:
    """Core modules (not the Kivy UI) whose source holds a doctest prompt."""
    out = []
    for path in sorted((ROOT / "appliance").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        if rel.parts[1] == "ui" or ">>> " not in path.read_text(encoding="utf-8"):
            continue
        out.append(".".join(rel.parts).removesuffix(".__init__"))
    return out


def test_the_core_has_examples() -> None:
    assert {"appliance.labels", "appliance.editing", "appliance.importer"} <= set(
        modules_with_examples()
    )


@pytest.mark.parametrize("name", modules_with_examples())
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(
        importlib.import_module(name), optionflags=doctest.ELLIPSIS, raise_on_error=False
    )
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (see above)"
