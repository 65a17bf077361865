"""What `mlplab api`, `mlplab dev` and `mlplab worker` say when they cannot start: settings that cannot
work and a database that cannot be reached each get one line naming the cause, never a traceback."""

from __future__ import annotations

import signal

import pytest
import uvicorn

from service.cli import main
from service.settings import get_settings

STARTS = (["api"], ["dev"], ["worker"])


@pytest.fixture(autouse=True)
def keep_signal_handlers(monkeypatch):
    """`mlplab worker` installs its SIGTERM and SIGINT handlers: not in the test process."""
    monkeypatch.setattr(signal, "signal", lambda signum, handler: None)


def _exit_status(argv: list[str]) -> int:
    get_settings.cache_clear()
    try:
        return main(argv)
    except SystemExit as exit_:  # the worker's own parser, and a database that cannot be readied, exit
        assert isinstance(exit_.code, int), exit_.code
        return exit_.code
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"MLPLAB_DATABASE_URL": "garbage"}, "MLPLAB_DATABASE_URL: Could not parse"),
        ({"MLPLAB_DATABASE_URL": "mysql://me@db/mlplab"}, "SQLite or PostgreSQL, not mysql"),
        # a lease that can lapse between two heartbeats: healthy workers took each other's jobs until it failed
        (
            {"MLPLAB_LEASE_SECONDS": "1", "MLPLAB_HEARTBEAT_SECONDS": "5"},
            "MLPLAB_HEARTBEAT_SECONDS: 5 s is more",
        ),
        ({"MLPLAB_LEASE_SECONDS": "9"}, "more than half of MLPLAB_LEASE_SECONDS (9 s)"),
    ],
    ids=["not-a-url", "mysql", "lease-1-beat-5", "lease-9"],
)
def test_settings_that_cannot_work_stop_every_process_naming_the_setting(monkeypatch, capsys, env, says):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: pytest.fail("the API started"))
    for argv in STARTS:
        assert _exit_status(argv) == 2, argv
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, (argv, err)


def test_a_database_that_cannot_be_reached_stops_every_process_in_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MLPLAB_DATABASE_URL", "postgresql+psycopg://me:s3cret@127.0.0.1:1/mlplab")
    monkeypatch.setenv("MLPLAB_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: pytest.fail("the API started"))
    for argv in STARTS:
        assert _exit_status(argv) == 1, argv
        err = capsys.readouterr().err
        assert "database error on postgresql+psycopg://me:***@127.0.0.1:1/mlplab" in err, (argv, err)
        assert "Connection refused" in err and "s3cret" not in err and "Traceback" not in err, (argv, err)
