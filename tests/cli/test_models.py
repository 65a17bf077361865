"""`mlplab watch` and `mlplab models` on trained models: what they show of each, and a warning for a
model near chance level."""

from __future__ import annotations

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
