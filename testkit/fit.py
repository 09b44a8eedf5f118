"""Which texts on screen do not fit their widget: shortened with "..." or spilling out.

Measured from Kivy's own text layout (the core label's `is_shortened` after a render, and the
texture's width against the widget's), not from pixels, so a test names the cut text.
"""

from __future__ import annotations

from kivy.uix.widget import Widget


def cut_texts(root: Widget) -> list[str]:
    """Every visible text under `root` that Kivy shortened or that is wider than its widget."""
    found = []
    for widget in root.walk(restrict=True):
        text = getattr(widget, "text", None)
        core = getattr(widget, "_label", None)
        if not isinstance(text, str) or not text.strip() or core is None:
            continue
        if widget.opacity == 0 or widget.width <= 1:
            continue  # not shown (a hidden button keeps its text)
        widget.texture_update()
        if getattr(widget._label, "is_shortened", False):
            found.append(f"{text!r} shortened in {widget.width:.0f} px")
        elif widget.texture_size[0] > widget.width + 1:
            found.append(f"{text!r} {widget.texture_size[0]:.0f} px wide in {widget.width:.0f}")
    return found
