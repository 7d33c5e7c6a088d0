"""The built-in chat page at /ui: static files shipped in the package (server/ui/), no build
step. They are public (they hold no data; the page asks for an API key and sends it to the
API) and served with a strict Content-Security-Policy: same-origin scripts, styles and
requests only, no inline code, no framing."""

from __future__ import annotations

import functools
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

from slmkit.errors import NotFound

router = APIRouter(tags=["ui"], include_in_schema=False)
JS, CSS, TEXT = "text/javascript", "text/css", "text/plain"
# Only these are served (a name not listed is a 404, whatever it holds): the page, its
# modules, and the vendored libraries with their licenses (ui/vendor/README.md).
FILES = {
    "index.html": "text/html", "style.css": CSS, "app.js": JS, "api.js": JS, "markdown.js": JS,
    "conversations.js": JS, "models.js": JS,
    "vendor/marked.umd.js": JS, "vendor/purify.min.js": JS, "vendor/highlight.min.js": JS,
    "vendor/hljs-light.min.css": CSS, "vendor/hljs-dark.min.css": CSS, "vendor/README.md": TEXT,
    "vendor/LICENSE.marked.txt": TEXT, "vendor/LICENSE.dompurify.txt": TEXT,
    "vendor/LICENSE.highlightjs.txt": TEXT,
}  # fmt: skip
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


FRONT = (
    b'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>slmkit</title></head>'
    b'<body><p>slmkit is running.</p><ul><li><a href="/ui/">Chat page</a></li>'
    b'<li><a href="/docs">API documentation</a></li></ul></body></html>'
)


@router.api_route("/", methods=["GET", "HEAD"])
async def front(request: Request) -> Response:
    """Ollama's "is running" line for programs; for a browser, where to go from here."""
    if "text/html" in request.headers.get("accept", ""):
        return Response(FRONT, media_type="text/html", headers=HEADERS)
    return PlainTextResponse("slmkit is running")


@router.get("/ui")
async def index() -> Response:
    return RedirectResponse("/ui/", status_code=308)


@router.get("/ui/{name:path}")
@router.get("/ui/", name="ui_root")
async def asset(name: str = "index.html") -> Response:
    if name not in FILES:
        raise NotFound(f"no such file in the chat page: {name[:40]}")
    return Response(_read(name), media_type=FILES[name], headers=HEADERS)


@functools.cache
def _read(name: str) -> bytes:
    return resources.files("slmkit.server").joinpath("ui", *name.split("/")).read_bytes()
