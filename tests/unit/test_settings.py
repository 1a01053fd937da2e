"""Settings read once from the environment, and the engine choice that uses them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import InputError
from runner.execution.executor import choose_engine, usable_cores
from runner.job.run import engines
from runner.settings import Settings, safe_url
from runner.vocab import Engine, EngineChoice


def test_defaults_and_every_variable() -> None:
    assert Settings.from_env({}) == Settings()
    got = Settings.from_env({
        "RUNNER_HOME": "/srv/runner", "RUNNER_DB_URL": "postgresql+psycopg://db/runner",
        "RUNNER_BROKER_URL": "redis://:pw@broker:6379/0", "RUNNER_RESULT_URL": "redis://r/1",
        "RUNNER_ROUTE_KEY": "region", "RUNNER_VISIBILITY_TIMEOUT": "600",
        "RUNNER_WORKER_LOST_AFTER": "7.5", "RUNNER_LAB_INDEX": "/tmp/labs",
        "RUNNER_LAB_READY_TIMEOUT": "30", "RUNNER_LOCK_DIR": "/var/lock/runner",
        "RUNNER_DB_RETRY": "45", "RUNNER_TWIN": "night-twin"})
    assert got == Settings(
        home=Path("/srv/runner"), db_url="postgresql+psycopg://db/runner",
        broker_url="redis://:pw@broker:6379/0", result_url="redis://r/1", route_key="region",
        visibility_timeout=600.0, worker_lost_after=7.5, lock_dir=Path("/var/lock/runner"),
        lab_index=Path("/tmp/labs"), lab_ready_timeout=30.0, db_retry=45.0,
        twin="night-twin")
    assert got.results_backend == "redis://r/1"
    assert Settings().broker == "redis://127.0.0.1:6379/0" and Settings().broker_url is None


@pytest.mark.parametrize(("value", "expected"), [("soon", "expected a number of seconds"),
                                                 ("0", "expected at least 1")])
def test_a_bad_value_names_the_variable(value: str, expected: str) -> None:
    with pytest.raises(InputError) as info:
        Settings.from_env({"RUNNER_WORKER_LOST_AFTER": value})
    assert str(info.value) == f"environment variable RUNNER_WORKER_LOST_AFTER={value!r}: " \
                              f"{expected}"


@pytest.mark.parametrize("value", ["a twin", "-x", "a/b", "x" * 101])
def test_a_bad_twin_name_names_the_variable(value: str) -> None:
    with pytest.raises(InputError) as info:
        Settings.from_env({"RUNNER_TWIN": value})
    assert str(info.value).startswith("environment variable RUNNER_TWIN=")
    assert "expected a twin's name" in str(info.value)


def test_a_bad_value_stops_the_cli_with_exit_code_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "runner", "history"], capture_output=True,
                          text=True, check=False, cwd=tmp_path,
                          env={"RUNNER_VISIBILITY_TIMEOUT": "1h", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert "RUNNER_VISIBILITY_TIMEOUT='1h': expected a number of seconds" in proc.stderr


def test_database_url_defaults_under_home(tmp_path: Path) -> None:
    url = Settings(home=tmp_path / "h").database_url()
    assert url == f"sqlite:///{tmp_path / 'h' / 'results.db'}" and (tmp_path / "h").is_dir()
    assert Settings(db_url="sqlite:///x.db").database_url() == "sqlite:///x.db"


def test_safe_url_hides_passwords_also_inside_messages() -> None:
    assert safe_url("redis://:s3cret@host:6379/0") == "redis://:****@host:6379/0"
    assert safe_url("Error connecting to redis://user:pw@h:1/0.") == \
        "Error connecting to redis://user:****@h:1/0."


def test_engine_choice() -> None:
    assert choose_engine(EngineChoice.LOCAL, None, 10_000) == (Engine.LOCAL, None)
    assert choose_engine(EngineChoice.CELERY, None, 3) == (Engine.CELERY, None)
    assert choose_engine(EngineChoice.AUTO, None, 10) == (Engine.LOCAL, None)
    assert choose_engine(EngineChoice.AUTO, 1, 10_000) == (Engine.LOCAL, None)
    assert choose_engine(EngineChoice.AUTO, 2, 10) == (Engine.PROCESSES, 2)
    assert choose_engine(EngineChoice.PROCESSES, 4, 3) == (Engine.PROCESSES, 3)
    if usable_cores() > 1:
        assert choose_engine(EngineChoice.AUTO, None, 64 * usable_cores())[0] \
            is Engine.PROCESSES
    assert engines().names() == ["local", "processes", "celery"]


def test_db_retry_may_be_0_but_not_negative() -> None:
    assert Settings.from_env({"RUNNER_DB_RETRY": "0"}).db_retry == 0.0
    assert Settings().db_retry == 300.0
    with pytest.raises(InputError) as info:
        Settings.from_env({"RUNNER_DB_RETRY": "-5"})
    assert str(info.value) == "environment variable RUNNER_DB_RETRY='-5': expected at least 0"
