"""The lab page: one read-only HTML page, no scripts, everything escaped.

Projects with their progress per annotator (and mean control score where supervision sent
scores), the enrolled tablets and workstations, label conflicts to review, and models.
"""

from __future__ import annotations

from html import escape
from typing import Any

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}
th{background:#f2f2f2}.conflict{background:#fff3e0}.revoked{color:#999}
"""


def _table(table_id: str, head: list[str], rows: list[list[Any]], row_class: str = "") -> str:
    if not rows:
        return f'<p id="{table_id}" class="empty">none</p>'
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        f'<tr class="{row_class}">'
        + "".join(f"<td>{escape('' if c is None else str(c))}</td>" for c in r)
        + "</tr>"
        for r in rows
    )
    return f'<table id="{table_id}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def render_page(projects: list[dict[str, Any]], devices: list[dict[str, Any]]) -> str:
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Lab server</title>",
        f"<style>{STYLE}</style></head><body><h1>Lab server</h1>",
        "<h2>Projects</h2>",
        _table(
            "projects",
            ["project", "images", "label versions", "controls scored", "conflicts", "models"],
            [
                [
                    p["name"],
                    p["images"],
                    p["counts"].get("label.saved", 0),
                    p["counts"].get("control.scored", 0),
                    len(p["conflicts"]),
                    len(p["models"]),
                ]
                for p in projects
            ],
        ),
        "<h2>Devices</h2>",
        _table(
            "devices",
            ["id", "project", "name", "role", "enrolled", "last sync", "revoked"],
            [
                [
                    d["id"],
                    d["project"],
                    d["name"],
                    d["role"],
                    d["enrolled"],
                    d["last_seen"],
                    d["revoked"] or "",
                ]
                for d in devices
            ],
        ),
    ]
    for i, p in enumerate(projects):
        name = escape(p["name"])
        parts.append(f"<h2>{name}</h2><h3>Progress per annotator</h3>")
        parts.append(
            _table(
                f"progress-{i}",
                ["annotator", "images labeled", "versions", "seconds", "control score"],
                [
                    [
                        a["annotator"],
                        a["images"],
                        a["versions"],
                        a["seconds"],
                        "" if a["score"] is None else a["score"],
                    ]
                    for a in p["annotators"]
                ],
            )
        )
        parts.append("<h3>Conflicts to review</h3>")
        parts.append(
            _table(
                f"conflicts-{i}",
                ["image", "version", "parent", "device"],
                [
                    [c["image"][:16] + "…", h["version"], h["parent"] or "(none)", h["device"]]
                    for c in p["conflicts"]
                    for h in c["heads"]
                ],
                row_class="conflict",
            )
        )
        parts.append("<h3>Models</h3>")
        parts.append(
            _table(
                f"models-{i}",
                ["bundle", "models", "pushed"],
                [
                    [
                        m["bundle_id"],
                        ", ".join(f"{x['role']}: {x['name']}" for x in m.get("models", [])),
                        m["pushed"],
                    ]
                    for m in p["models"]
                ],
            )
        )
    parts.append("</body></html>")
    return "".join(parts)
