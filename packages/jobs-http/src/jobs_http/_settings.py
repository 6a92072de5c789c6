"""`jobs config`: the settings a `jobs` command would run with here, and where each came
from (its default or a `JOBS_*` variable), without secrets: the store URL is shown
without its password and the token file by its path only."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, TextIO

import attrs

from jobs_core import ENV_PREFIX, JobsConfig
from jobs_http._cli import without_password
from jobs_http._environment import FromEnvironment, resolve_environment

#: `serve` options that are not settings of a deployment (shown by `jobs serve --help`).
_NOT_SETTINGS = frozenset({"app"})
#: Options whose value is a credential: shown only as set or not.
_SECRETS = frozenset({"metrics_token"})


@attrs.frozen
class Setting:
    """One effective setting: its name, its value as text, and its source."""

    name: str
    value: str
    source: str


def effective_settings(
    parser: argparse.ArgumentParser, environ: Mapping[str, str]
) -> list[Setting]:
    """The `serve` command's options (store URL, bind address, token file, timeouts)
    and every `JobsConfig` setting, as they would be with `environ` and no option on
    the command line."""
    raw = parser.parse_args(["serve"])
    sources = {
        name: f"env {value.variable}" if isinstance(value, FromEnvironment) else "default"
        for name, value in vars(raw).items()
    }
    args = resolve_environment(raw, parser)
    settings = []
    for name, value in vars(args).items():
        if name == "command" or name in _NOT_SETTINGS:
            continue
        if name in _SECRETS:
            shown = "-" if value is None else "(set, hidden)"
        else:
            shown = without_password(value) if name == "db" else _text(value)
        settings.append(Setting(name, shown, sources[name]))
    config = JobsConfig.from_env(environ)
    for field in attrs.fields(JobsConfig):
        if field.name == "backoff":
            continue
        variable = ENV_PREFIX + field.name.upper()
        source = f"env {variable}" if variable in environ else "default"
        settings.append(Setting(field.name, _text(getattr(config, field.name)), source))
    return settings


def print_settings(settings: list[Setting], out: TextIO, *, as_json: bool) -> None:
    """A table (NAME VALUE SOURCE), or JSON: {name: {"value": ..., "source": ...}}."""
    if as_json:
        shown = {s.name: {"value": s.value, "source": s.source} for s in settings}
        out.write(json.dumps(shown, indent=2) + "\n")
        return
    width = max(len(s.name) for s in settings)
    value_width = max(len(s.value) for s in settings)
    out.write(f"{'NAME':<{width}}  {'VALUE':<{value_width}}  SOURCE\n")
    for s in settings:
        out.write(f"{s.name:<{width}}  {s.value:<{value_width}}  {s.source}\n")


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    return str(value)
