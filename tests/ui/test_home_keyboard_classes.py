"""Issue 12, defects 8, 9, 11: Home and its chooser, light theme contrast, typing and classes."""

from __future__ import annotations

import shutil

import pytest
import tifffile

from appliance.bundles.training_job import write_training_job
from appliance.labels import Label
from appliance.ui import theme
from testkit.touch import pump, tap, wait_for
from tests.ui.projects import cell_image, make_project, prelabel_bundle


def _popup(kind):
    from kivy.core.window import Window

    return next(w for w in Window.children if isinstance(w, kind))


def test_home_long_names_chooser_wording_highlight_and_no_job_zips(app, tmp_path):
    from appliance.ui.widgets import ChooserPopup

    long = "Spheroids of the long-term organoid time course second batch"
    project = make_project(app.workspace / long, n=1, size=64)
    project.save_label(1, Label.empty((64, 64)), author="x", source="manual")
    usb = tmp_path / "usb"
    usb.mkdir()
    write_training_job(project, usb / "job.zip")
    prelabel_bundle(usb)  # threshold-unet.zip, a real model bundle
    project.close()
    app.go("home")
    pump(2)
    home = app.sm.get_screen("home")
    heading = home.buttons[(long, "Open")].parent.children[-1].children[-1]
    assert heading.text == long
    assert heading._label.get_extents(long)[0] > heading.width  # it needed wrapping ...
    assert heading.parent.parent.height >= heading.height  # ... and the row grew to hold it
    tap(home.buttons[(long, "Install models")])
    chooser = _popup(ChooserPopup)
    chooser.show(usb)
    assert "threshold-unet.zip" in chooser.entries and "job.zip" not in chooser.entries
    chooser.dismiss()
    tifffile.imwrite(usb / "cells.tif", cell_image(0, 64))
    tap(home.buttons[(long, "Import images")])
    chooser = _popup(ChooserPopup)
    chooser.show(usb)
    assert chooser.ok.text == "Use this folder"
    assert "threshold-unet.zip" not in chooser.entries  # no image in a zip (issue 25)
    row = chooser.entries["cells.tif"]
    tap(row)
    wait_for(lambda: row.state == "normal")  # Kivy releases a quick tap 35 ms late
    pump(2)
    assert chooser.ok.text == "Use this file" and "tap Use this file" in chooser.where.text
    assert list(row.background_color) == list(app.c_active)  # the picked row stays marked
    chooser.dismiss()
    pump(2)
    shutil.rmtree(app.workspace / long)  # the shared workspace's Home stays short for others
    home.refresh()


@pytest.mark.parametrize("palette", [theme.DARK, theme.LIGHT])
def test_tracks_frames_and_text_are_visible_in_both_themes(palette):
    assert theme.contrast(palette.track, palette.panel) >= 2.5
    assert theme.contrast(palette.text, palette.panel) >= 7
    assert theme.contrast(palette.text, palette.background) >= 7  # the class frame colour


def test_typing_brings_the_on_screen_keyboard_and_classes_are_editable(fresh, app, tmp_path):
    from kivy.uix.vkeyboard import VKeyboard

    from appliance.ui.widgets import Prompt

    project = make_project(tmp_path / "p", n=2, size=64)
    screen = fresh(project.root)
    editor = screen.edit_classes()
    pump(2)
    tap(editor.buttons["rename:2"])
    prompt = _popup(Prompt)
    wait_for(lambda: prompt.field.focus)  # given when the popup's 0.1 s opening animation ends
    wait_for(lambda: any(isinstance(w, VKeyboard) for w in _all_widgets()))
    prompt.field.text = "mitosis"
    tap(prompt.children[0].children[0].children[0])  # OK
    assert project.classes()[2] == "mitosis"
    # the prompt fades out (0.1 s) and until then its overlay takes the next tap
    wait_for(lambda: prompt.parent is None)
    tap(editor.buttons["add"])
    prompt = _popup(Prompt)
    assert prompt.field.text == "" and prompt.field.hint_text
    prompt.field.text = "apoptosis"
    tap(prompt.children[0].children[0].children[0])
    assert project.classes()[3] == "apoptosis"
    wait_for(lambda: prompt.parent is None)
    tap(editor.buttons["colour:1"])
    assert screen.canvas_view.renderer.colours[1] != (230, 159, 0)
    tap(editor.buttons["hide:2"])
    assert 2 in screen.canvas_view.renderer.hidden
    tap(editor.buttons["done"])
    pump(2)
    assert screen.buttons["class:3"].text == "apoptosis"
    assert screen.buttons["class:2"].text == "mitosis"


def _all_widgets():
    from kivy.core.window import Window

    stack = list(Window.children)
    while stack:
        widget = stack.pop()
        yield widget
        stack.extend(widget.children)
