"""Find a store adapter by URL scheme through the `jobs_core.stores` entry-point group.

An adapter package declares e.g. `sqlite = "jobs_sqlite:SQLiteStore.from_url"`; the
callable takes the whole URL and returns a `JobStore`. This is how `jobs_http` gets a
store without importing any adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import cast

from jobs_core._errors import UnknownStoreScheme
from jobs_core.ports import JobStore

GROUP = "jobs_core.stores"


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    if not sep:
        scheme, sep, _ = url.partition(":")
    if not sep or not scheme:
        raise UnknownStoreScheme(f"store URL {url!r} has no scheme (like sqlite:///jobs.db)")
    return scheme.split("+", 1)[0].lower()  # postgresql+asyncpg -> postgresql


def available_schemes() -> list[str]:
    """URL schemes of the installed store adapters."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def open_store(url: str) -> JobStore:
    """The store for `url`, built by whichever installed adapter claims its scheme."""
    scheme = _scheme(url)
    found: list[EntryPoint] = [ep for ep in entry_points(group=GROUP) if ep.name == scheme]
    if not found:
        known = ", ".join(available_schemes()) or "none"
        raise UnknownStoreScheme(
            f"no installed store handles {scheme!r} URLs (installed: {known});"
            f" install the adapter package, e.g. jobs-{scheme}"
        )
    factory = cast(Callable[[str], JobStore], found[0].load())
    return factory(url)
