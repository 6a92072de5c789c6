"""A small validator for the JSON Schema subset our OpenAPI document uses, so tests can
check every response against the schema the app serves (no extra dependency)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
}


def problems(
    value: Any, schema: dict[str, Any], root: dict[str, Any], path: str = "$"
) -> list[str]:
    """Every way `value` breaks `schema` (empty if it conforms); `$ref`s resolve in `root`."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        return problems(value, root["components"]["schemas"][name], root, path)
    if "oneOf" in schema:
        matches = [s for s in schema["oneOf"] if not problems(value, s, root, path)]
        return [] if len(matches) == 1 else [f"{path}: matches {len(matches)} of oneOf"]
    found: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is(value, t) for t in types):
            return [f"{path}: {value!r:.80} is not {types}"]
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            found.append(f"{path}: {value!r} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            found.append(f"{path}: {value!r} is above the maximum {schema['maximum']}")
    if schema.get("format") == "date-time" and isinstance(value, str):
        if not _RFC3339.fullmatch(value):
            found.append(f"{path}: {value!r} is not RFC 3339")
        else:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                found.append(f"{path}: missing {key}")
        for key, item in value.items():
            if key in props:
                found += problems(item, props[key], root, f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                found.append(f"{path}: unexpected {key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += problems(item, schema["items"], root, f"{path}[{i}]")
    return found


def _is(value: Any, name: str) -> bool:
    if name in {"integer", "number"} and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[name])


def operation(root: dict[str, Any], path: str, method: str) -> dict[str, Any] | None:
    """The OpenAPI operation of a concrete request path, matching `{param}` segments."""
    parts = path.split("/")
    for template, item in root["paths"].items():
        tparts = template.split("/")
        if len(tparts) == len(parts) and all(
            t == p or (t.startswith("{") and p) for t, p in zip(tparts, parts, strict=True)
        ):
            op: dict[str, Any] | None = item.get(method.lower())
            return op
    return None


def response_problems(
    root: dict[str, Any], path: str, method: str, status: int, body: Any
) -> list[str]:
    """Why a response does not match the served schema (documented status and body)."""
    op = operation(root, path, method)
    if op is None:
        return []  # not an operation of the schema (404/405): checked by the error shape
    documented = op["responses"]
    if str(status) not in documented:
        return [f"{method} {path}: status {status} is not documented ({sorted(documented)})"]
    content = documented[str(status)].get("content")
    if not content:
        return [] if body is None else [f"{method} {path}: {status} should have no body"]
    return problems(body, content["application/json"]["schema"], root)
