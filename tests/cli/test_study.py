"""`mlplab study show`: a finished study's table, and its parameters' importance with the trials it rests on."""

from __future__ import annotations

import re

from service.store.db import make_engine, make_sessionmaker, session_scope
from service.store.jobs import claim_job, fail_job
from tests.cli.conftest import mlplab
from tests.factories import alike_study, job_body


def test_a_studys_importance_says_how_many_trials_it_rests_on(api, capsys):
    study = api.post(
        "/studies",
        json={
            "base": job_body(activation="relu", init="he"),
            "space": {"learning_rate": {"choice": [1e-6, 0.05]}, "l2": {"choice": [0.0, 1e-4]}},
            "sampler": "grid",
            "trials": 4,
            "parallelism": 4,
        },
    )
    api.train()
    status, out, err = mlplab(capsys, "study", "show", str(study["id"]))
    assert status == 0, out
    (line,) = [line for line in out.splitlines() if line.startswith("importance")]
    assert line.startswith("importance (from 4 succeeded trials): learning_rate "), line
    # and what four are worth, as the study page says it (the CLI said nothing)
    assert "! importance from 4 succeeded trials, fewer than 10: too few to say much" in err


def test_a_study_whose_trials_all_scored_the_same_says_why_nothing_is_ranked(api, capsys):
    """Its importance was {} and the CLI printed nothing of the batch size that varied."""
    study = api.post("/studies", json=alike_study())
    api.train()
    status, out, err = mlplab(capsys, "study", "show", str(study["id"]))
    assert status == 0, out
    assert not [line for line in out.splitlines() if line.startswith("importance")]
    assert "! importance from 2 succeeded trials, all scored the same: batch_size varied" in err


def test_a_failed_trial_is_shown_with_its_reason(api, capsys):
    """Its reason (a learning rate that diverged) was only on its job."""
    study = api.post(
        "/studies",
        json={
            "base": job_body(),
            "space": {"learning_rate": {"choice": [0.05, 5.0]}},
            "sampler": "grid",
            "trials": 1,
            "parallelism": 1,
        },
    )
    engine = make_engine(api.settings.database_url)
    with session_scope(make_sessionmaker(engine)) as s:
        job = claim_job(s, "w")
        assert job is not None
        fail_job(s, job.id, "w", "training diverged: the loss is nan at epoch 1, step 41")
    engine.dispose()
    status, _, err = mlplab(capsys, "study", "show", str(study["id"]))
    assert status == 0, err
    assert f"trial 0 (job {job.id}) failed: training diverged: the loss is nan at epoch 1, step 41" in err


def test_the_studies_are_listed_with_their_best_trial(api, capsys):
    """`mlplab study` took only a file, show or cancel: a lost study id meant curl."""
    body = {
        "base": job_body(),
        "space": {"learning_rate": {"choice": [0.01, 0.05]}},
        "sampler": "grid",
        "trials": 2,
        "parallelism": 2,
    }
    first, second = api.post("/studies", json=body), api.post("/studies", json=body | {"trials": 1})
    api.train()
    status, out, err = mlplab(capsys, "study", "list")
    assert status == 0, err
    header, newest, oldest = out.splitlines()
    assert header.split()[:3] == ["STUDY", "CREATED", "(UTC)"]
    best = api.client.get(f"/studies/{first['id']}").json()["best"]
    assert newest.split()[0] == str(second["id"]) and oldest.split()[0] == str(first["id"])
    assert re.split(r"\s{2,}", oldest)[2:] == [
        "finished",
        "grid",
        "2 of 2",
        "2 succeeded",
        "learning_rate",
        f"{best['validation_accuracy']:.2%} (job {best['job_id']})",
    ]
    assert err == "2 of 2 studies; mlplab study show ID for one\n"


def test_studies_lists_and_shows_as_sweeps_does(api, capsys):
    """`mlplab sweeps [ID]` lists or shows sweeps; `mlplab studies` was an unknown command."""
    body = {
        "base": job_body(),
        "space": {"learning_rate": {"choice": [0.01, 0.05]}},
        "sampler": "grid",
        "trials": 2,
    }
    study = api.post("/studies", json=body)
    api.train()
    assert mlplab(capsys, "studies") == mlplab(capsys, "study", "list")
    status, out, err = mlplab(capsys, "studies", str(study["id"]))
    assert status == 0 and out.startswith(f"study {study['id']} finished: 2 of 2 trials"), (out, err)
    assert (status, out, err) == mlplab(capsys, "study", "show", str(study["id"]))
