"""Suite-wide ordering: browser tests run last.

Playwright's sync API runs an event loop on the main thread while a browser is open; the
browser fixtures are package-scoped so it closes after tests/http/browser, and running
those tests last keeps every asyncio test before them on a clean thread either way.
(This file must stay importable with jobs-core alone: `nox -s isolated` runs tests/core.)
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move tests marked `browser` to the end, keeping their relative order."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
