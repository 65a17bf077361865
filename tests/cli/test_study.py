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
    # and what its best is not shown to be (a newcomer read "best: trial 2 82.40 %" over 81.26 % as won)
    assert "best (*): one run a trial: it is not shown better than the next trial (no test;" in err


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


def test_a_pruned_trial_shows_the_validation_accuracy_it_was_pruned_at():
    """Pruned trials read 'validation -' though the API holds what the pruner saw (87.10 % at epoch 1)."""
    from service.cli.studies import study_table, trial_line

    trial = {"number": 6, "job_id": 9, "status": "pruned", "epochs": 1, "params": {"learning_rate": 0.01}}
    trial |= {
        "validation_accuracy": None,
        "test_accuracy": None,
        "validation_curve": [0.871],
        "near_chance": False,
    }
    assert "validation 87.10% at epoch 1  learning_rate=0.01" in trial_line(trial, None)
    study = {"best": None, "trials": [trial]}
    assert "87.10% at epoch 1" in study_table(study).splitlines()[-1]
    running = trial | {"status": "running", "validation_curve": [0.5]}  # not an end: no figure yet
    assert "validation       -" in trial_line(running, None)


def test_a_finished_study_is_extended_from_the_command_line(api, capsys):
    """POST /studies/ID/extend had no command: a teacher wanting three more trials needed curl."""
    body = {"base": job_body(), "space": {"learning_rate": {"float": [0.001, 0.1]}}, "trials": 1}
    study = api.post("/studies", json=body)
    api.train()
    status, out, err = mlplab(capsys, "study", "extend", str(study["id"]))
    assert status == 2 and f"mlplab study extend {study['id']} --trials N" in err, err
    status, out, err = mlplab(capsys, "study", "extend", str(study["id"]), "--trials", "2")
    assert (status, out) == (0, f"study {study['id']}: 3 trials in all now\n"), err
    api.train()
    shown = api.client.get(f"/studies/{study['id']}").json()
    assert shown["status"] == "finished" and len(shown["trials"]) == 3
