"""`jobs bulk requeue|delete|cancel`: the API's selection and answer, on a real store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs_http.__main__ import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _enqueue(db: str, capsys: pytest.CaptureFixture[str], topic: str) -> str:
    code, out, err = run(capsys, "enqueue", topic, "{}", "--db", db, "--json")
    assert code == 0, err
    return str(json.loads(out)["id"])


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def test_bulk_cancel_by_topic_with_a_dry_run_first(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        _enqueue(db, capsys, "mail")
    _enqueue(db, capsys, "sms")
    code, out, _ = run(capsys, "bulk", "cancel", "--topic", "mail", "--dry-run", "--db", db)
    assert code == 0
    assert out.split() == ["METRIC", "VALUE", "matched", "3", "changed", "0", "skipped", "0"]
    code, out, _ = run(capsys, "bulk", "cancel", "--topic", "mail", "--json", "--db", db)
    assert (code, json.loads(out)) == (0, {"matched": 3, "changed": 3, "skipped": 0})
    _, out, _ = run(capsys, "stats", "--json", "--db", db)
    assert (json.loads(out)["cancelled"], json.loads(out)["pending"]) == (3, 1)


def test_bulk_by_ids_skips_what_the_action_may_not_touch(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = _enqueue(db, capsys, "mail"), _enqueue(db, capsys, "mail")
    assert run(capsys, "cancel", first, "--db", db)[0] == 0
    argv = ["bulk", "requeue", "--id", first, "--id", second, "--json", "--db", db]
    code, out, _ = run(capsys, *argv)
    assert (code, json.loads(out)) == (0, {"matched": 2, "changed": 1, "skipped": 1})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bulk", "delete"], "needs ids or a filter"),
        (["bulk", "delete", "--status", "failed", "--before", "soon"], "--before"),
        (["bulk", "delete", "--status", "failed", "--max", "0"], "max_jobs must be from 1"),
    ],
)
def test_a_bad_selection_is_an_error(
    db: str, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, *argv, "--db", db)
    assert code == 1
    assert message in err
