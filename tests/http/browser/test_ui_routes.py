"""The UI's routes in-process (no browser): public, security headers, fixed set of assets."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from html.parser import HTMLParser
from importlib import resources

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from jobs_core import Jobs, MemoryStore
from jobs_http import create_app, is_public
from jobs_http._ui import CONTENT_SECURITY_POLICY, ui_routes

ASSETS = ("app.js", "api.js", "dom.js", "style.css", "favicon.svg")
STATIC = resources.files("jobs_http").joinpath("static")


@pytest.fixture
def client() -> Iterator[TestClient[Litestar]]:
    app = create_app(Jobs(MemoryStore()), token="ui-route-test-token", run_worker=False)
    with TestClient(app) as test_client:
        yield test_client


def assert_security_headers(headers: Mapping[str, str]) -> None:
    assert headers.get("content-security-policy") == CONTENT_SECURITY_POLICY
    assert headers.get("x-content-type-options") == "nosniff"
    assert headers.get("referrer-policy") == "no-referrer"


def test_the_policy_allows_only_this_origin_and_no_inline_script() -> None:
    """The CSP is the one RELIABILITY.md §4.9 asks for, nothing looser."""
    directives = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("path", ["/_/", "/_"])
def test_the_page_is_public_and_never_cached_stale(client: TestClient[Litestar], path: str) -> None:
    """The page needs no token (it holds no data) and is revalidated on every load."""
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert_security_headers(response.headers)
    assert '<script type="module" src="/_/static/app.js"></script>' in response.text
    assert is_public(path)


def test_the_root_leads_to_the_page(client: TestClient[Litestar]) -> None:
    """`/` redirects to `/_/`."""
    response = client.get("/", follow_redirects=False)
    assert response.status_code in {301, 302, 307, 308}
    assert response.headers["location"] == "/_/"


@pytest.mark.parametrize("name", ASSETS)
def test_assets_are_served_with_their_types_and_headers(
    client: TestClient[Litestar], name: str
) -> None:
    """Every shipped asset is public, typed, nosniff and byte-for-byte the packaged file."""
    response = client.get(f"/_/static/{name}")
    assert response.status_code == 200
    expected = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
    expected["svg"] = "image/svg+xml"
    assert response.headers["content-type"] == expected[name.rsplit(".", 1)[1]]
    assert_security_headers(response.headers)
    assert response.content == STATIC.joinpath(name).read_bytes()


def test_an_unchanged_asset_is_not_sent_again(client: TestClient[Litestar]) -> None:
    """With the ETag it got, a browser revalidates with a bodyless 304."""
    first = client.get("/_/static/app.js")
    again = client.get("/_/static/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    assert_security_headers(again.headers)


@pytest.mark.parametrize(
    "name", ["nope.js", "index.html", "..%2Fapp.js", "..%2F_ui.py", "%2Fetc%2Fpasswd", "_ui.py"]
)
def test_only_the_packaged_assets_can_be_named(client: TestClient[Litestar], name: str) -> None:
    """Anything else under /_/static/ is a 404 (the HTML is served at /_/ only)."""
    response = client.get(f"/_/static/{name}")
    assert response.status_code == 404
    assert "root:" not in response.text


def test_ui_routes_are_not_in_the_api_schema(client: TestClient[Litestar]) -> None:
    """The page is not part of the API's OpenAPI description."""
    paths = client.app.openapi_schema.paths or {}
    assert not [path for path in paths if path.startswith("/_")]


def test_ui_routes_can_be_built_for_several_apps() -> None:
    """Each call returns fresh handlers (two apps in one process do not share them)."""
    first, second = ui_routes(), ui_routes()
    assert {id(handler) for handler in first}.isdisjoint(id(handler) for handler in second)


class _Census(HTMLParser):
    """Collects what a CSP without 'unsafe-inline' would block in the page."""

    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts = 0
        self.scripts: list[str] = []
        self.inline_handlers: list[str] = []
        self.style_attributes = 0
        self.style_elements = 0
        self.foreign: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.inline_handlers += [name for name, _ in attrs if name.startswith("on")]
        self.style_attributes += "style" in values
        self.style_elements += tag == "style"
        for name in ("src", "href", "action"):
            url = values.get(name) or ""
            if "//" in url or url.startswith(("javascript:", "data:")):
                self.foreign.append(url)
        if tag == "script":
            self._in_script = True
            if values.get("src"):
                self.scripts.append(values["src"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1


def test_the_page_has_nothing_inline_and_nothing_from_elsewhere() -> None:
    """No inline script, handler or style and no other origin: the CSP can stay strict."""
    census = _Census()
    census.feed(STATIC.joinpath("index.html").read_text(encoding="utf-8"))
    assert census.scripts == ["/_/static/app.js"]
    assert census.inline_scripts == 0
    assert census.inline_handlers == []
    assert census.style_attributes == 0
    assert census.style_elements == 0
    assert census.foreign == []


def test_the_script_never_parses_data_as_html() -> None:
    """The JS has no innerHTML/outerHTML/insertAdjacentHTML/document.write/eval at all."""
    for name in ("app.js", "api.js", "dom.js"):
        source = STATIC.joinpath(name).read_text(encoding="utf-8")
        for sink in (
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ):
            assert sink not in source, f"{name} uses {sink}"
        assert "window.confirm" not in source
        assert "alert(" not in source
