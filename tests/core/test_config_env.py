"""`JobsConfig.from_env`: every setting but `backoff` from a `JOBS_*` variable."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from jobs_core import ENV_PREFIX, InvalidOptions, JobsConfig


def test_unset_variables_keep_the_defaults_and_others_are_ignored() -> None:
    """`JOBS_DB` and the like belong to the command line, not to the config."""
    assert JobsConfig.from_env({"JOBS_DB": "sqlite:///x.db", "HOME": "/root"}) == JobsConfig()


def test_every_setting_but_backoff_is_read() -> None:
    environ = {
        "JOBS_MAX_PAYLOAD_SIZE": "2048",
        "JOBS_MAX_RETRIES": "5",
        "JOBS_LOCK_DURATION": "10m",
        "JOBS_LEASE_DURATION": "45s",
        "JOBS_POLL_INTERVAL": "250ms",
        "JOBS_WORKER_POOL_SIZE": " 20 ",
        "JOBS_BATCH_SIZE": "7",
        "JOBS_SHUTDOWN_GRACE": "0",
        "JOBS_BACKOFF": "ignored: not a setting text can hold",
    }
    config = JobsConfig.from_env(environ)
    assert config == JobsConfig(
        max_payload_size=2048,
        max_retries=5,
        lock_duration=timedelta(minutes=10),
        lease_duration=timedelta(seconds=45),
        poll_interval=timedelta(milliseconds=250),
        worker_pool_size=20,
        batch_size=7,
        shutdown_grace=timedelta(0),
    )
    read = {ENV_PREFIX + field.name.upper() for field in attrs.fields(JobsConfig)}
    assert read - environ.keys() == set(), "a setting is missing from this test"


def test_overrides_win_over_the_environment() -> None:
    config = JobsConfig.from_env({"JOBS_BATCH_SIZE": "oops"}, batch_size=3)
    assert config.batch_size == 3


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"JOBS_BATCH_SIZE": "ten"}, "JOBS_BATCH_SIZE must be an integer, got 'ten'"),
        ({"JOBS_BATCH_SIZE": "0"}, "JOBS_BATCH_SIZE: batch_size must be positive, got 0"),
        ({"JOBS_POLL_INTERVAL": "fast"}, "JOBS_POLL_INTERVAL: poll_interval must be a duration"),
        ({"JOBS_LOCK_DURATION": "0s"}, "JOBS_LOCK_DURATION: lock_duration must be positive"),
    ],
)
def test_a_bad_value_names_its_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidOptions) as caught:
        JobsConfig.from_env(environ)
    assert str(caught.value).startswith(message)


def test_os_environ_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_MAX_RETRIES", "9")
    assert JobsConfig.from_env().max_retries == 9
