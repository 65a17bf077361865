"""The `mlplab` command's parts that need no server: its flags and its reading of event streams."""

from __future__ import annotations

import io
import logging
import os
import re
import shlex
import subprocess
import sys

import pytest
import uvicorn
from pydantic import ValidationError
from rich.console import Console

from service.cli import main
from service.cli.client import ProgressBar
from service.cli.http import Event, parse_sse, split_lines
from service.cli.protocol import HttpProtocol
from service.cli.studies import study_table
from service.ml.spec import TrainSpec
from service.settings import Settings, get_settings
from tests.support import REPO


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


FLOAT_FLAGS = [f"--{n.replace('_', '-')}" for n, f in TrainSpec.model_fields.items() if f.annotation is float]


@pytest.mark.parametrize("flag", FLOAT_FLAGS)
@pytest.mark.parametrize("number", ["nan", "inf", "-Infinity", "1e999"])
def test_every_float_flag_refuses_a_number_json_cannot_carry(capsys, flag, number):
    with pytest.raises(SystemExit) as exit_:
        main(["submit", "--backend", "numpy", f"{flag}={number}", "--url", "http://127.0.0.1:9"])
    assert exit_.value.code == 2
    assert f"{flag}: {number!r}: give a finite number, e.g. 0.01" in capsys.readouterr().err


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_early_stopping_refuses_a_number_json_cannot_carry(capsys, number):
    text = f'{{"patience": 3, "min_delta": {number}}}'
    with pytest.raises(SystemExit) as exit_:
        main(["submit", "--backend", "numpy", "--early-stopping", text, "--url", "http://127.0.0.1:9"])
    assert exit_.value.code == 2 and f"{text!r}: {number} is not a finite number" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["sweep", "grid.json"], ["study", "study.json"]])
@pytest.mark.parametrize(
    ("seconds", "advice"),
    [("nan", "finite number"), ("inf", "finite number"), ("0", "number of seconds above 0")],
)
def test_watch_intervals_are_finite_seconds_above_zero(capsys, command, seconds, advice):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--watch", "--interval", seconds])
    assert exit_.value.code == 2 and f"--interval: {seconds!r}: give a {advice}" in capsys.readouterr().err


@pytest.mark.parametrize("top", ["-1", "0", "11", "two"])
def test_predict_lists_from_one_to_ten_classes(capsys, top):
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "digit.png", "--model", "1", "--top", top])
    assert exit_.value.code == 2
    assert f"--top: {top!r}: give a whole number from 1 to 10" in capsys.readouterr().err


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


def test_api_flags_go_to_uvicorn_and_an_open_api_is_logged_once(monkeypatch, caplog, tmp_path):
    for name in ("MLPLAB_API_TOKEN", "MLPLAB_HOST", "MLPLAB_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLPLAB_DATABASE_URL", f"sqlite:///{tmp_path / 'api.db'}")  # not the checkout's ./var
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
        "service.cli.serve:process_app",  # each process ends with its supervisor
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
    # the serving's own (a first start's new database is the store's to warn of)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "mlplab"]
    assert warnings == [
        "MLPLAB_API_TOKEN is not set: anyone on the network can submit jobs to http://0.0.0.0:8001"
    ]


@pytest.mark.parametrize(
    ("token", "why"),
    [("", "set but blank"), ("   ", "set but blank"), ("\t", "set but blank")]
    + [(bad, "has a space or a character outside ASCII") for bad in ("pässwort", "my secret", "tab\there")],
)
def test_a_token_no_client_can_send_stops_every_entry_naming_the_setting(monkeypatch, capsys, token, why):
    """An empty line in a compose .env gives MLPLAB_API_TOKEN=""; it must not mean "no token". One that a
    header cannot carry as typed (curl sends UTF-8, the server reads latin-1) would lock every client out."""
    monkeypatch.setenv("MLPLAB_API_TOKEN", token)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: pytest.fail("the API started"))
    with pytest.raises(ValidationError, match=why):
        Settings(api_token=token)
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
        assert f"MLPLAB_API_TOKEN: {why}" in err and "Traceback" not in err, (argv, err)
        assert token.strip() not in err or not token.strip(), err  # a secret is never echoed


def test_a_token_flag_no_header_can_carry_is_one_line(monkeypatch, capsys):
    monkeypatch.delenv("MLPLAB_API_TOKEN", raising=False)
    get_settings.cache_clear()
    assert main(["--token", "pässwort", "cancel", "9"]) == 2
    assert capsys.readouterr().err == (
        "mlplab: --token has a space or a character outside ASCII: a token is letters, digits and ASCII punctuation\n"
    )


def _watched(terminal: bool) -> str:
    """What `mlplab watch` writes to stderr of a job's stream: a status (sent again on reconnecting), two
    epochs' progress, one epoch."""
    out = io.StringIO()
    job = {"id": 7, "status": "queued", "spec": {"epochs": 2}}
    bar = ProgressBar(job, Console(file=out, force_terminal=terminal, width=100))
    bar.update("status", {"status": "running", "attempts": 2})
    bar.update("progress", {"epoch": 1, "step": 10, "steps": 40, "loss": 0.5})
    bar.update("epoch", EPOCH)
    bar.update("status", {"status": "running", "attempts": 2})  # resent after a reconnection
    bar.update("progress", {"epoch": 2, "step": 30, "steps": 40, "loss": 0.25})
    bar.close()
    return out.getvalue()


EPOCH = {"epoch": 1, "loss": 0.4, "train_accuracy": 0.9, "validation_accuracy": 0.88, "validation_loss": 0.41}
EPOCH |= {"test_accuracy": 0.87, "seconds": 1.23}


def test_progress_is_a_line_per_event_in_a_pipe_and_a_live_bar_on_a_terminal():
    lines = [
        "job 7 running (attempt 2)",
        "epoch 1/2: loss 0.4000, validation 88.00% (loss 0.4100), on samples: train 90.00%, test 87.00% (1.2 s)",
    ]
    assert _watched(terminal=False) == "\n".join(lines) + "\n"
    live = _watched(terminal=True)
    assert all(line in live for line in lines)
    assert "epoch 2/2" in live and "75%" in live and "step 30/40  loss 0.2500" in live


def test_a_studys_table_is_best_first_on_validation_and_labels_test_final():
    trial = {"status": "succeeded", "epochs": 3, "params": {"learning_rate": 0.01}}
    study = {
        "best": {"number": 1},
        "trials": [
            trial | {"number": 0, "job_id": 4, "validation_accuracy": 0.90, "test_accuracy": 0.95},
            trial | {"number": 1, "job_id": 5, "validation_accuracy": 0.92, "test_accuracy": 0.91},
        ],
    }
    header, *rows = study_table(study).splitlines()
    assert re.split(r"\s{2,}", header)[:6] == [
        "TRIAL",
        "JOB",
        "STATUS",
        "EPOCHS",
        "VALIDATION",
        "TEST (FINAL)",
    ]
    assert [row.split()[:3] for row in rows] == [["1", "*", "5"], ["0", "4", "succeeded"]]


def test_a_trials_parameters_read_as_values_not_python():
    stopping = {"early_stopping": {"patience": 1, "min_delta": 0.0}, "learning_rate": 0.0266123456}
    row = study_table({"best": None, "trials": [_trial(params=stopping)]}).splitlines()[1]
    assert row.endswith("early_stopping=patience=1,min_delta=0 learning_rate=0.0266123"), row
    row = study_table({"best": None, "trials": [_trial(params={"early_stopping": None})]}).splitlines()[1]
    assert row.endswith("early_stopping=off"), row  # as the pages say it (was "-")


def _trial(**fields):
    trial = {"number": 0, "job_id": 4, "status": "succeeded", "epochs": 1, "validation_accuracy": 0.9}
    return trial | {"test_accuracy": 0.9} | fields


@pytest.mark.parametrize("rows", [1_000, 200_000])  # 10 kB: its last block went out at the exit
def test_a_closed_pipe_ends_the_command_quietly(rows):
    """`mlplab jobs | head -1` printed a BrokenPipeError traceback once head had its line."""
    script = (
        "import sys, time\n"
        "from service.cli import client, main\n"
        # the rows, then a pause in which head takes its line and goes: what is left meets a closed pipe
        f"client.cmd_jobs = lambda api, args: [print('a job row') for _ in range({rows})] and time.sleep(0.5) or 0\n"
        "sys.exit(main(['jobs']))\n"
    )
    shell = f"{shlex.quote(sys.executable)} -c {shlex.quote(script)} | head -1; exit ${{PIPESTATUS[0]}}"
    unbuffered = {
        k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"
    }  # stdout in blocks, as usual
    done = subprocess.run(
        ["bash", "-c", shell], capture_output=True, text=True, timeout=60, cwd=REPO, env=unbuffered
    )
    assert (done.returncode, done.stdout, done.stderr) == (141, "a job row\n", "")


def test_submits_help_gives_each_fields_limits_and_an_early_stopping_example(capsys):
    with pytest.raises(SystemExit):
        main(["submit", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    assert "--epochs EPOCHS Passes over the training images. (1 to 200) (default 15)" in text
    assert "--batch-size BATCH_SIZE Images a step, at most: an epoch's images are split into" in text
    assert "(above 0, at most 10)" in text and "(at least 0, below 1)" in text  # learning rate, momentum
    assert """e.g. '{"patience": 3}'""" in text
    start = text.index("--learning-rate LEARNING_RATE Step")
    learning_rate = text[start : text.index("--lr-schedule {", start)]
    assert "0.001 for adam" in learning_rate and "(default" not in learning_rate  # not sgd's 0.1 for all


def test_a_tiny_jobs_seconds_are_not_shown_as_nought():
    """A 500-image epoch of 0.018 s was shown '(0.0 s)', and a model's training time 0.0."""
    from service.cli.client import seconds_figure

    shown = [seconds_figure(s) for s in (0.018, 0.5, 0.102, 0.159, 1.0, 26.44, 0.0)]
    assert shown == ["0.018", "0.50", "0.10", "0.16", "1.0", "26.4", "0"]  # "0.1" beside "0.16" read short


@pytest.mark.parametrize(
    "pieces",
    [
        ["event: end\r", "data: 1\r\r"],  # \r alone ends a line; the stream's last one too
        ["event: end\r", "\ndata: 1\r\n", "\r\n"],  # a \r\n split between two pieces is one break
        ["event: e", "nd\ndata: 1\n\n"],
    ],
)
def test_an_event_streams_lines_are_split_as_its_server_sent_them(pieces):
    assert list(parse_sse(split_lines(pieces, 100))) == [Event("end", 1, None)]
    with pytest.raises(OverflowError):
        list(split_lines(["data: ", "x" * 60, "x" * 60], 100))


def test_a_configuration_without_a_result_says_whether_its_runs_diverged():
    from service.cli.client import failed_text

    assert failed_text({"failed": 3, "diverged": 3}) == "3 diverged"
    assert failed_text({"failed": 3, "diverged": 2}) == "3 failed (2 diverged)"
    assert failed_text({"failed": 1, "diverged": 0}) == "1 failed"


def test_a_sweeps_varied_column_names_its_factors_not_what_follows_them_nor_its_seeds_as_one():
    from service.cli.client import varied_text

    sweep = {
        "grid": {
            "optimizer": ["sgd", "adam"],
            "learning_rate": [0.1, 0.001],
            "l2": [0, 0.01],
            "seed": [0, 1, 2],
        },
        "follows": {"learning_rate": "optimizer"},
    }
    assert varied_text(sweep) == "optimizer (+learning_rate), l2; 3 seeds"
    assert varied_text({"grid": {}, "follows": {}}) == "-"
