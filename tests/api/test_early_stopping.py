"""Early stopping through the worker and the API: a job that stops early succeeds, says where it stopped
and which epoch it kept, and its model is that epoch's (on the real MNIST, both backends)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from service.main import create_app
from service.ml.evaluation import EvalSets
from service.ml.spec import TrainSpec
from service.ml.weights import load_weights
from service.settings import Settings
from service.store.db import make_engine
from service.store.queries import get_epochs
from tests.factories import learner_body
from tests.support import real_data_dir
from workers.worker import run_worker

# Many units for 500 images at a brisk rate: the validation loss turns up within a few epochs.
OVERFIT = learner_body(
    hidden_layers=[128], learning_rate=0.003, batch_size=50, epochs=40, early_stopping={"patience": 2}
)


@pytest.mark.slow  # training on the real MNIST
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_job_that_stops_early_succeeds_with_its_best_epochs_model(tmp_path, mnist, backend):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}", data_dir=real_data_dir(), download=False
    )
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/jobs", json=OVERFIT | {"backend": backend}).json()["id"]
        run_worker(settings, once=True)
        job = client.get(f"/jobs/{job_id}").json()
        model = client.get(f"/models/{job_id}").json()
        epochs = client.get(f"/jobs/{job_id}/epochs").json()
        blob = client.get(f"/models/{job_id}/weights").content

    assert job["status"] == "succeeded", job["error"]
    stopped, best = model["stopped_epoch"], model["best_epoch"]
    assert best < stopped < OVERFIT["epochs"] and stopped - best == 2  # patience 2: two epochs without gain
    assert [e["epoch"] for e in epochs] == list(range(1, stopped + 1))  # the curves end where it stopped
    # train and test accuracies on samples but for the last epoch trained, measured on every image, as
    # the worker recorded it with the epoch: the stream sends it while the job still runs
    assert [e["sampled"] for e in epochs] == [True] * (stopped - 1) + [False]
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        assert [r.sampled for r in get_epochs(session, job_id)] == [True] * (stopped - 1) + [False]
    engine.dispose()
    assert job["progress"]["epoch"] == stopped
    losses = [e["validation_loss"] for e in epochs]
    assert best == int(np.argmin(losses)) + 1
    assert (
        model["validation_accuracy"] == epochs[best - 1]["validation_accuracy"] == job["validation_accuracy"]
    )
    # the stored weights, measured afresh on the validation images: the best epoch's accuracy exactly
    held = EvalSets.of(TrainSpec.model_validate(job["spec"]), mnist).validation
    predicted = load_weights(blob).predict_proba(held.images).argmax(axis=1)
    assert np.mean(predicted == held.labels) == pytest.approx(model["validation_accuracy"], abs=1e-12)
