"""Payload rules shared by every store: strict JSON, no NUL, bounded depth and size."""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from jobs_core._errors import InvalidPayload, InvalidResult, PayloadTooLarge

T = TypeVar("T")

#: Deepest nesting of arrays/objects a payload may have.
MAX_DEPTH = 64

_converter = cattrs.Converter(forbid_extra_keys=True)
# Built once: `json.dumps`/`json.loads` with options build a new encoder per call.
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_decode = json.JSONDecoder().decode


def serialize(payload: object, max_size: int) -> str:
    """Return the canonical JSON text of `payload`, or raise why it is not a valid payload.

    Walks the value first (iteratively, so deep nesting cannot blow the stack), refusing
    non-JSON types, non-string keys, NaN/Infinity, NUL characters and nesting deeper than
    `MAX_DEPTH`; then measures the UTF-8 size against `max_size`.
    """
    _check_value(payload, "payload")
    try:
        text = _encode(payload)
    except ValueError as exc:  # e.g. an int with more digits than int->str allows
        raise InvalidPayload(f"payload is not JSON-serializable: {exc}") from exc
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:  # a lone surrogate such as "\ud800"
        raise InvalidPayload(
            f"payload is not valid Unicode: unpaired surrogate at character {exc.start}"
        ) from exc
    if size > max_size:
        raise PayloadTooLarge(size, max_size)
    return text


def canonical(payload: object, max_size: int) -> Any:
    """Validate `payload` and return it as JSON would give it back (tuples become lists)."""
    return _decode(serialize(payload, max_size))


def check_result(value: object, max_size: int) -> Any:
    """A handler's return value as the store will give it back (tuples become lists), or
    `InvalidResult` saying why it cannot be stored: the payload's rules, and its size."""
    try:
        _check_value(value, "result")
        text = _encode(value)
        size = len(text.encode("utf-8"))
    except InvalidPayload as exc:
        raise InvalidResult(str(exc)) from exc
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidResult(f"result is not storable as JSON: {exc}") from exc
    if size > max_size:
        raise InvalidResult(
            f"result is {size} bytes of JSON; the limit is {max_size} bytes (max_payload_size)"
        )
    return _decode(text)


def _check_value(root: object, name: str) -> None:
    stack: list[tuple[object, int, str]] = [(root, 0, name)]
    while stack:
        value, depth, path = stack.pop()
        if value is None or isinstance(value, bool | int):
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidPayload(f"{path} is {value!r}; JSON has no NaN or Infinity")
            continue
        if isinstance(value, str):
            if "\x00" in value:
                raise InvalidPayload(f"{path} contains a NUL character (\\u0000)")
            continue
        if depth >= MAX_DEPTH:
            raise InvalidPayload(f"{name} nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, list | tuple):
            stack.extend((item, depth + 1, f"{path}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InvalidPayload(f"{path} has a non-string key {key!r}")
                if "\x00" in key:
                    raise InvalidPayload(f"{path} has a key containing a NUL character")
                stack.append((item, depth + 1, f"{path}[{key!r}]"))
        else:
            raise InvalidPayload(f"{path} is a {type(value).__name__}, which is not JSON")


def unmarshal(payload: object, into: type[T]) -> T:
    """Structure a payload into `into` with cattrs; every mismatch becomes `InvalidPayload`."""
    try:
        return _converter.structure(payload, into)
    except (ClassValidationError, IterableValidationError, ForbiddenExtraKeysError) as exc:
        problems = "; ".join(cattrs.transform_error(exc, path="payload"))
        raise InvalidPayload(f"payload does not fit {into.__name__}: {problems}") from exc
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise InvalidPayload(f"payload does not fit {into.__name__}: {exc}") from exc
