"""Limits that a count guards, held when requests come at once: the queue's (MLPLAB_MAX_QUEUED) and a
study's trials (MLPLAB_MAX_STUDY_TRIALS), on SQLite and PostgreSQL (the `db_url` fixture). Each test
holds every request between its count and its write until the others have counted too, as a burst
of requests can: without a lock between them, all of them pass the same count."""

from __future__ import annotations

import threading
from contextlib import suppress
from types import SimpleNamespace
from typing import Any

from service.api import presenters
from service.api.presenters import enqueue
from service.errors import ProblemError
from service.settings import Settings
from service.store.db import session_scope
from service.turns import Turns
from tests.factories import tiny_spec

REQUESTS = 6
RUNNING: Any = SimpleNamespace(  # a request to a process that is not stopping
    app=SimpleNamespace(state=SimpleNamespace(events=SimpleNamespace(stopping=False)))
)


def at_once(monkeypatch, module, name: str) -> None:
    """`module.name` (a count) returns only once every request has counted, or after 2 s: those a lock
    keeps out arrive one by one, once the barrier has given up."""
    counted = getattr(module, name)
    barrier = threading.Barrier(REQUESTS)

    def held(*args, **kwargs):
        value = counted(*args, **kwargs)
        with suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=2)
        return value

    monkeypatch.setattr(module, name, held)


def burst(request) -> list[object]:
    outcomes: list[object] = [None] * REQUESTS

    def one(i: int) -> None:
        try:
            outcomes[i] = request()
        except ProblemError as exc:
            outcomes[i] = exc.status

    threads = [threading.Thread(target=one, args=(i,)) for i in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def test_jobs_queued_at_once_stay_within_the_queues_limit(sessions, monkeypatch):
    """40 sweeps at once queued 2,112 jobs on PostgreSQL past a limit of 1,000."""
    settings = Settings(database_url="sqlite://", max_queued=7)
    at_once(monkeypatch, presenters, "count_queued")

    def sweep_of_three() -> str:
        with session_scope(sessions) as session:
            enqueue(session, settings, [tiny_spec(seed=seed) for seed in range(3)])
            return "queued"

    outcomes = burst(sweep_of_three)
    assert sorted(outcomes, key=str) == [429] * 4 + ["queued"] * 2, outcomes
    with session_scope(sessions) as session:
        assert presenters.count_queued(session) == 6


def test_extensions_at_once_stay_within_a_studys_trial_limit(db_url, sessions, monkeypatch):
    """Ten extensions of 100 trials at once took a study of 10 to 1,010 trials on PostgreSQL, past a
    limit of 500 that the fifth, sent alone, was refused by."""
    from fastapi import Response
    from fastapi.testclient import TestClient

    from service.api.routes import studies
    from service.api.schemas import StudyExtend
    from service.main import create_app
    from tests.support import real_data_dir

    settings = Settings(database_url=db_url, data_dir=real_data_dir(), download=False, max_study_trials=40)
    body = {
        "base": {"backend": "numpy", "hidden_layers": [16], "epochs": 1, "train_limit": 500},
        "space": {"learning_rate": {"float": [0.01, 1.0], "log": True}},
        "trials": 10,
        "parallelism": 1,
    }
    with TestClient(create_app(settings)) as client:
        study = client.post("/studies", json=body).json()["id"]
    checked = studies.check_extensible

    def held(study_row, settings, more):  # the check made under the lock, once every request made it
        checked(study_row, settings, more)
        if getattr(threading.current_thread(), "checked", False):
            with suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=2)
        threading.current_thread().checked = True  # type: ignore[attr-defined]

    barrier = threading.Barrier(REQUESTS)
    monkeypatch.setattr(studies, "check_extensible", held)
    # the planning queue (4 waiting) would refuse a sixth at once with a 503: not what this tests
    monkeypatch.setattr(studies, "PLANNING", Turns(REQUESTS, "full", "full", 5, REQUESTS, "mine"))

    def ten_more() -> int:
        with session_scope(sessions) as session:
            extended = studies.extend(StudyExtend(trials=10), study, session, settings, RUNNING, Response())
            return extended.config.trials

    outcomes = burst(ten_more)
    assert sorted(outcomes) == [20, 30, 40, 422, 422, 422], outcomes
