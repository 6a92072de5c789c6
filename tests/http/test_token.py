"""Where `jobs serve` gets its token: env, file, or generated once with 0600 permissions."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from jobs_http._token import ENV_VAR, TokenError, resolve_token


def test_generated_once_with_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "superuser_token"
    first = resolve_token(path, environ={})
    assert first.origin == "generated"
    assert len(first.value) >= 43  # 32 bytes of entropy, base64url
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == first.value
    again = resolve_token(path, environ={})
    assert again.origin == "file"
    assert again.value == first.value


def test_each_data_folder_gets_its_own_random_token(tmp_path: Path) -> None:
    a = resolve_token(tmp_path / "a" / "t", environ={})
    b = resolve_token(tmp_path / "b" / "t", environ={})
    assert a.value != b.value


def test_environment_wins(tmp_path: Path) -> None:
    path = tmp_path / "superuser_token"
    token = resolve_token(path, environ={ENV_VAR: "  from-the-environment-123  "})
    assert token.origin == "env"
    assert token.value == "from-the-environment-123"
    assert not path.exists()


@pytest.mark.parametrize("value", ["short", "has space inside it ok", "\n"])
def test_weak_or_odd_tokens_are_refused(tmp_path: Path, value: str) -> None:
    path = tmp_path / "superuser_token"
    path.write_text(value)
    if value.strip():
        with pytest.raises(TokenError):
            resolve_token(tmp_path / "nope", environ={ENV_VAR: value})
    with pytest.raises(TokenError):
        resolve_token(path, environ={})


def test_token_never_in_repr(tmp_path: Path) -> None:
    token = resolve_token(tmp_path / "t", environ={})
    assert token.value not in repr(token)


def test_world_readable_token_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "superuser_token"
    path.write_text("a-perfectly-fine-token-value")
    path.chmod(0o644)
    assert resolve_token(path, environ={}).value == "a-perfectly-fine-token-value"
    assert "readable by other users" in caplog.text
    assert "a-perfectly-fine-token-value" not in caplog.text
