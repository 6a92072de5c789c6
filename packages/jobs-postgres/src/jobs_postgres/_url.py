"""Parse the store URL: where the server is, which table, how big a pool.

`postgresql://user@host:port/db?table=jobs&schema=queue&pool_size=5` is the public
form (`postgres://` works too). The query options are ours: they are taken out before
the URL goes to SQLAlchemy (with the driver named) and to asyncpg (for LISTEN).
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs

from jobs_core import InvalidOptions

#: SQLAlchemy dialect+driver used by default.
DEFAULT_DRIVER: Final = "asyncpg"
_DRIVERS: Final = frozenset({"asyncpg", "psycopg"})
_SCHEMES: Final = frozenset({"postgresql", "postgres"})
#: Lower-case SQL identifiers only, short enough for index and channel names.
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,39}")
_OPTIONS: Final = frozenset({"table", "schema", "pool_size", "max_overflow", "pool_timeout"})


def check_name(value: str, what: str) -> str:
    """Return `value` if it is a plain lower-case identifier (no quoting surprises)."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidOptions(
            f"{what} must be 1-40 characters of a-z, 0-9 and _ (not starting with a digit),"
            f" got {value!r}"
        )
    return value


@attrs.frozen(kw_only=True)
class StoreURL:
    """A parsed store URL."""

    #: What SQLAlchemy gets: `postgresql+<driver>://...`, without our options.
    sqlalchemy_url: str = attrs.field(repr=False)
    #: What asyncpg gets for the LISTEN connection: `postgresql://...`.
    libpq_url: str = attrs.field(repr=False)
    driver: str = DEFAULT_DRIVER
    table: str = "jobs"
    schema: str | None = None
    pool_size: int = 5
    max_overflow: int = 5
    pool_timeout: float = 30.0


def _positive_int(options: dict[str, str], name: str, default: int) -> int:
    raw = options.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < (1 if name == "pool_size" else 0):
        raise InvalidOptions(f"{name} must be a whole number, got {raw!r}")
    return int(raw)


def parse_url(url: str) -> StoreURL:
    """Split a `postgresql://` URL into the driver URLs and our options."""
    parts = urlsplit(url)
    scheme, _, driver = parts.scheme.lower().partition("+")
    if scheme not in _SCHEMES:
        raise InvalidOptions(f"a PostgreSQL store URL starts with postgresql://, got {url!r}")
    driver = driver or DEFAULT_DRIVER
    if driver not in _DRIVERS:
        raise InvalidOptions(f"unsupported driver {driver!r}; use one of {sorted(_DRIVERS)}")
    options: dict[str, str] = {}
    passthrough: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _OPTIONS:
            options[key] = value
        else:
            passthrough.append((key, value))
    query = urlencode(passthrough)
    sqlalchemy_url = urlunsplit((f"postgresql+{driver}", parts.netloc, parts.path, query, ""))
    libpq_url = urlunsplit(("postgresql", parts.netloc, parts.path, query, ""))
    schema = options.get("schema") or None
    timeout_raw = options.get("pool_timeout", "30")
    try:
        pool_timeout = float(timeout_raw)
    except ValueError:
        raise InvalidOptions(f"pool_timeout must be a number, got {timeout_raw!r}") from None
    return StoreURL(
        sqlalchemy_url=sqlalchemy_url,
        libpq_url=libpq_url,
        driver=driver,
        table=check_name(options.get("table", "jobs"), "table"),
        schema=None if schema is None else check_name(schema, "schema"),
        pool_size=_positive_int(options, "pool_size", 5),
        max_overflow=_positive_int(options, "max_overflow", 5),
        pool_timeout=pool_timeout,
    )
