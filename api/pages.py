"""The web pages (written in ``web/``): ``/`` the canvas page, ``/bulk`` the bulk page, ``/static/*``.

Until ``web/`` holds them, a small placeholder says so. Pages get strict security headers; the API
answers get the ones that make sense for JSON.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from phonereader import ROOT

WEB = ROOT / "web"
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
COMMON = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
PAGE = [(b"content-security-policy", PAGE_CSP.encode()), (b"x-frame-options", b"DENY"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=()")]


def _page(name: str, title: str) -> FileResponse | HTMLResponse:
    path = WEB / name
    if path.is_file():
        return FileResponse(path, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})
    return HTMLResponse(f"<!doctype html><meta charset=utf-8><title>phonereader: {title}</title>"
                        f"<h1>phonereader</h1><p>The {title} page is not built yet (web/{name}). "
                        f"The API is up: see <a href=/docs>/docs</a>.</p>")


def mount(app: FastAPI, web: Path = WEB) -> None:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def canvas_page():
        return _page("index.html", "canvas")

    @router.get("/bulk")
    async def bulk_page():
        return _page("bulk.html", "bulk upload")

    app.include_router(router)
    static = web / "static"
    app.mount("/static", StaticFiles(directory=static, check_dir=False), name="static")


class SecurityHeaders:
    """ASGI middleware: nosniff and no-referrer everywhere; CSP and frame denial on HTML pages."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        docs = scope["path"].startswith(("/docs", "/redoc"))  # Swagger UI brings its own scripts

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                html = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers)
                extra = COMMON + (PAGE if html and not docs else [])
                headers += [(k, v) for k, v in extra if k not in names]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, add_headers)
