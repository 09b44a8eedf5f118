"""The lab page's key: in a header (`X-Lab-Key`, for scripts) or a cookie set by a small
login form, never in the URL, where it would land in browser history, proxy logs and the
Referer of every link (docs/security.md).

The cookie holds an HMAC of the key, not the key, and is HttpOnly, SameSite=Strict and, on
HTTPS, Secure.
"""

from __future__ import annotations

import hashlib
import hmac
import html
from collections.abc import Callable
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

__all__ = ["COOKIE", "HEADER", "register_page"]

HEADER = "x-lab-key"
COOKIE = "lab_session"
MAX_FORM_BYTES = 4096

_FORM = """<!doctype html><html><head><meta charset="utf-8"><title>Lab server</title></head>
<body><h1>Lab server</h1><p>{message}</p>
<form method="post" action="/lab/login"><label>Page key
<input type="password" name="key" autocomplete="current-password" autofocus></label>
<button type="submit">Open</button></form></body></html>"""


def _session(page_key: str) -> str:
    return hmac.new(page_key.encode(), b"appliance lab page session v1", hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode()[:256], expected.encode())


def register_page(app: FastAPI, page_key: str | None, render: Callable[[], str]) -> None:
    """`GET /lab` (the page, or the login form) and `POST /lab/login` (sets the cookie)."""

    def form(message: str, status: int = 401) -> HTMLResponse:
        return HTMLResponse(_FORM.format(message=html.escape(message)), status_code=status)

    @app.get("/lab", response_class=HTMLResponse)
    def page(request: Request) -> HTMLResponse:
        if page_key is None:
            raise HTTPException(404, "this lab server has no page")
        if "key" in request.query_params:
            return form(
                "The lab page needs its key, typed below or sent in the X-Lab-Key header; "
                "a key in the address is refused (addresses land in logs and history)."
            )
        header = request.headers.get(HEADER, "")
        cookie = request.cookies.get(COOKIE, "")
        if (header and _same(header, page_key)) or (cookie and _same(cookie, _session(page_key))):
            return HTMLResponse(render())
        return form("The lab page needs its key." if not (header or cookie) else "Wrong key.")

    @app.post("/lab/login", response_model=None)
    async def login(request: Request) -> HTMLResponse | RedirectResponse:
        if page_key is None:
            raise HTTPException(404, "this lab server has no page")
        body = await request.body()
        fields = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace"))
        key = (fields.get("key") or [""])[0]
        if not _same(key, page_key):
            return form("Wrong key.")
        reply = RedirectResponse("/lab", status_code=303)
        reply.set_cookie(
            COOKIE,
            _session(page_key),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/lab",
        )
        return reply
