"""The machine line every benchmark table starts with, so figures are never quoted bare."""

from __future__ import annotations

import os
import platform


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{platform.node()} · {cpu} · {os.cpu_count()} cores · Python {platform.python_version()}"
    )


def table(title: str, rows: list[tuple[str, str, str, str]]) -> str:
    """Markdown table: figure, value, goal, verdict."""
    out = [f"## {title}", "", f"machine: {machine()}", ""]
    out.append("| figure | value | goal | ratio / verdict |")
    out.append("| --- | --- | --- | --- |")
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(out)
