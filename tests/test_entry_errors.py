"""What `mlplab api`, `mlplab dev` and `mlplab worker` say when they cannot start: settings that cannot
work and a database that cannot be reached each get one line naming the cause, never a traceback."""

from __future__ import annotations

import re
import signal

import pytest
import torch
import uvicorn

from service.cli import main
from service.cli.serve import shared_metrics
from service.settings import Settings, SettingsError, get_settings
from service.store.db import make_engine, migrate, shown_url
from tests.support import free_port

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
        # an empty line in a compose .env: every interface, or "." (whose .db files were deleted)
        ({"MLPLAB_HOST": ""}, "MLPLAB_HOST: set but blank"),
        ({"MLPLAB_METRICS_DIR": " "}, "MLPLAB_METRICS_DIR: set but blank"),
        ({"MLPLAB_LEASE_SECONDS": "inf"}, "MLPLAB_LEASE_SECONDS: Input should be a finite number"),
        # NaN was refused as "less than or equal to 86400"
        ({"MLPLAB_LEASE_SECONDS": "nan"}, "MLPLAB_LEASE_SECONDS: Input should be a finite number"),
        (
            {"MLPLAB_WORKER_THREADS": "100000"},
            "MLPLAB_WORKER_THREADS: Input should be less than or equal to 1024",
        ),
        ({"MLPLAB_CHECKPOINT_SECONDS": "inf"}, "MLPLAB_CHECKPOINT_SECONDS: Input should be a finite number"),
        (
            {"MLPLAB_KEEP_ALIVE_SECONDS": "100000000000"},
            "MLPLAB_KEEP_ALIVE_SECONDS: Input should be less than",
        ),
        # reads left open while the operator believed them protected
        ({"MLPLAB_PROTECT_READS": "true"}, "MLPLAB_PROTECT_READS: true, but MLPLAB_API_TOKEN is not set"),
        # ready, queuing jobs no worker could see
        ({"MLPLAB_DATABASE_URL": "sqlite://"}, "MLPLAB_DATABASE_URL: an in-memory SQLite database"),
        # never equal to a Host header (every request a 400), or no host at all
        ({"MLPLAB_ALLOWED_HOSTS": "http://example.com"}, "'http://example.com' is not a host name"),
        ({"MLPLAB_ALLOWED_HOSTS": " , "}, "MLPLAB_ALLOWED_HOSTS: set but blank"),
        # uvicorn's "[Errno -2] Name or service not known" named no setting
        ({"MLPLAB_HOST": "999.1.1.1"}, "MLPLAB_HOST: '999.1.1.1' is not an IP address"),
        ({"MLPLAB_HOST": "[::1]"}, "MLPLAB_HOST: '[::1]': give an IPv6 address without its brackets"),
        ({"MLPLAB_HOST": "my host"}, "MLPLAB_HOST: 'my host' is not an address or a host name"),
        # a file where a folder belongs: a FileExistsError traceback, or a worker failing every job
        ({"MLPLAB_METRICS_DIR": __file__}, f"MLPLAB_METRICS_DIR: {__file__} is a file, not a folder"),
        ({"MLPLAB_DATA_DIR": __file__}, f"MLPLAB_DATA_DIR: {__file__} is a file, not a folder"),
    ],
    ids=[
        "not-a-url",
        "mysql",
        "lease-1-beat-5",
        "lease-9",
        "blank-host",
        "blank-metrics",
        "lease-inf",
        "lease-nan",
        "threads",
        "checkpoint-inf",
        "keep-alive-huge",
        "reads-without-token",
        "in-memory",
        "host-with-scheme",
        "no-hosts",
        "host-not-an-ip",
        "host-in-brackets",
        "host-with-space",
        "metrics-a-file",
        "data-a-file",
    ],
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
        assert "python -m" not in err, (argv, err)  # named as it was started (mlplab worker)
        assert "Connection refused" in err and "s3cret" not in err and "Traceback" not in err, (argv, err)


def test_a_database_a_newer_mlplab_migrated_stops_every_process_in_one_line(monkeypatch, capsys, tmp_path):
    """A rollback, or an old worker beside upgraded ones: Alembic's 90-line traceback, restarted forever."""
    url = f"sqlite:///{tmp_path / 'newer.db'}"
    migrate(url)
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    engine.dispose()
    monkeypatch.setenv("MLPLAB_DATABASE_URL", url)
    monkeypatch.setenv("MLPLAB_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: pytest.fail("the API started"))
    for argv in STARTS:
        assert _exit_status(argv) == 1, argv
        err = capsys.readouterr().err
        assert "schema is at revision '0099_from_the_future', which this mlplab does not know" in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_a_worker_told_to_train_on_cuda_without_one_does_not_start(monkeypatch, capsys, tmp_path):
    """It started, and failed every torch job it claimed ("Torch not compiled with CUDA enabled")."""
    monkeypatch.setenv("MLPLAB_DATABASE_URL", f"sqlite:///{tmp_path / 'w.db'}")
    monkeypatch.setenv("MLPLAB_TORCH_DEVICE", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on this CPU-only build
    assert _exit_status(["worker"]) == 2
    err = capsys.readouterr().err
    assert "MLPLAB_TORCH_DEVICE: cuda, but this machine's torch sees no CUDA device" in err
    assert not (tmp_path / "w.db").exists()  # refused before it touched the database


def test_a_relative_sqlite_path_is_logged_with_the_file_it_names(monkeypatch, tmp_path):
    """An API and a worker started in two folders each made their own ./var/mlplab.db: the log showed
    the same relative URL for both."""
    monkeypatch.chdir(tmp_path)
    assert (
        shown_url("sqlite:///./var/mlplab.db")
        == f"sqlite:///./var/mlplab.db (= {tmp_path / 'var' / 'mlplab.db'})"
    )
    assert shown_url("sqlite:////data/mlplab.db") == "sqlite:////data/mlplab.db"
    assert shown_url("postgresql+psycopg://me:s3cret@db/mlplab") == "postgresql+psycopg://me:***@db/mlplab"


def test_a_misspelt_setting_is_named_with_the_one_meant(monkeypatch, caplog):
    monkeypatch.setenv("MLPLAB_LEASE_SECOND", "120")
    monkeypatch.setenv("MLPLAB_PUBLISH", "127.0.0.1:8000")  # compose's, not the app's: no warning
    get_settings.cache_clear()
    with caplog.at_level("WARNING"):
        get_settings()
    get_settings.cache_clear()
    said = [r.getMessage() for r in caplog.records]
    assert "MLPLAB_LEASE_SECOND is not a setting and is ignored (did you mean MLPLAB_LEASE_SECONDS?)" in said
    assert not any("MLPLAB_PUBLISH" in line or "MLPLAB_DATA_DIR" in line for line in said)


def test_a_misspelt_setting_in_the_env_file_is_named_too(monkeypatch, tmp_path, caplog):
    """pydantic-settings reads .env as it reads the environment: a typo there was ignored silently."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("MLPLAB_HEARTBEAT_SECOND=2\nMLPLAB_PORT=8123\n")
    get_settings.cache_clear()
    with caplog.at_level("WARNING"):
        assert get_settings().port == 8123
    get_settings.cache_clear()
    said = [r.getMessage() for r in caplog.records]
    assert (
        "MLPLAB_HEARTBEAT_SECOND (.env) is not a setting and is ignored "
        "(did you mean MLPLAB_HEARTBEAT_SECONDS?)" in said
    ), said


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("MLPLAB_LEASE_SECONDS=nan", "MLPLAB_LEASE_SECONDS (.env): Input should be a finite number"),
        ("MLPLAB_PROTECT_READS=true", "MLPLAB_PROTECT_READS (.env): true, but MLPLAB_API_TOKEN is not set"),
    ],
    ids=["parsed", "served"],
)
def test_a_bad_value_in_the_env_file_is_named_as_the_files(monkeypatch, tmp_path, capsys, line, says):
    """The line said MLPLAB_LEASE_SECONDS alone: a value nobody had exported was looked for in the shell."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(line + "\n")
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: pytest.fail("the API started"))
    for argv in STARTS:
        assert _exit_status(argv) == 2, argv
        err = capsys.readouterr().err
        assert says in err, (argv, err)
    name = line.partition("=")[0]
    monkeypatch.setenv(name, line.partition("=")[2])  # the environment's value wins, and is named plainly
    assert _exit_status(["api"]) == 2 and f"{name}: " in capsys.readouterr().err


def test_a_bind_address_that_names_nothing_stops_the_api_in_one_line(monkeypatch, capsys, tmp_path):
    """--host bypasses the settings; a name that resolves to nothing was uvicorn's bare errno, and `dev`
    had started its worker by then."""
    monkeypatch.setenv("MLPLAB_DATABASE_URL", f"sqlite:///{tmp_path / 'mlplab.db'}")
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: pytest.fail("the API started"))
    monkeypatch.setattr(
        "service.cli.serve.WorkerSupervisor.start", lambda self: pytest.fail("a worker started")
    )
    for argv in (["api", "--host", "999.1.1.1"], ["dev", "--host", "nowhere.invalid"]):
        assert _exit_status(argv) == 1, argv
        err = capsys.readouterr().err
        assert re.fullmatch(
            rf"mlplab {argv[0]}: cannot bind to '{argv[2]}' \(MLPLAB_HOST or --host\): .+\n", err
        ), err


@pytest.mark.parametrize("port", ["0", "70000", "-1", "http"])
def test_a_port_that_is_not_one_is_refused_by_name(capsys, port):
    for argv in (["api", "--port", port], ["dev", "--port", port]):
        assert _exit_status(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"argument --port: {port!r} is not a port: Input should be " in err, err


def test_the_metrics_folder_is_emptied_of_prometheus_files_alone(tmp_path, monkeypatch):
    """MLPLAB_METRICS_DIR=/data beside /data/mlplab.db: every *.db was deleted at the API's start."""
    (tmp_path / "mlplab.db").write_bytes(b"SQLite format 3")
    stale = [tmp_path / name for name in ("counter_41.db", "histogram_41.db", "gauge_livesum_41.db")]
    for path in stale:
        path.write_bytes(b"")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # shared_metrics sets it: undone after
    with shared_metrics(Settings(metrics_dir=tmp_path), workers=2):
        assert (tmp_path / "mlplab.db").read_bytes() == b"SQLite format 3"
        assert not any(path.exists() for path in stale)


def test_a_workers_health_check_creates_no_database(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "nowhere" / "mlplab.db"
    monkeypatch.setenv("MLPLAB_DATABASE_URL", f"sqlite:///{missing}")
    get_settings.cache_clear()
    try:
        assert main(["health", "--worker"]) == 1
    finally:
        get_settings.cache_clear()
    assert capsys.readouterr().err == f"mlplab health: no database at {missing} (MLPLAB_DATABASE_URL)\n"
    assert not missing.parent.exists()


def test_the_apis_health_check_says_where_it_asked(monkeypatch, capsys):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("MLPLAB_PORT", str(port))
    get_settings.cache_clear()
    try:
        assert main(["health"]) == 1
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert err.startswith(
        f"mlplab health: no answer from http://127.0.0.1:{port}/readyz (this machine's API"
    ), err
    assert "Connection refused" in err and "Traceback" not in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and re.fullmatch(r"mlplab \d+\.\d+\.\d+\n", capsys.readouterr().out)


def test_the_command_lines_client_commands_are_not_held_to_a_servers_settings(monkeypatch):
    """`mlplab jobs --token ...` in a shell that also serves with MLPLAB_PROTECT_READS (and no token in the
    environment) refused to run: it reads MLPLAB_URL and the token, nothing a server needs."""
    monkeypatch.setenv("MLPLAB_PROTECT_READS", "true")
    monkeypatch.setenv("MLPLAB_URL", "http://api.test:9000")
    get_settings.cache_clear()
    try:
        assert get_settings(serving=False).url == "http://api.test:9000"
        with pytest.raises(SettingsError, match="MLPLAB_PROTECT_READS: true, but MLPLAB_API_TOKEN"):
            get_settings()
    finally:
        get_settings.cache_clear()


def test_a_client_command_names_a_misspelt_setting_too(monkeypatch, caplog):
    """MLPLAB_API_TOKN=secret mlplab cancel 1: a 401 and no word of the misspelling, which only the
    servers warned of, though the token and the URL are what the client commands read."""
    monkeypatch.setenv("MLPLAB_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("MLPLAB_API_TOKN", "secret")
    with caplog.at_level("WARNING"):
        assert _exit_status(["jobs"]) == 1
    said = [r.getMessage() for r in caplog.records]
    assert "MLPLAB_API_TOKN is not a setting and is ignored (did you mean MLPLAB_API_TOKEN?)" in said, said
