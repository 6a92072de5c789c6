"""Every `jobs` option also from its `JOBS_*` variable; the command line wins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs_http.__main__ import main
from jobs_http._cli import build_parser
from jobs_http._environment import _options, _parsers, variable_of


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _enqueue(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "enqueue", "t", "{}", "--db", db)
    assert code == 0, err


def test_jobs_db_names_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'env.db'}"
    _enqueue(db, capsys)
    monkeypatch.setenv("JOBS_DB", db)
    code, out, err = run(capsys, "stats", "--json")
    assert code == 0, err
    assert json.loads(out)["pending"] == 1


def test_the_older_jobs_db_url_still_works_and_jobs_db_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'env.db'}"
    _enqueue(db, capsys)
    monkeypatch.setenv("JOBS_DB_URL", db)
    assert json.loads(run(capsys, "stats", "--json")[1])["pending"] == 1
    monkeypatch.setenv("JOBS_DB", "memory://")
    assert json.loads(run(capsys, "stats", "--json")[1])["pending"] == 0


def test_the_command_line_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'env.db'}"
    _enqueue(db, capsys)
    monkeypatch.setenv("JOBS_DB", "memory://")
    assert json.loads(run(capsys, "stats", "--json", "--db", db)[1])["pending"] == 1


@pytest.mark.parametrize(("text", "as_json"), [("1", True), ("Yes", True), ("off", False)])
def test_a_flag_from_the_environment(
    text: str,
    as_json: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("JOBS_JSON", text)
    code, out, _ = run(capsys, "stats", "--db", "memory://")
    assert code == 0
    assert out.lstrip().startswith("{") is as_json


@pytest.mark.parametrize(
    ("setting", "command", "message"),
    [
        ("JOBS_PORT=http", "serve", "JOBS_PORT: invalid value 'http'"),
        ("JOBS_JSON=maybe", "stats", "JOBS_JSON must be one of"),
        ("JOBS_STATUS=done", "list", "JOBS_STATUS: 'done' is not"),
    ],
)
def test_a_bad_value_is_a_bad_command_line_naming_its_variable(
    setting: str,
    command: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    variable, _, text = setting.partition("=")
    monkeypatch.setenv(variable, text)
    with pytest.raises(SystemExit) as exited:
        main([command, "--db", "memory://"])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_value_of_another_commands_option_is_no_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JOBS_PORT", "http")
    assert run(capsys, "stats", "--db", "memory://")[0] == 0


def test_every_option_of_every_command_names_its_variable() -> None:
    parser = build_parser(environ={})
    for command in _parsers(parser):
        for action in _options(command):
            assert f"[env {variable_of(action.option_strings[-1])}]" in (action.help or "")
    assert variable_of("--token-file") == "JOBS_TOKEN_FILE"


def test_jobs_config_shows_each_setting_and_its_source_without_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JOBS_DB", "postgresql://app:s3cret@db.example/jobs")
    monkeypatch.setenv("JOBS_PORT", "9000")
    monkeypatch.setenv("JOBS_POLL_INTERVAL", "250ms")
    monkeypatch.setenv("JOBS_METRICS_TOKEN", "scrape-s3cret")
    code, out, err = run(capsys, "config", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["db"] == {"value": "postgresql://app@db.example/jobs", "source": "env JOBS_DB"}
    assert shown["port"] == {"value": "9000", "source": "env JOBS_PORT"}
    assert shown["poll_interval"] == {"value": "0.25s", "source": "env JOBS_POLL_INTERVAL"}
    assert shown["max_retries"] == {"value": "3", "source": "default"}
    assert shown["metrics_token"] == {"value": "(set, hidden)", "source": "env JOBS_METRICS_TOKEN"}
    assert "s3cret" not in out
    code, table, _ = run(capsys, "config")
    assert code == 0
    assert table.splitlines()[0].split() == ["NAME", "VALUE", "SOURCE"]
    assert "s3cret" not in table


def test_a_bad_worker_setting_in_the_environment_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JOBS_WORKER_POOL_SIZE", "many")
    code, _, err = run(capsys, "stats", "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert code != 0
    assert "JOBS_WORKER_POOL_SIZE must be an integer" in err
