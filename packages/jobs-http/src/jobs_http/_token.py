"""Where `jobs serve` gets its superuser token: the environment, a file, or a new secret.

There is never a default, empty or guessable token. A generated one is written with
0600 permissions before it is used, so a restart reads the same token back.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Literal

import attrs

ENV_VAR = "JOBS_SUPERUSER_TOKEN"
TOKEN_FILE_NAME = "superuser_token"  # noqa: S105 - a file name, not a secret
#: Shortest token accepted from the environment or a file.
MIN_LENGTH = 16

logger = logging.getLogger("jobs_http")


class TokenError(ValueError):
    """A configured token is unusable (empty, too short, unreadable)."""


@attrs.frozen
class SuperuserToken:
    """A token and where it came from (`source` is shown; `value` never is, except once)."""

    value: str = attrs.field(repr=False)
    origin: Literal["env", "file", "generated"]
    path: Path | None = None


def _checked(value: str, where: str) -> str:
    value = value.strip()
    if len(value) < MIN_LENGTH or any(ch.isspace() for ch in value):
        raise TokenError(
            f"the superuser token in {where} must be at least {MIN_LENGTH} characters"
            " with no whitespace"
        )
    if not all("!" <= ch <= "~" for ch in value):
        # HTTP headers are bytes: clients encode other characters differently (UTF-8,
        # Latin-1, or refuse them), so such a token could never be matched reliably.
        raise TokenError(
            f"the superuser token in {where} may only use visible ASCII characters"
            " (letters, digits, punctuation)"
        )
    return value


def resolve_token(token_file: Path, *, environ: dict[str, str] | None = None) -> SuperuserToken:
    """The token from `$JOBS_SUPERUSER_TOKEN`, else `token_file`, else a new one saved there."""
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR):
        return SuperuserToken(_checked(env[ENV_VAR], ENV_VAR), "env")
    if token_file.exists():
        mode = stat.S_IMODE(token_file.stat().st_mode)
        if mode & 0o077:
            logger.warning(
                "token file %s is readable by other users (mode %o); chmod 600 it", token_file, mode
            )
        try:
            text = token_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenError(f"cannot read the token file {token_file}: {exc}") from exc
        return SuperuserToken(_checked(text, str(token_file)), "file", token_file)
    value = secrets.token_urlsafe(32)
    write_token_file(token_file, value)
    return SuperuserToken(value, "generated", token_file)


def write_token_file(path: Path, value: str) -> None:
    """Create `path` holding `value`, readable by its owner only (0600), never overwriting."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(value + "\n")
