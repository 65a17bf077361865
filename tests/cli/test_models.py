"""`mlplab watch` and `mlplab models` on trained models: what they show of each, a warning for a
model near chance level, and each status said once."""

from __future__ import annotations

import json

import httpx

from service.cli import http
from tests.cli.conftest import mlplab
from tests.factories import job_body, learner_body


def test_watch_warns_of_a_model_near_chance_level(api, capsys):
    good = api.post("/jobs", json=learner_body())
    stuck = api.post("/jobs", json=job_body(init="zeros", learning_rate=1e-6))
    api.train()
    status, out, err = mlplab(capsys, "watch", str(stuck["id"]))
    assert status == 0 and f"job {stuck['id']} succeeded" in out
    assert "warning: Test accuracy" in err or "warning: Validation accuracy" in err
    assert "near chance level (10 % with 10 classes)" in err
    status, out, err = mlplab(capsys, "watch", str(good["id"]))
    assert status == 0 and "warning" not in err


def test_watch_of_a_finished_job_does_not_say_it_is_running(api, capsys):
    job = api.post("/jobs", json=job_body(epochs=2))
    api.train()
    status, out, err = mlplab(capsys, "watch", str(job["id"]))
    assert status == 0 and out.startswith(f"job {job['id']} succeeded")
    assert [line.split(":")[0] for line in err.splitlines()] == ["epoch 1/2", "epoch 2/2"]


def _event(name: str, data: dict, id: str | None = None) -> str:
    return f"event: {name}\n" + (f"id: {id}\n" if id else "") + f"data: {json.dumps(data)}\n\n"


def test_watch_says_each_status_once_across_a_reconnection(elsewhere, capsys, monkeypatch):
    job = {"id": 7, "name": "numpy,16", "status": "running", "spec": {"epochs": 1}, "warning": None}
    job |= {"progress": {"epoch": 1, "epochs": 1}, "train_accuracy": 0.9}
    job |= {"validation_accuracy": 0.88, "test_accuracy": 0.87}
    running = _event("status", {"status": "running", "attempts": 1})
    streams = [  # the first drops before the end; the server starts the second with the status again
        running + _event("progress", {"epoch": 1, "step": 4, "steps": 8, "loss": 0.5}, "4-0"),
        running
        + _event("status", {"status": "succeeded", "attempts": 1})
        + _event("end", job | {"status": "succeeded"}),
    ]
    resumed: list[str | None] = []

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/jobs/7":
            return httpx.Response(200, json=job)
        resumed.append(request.headers.get("last-event-id"))
        return httpx.Response(200, text=streams.pop(0), headers={"content-type": "text/event-stream"})

    elsewhere(server)
    monkeypatch.setattr(http.time, "sleep", lambda seconds: None)
    status, out, err = mlplab(capsys, "watch", "7")
    assert status == 0 and out.startswith("job 7 succeeded: numpy,16\n")
    assert resumed == [None, "4-0"] and err == "job 7 running\n"
