"""Start the real app once per test session under Xvfb and drive it with synthetic touches.

Kivy creates one window per process, so the app is built once (session fixture) and each test
opens its own project in it. Kivy's environment is set here, before any test module imports
Kivy: no argument parsing, no console log, a throw-away KIVY_HOME, SDL2 window, and the DPI of
the target 10-inch 1920×1200 tablet (224), so sizes in mm are what the expert would see.
Xvfb starts only when a test asks for the app; every such test is marked `ui`, so
`-m "not ui"` runs the rest without a display.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.session.display import start_virtual_display

WIDTH, HEIGHT = 1920, 1200
SIZES = [(1920, 1200), (1280, 800), (1200, 1920)]  # issue 25: the sizes a tablet app meets
SCREEN = max(WIDTH, HEIGHT)
HERE = Path(__file__).resolve().parent

os.environ.update(
    KIVY_NO_ARGS="1",
    KIVY_NO_CONSOLELOG="1",
    KIVY_NO_FILELOG="1",
    KIVY_HOME=tempfile.mkdtemp(prefix="kivy-home-"),
    KIVY_WINDOW="sdl2",
    KIVY_CLIPBOARD="sdl2",
    KIVY_DPI="224",
    KIVY_METRICS_DENSITY="1",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that drive the real app (they use the `app` fixture) `ui`."""
    for item in items:
        uses_app = "app" in getattr(item, "fixturenames", ())
        if uses_app and item.path.resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.ui)


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The running app on an empty workspace, annotator already named."""
    start_virtual_display((SCREEN, SCREEN))  # square: the window may turn upright (tests)
    if not os.environ.get("DISPLAY"):
        pytest.fail("no X display and no Xvfb: `make setup` installs Xvfb (package xvfb)")
    from kivy.config import Config

    Config.set("graphics", "width", str(WIDTH))
    Config.set("graphics", "height", str(HEIGHT))
    from appliance.ui.launch import configure_kivy

    configure_kivy()  # the app's own Kivy settings, as `appliance run` sets them
    from kivy.base import EventLoop

    from appliance.ui.app import ApplianceApp
    from testkit.touch import pump

    workspace = tmp_path_factory.mktemp("workspace")
    (workspace / "tablet.json").write_text('{"annotator": "Dr Test", "annotators": ["Dr Test"]}')
    application = ApplianceApp(workspace)
    application._run_prepare()
    pump(5)
    yield application
    application.stop()
    EventLoop.close()


@pytest.fixture
def fresh(app: object) -> Iterator[Callable[[Path], object]]:
    """Open a project in the app; after the test, no unexpected error may have happened."""

    from testkit.touch import pump, wait_for

    def open_it(path: Path) -> object:
        app.open_project(path)
        screen = app.sm.get_screen("annotate")
        wait_for(
            lambda: screen.work is not None or (screen.presenter and screen.presenter.all_done)
        )
        pump(3)
        return screen

    app.errors.clear()
    yield open_it
    pump(2)
    assert not app.errors, f"unexpected errors in the app: {app.errors!r}"
    app.go("home")
    pump(2)


@pytest.fixture
def opened_new(fresh, tmp_path: Path) -> Callable[..., object]:
    """Open a new project of `n` generated `size`² images with pre-label `prelabel` on the
    annotate screen: the start of most UI tests."""
    from appliance import settings
    from testkit.projects import make_project

    def open_new(n: int = 2, size: int = 256, prelabel: str = "none") -> object:
        project = make_project(tmp_path / "p", n=n, size=size)
        settings.PRELABEL.set(project, prelabel)
        return fresh(project.root)

    return open_new


@pytest.fixture
def window(app: object) -> Iterator[Callable[[int, int], None]]:
    """Resize the real window; the tablet's landscape size again afterwards."""
    from kivy.core.window import Window  # not at import: the window must open at 1920×1200

    from testkit.touch import pump, wait_for

    def resize(width: int, height: int) -> None:
        Window.size = (width, height)
        wait_for(lambda: tuple(Window.size) == (width, height))
        pump(4)

    yield resize
    app.sm.get_screen("annotate").show_objects(False)
    resize(WIDTH, HEIGHT)
