"""`mlplab study show`: a finished study's table, and its parameters' importance with the trials it rests on."""

from __future__ import annotations

from tests.cli.conftest import mlplab
from tests.factories import job_body


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
    status, out, _ = mlplab(capsys, "study", "show", str(study["id"]))
    assert status == 0, out
    (line,) = [line for line in out.splitlines() if line.startswith("importance")]
    assert line.startswith("importance (from 4 succeeded trials): learning_rate "), line
