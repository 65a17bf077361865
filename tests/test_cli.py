"""The `mlplab` command's parts that need no server: its flags and its reading of event streams."""

from __future__ import annotations

import logging
import os

import pytest
import uvicorn
from pydantic import ValidationError

from service.cli import main
from service.cli.http import Event, parse_sse
from service.cli.protocol import HttpProtocol
from service.ml.spec import TrainSpec
from service.settings import Settings, get_settings


def test_submit_has_a_flag_for_every_spec_field(capsys):
    with pytest.raises(SystemExit):
        main(["submit", "--help"])
    help_text = capsys.readouterr().out
    for field in TrainSpec.model_fields:
        assert f"--{field.replace('_', '-')}" in help_text


def test_submit_refuses_a_malformed_layer_list_before_calling_the_api(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["submit", "--backend", "numpy", "--hidden-layers", "500,x", "--url", "http://127.0.0.1:9"])
    assert exit_.value.code == 2
    assert "give comma-separated integers, e.g. 500,250,100" in capsys.readouterr().err


def test_submit_reads_early_stopping_as_a_json_object(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["submit", "--backend", "numpy", "--early-stopping", "3", "--url", "http://127.0.0.1:9"])
    assert exit_.value.code == 2
    assert """'3': give a JSON object, e.g. '{"patience": 3}'""" in capsys.readouterr().err


def test_events_are_read_from_the_stream_format():
    lines = [
        "retry: 2000",
        "",
        ": keep-alive",
        "",
        "event: progress",
        "id: 10-0",
        'data: {"step": 10}',
        "",
        "event: end",
        "data: [1,",
        "data: 2]",
        "",
    ]
    assert list(parse_sse(lines)) == [Event("progress", {"step": 10}, "10-0"), Event("end", [1, 2], None)]


def test_api_flags_go_to_uvicorn_and_an_open_api_is_logged_once(monkeypatch, caplog):
    for name in ("MLPLAB_API_TOKEN", "MLPLAB_HOST", "MLPLAB_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLPLAB_PORT", "8001")
    monkeypatch.setenv("MLPLAB_KEEP_ALIVE_SECONDS", "3")
    monkeypatch.setenv("MLPLAB_MAX_CONNECTIONS", "77")
    served: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.update(kwargs, app=app))
    get_settings.cache_clear()
    try:
        with caplog.at_level(logging.INFO, logger="mlplab"):
            assert main(["api", "--host", "0.0.0.0", "--workers", "2"]) == 0
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # set for uvicorn's processes, now gone
        get_settings.cache_clear()
    assert (served["app"], served["host"], served["port"], served["workers"]) == (
        "service.main:create_app",
        "0.0.0.0",
        8001,  # the flag overrides MLPLAB_HOST; MLPLAB_PORT is kept
        2,
    )
    assert (served["timeout_keep_alive"], served["limit_concurrency"], served["http"]) == (
        3,
        77,
        HttpProtocol,
    )
    assert (
        "MLPLAB_HOST" not in os.environ and os.environ["MLPLAB_PORT"] == "8001"
    )  # settings not passed by env
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "MLPLAB_API_TOKEN is not set: anyone on the network can submit jobs to http://0.0.0.0:8001"
    ]


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_a_blank_token_stops_every_entry_naming_the_setting(monkeypatch, capsys, blank):
    """An empty line in a compose .env gives MLPLAB_API_TOKEN=""; it must not mean "no token"."""
    monkeypatch.setenv("MLPLAB_API_TOKEN", blank)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: pytest.fail("the API started"))
    with pytest.raises(ValidationError, match="blank"):
        Settings(api_token=blank)
    # `worker` runs `python -m workers`'s main, whose own parser exits
    for argv in (["api"], ["dev"], ["worker"], ["jobs"], ["submit", "--backend", "numpy"]):
        get_settings.cache_clear()
        try:
            assert main(argv) == 2, argv
        except SystemExit as exit_:
            assert exit_.code == 2, argv
        finally:
            get_settings.cache_clear()
        err = capsys.readouterr().err
        assert "MLPLAB_API_TOKEN: set but blank" in err and "Traceback" not in err, (argv, err)
