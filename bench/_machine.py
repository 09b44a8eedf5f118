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


# `python -c PEAK_RSS ARGS...` runs `appliance ARGS...` and prints `peak_kb N` on stderr. VmHWM
# belongs to the process's own address space; ru_maxrss would carry over the parent's peak
# across fork and exec, so a memory-hungry parent would be blamed on the command. Shared with
# tests/test_cli_store.py.
PEAK_RSS = (
    "import runpy, sys\n"
    "sys.argv = ['appliance', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('appliance', run_name='__main__')\n"
    "finally:\n"
    "    hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0]\n"
    "    print('peak_kb', hwm.split()[1], file=sys.stderr)\n"
)
