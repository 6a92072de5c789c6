"""Find a store adapter by URL scheme through the `jobs_core.stores` entry-point group.

An adapter package declares e.g. `sqlite = "jobs_sqlite:SQLiteStore.from_url"`; the
callable takes the whole URL and returns a `JobStore`. To be opened by read-only tools
it also takes `create_schema=False`: create nothing, raise `SchemaMissing` if the jobs
table is not there. This is how `jobs_http` gets a
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


def open_store(url: str, *, create_schema: bool = True) -> JobStore:
    """The store for `url`, built by whichever installed adapter claims its scheme.

    With `create_schema=False` the store creates nothing (no file, no table) and raises
    `SchemaMissing` on first use if there is no jobs table; the factory is then called
    with that keyword, so an adapter that does not take it cannot be opened this way.
    """
    scheme = _scheme(url)
    found: list[EntryPoint] = [ep for ep in entry_points(group=GROUP) if ep.name == scheme]
    if not found:
        known = ", ".join(available_schemes()) or "none"
        raise UnknownStoreScheme(
            f"no installed store handles {scheme!r} URLs (installed: {known});"
            f" install the adapter package, e.g. jobs-{scheme}"
        )
    factory = cast(Callable[..., JobStore], found[0].load())
    if create_schema:
        return factory(url)  # adapters written before `create_schema` keep working
    return factory(url, create_schema=False)
