"""GET /models/{id}/confusion-matrix's precision, recall and F1 per class, on a matrix small enough to
check by hand."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.ml.metrics import class_scores, confusion_matrix
from service.settings import Settings
from service.store.db import make_engine, make_sessionmaker, migrate
from tests.factories import store_trained_job, tiny_spec
from tests.support import real_data_dir


def known_matrix() -> list[list[int]]:
    """100 right answers a class, except: ten 0s read as 1, and the fifty 9s all read as 8."""
    matrix = [[100 * (i == j) for j in range(10)] for i in range(10)]
    matrix[0][0], matrix[0][1] = 90, 10
    matrix[9][9], matrix[9][8] = 0, 50
    return matrix


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("scores")
    settings = Settings(database_url=f"sqlite:///{root / 'api.db'}", data_dir=real_data_dir(), download=False)
    engine = make_engine(settings.database_url)
    migrate(engine)
    model = store_trained_job(make_sessionmaker(engine), tiny_spec(), every=1, confusion=known_matrix())
    with TestClient(create_app(settings)) as client:
        yield client, model
    engine.dispose()


def test_precision_recall_and_f1_per_class_are_read_from_the_matrix(client):
    client, model = client
    for split in ("test", "train"):
        body = client.get(f"/models/{model}/confusion-matrix", params={"split": split}).json()
        assert body["split"] == split and body["matrix"] == known_matrix()  # the fields it had before
        scores = {s["label"]: s for s in body["per_class"]}
        assert [s["label"] for s in body["per_class"]] == body["labels"] == list(range(10))
        # the 0s: all ninety read as 0 are 0s, ninety of a hundred found
        assert scores[0] == pytest.approx(
            {"label": 0, "precision": 90 / 90, "recall": 90 / 100, "f1": 180 / 190, "support": 100}
        )
        # the 1s: all found, but ten of the 110 read as 1 are 0s
        assert scores[1] == pytest.approx(
            {"label": 1, "precision": 100 / 110, "recall": 1.0, "f1": 200 / 210, "support": 100}
        )
        assert scores[5] == {"label": 5, "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 100}
        assert scores[8] == pytest.approx(
            {"label": 8, "precision": 100 / 150, "recall": 1.0, "f1": 200 / 250, "support": 100}
        )
        # the 9s: none found, and nothing read as 9: precision undefined, F1 = 2·0 / (0 + 0 + 50)
        assert scores[9] == {"label": 9, "precision": None, "recall": 0.0, "f1": 0.0, "support": 50}
        # the mean over the ten classes (each a label here), the undefined precision counted as 0
        assert body["macro_average"] == pytest.approx(
            {
                "precision": (1 + 100 / 110 + 6 + 100 / 150 + 0) / 10,
                "recall": (0.9 + 1 + 6 + 1 + 0) / 10,
                "f1": (180 / 190 + 200 / 210 + 6 + 200 / 250 + 0) / 10,
            }
        )


def test_the_mean_is_over_the_classes_the_split_has_as_a_label_or_a_prediction():
    """A 5-image validation split holds five digits: a model right on every one scored 0.5, the five
    absent digits counted as 0."""
    labels = np.array([1, 2, 3, 7, 9])
    assert class_scores(confusion_matrix(labels, labels)).macro() == (1.0, 1.0, 1.0)
    # a 4 predicted, never a label: its precision is 0 and its recall undefined (0), and it counts
    precision, recall, f1 = class_scores(confusion_matrix(labels, np.array([1, 2, 3, 7, 4]))).macro()
    assert (precision, recall, f1) == pytest.approx((4 / 6, 4 / 6, 4 / 6))
