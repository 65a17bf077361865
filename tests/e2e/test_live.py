"""Following jobs live, and the `mlplab` command, against a real API process and a real worker."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from service.cli.http import parse_sse
from tests.factories import job_body
from tests.support import REPO, start_service

pytestmark = pytest.mark.slow  # real API and worker processes: seconds each

# 125 steps an epoch, a loss every 10: a dozen progress events an epoch, trained in about a second
RUNNING = {
    "backend": "numpy",
    "hidden_layers": [32],
    "activation": "relu",
    "init": "he",
    "optimizer": "adam",
    "learning_rate": 0.003,
    "epochs": 2,
    "train_limit": 4000,
    "batch_size": 32,
    "log_every": 10,
}
TINY = ["--backend", "numpy", "--hidden-layers", "32", "--epochs", "1", "--train-limit", "1000"]


def _events(client: httpx.Client, job_id: int, **headers: str) -> list[tuple[float, object]]:
    """(arrival time, event) for each event, until the server closes the stream."""
    out = []
    with client.stream("GET", f"/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        for event in parse_sse(response.iter_lines()):
            out.append((time.monotonic(), event))
    return out


def test_events_follow_a_job_live_from_queued_to_its_end(tmp_path):
    idle = start_service(tmp_path)  # no worker yet: the stream is open before the job starts
    try:
        with idle.client() as client:
            job = client.post("/jobs", json=RUNNING).json()
            with client.stream("GET", f"/jobs/{job['id']}/events") as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                assert response.headers["cache-control"] == "no-cache"
                stream = parse_sse(response.iter_lines())
                first = next(stream)
                assert (first.event, first.data) == ("status", {"status": "queued", "attempts": 0})
                idle.start_worker()
                events = list(stream)  # ends when the server closes the stream
            final = client.get(f"/jobs/{job['id']}").json()
            losses = client.get(f"/jobs/{job['id']}/losses").json()["data"]
            epochs = client.get(f"/jobs/{job['id']}/epochs").json()
    finally:
        idle.stop()
    kinds = [e.event for e in events]
    assert kinds[0] == "status" and events[0].data == {"status": "running", "attempts": 1}
    assert kinds[-2:] == ["status", "end"] and events[-2].data["status"] == "succeeded"
    assert events[-1].data == final  # the end event is the final job, as GET /jobs/{id} shows it
    progress = [e.data for e in events if e.event == "progress"]
    assert [p["step"] for p in progress] == [p["step"] for p in losses]  # every recorded loss, once, in order
    assert all(p["steps"] == 2 * 125 and p["loss"] > 0 and p["epoch"] in (1, 2) for p in progress)
    assert [e.data["epoch"] for e in events if e.event == "epoch"] == [1, 2]
    for i, e in enumerate(events):  # an epoch's metrics come after all of its losses
        if e.event == "epoch":
            assert all(p.data["epoch"] > e.data["epoch"] for p in events[i + 1 :] if p.event == "progress")
    assert [e for e in events if e.event == "epoch"][-1].data["test_accuracy"] == final["test_accuracy"]
    assert [e.data for e in events if e.event == "epoch"] == epochs  # validation figures included
    assert (
        epochs[-1]["validation_accuracy"] == final["validation_accuracy"]
        and epochs[-1]["validation_loss"] > 0
    )


def test_events_of_a_finished_job_replay_it_and_close_at_once(service):
    with service.client() as client:
        job = client.post("/jobs", json=RUNNING | {"epochs": 1, "train_limit": 2000}).json()
        service.wait_job(client, job["id"], timeout=60)
        started = time.monotonic()
        events = [e for _, e in _events(client, job["id"])]
        assert time.monotonic() - started < 3
        assert (events[0].event, events[0].data["status"]) == (
            "status",
            "running",
        )  # the start, then its progress
        assert [e.event for e in events][-2:] == ["status", "end"]
        progress = [e for e in events if e.event == "progress"]
        losses = client.get(f"/jobs/{job['id']}/losses").json()["data"]
        assert [p.data["step"] for p in progress] == [p["step"] for p in losses]
        assert progress[3].data["step"] == 30  # 63 steps, logged at the first and every 10

        # a client that reconnects with Last-Event-ID gets only what came after
        middle = progress[2]
        rest = [e for _, e in _events(client, job["id"], **{"Last-Event-ID": middle.id})]
        assert [e.data["step"] for e in rest if e.event == "progress"] == [
            p.data["step"] for p in progress[3:]
        ]
        assert [e.event for e in rest][-3:] == ["epoch", "status", "end"]

        missing = client.get("/jobs/999999/events")
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"


def _mlplab(*args: str, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "mlplab"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]
    return subprocess.run(
        [*command, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_submit_watch_shows_progress_then_the_accuracies(service, tmp_path):
    env = service.env | {"MLPLAB_URL": service.url}
    done = _mlplab(
        "submit", *TINY, "--activation", "relu", "--init", "he", "--log-every", "2", "--watch", env=env
    )
    assert done.returncode == 0, done.stderr
    job_id = int(re.match(r"job (\d+) queued", done.stdout).group(1))
    with service.client() as client:
        job = client.get(f"/jobs/{job_id}").json()
    assert (
        job["status"] == "succeeded"
        and job["spec"]["hidden_layers"] == [32]
        and job["spec"]["activation"] == "relu"
    )
    for split in ("train", "validation", "test"):
        assert re.search(rf"^{split} accuracy\s+{job[f'{split}_accuracy']:.2%}", done.stdout, re.M), split
    assert (
        "epoch 1/1: loss" in done.stderr
    )  # the progress display (a line per epoch: stderr is not a terminal)

    listed = _mlplab("models", "--url", service.url, env=service.env)
    assert listed.returncode == 0 and re.search(
        rf"^{job_id}\s+mnist\s+numpy\s+32\s+relu", listed.stdout, re.M
    )
    jobs = _mlplab("jobs", "--url", service.url, env=service.env)
    assert jobs.returncode == 0 and re.search(rf"^{job_id}\s+succeeded", jobs.stdout, re.M)

    # predict an image file: the API's own test image 0, drawn larger
    with service.client() as client:
        png = client.get("/datasets/mnist/test/0.png", params={"scale": 4}).content
        expected = client.post(
            f"/models/{job_id}/predict", content=png, headers={"content-type": "image/png"}
        ).json()
    image = tmp_path / "digit.png"
    image.write_bytes(png)
    predicted = _mlplab("predict", str(image), "--model", str(job_id), env=env)
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.startswith(
        f"predicted {expected['predicted']} ({max(expected['probabilities']):.2%})"
    )
    assert len(predicted.stdout.splitlines()) == 4  # and the top three
    assert predicted.stdout.splitlines()[0].endswith(f"by model {job_id}")

    # by alias: the CLI names the model that answered
    with service.client() as client:
        assert client.put("/aliases/cli-champion", json={"model_id": job_id}).status_code == 201
    by_alias = _mlplab("predict", str(image), "--model", "cli-champion", env=env)
    assert by_alias.returncode == 0, by_alias.stderr
    assert by_alias.stdout.splitlines()[0] == predicted.stdout.splitlines()[0] + " (cli-champion)"
    listed = _mlplab("models", env=env)
    assert re.search(rf"^{job_id}\s.*\scli-champion$", listed.stdout, re.M), listed.stdout


def test_cli_errors_are_the_apis_problems(service, tmp_path):
    env = service.env | {"MLPLAB_URL": service.url}
    refused = _mlplab("submit", *TINY, "--epochs", "0", env=env)
    assert refused.returncode == 1 and refused.stdout == ""
    assert (
        "Invalid request (422): --epochs: Input should be greater than or equal to 1 (got 0)"
        in refused.stderr
    )
    assert _mlplab("predict", str(tmp_path / "none.png"), "--model", "1", env=env).returncode == 1
    missing = _mlplab("watch", "999999", env=env)
    assert missing.returncode == 1 and "Job not found (404): There is no job 999999." in missing.stderr
    unreachable = _mlplab("jobs", "--url", "http://127.0.0.1:9", env=env)
    assert unreachable.returncode == 1 and "cannot reach the API at http://127.0.0.1:9" in unreachable.stderr


def test_cli_sweep_submits_a_grid_and_ranks_it(service, tmp_path):
    grid = tmp_path / "sweep.json"
    grid.write_text(
        json.dumps(
            {
                "base": job_body(),
                "grid": {"learning_rate": [0.001, 0.3]},
            }
        )
    )
    done = _mlplab(
        "sweep", str(grid), "--watch", "--interval", "0.3", env=service.env | {"MLPLAB_URL": service.url}
    )
    assert done.returncode == 0, done.stderr
    head, configurations, jobs = done.stdout.split("\n", 1)[0], *done.stdout.split("\n", 1)[1].split("\n\n")
    assert re.fullmatch(r"sweep [0-9a-f]+: 2 jobs", head)
    rows = [line.split() for line in jobs.splitlines()[1:]]
    assert [row[1] for row in rows] == ["succeeded", "succeeded"]
    assert [row[2] for row in rows] == ["learning_rate=0.3", "learning_rate=0.001"]  # best first
    sweep_id = head.split()[1].rstrip(":")
    ids = [int(row[0]) for row in rows]
    # the configurations, as GET /sweeps/{id} ranks them: one run each, so no interval and no test
    with service.client() as client:
        ranked = client.get(f"/sweeps/{sweep_id}").json()["configurations"]
    table = [[x for x in line.split() if x != "!"] for line in configurations.splitlines()[1:]]  # "!": chance
    assert [row[0] for row in table] == [
        f"learning_rate={c['hyperparameters']['learning_rate']}" for c in ranked
    ]
    assert [row[1:3] for row in table] == [["1", f"{c['validation_accuracy']['mean']:.2%}"] for c in ranked]
    assert [row[-3:] for row in table] == [["best", "-", "-"], ["-", "-", "-"]]  # vs best, gap, p
    assert "ranked by validation_accuracy" in done.stderr
    again = _mlplab("sweeps", sweep_id, env=service.env | {"MLPLAB_URL": service.url})
    assert again.returncode == 0 and again.stdout == done.stdout  # the same table, later

    # the sweep's jobs, and nothing else, by GET /jobs?sweep_id= and `mlplab jobs --sweep`
    with service.client() as client:
        client.post("/jobs", json=job_body())
        page = client.get("/jobs", params={"sweep_id": sweep_id}).json()
        compared = client.get("/compare", params={"ids": f"{ids[0]},{ids[1]}"}).json()["data"]
    assert sorted(j["id"] for j in page["data"]) == sorted(ids) and page["count"] == 2
    listed = _mlplab("jobs", "--sweep", sweep_id, env=service.env | {"MLPLAB_URL": service.url})
    assert sorted(int(line.split()[0]) for line in listed.stdout.splitlines()[1:]) == sorted(ids)

    # `mlplab compare`: models as columns, the differing hyperparameter, then how each did
    shown = _mlplab("compare", str(ids[0]), str(ids[1]), env=service.env | {"MLPLAB_URL": service.url})
    assert shown.returncode == 0, shown.stderr
    table = {line.split("  ")[0]: line.split()[-2:] for line in shown.stdout.splitlines()[1:]}
    assert shown.stdout.splitlines()[0].split() == [f"#{ids[0]}", f"#{ids[1]}"]
    assert table["learning_rate"] == ["0.3", "0.001"]
    test_row = next(line for line in shown.stdout.splitlines() if line.startswith("test accuracy (final)"))
    for m in compared:  # a model near chance level marked "!" (at 0.001, 8 steps learn next to nothing)
        assert f"{m['test_accuracy']:.2%}{' !' if m['near_chance'] else ''}" in test_row, test_row
    assert "hidden_layers" not in table  # the same in both: shown only with --all
    every = _mlplab(
        "compare", str(ids[0]), str(ids[1]), "--all", env=service.env | {"MLPLAB_URL": service.url}
    )
    assert re.search(r"^hidden_layers\s+16\s+16$", every.stdout, re.M)
    alone = _mlplab("compare", str(ids[0]), env=service.env | {"MLPLAB_URL": service.url})
    assert alone.returncode == 1 and "compare 2 to 20 models" in alone.stderr

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"base": {"backend": "numpy"}, "grid": {"learning_rate": []}}))
    refused = _mlplab("sweep", str(bad), env=service.env | {"MLPLAB_URL": service.url})
    assert refused.returncode == 1 and "grid.learning_rate: an empty list" in refused.stderr


def test_the_api_draws_a_trained_models_figures(service):
    with service.client() as client:
        job = client.post("/jobs", json=RUNNING | {"epochs": 1, "train_limit": 1000}).json()
        service.wait_job(client, job["id"], timeout=60)
        response = client.get(f"/models/{job['id']}/mistakes.png", params={"limit": 20})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = np.asarray(Image.open(io.BytesIO(response.content)).convert("L"))
    assert image.shape[0] > 100 and image.shape[1] > 300 and image.std() > 10  # a drawing, not a blank


def test_cli_study_prints_each_trial_as_it_ends_then_the_table_best_first(service, tmp_path):
    env = service.env | {"MLPLAB_URL": service.url}
    study = tmp_path / "study.json"
    space = {"learning_rate": {"choice": [0.001, 0.3]}, "activation": {"choice": ["tanh", "relu"]}}
    study.write_text(json.dumps({"base": job_body(), "space": space, "sampler": "grid", "trials": 3}))
    done = _mlplab("study", str(study), "--watch", "--interval", "0.3", env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    study_id = int(re.fullmatch(r"study (\d+): 3 trials, 1 at once", lines[0]).group(1))
    assert [line.split()[:3] for line in lines[1:4]] == [["trial", str(n), "succeeded"] for n in range(3)]
    with service.client() as client:
        best = client.get(f"/studies/{study_id}").json()["best"]
    assert lines[3].endswith(f"best: trial {best['number']} {best['validation_accuracy']:.2%}")
    assert lines[4].startswith(f"study {study_id} finished: 3 of 3 trials (3 succeeded), 3 epochs trained")
    assert lines[6].split()[:3] == [str(best["number"]), "*", str(best["job_id"])]  # best first, marked
    shown = _mlplab("study", "show", str(study_id), env=env)
    assert shown.returncode == 0 and shown.stdout.splitlines()[1:5] == lines[5:9]
