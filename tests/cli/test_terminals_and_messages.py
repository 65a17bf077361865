"""What a user of `mlplab` met: tables cut on a narrow terminal, a study's "best so far" ahead of the
trials printed, tracebacks on a terminal that is not UTF-8, blank flags taken as unset, messages that named
the wrong thing, and flags without help."""

from __future__ import annotations

import io
import json
import re
import sys

import httpx
import pytest
import uvicorn

from service.cli import main
from service.cli.http import ApiClient
from service.errors import PROBLEM_JSON
from tests.cli.conftest import mlplab
from tests.cli.test_sweep import _configuration, _summary
from tests.factories import job_body

ANSI = re.compile(r"\x1b\[[0-9;]*m")
SPEC = "numpy,mnist,784-500-250-100-10,relu,he,adam,lr=0.001,cosine,batch=64,epochs=15"
JOB = {"id": 7, "name": SPEC, "status": "succeeded", "spec": {"epochs": 3}, "attempts": 1}
JOB |= {"progress": {"epoch": 3, "epochs": 3, "step": 2811, "steps": 2811, "loss": 0.1}}
JOB |= {"train_accuracy": 0.9731, "validation_accuracy": 0.9412, "test_accuracy": 0.9387}
MODEL = {"id": 7, "dataset": "fashion-mnist", "backend": "numpy", "hidden_layers": [500, 250, 100]}
MODEL |= {"activation": "relu", "init": "he", "optimizer": "adam", "learning_rate": 0.001}
MODEL |= {"lr_schedule": "cosine", "epochs": 15, "batch_size": 64, "train_limit": None, "seconds": 123.4}
MODEL |= {"l2": 0.0, "seed": 0}
MODEL |= {"train_accuracy": 0.9731, "validation_accuracy": 0.9412, "test_accuracy": 0.9387}
MODEL |= {"aliases": ["champion", "candidate"]}


def _serve(elsewhere, answers: dict[str, object]) -> list[str]:
    """Answer each path with its JSON; the paths asked, in order."""
    asked: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(200, json=answers[request.url.path])

    elsewhere(server)
    return asked


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        ("jobs", {"/jobs": {"data": [JOB], "count": 1}}),
        ("models", {"/models": {"data": [MODEL], "count": 1, "ranked_by": "validation_accuracy"}}),
    ],
)
def test_a_narrow_terminal_keeps_every_figure_whole(elsewhere, capsys, monkeypatch, command, answer):
    """On 80 columns every column was cut to an ellipsis: `ID DA… BA… HI…`, no accuracy readable."""
    _serve(elsewhere, answer)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    status, out, err = mlplab(capsys, "--url", "http://api.test", command)
    text = ANSI.sub("", out)
    assert status == 0, err
    assert "…" not in text and all(figure in text for figure in ("94.12%", "93.87%")), text
    if command == "jobs":  # the spec wraps, so that the table fits the terminal
        assert max(len(line) for line in text.splitlines()) <= 80, text
        assert SPEC not in text and SPEC in "".join(line.split()[-1] for line in text.splitlines()[1:])


def _trial(number: int, status: str, validation: float | None) -> dict:
    trial = {"number": number, "job_id": number + 10, "status": status, "epochs": 1, "params": {"l2": 0.1}}
    return trial | {"validation_accuracy": validation, "test_accuracy": validation}


def test_a_studys_watch_says_the_best_of_the_trials_printed_so_far(elsewhere, capsys, tmp_path):
    """Trial 0's line named trial 2 best, before trial 2 had been printed."""
    trials = [
        _trial(0, "succeeded", 0.80),
        _trial(1, "failed", None),
        _trial(2, "succeeded", 0.824),
        _trial(3, "succeeded", 0.81),
    ]
    study = {"id": 1, "status": "finished", "config": {"trials": 4, "parallelism": 2}, "trials": trials}
    study |= {"best": trials[2], "counts": {"succeeded": 3, "failed": 1}, "epochs_trained": 1}
    _serve(elsewhere, {"/studies": study, "/studies/1/importance": {"importance": {}, "trials": 3}})
    (tmp_path / "study.json").write_text("{}")
    status, out, err = mlplab(
        capsys, "--url", "http://api.test", "study", str(tmp_path / "study.json"), "--watch"
    )
    assert status == 0, err
    best = [line.split("| best: ")[-1] for line in out.splitlines() if line.startswith("trial")]
    assert best == ["trial 0 80.00%", "trial 0 80.00%", "trial 2 82.40%", "trial 2 82.40%"], out
    assert ", 1 epoch trained" in out  # was "1 epochs"
    assert "epochs" not in out and out.count("    1 epoch  validation") == 4, out


def test_study_show_without_an_id_is_a_usage_mistake(elsewhere, capsys):
    _serve(elsewhere, {})
    status, out, err = mlplab(capsys, "--url", "http://api.test", "study", "show")
    assert (status, out, err) == (2, "", "mlplab: study show needs a study id: mlplab study show ID\n")


def test_a_terminal_that_is_not_utf8_gets_question_marks_not_a_traceback(elsewhere, monkeypatch):
    """λ in submit's help, the interval bars ●━· of `sweeps ID`: a UnicodeEncodeError each."""
    configurations = [
        _configuration(0.1, [1, 2], _summary(0.58, 0.55, 0.61), _summary(0.57, 0.54, 0.60)),
        _configuration(0.3, [3, 4], _summary(0.50, 0.45, 0.55), _summary(0.49, 0.44, 0.54), 0.01, False),
    ]
    sweep = {"id": "5eed", "count": 4, "grid": {"learning_rate": [0.1, 0.3]}, "jobs": []}
    sweep |= {"ranked_by": "validation_accuracy", "configurations": configurations}
    _serve(elsewhere, {"/sweeps/5eed": sweep})
    ascii_out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", ascii_out)
    assert main(["--url", "http://api.test", "sweeps", "5eed"]) == 0
    with pytest.raises(SystemExit) as exit_:
        main(["submit", "--help"])
    assert exit_.value.code == 0
    ascii_out.flush()
    written = ascii_out.buffer.getvalue().decode("ascii")
    assert "?" in written and "--epochs" in written and "58.00%" in written


@pytest.mark.parametrize("flag", ["--token", "--url"])
@pytest.mark.parametrize("value", ["", "  "])
def test_a_blank_token_or_url_flag_is_refused_naming_it(api, capsys, flag, value):
    """--token "" ran without a token, --url "" fell back to MLPLAB_URL."""
    status, out, err = mlplab(capsys, "jobs", flag, value)
    assert (status, out) == (2, "") and err.startswith(f"mlplab: {flag} is blank"), err
    assert api.connected == []


def test_a_file_that_is_not_json_says_so_and_standard_input_is_named(api, capsys, tmp_path, monkeypatch):
    (tmp_path / "empty.json").write_text("")
    status, _, err = mlplab(capsys, "sweep", str(tmp_path / "empty.json"))
    assert (status, err) == (
        1,
        f"mlplab: {tmp_path / 'empty.json'} is not valid JSON: Expecting value: line 1 column 1 (char 0)\n",
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO("{"))
    status, _, err = mlplab(capsys, "sweep", "-")
    assert status == 1 and err.startswith("mlplab: standard input is not valid JSON: "), err


def test_study_with_a_number_for_a_file_hints_at_show(api, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, _, err = mlplab(capsys, "study", "1")
    assert status == 1 and err.startswith("mlplab: cannot read 1: "), err
    assert err.endswith(" (to show study 1: mlplab study show 1)\n"), err
    status, _, err = mlplab(capsys, "study", "one.json")
    assert status == 1 and "study show" not in err, err


def test_predict_refuses_a_blank_model_before_sending(elsewhere, capsys, tmp_path):
    asked = _serve(elsewhere, {})
    (tmp_path / "digit.png").write_bytes(b"\x89PNG")
    status, out, err = mlplab(
        capsys, "--url", "http://api.test", "predict", str(tmp_path / "digit.png"), "--model", ""
    )
    assert (status, out, asked) == (2, "", []) and err.startswith("mlplab: --model is blank"), err


def test_predicts_help_names_the_formats_the_api_reads(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "a BMP, GIF, JPEG, PNG or WebP image" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (
            ["submit", "--backend", "numpy", "--epochs", "0"],
            "--epochs: Input should be greater than or equal to 1 (got 0)",
        ),
        (["submit", "--backend", "numpy", "--hidden-layers", "16,0"], "--hidden-layers[1]: Input should be"),
        (["jobs", "--limit", "0"], "--limit: Input should be greater than or equal to 1 (got '0')"),
    ],
)
def test_a_refused_value_is_named_by_the_flag_that_set_it(api, capsys, argv, said):
    """The API said body.epochs, query.limit: the user typed --epochs, --limit."""
    status, out, err = mlplab(capsys, *argv)
    assert (status, out) == (1, "") and said in err and "body." not in err and "query." not in err, err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["jobs", "--help"], "the most jobs to list (1 to 500, default 50)"),
        (["jobs", "--help"], "only the jobs in this status"),
        (["models", "--help"], "created_at: newest first (default validation_accuracy)"),
        (["dev", "--help"], "port (MLPLAB_PORT, default 8000)"),
    ],
)
def test_flags_say_what_they_take(capsys, argv, said):
    with pytest.raises(SystemExit):
        main(argv)
    assert said in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("workers", ["0", "-1", "two"])
def test_api_refuses_fewer_than_one_worker_process(capsys, monkeypatch, workers):
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("the API started"))
    with pytest.raises(SystemExit) as exit_:
        main(["api", "--workers", workers])
    assert exit_.value.code == 2
    assert f"--workers: {workers!r}: give a whole number of processes, at least 1" in capsys.readouterr().err


def test_ctrl_c_while_watching_says_the_job_goes_on(elsewhere, capsys, monkeypatch):
    _serve(elsewhere, {"/jobs/7": JOB | {"status": "running"}})

    def interrupted(self: ApiClient, job_id: int, retries: int = 5):
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(ApiClient, "events", interrupted)
    status, out, err = mlplab(capsys, "--url", "http://api.test", "watch", "7")
    assert (status, out) == (130, "")
    assert err == "job 7 goes on without you watching; to cancel it: mlplab cancel 7\n"


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def test_submit_watch_says_queued_once(elsewhere, capsys):
    """`job 7 queued` went to stdout, then again to stderr."""
    queued = JOB | {"status": "queued", "attempts": 0}
    stream = (
        _event("status", {"status": "queued", "attempts": 0})
        + _event("status", {"status": "running", "attempts": 1})
        + _event("end", JOB)
    )

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/jobs":
            return httpx.Response(202, json=queued)
        return httpx.Response(200, text=stream, headers={"content-type": "text/event-stream"})

    elsewhere(server)
    status, out, err = mlplab(capsys, "--url", "http://api.test", "submit", "--backend", "numpy", "--watch")
    assert status == 0, err
    assert out.startswith(f"job 7 queued: {SPEC}\njob 7 succeeded") and err == "job 7 running\n", (out, err)


def test_models_validated_on_different_numbers_of_images_are_said_to_be(elsewhere, capsys):
    """Ranked together by validation accuracy, with nothing to say it was measured on 5,000 images for
    one and 10,000 for the other."""
    models = [MODEL | {"id": 7, "validation_size": 10_000}, MODEL | {"id": 8, "validation_size": 5_000}]
    _serve(elsewhere, {"/models": {"data": models, "count": 2, "ranked_by": "validation_accuracy"}})
    status, _, err = mlplab(capsys, "--url", "http://api.test", "models")
    assert status == 0, err
    assert (
        "validated on 5,000 or 10,000 held-out images: their validation accuracies are of different images"
        in err
    )
    _serve(elsewhere, {"/models": {"data": models[:1] * 2, "count": 2, "ranked_by": "validation_accuracy"}})
    status, _, err = mlplab(capsys, "--url", "http://api.test", "models")
    assert status == 0 and "held-out images" not in err, err


def test_models_say_which_epoch_early_stopping_kept(elsewhere, capsys):
    """EPOCHS said 8 for a model early stopping ended after epoch 4, keeping epoch 3's weights."""
    stopped = MODEL | {"id": 7, "epochs": 8, "best_epoch": 3, "stopped_epoch": 4}
    whole = MODEL | {"id": 8, "best_epoch": 15, "stopped_epoch": 15}
    _serve(elsewhere, {"/models": {"data": [stopped, whole], "count": 2, "ranked_by": "validation_accuracy"}})
    status, out, err = mlplab(capsys, "--url", "http://api.test", "models")
    assert status == 0, err
    rows = {line.split()[0]: re.split(r"\s{2,}", line) for line in out.splitlines()[1:]}
    assert rows["7"][10] == "3 (4 of 8)" and rows["8"][10] == "15", rows
    assert (
        "EPOCHS KEPT (TRAINED of ASKED): the epoch whose weights the model kept (early stopping's lowest "
        "validation loss), then how many epochs it trained of those asked for (fewer: early stopping ended it)"
        in err
    )
    _serve(elsewhere, {"/models": {"data": [whole], "count": 1, "ranked_by": "validation_accuracy"}})
    assert "EPOCHS KEPT" not in mlplab(capsys, "--url", "http://api.test", "models")[2]


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_names_the_flag_that_gives_it(elsewhere, capsys, status):
    """The API's problem speaks of an Authorization header: the command line user gives --token."""
    detail = "This request needs 'Authorization: Bearer <token>' (MLPLAB_API_TOKEN)."
    problem = {"type": "about:blank", "title": "Unauthorized", "status": status, "detail": detail}
    elsewhere(lambda request: httpx.Response(status, json=problem, headers={"content-type": PROBLEM_JSON}))
    code, out, err = mlplab(capsys, "--url", "http://api.test", "cancel", "3")
    assert (code, out) == (1, "") and err.endswith("give the token with --token or MLPLAB_API_TOKEN\n"), err
    # one given and refused: not told to give one
    code, out, err = mlplab(capsys, "--url", "http://api.test", "--token", "wrong", "cancel", "3")
    said = "the token given (--token or MLPLAB_API_TOKEN) is not the API's\n"
    assert code == 1 and err.endswith(
        said if status == 401 else "give the token with --token or MLPLAB_API_TOKEN\n"
    )


def test_cancelling_an_ended_job_says_it_has_ended(api, capsys):
    job = api.post("/jobs", json=job_body())["id"]
    api.train()
    code, _, err = mlplab(capsys, "cancel", str(job))
    assert code == 1 and f"Job {job} has already ended (succeeded)" in err, err  # was "is succeeded"


def test_an_api_that_takes_the_request_and_never_answers_is_not_called_unreachable():
    """A database locked for 30 s: the API's 503 came at 30.07 s, after the CLI's 30 s timeout, which said
    'cannot reach the API, start it' of a submission that was then queued (a retry queued it twice)."""
    import socket

    from service.cli.http import ApiError
    from service.store.db import BUSY_TIMEOUT_MS

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        with ApiClient(f"http://127.0.0.1:{port}", timeout=0.5) as client, pytest.raises(ApiError) as raised:
            client.request("POST", "/jobs", json=job_body())
    said = f"{raised.value.title}: {raised.value.detail}"
    assert "did not answer within 0.5 s" in said and "look (mlplab jobs) before sending it again" in said
    assert "cannot reach" not in said and "start it" not in said
    assert ApiClient("http://127.0.0.1:1").timeout > BUSY_TIMEOUT_MS / 1000  # past the API's own wait


HOSTILE = "\x1b]0;owned\x07\x1b[2J\r\x9b31m"  # retitle the terminal, clear it, overwrite the line, C1 CSI


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        ("jobs", {"/jobs": {"data": [JOB | {"name": SPEC + HOSTILE}], "count": 1}}),
        ("models", {"/models": {"data": [MODEL | {"dataset": HOSTILE}], "count": 1, "ranked_by": "test"}}),
    ],
)
def test_a_servers_control_characters_reach_the_terminal_escaped(elsewhere, capsys, command, answer):
    """A server's text with escape sequences in it (a job's name, a dataset's, a problem's detail) was printed
    as it came: it could retitle the user's terminal, clear it, or write over what was shown."""
    _serve(elsewhere, answer)
    status, out, err = mlplab(capsys, "--url", "http://api.test", command)
    assert status == 0 and "\\x1b]0;owned\\x07" in out + err, (out, err)
    assert not set("\x1b\x07\r\x9b") & set(ANSI.sub("", out + err)), (out, err)


def test_a_problems_control_characters_reach_the_terminal_escaped(elsewhere, capsys):
    problem = {"title": f"Bad{HOSTILE}", "detail": f"no{HOSTILE}", "status": 422}
    elsewhere(lambda request: httpx.Response(422, json=problem, headers={"content-type": PROBLEM_JSON}))
    status, out, err = mlplab(capsys, "--url", "http://api.test", "jobs")
    assert status == 1 and "Bad\\x1b]0;owned" in err and "\x1b" not in err, err


def test_a_model_validated_on_a_few_images_is_marked_and_its_rank_explained(api, capsys):
    """Validated on 1 image (100 %) it headed `mlplab models` above every model validated on 1,000, with
    nothing to say its rank was one image's luck."""
    few = api.post("/jobs", json=job_body(validation_size=20))["id"]
    enough = api.post("/jobs", json=job_body())["id"]
    api.train()
    listed = {m["id"]: m for m in api.client.get("/models").json()["data"]}
    assert listed[few]["validation_note"].startswith("validated on 20 images: one image is 5 points")
    assert listed[enough]["validation_note"] is None
    status, out, err = mlplab(capsys, "models")
    assert status == 0, err
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "% ?" in rows[str(few)] and "% ?" not in rows[str(enough)]
    assert f"? {few}: validated on 20 images: one image is 5 points" in err


def test_models_of_two_datasets_are_said_to_rank_nothing_against_each_other(elsewhere, capsys):
    models = [MODEL | {"id": 7}, MODEL | {"id": 8, "dataset": "mnist"}]
    _serve(elsewhere, {"/models": {"data": models, "count": 2, "ranked_by": "validation_accuracy"}})
    status, _, err = mlplab(capsys, "--url", "http://api.test", "models")
    assert status == 0 and "models of fashion-mnist and mnist: accuracies on two datasets rank nothing" in err
    _serve(elsewhere, {"/models": {"data": models[:1], "count": 1, "ranked_by": "validation_accuracy"}})
    status, _, err = mlplab(capsys, "--url", "http://api.test", "models")
    assert status == 0 and "rank nothing" not in err, err


@pytest.mark.parametrize("kept,stopped,said", [(2, 4, True), (4, 4, False)])
def test_watch_says_which_epoch_early_stopping_kept(elsewhere, capsys, kept, stopped, said):
    """'early stopping ended it after epoch 4 of 6', then epoch 2's accuracies, with nothing to say whose."""
    job = JOB | {"spec": {"epochs": 6, "early_stopping": {"patience": 2, "min_delta": 0.0}}}
    job |= {"progress": JOB["progress"] | {"epoch": stopped, "epochs": 6}}
    stream = _event("end", job)

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/models/7":
            return httpx.Response(200, json=MODEL | {"best_epoch": kept, "stopped_epoch": stopped})
        if request.url.path == "/jobs/7":
            return httpx.Response(200, json=job | {"status": "running"})
        return httpx.Response(200, text=stream, headers={"content-type": "text/event-stream"})

    elsewhere(server)
    status, out, err = mlplab(capsys, "--url", "http://api.test", "watch", "7")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[1] == "early stopping ended it after epoch 4 of 6"
    assert (lines[2] == "kept epoch 2's weights (the lowest validation loss); its accuracies:") == said, out


def test_models_ranked_by_test_accuracy_say_what_that_costs(elsewhere, capsys):
    """README says test accuracy never ranks them; --sort test_accuracy did, without a word."""
    _serve(elsewhere, {"/models": {"data": [MODEL], "count": 1, "ranked_by": "test_accuracy"}})
    status, _, err = mlplab(capsys, "--url", "http://api.test", "models", "--sort", "test_accuracy")
    assert status == 0 and "! picking a model by test accuracy selects on the test images" in err, err
    _serve(elsewhere, {"/models": {"data": [MODEL], "count": 1, "ranked_by": "validation_accuracy"}})
    status, _, err = mlplab(capsys, "--url", "http://api.test", "models")
    assert status == 0 and "selects on the test images" not in err, err


def test_a_refused_id_is_named_as_the_command_line_gives_it(api, capsys):
    """`mlplab watch -1` said 'path.job_id: ...', the API's name for what the user typed as JOB_ID."""
    for command in (["watch", "-1"], ["cancel", "-1"]):
        code, _, err = mlplab(capsys, *command)
        assert code == 1 and "JOB_ID: " in err and "path.job_id" not in err, (command, err)
    code, _, err = mlplab(capsys, "cancel", "--sweep", "nosuch")
    assert code == 1 and "--sweep: " in err and "path.sweep_id" not in err, err
