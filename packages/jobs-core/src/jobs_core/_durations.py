"""Durations as users write them: a `timedelta`, a number of seconds, or text like `30s`.

Configuration comes from code, environment variables and command lines alike, so every
duration the library takes accepts the same three forms, and a value of any other type
(or text that is not a duration) is refused with an error naming the setting.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Final, TypeAlias

from jobs_core._errors import InvalidOptions

__all__ = ["Duration", "parse_duration"]

#: What a duration may be given as: `timedelta(seconds=30)`, `30`, `0.5`, `"30s"`,
#: `"1h30m"`, `"250ms"`.
Duration: TypeAlias = timedelta | int | float | str

_UNITS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_NUMBER: Final = r"\d+(?:\.\d+)?"
_PART: Final = re.compile(rf"({_NUMBER})(ms|s|m|h|d)")
_TEXT: Final = re.compile(rf"(?:{_NUMBER}(?:ms|s|m|h|d))+|{_NUMBER}")


def parse_duration(value: object, name: str) -> timedelta:
    """`value` as a `timedelta`: a `timedelta` as it is, a number (not a bool) as seconds,
    text as seconds or as parts with units (`ms`, `s`, `m`, `h`, `d`: `"1h30m"`).
    Anything else raises `InvalidOptions` naming `name`. The sign is not checked here."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise _not_a_duration(name, value)
        return _seconds(float(value), name, value)
    if isinstance(value, str):
        text = value.strip().lower()
        if _TEXT.fullmatch(text):
            parts = _PART.findall(text)
            total = sum(float(n) * _UNITS[unit] for n, unit in parts) if parts else float(text)
            return _seconds(total, name, value)
    raise _not_a_duration(name, value)


def _seconds(seconds: float, name: str, given: object) -> timedelta:
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise InvalidOptions(f"{name} is too long, got {given!r}") from None


def _not_a_duration(name: str, value: object) -> InvalidOptions:
    return InvalidOptions(
        f"{name} must be a duration: a timedelta, a number of seconds, or text such as"
        f" '30s', '5m' or '1h30m'; got {type(value).__name__} {value!r}"
    )
