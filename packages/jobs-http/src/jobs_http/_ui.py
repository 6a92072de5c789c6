"""The admin UI: one static page and its assets, served from package data at `/_/`.

The page holds no data, so its routes are public; everything it shows comes from the
JSON API, which the page's script calls with the superuser token the user typed (kept
in `sessionStorage`, sent as a Bearer header, never in a cookie: no CSRF surface).

Every response carries a Content-Security-Policy that allows scripts, styles and
requests from this origin only and no inline script, so even a rendering bug cannot run
a payload's `<script>`. Assets are read once, when the routes are built, from a fixed
folder inside the package; a request can only name one of those files, never a path.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import PurePosixPath
from typing import Any, NamedTuple

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

#: Where the page lives; its assets are under `<UI_PATH>static/`.
UI_PATH = "/_/"

#: The policy of every UI response: this origin only, no inline script, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

#: Litestar adds `; charset=utf-8` to `text/*` types itself.
_MEDIA_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
_INDEX = "index.html"


class _Asset(NamedTuple):
    body: bytes
    media_type: str
    etag: str


def _load_assets() -> dict[str, _Asset]:
    """Every servable file of `jobs_http/static`, by name (no folders, known types only)."""
    assets: dict[str, _Asset] = {}
    for entry in resources.files("jobs_http").joinpath("static").iterdir():
        suffix = PurePosixPath(entry.name).suffix
        if not entry.is_file() or suffix not in _MEDIA_TYPES:
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        assets[entry.name] = _Asset(body, _MEDIA_TYPES[suffix], etag)
    if _INDEX not in assets:
        raise RuntimeError("jobs_http is installed without its static/index.html")
    return assets


def _serve(asset: _Asset, request: Request[Any, Any, Any]) -> Response[bytes]:
    # Always revalidate (assets change with the package, and are tiny); the ETag makes
    # revalidation a 304 without a body.
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": asset.etag}
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(b"", status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def ui_routes() -> list[HTTPRouteHandler]:
    """Route handlers for the page (`/_/`, also `/_`) and its assets (`/_/static/<name>`)."""
    assets = _load_assets()
    index = assets[_INDEX]

    @get(["/_", UI_PATH], name="jobs-ui", include_in_schema=False, sync_to_thread=False)
    def page(request: Request[Any, Any, Any]) -> Response[bytes]:
        return _serve(index, request)

    @get(
        UI_PATH + "static/{name:str}",
        name="jobs-ui-static",
        include_in_schema=False,
        sync_to_thread=False,
    )
    def static(name: FromPath[str], request: Request[Any, Any, Any]) -> Response[bytes]:
        asset = assets.get(name)
        if asset is None or name == _INDEX:
            raise NotFoundException("No such UI asset.")  # the name is not echoed back
        return _serve(asset, request)

    return [page, static]
