"""Home's import asks which channel (and series) of a microscope file to annotate.

Driven as the expert does it: tap Import images, use the folder, then the channel popup's big
buttons, all with real touch events; the import runs in the background and is waited for by
its message, never by a fixed sleep.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.store.project import Project
from testkit.fit import cut_texts
from testkit.microscope_files import LifSeries, write_lif
from testkit.touch import pump, tap, wait_for
from tests.ui.projects import make_project

NAMES = ("DAPI", "GFP (488 nm)", "mCherry")


def _data(seed: int, shape: tuple[int, ...] = (1, 3, 2, 24, 32)) -> np.ndarray:
    """(T, C, Z, Y, X) uint8 noise, every plane different."""
    return np.random.default_rng(seed).integers(0, 255, shape, endpoint=True).astype(np.uint8)


def _popup(kind: type) -> object:
    from kivy.core.window import Window

    wait_for(lambda: any(isinstance(w, kind) for w in Window.children), timeout=60)
    pump(2)
    return next(w for w in Window.children if isinstance(w, kind))


def _gone(popup: object) -> None:
    from kivy.core.window import Window

    wait_for(lambda: popup not in Window.children)
    pump(2)


@pytest.fixture
def home(app: object) -> Iterator[object]:
    """Home with an empty project `channels` in it; the message bar cleared; afterwards the
    project is removed (the session's Home stays short for the other tests)."""
    make_project(app.workspace / "channels", n=0).close()
    app.errors.clear()
    app.message.hide()
    app.go("home")
    screen = app.sm.get_screen("home")
    screen.refresh()
    pump(2)
    yield screen
    wait_for(lambda: not app.busy, timeout=120)
    assert not app.errors, app.errors
    app.message.hide()
    shutil.rmtree(app.workspace / "channels")
    screen.refresh()
    pump(2)


def _import(app: object, home: object, folder: Path) -> object:
    """Tap Import images, use `folder`; the channel popup that comes up."""
    from appliance.ui.channel_chooser import ChannelChooser
    from appliance.ui.widgets import ChooserPopup

    tap(home.buttons[("channels", "Import images")])
    chooser = _popup(ChooserPopup)
    chooser.show(folder)
    tap(chooser.ok)  # "Use this folder"
    _gone(chooser)
    return _popup(ChannelChooser)


def _stored(app: object) -> list[np.ndarray]:
    with Project.open(app.workspace / "channels") as project:
        return [project.load_pixels(rec.id) for rec in project.images()]


def test_the_expert_picks_the_second_of_three_channels(app, home, tmp_path):
    pytest.importorskip("bioio_lif")
    folder = tmp_path / "scope"
    folder.mkdir()
    data = _data(1)
    write_lif(folder / "cells of the second batch.lif", data, NAMES)
    popup = _import(app, home, folder)
    assert popup.heading.text == "cells of the second batch.lif"
    assert popup.question.text == "3 channels: pick the one to annotate"
    assert list(popup.channel_buttons) == list(NAMES)
    assert not popup.series_toggles and not popup.group_toggles  # one file, one series
    assert not cut_texts(popup)
    for widget in popup.channel_buttons.values():
        assert widget.height >= app.touch * 1.3 and widget.width > widget.height
    tap(popup.channel_buttons["GFP (488 nm)"])
    _gone(popup)
    wait_for(lambda: app.message.text.startswith("imported 2"), timeout=120)
    assert not app.message.error
    assert "of channel GFP (488 nm)" in app.message.text  # the note, not only the count
    stored = _stored(app)
    assert len(stored) == 2
    for z, pixels in enumerate(stored):
        assert np.array_equal(pixels, data[0, 1, z])


def test_cancel_imports_nothing(app, home, tmp_path):
    pytest.importorskip("bioio_lif")
    folder = tmp_path / "scope"
    folder.mkdir()
    write_lif(folder / "cells.lif", _data(2), NAMES)
    tifffile.imwrite(folder / "plain.tif", _data(3)[0, 0, 0])  # not asked about, not imported
    popup = _import(app, home, folder)
    tap(popup.cancel)
    _gone(popup)
    wait_for(lambda: app.message.text == "import cancelled: nothing imported")
    wait_for(lambda: not app.busy, timeout=60)
    assert _stored(app) == []


def test_files_with_the_same_channels_are_asked_once(app, home, tmp_path):
    pytest.importorskip("bioio_lif")
    folder = tmp_path / "scope"
    folder.mkdir()
    a, b = _data(3), _data(4)
    fields = [_data(5 + k) for k in range(3)]
    write_lif(folder / "a.lif", a, NAMES)
    write_lif(folder / "b.lif", b, NAMES)
    more = [LifSeries(f"Field {k}", fields[k], NAMES) for k in (1, 2)]
    write_lif(folder / "fields.lif", fields[0], NAMES, more=more)

    first = _import(app, home, folder)  # a and b: one question
    assert first.heading.text == "a.lif"
    assert first.question.text == "3 channels in each of 2 files: pick the one to annotate"
    assert first.group_toggles["all"].state == "down"
    assert first.group_toggles["all"].text == "Same for all 2 files"
    assert not cut_texts(first)
    tap(first.channel_buttons["mCherry"])
    _gone(first)

    second = _popup(type(first))  # fields.lif holds three series
    assert second.heading.text == "fields.lif"
    toggles = second.series_toggles
    assert toggles["first"].text == "First series only (Series001)"
    assert toggles["all"].text == "All 3 series"
    assert not cut_texts(second)
    tap(toggles["all"])
    wait_for(lambda: toggles["all"].state == "down" and toggles["first"].state == "normal")
    tap(second.channel_buttons["DAPI"])
    _gone(second)
    wait_for(lambda: app.message.text.startswith("imported 10"), timeout=120)
    expected = [a[0, 2, z] for z in range(2)] + [b[0, 2, z] for z in range(2)]
    expected += [f[0, 0, z] for f in fields for z in range(2)]
    stored = _stored(app)
    assert len(stored) == len(expected)
    for pixels, want in zip(stored, expected, strict=True):
        assert np.array_equal(pixels, want)


def test_many_channels_scroll_and_cancel_stays_on_an_8_inch_screen(app, home, tmp_path, window):
    pytest.importorskip("bioio_lif")
    names = ["DAPI", "Alexa Fluor 488 - T PMT", "Alexa Fluor 568", "Cy5"]
    names += ["Brightfield (transmitted light)", "mCherry", "YFP", "CFP"]
    data = _data(9, (1, 8, 1, 8, 8))
    folder = tmp_path / "plate"
    folder.mkdir()
    for k in range(2):
        more = [LifSeries("Position 2", data, names)]
        write_lif(
            folder / f"plate 3 of the long-term course, well B{k}.lif", data, names, more=more
        )
    window(1280, 800)
    popup = _import(app, home, folder)
    assert popup.y >= 800 * 0.13 and popup.top <= 800  # Cancel stays above the messages
    assert popup.question.text.endswith("pick the one to annotate (scroll for all)")
    assert list(popup.channel_buttons) == names
    assert not cut_texts(popup)
    tap(popup.cancel)
    _gone(popup)
    wait_for(lambda: app.message.text == "import cancelled: nothing imported")
    assert _stored(app) == []


def test_ask_for_each_file_asks_again_for_the_next_one(app, home, tmp_path):
    pytest.importorskip("bioio_lif")
    folder = tmp_path / "scope"
    folder.mkdir()
    a, b = _data(11), _data(12)
    write_lif(folder / "a.lif", a, NAMES)
    write_lif(folder / "b.lif", b, NAMES)
    first = _import(app, home, folder)
    assert first.question.text == "3 channels in each of 2 files: pick the one to annotate"
    each = first.group_toggles["each"]
    tap(each)
    wait_for(lambda: each.state == "down")
    tap(first.channel_buttons["GFP (488 nm)"])
    _gone(first)
    second = _popup(type(first))
    assert second.heading.text == "b.lif" and not second.group_toggles
    assert second.question.text == "3 channels: pick the one to annotate"
    tap(second.channel_buttons["mCherry"])
    _gone(second)
    wait_for(lambda: app.message.text.startswith("imported 4"), timeout=120)
    expected = [a[0, 1, z] for z in range(2)] + [b[0, 2, z] for z in range(2)]
    for pixels, want in zip(_stored(app), expected, strict=True):
        assert np.array_equal(pixels, want)


def test_one_channel_of_several_series_asks_only_for_the_series(app, home, tmp_path):
    pytest.importorskip("bioio_lif")
    folder = tmp_path / "scope"
    folder.mkdir()
    first, second = _data(21, (1, 1, 2, 24, 32)), _data(22, (1, 1, 2, 24, 32))
    write_lif(folder / "gray.lif", first, ["Gray"], more=[LifSeries("Field 2", second, ["Gray"])])
    popup = _import(app, home, folder)
    assert popup.question.text == "1 channel: tap it to import"
    assert list(popup.channel_buttons) == ["Gray"] and not cut_texts(popup)
    everything = popup.series_toggles["all"]
    tap(everything)
    wait_for(lambda: everything.state == "down")
    tap(popup.channel_buttons["Gray"])
    _gone(popup)
    wait_for(lambda: app.message.text.startswith("imported 4"), timeout=120)
    assert "2 of 2 series (Series001, Field 2)" in app.message.text
    expected = [first[0, 0, z] for z in range(2)] + [second[0, 0, z] for z in range(2)]
    for pixels, want in zip(_stored(app), expected, strict=True):
        assert np.array_equal(pixels, want)
