"""Every `jobs` option from the environment: `--token-file` from `JOBS_TOKEN_FILE`.

Deployments (systemd units, containers) configure by environment; the command line still
wins over it. The variable of an option is `JOBS_` and the option's long name in
capitals, dashes as underscores. `--db` also reads the older `JOBS_DB_URL`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Mapping
from typing import Final

import attrs

#: Prefix of the variables, as `jobs_core.JobsConfig.from_env` reads its settings.
PREFIX: Final = "JOBS_"
#: Older names still read when the new one is unset.
FALLBACKS: Final = {"JOBS_DB": "JOBS_DB_URL"}
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


def variable_of(option: str) -> str:
    """`--token-file` -> `JOBS_TOKEN_FILE`."""
    return PREFIX + option.lstrip("-").replace("-", "_").upper()


def defaults_from_environment(
    parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None
) -> None:
    """Give each option of `parser` and its sub-commands its variable's value (if set)
    as default (a `FromEnvironment`, for `resolve_environment`), and name the variable
    in its help."""
    source = os.environ if environ is None else environ
    seen: set[int] = set()  # a parent parser's actions are shared by its children
    for command in _parsers(parser):
        for action in _options(command):
            if id(action) in seen:
                continue
            seen.add(id(action))
            variable = variable_of(action.option_strings[-1])
            action.help = f"{action.help or ''} [env {variable}]".lstrip()
            text = source.get(variable)
            if text is None and variable in FALLBACKS:
                text = source.get(FALLBACKS[variable])
            if text is not None:
                action.default = FromEnvironment(variable, text, action)


@attrs.frozen
class FromEnvironment:
    """An option's default read from `variable`, converted by `resolve_environment` once
    the command is known (a bad value of another command's option is no error)."""

    variable: str
    text: str
    action: argparse.Action


def resolve_environment(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> argparse.Namespace:
    """`args` with each default taken from the environment converted as its option's
    command-line text would be; a value its option refuses ends the program as a bad
    command line does (`parser.error`, exit 2), naming the variable."""
    for name, value in vars(args).items():
        if isinstance(value, FromEnvironment):
            setattr(args, name, _converted(parser, value.action, value.variable, value.text))
    return args


def _converted(
    parser: argparse.ArgumentParser, action: argparse.Action, variable: str, text: str
) -> object:
    if action.nargs == 0:  # a flag: --json
        word = text.strip().lower()
        if word not in _TRUE | _FALSE:
            parser.error(f"{variable} must be one of 1/true/yes/on or 0/false/no/off, got {text!r}")
        return (word in _TRUE) == bool(action.const)
    convert = action.type if callable(action.type) else str
    try:
        value = convert(text)
    except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
        parser.error(f"{variable}: invalid value {text!r} for {action.option_strings[-1]}: {exc}")
    if action.choices is not None and value not in action.choices:
        parser.error(f"{variable}: {text!r} is not one of {sorted(map(str, action.choices))}")
    return value


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _parsers(sub)


def _options(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:
        if action.option_strings and action.dest != "help" and action.default != argparse.SUPPRESS:
            yield action
