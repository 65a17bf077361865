"""GET /models?dataset=: accuracies on two datasets rank nothing against each other, so a list keeps one."""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import Settings
from service.store.db import make_engine, make_sessionmaker, session_scope
from service.store.jobs import claim_job, enqueue_job, finish_job
from tests.conftest import assert_problem
from tests.factories import tiny_spec
from tests.store.test_jobs import result
from tests.support import real_data_dir


def test_models_of_one_dataset_are_ranked_apart(db_url):
    """Accuracies on MNIST and on Fashion-MNIST rank nothing against each other: ?dataset= keeps one."""
    settings = Settings(database_url=db_url, data_dir=real_data_dir(), download=False)
    with TestClient(create_app(settings)) as client:
        factory = make_sessionmaker(make_engine(db_url))
        learned = {}
        for dataset, validation in (("fashion-mnist", 0.95), ("mnist", 0.9), ("mnist", 0.8)):
            with session_scope(factory) as s:
                job = enqueue_job(s, tiny_spec(dataset=dataset, seed=len(learned)))
                claim_job(s, "w")
                finish_job(s, job.id, "w", result(validation_accuracy=validation))
                learned[job.id] = dataset
        everything = client.get("/models").json()
        assert everything["count"] == 3 and everything["data"][0]["dataset"] == "fashion-mnist"
        for dataset in ("mnist", "fashion-mnist"):
            page = client.get("/models", params={"dataset": dataset}).json()
            ids = [m["id"] for m in page["data"]]
            assert ids == [m["id"] for m in everything["data"] if learned[m["id"]] == dataset]
            assert page["count"] == len(ids)
        assert_problem(client.get("/models", params={"dataset": "cifar"}), 422, "query.dataset")
