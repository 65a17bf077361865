"""Defaults that do not trap: the learning rate follows the optimizer, and a model that learned next to
nothing says so (issue 15, section 5)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.ml.metrics import near_chance
from service.ml.spec import TrainSpec
from service.settings import Settings
from tests.factories import job_body, learner_body
from tests.support import real_data_dir
from workers.worker import run_worker


@pytest.mark.parametrize(
    ("optimizer", "expected"), [("adam", 0.001), ("sgd", 0.1), ("momentum", 0.1), (None, 0.1)]
)
def test_the_default_learning_rate_is_the_optimizers(optimizer, expected):
    fields = {"backend": "numpy"} | ({"optimizer": optimizer} if optimizer else {})
    assert TrainSpec.model_validate(fields).learning_rate == expected
    assert TrainSpec.model_validate(fields | {"learning_rate": 0.5}).learning_rate == 0.5


def test_the_schema_documents_the_default_per_optimizer(client):
    prop = client.get("/openapi.json").json()["components"]["schemas"]["TrainSpec"]["properties"]
    rate = prop["learning_rate"]
    assert rate["x-default-by-optimizer"] == {"sgd": 0.1, "momentum": 0.1, "adam": 0.001}
    assert "0.001 for adam" in rate["description"]


def test_an_adam_job_without_a_learning_rate_stores_adams(client):
    response = client.post("/jobs", json=job_body(optimizer="adam"))
    assert response.status_code == 202, response.text
    assert response.json()["spec"]["learning_rate"] == 0.001
    stored = client.get(f"/jobs/{response.json()['id']}").json()
    assert stored["spec"]["learning_rate"] == 0.001 and stored["near_chance"] is False


def test_near_chance_names_every_accuracy_near_chance():
    assert near_chance(10, 0.1, 0.001, validation=0.9, test=0.91) is None
    assert near_chance(10, 0.1, 0.001, validation=None, test=None) is None
    assert near_chance(10, 0.1, 0.001, validation=0.151, test=0.9) is None  # just above 1.5 x 10 %
    sentence = near_chance(10, 0.1, 0.001, validation=0.16, test=0.1494)
    assert sentence is not None
    assert sentence.startswith("Test accuracy 14.94 % is near chance level (10 % with 10 classes)")
    # both: it named test alone (the lower) though models are ranked on validation
    both = near_chance(10, 0.1, 0.001, validation=0.0996, test=0.0994)
    assert both is not None and both.startswith(
        "Validation accuracy 9.96 % and test accuracy 9.94 % are near chance level (10 % with 10 classes)"
    )
    assert "smaller learning_rate than 0.1 (its optimizer's default is 0.001)" in sentence


def test_near_chance_advises_a_larger_learning_rate_below_the_optimizers_default():
    sentence = near_chance(10, 1e-6, 0.1, validation=0.1, test=0.1)
    assert (
        sentence is not None
        and "Try a larger learning_rate than 1e-06 (its optimizer's default is 0.1)" in sentence
    )


def test_near_chance_at_the_default_learning_rate_names_no_direction():
    """A default sigmoid/SGD job that underfits was told to try a smaller rate: nothing says which way. One
    that gave 0.1 itself was told to try another rate 'than its optimizer's default', as if it had not."""
    sentence = near_chance(10, 0.1, 0.1, validation=0.11, test=0.11)
    assert sentence is not None and "smaller" not in sentence and "larger" not in sentence
    assert (
        "Try a learning_rate other than 0.1 (the one it trained with, its optimizer's default), another "
        "init or more epochs." in sentence
    )


def test_near_chance_of_deep_sigmoids_under_sgd_says_why_and_which_way():
    """sigmoid with glorot or he at SGD's 0.1 stayed at chance (10.8 %, 12.9 %) and was told only 'another
    learning rate, init or more epochs': the textbook's vanishing gradient, and the way out, unsaid."""
    sentence = near_chance(10, 0.1, 0.1, sigmoid_layers=3, validation=0.108, test=0.11)
    assert sentence is not None and sentence.endswith(
        "Try a larger learning_rate than 0.1, adam, or relu: sigmoid's slope is at most 0.25, so each of its "
        "3 sigmoid layers shrinks the gradient at least 4-fold on its way back, and plain SGD barely moves "
        "the first layers; or more epochs."
    )
    # above the default, the rate is more likely the cause; zeros, the init
    too_fast = near_chance(10, 5, 0.1, sigmoid_layers=3, validation=0.1)
    assert too_fast is not None and "smaller learning_rate than 5" in too_fast and "slope" not in too_fast
    zeros = near_chance(10, 0.1, 0.1, "sigmoid", sigmoid_layers=3, validation=0.1)
    assert zeros is not None and "another init than zeros first" in zeros and "slope" not in zeros


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model that learned (relu, adam) and one that cannot have (zero weights, a learning rate of 1e-6)."""
    root = tmp_path_factory.mktemp("chance")
    settings = Settings(database_url=f"sqlite:///{root / 'api.db'}", data_dir=real_data_dir(), download=False)
    with TestClient(create_app(settings)) as client:
        good = client.post("/jobs", json=learner_body())
        stuck = client.post("/jobs", json=job_body(init="zeros", learning_rate=1e-6))
        run_worker(settings, once=True)
        yield client, good.json()["id"], stuck.json()["id"]


def test_a_model_near_chance_is_flagged_on_its_job_and_model(trained):
    client, good, stuck = trained
    for path in (f"/jobs/{stuck}", f"/models/{stuck}"):
        body = client.get(path).json()
        assert body["near_chance"] is True, body
        assert "near chance level" in body["warning"]
        assert "larger learning_rate than 1e-06 (its optimizer's default is 0.1)" in body["warning"]
    for path in (f"/jobs/{good}", f"/models/{good}"):
        body = client.get(path).json()
        assert body["near_chance"] is False and body["warning"] is None, body
    listed = {m["id"]: m for m in client.get("/models").json()["data"]}
    assert listed[stuck]["near_chance"] and not listed[good]["near_chance"]
    # its predictions say it, a page of them as one (the list said nothing where one image's answer did)
    for path in (f"/models/{stuck}/predictions/test/0", f"/models/{stuck}/predictions/test?limit=1"):
        assert "near chance level" in client.get(path).json()["model_warning"], path
    assert client.get(f"/models/{good}/predictions/test?limit=1").json()["model_warning"] is None


def test_near_chance_of_a_zero_init_leads_with_the_init():
    """A zero-initialised MLP at near chance was told first to change its learning rate: its init is why."""
    sentence = near_chance(10, 0.1, 0.1, "sigmoid", validation=0.11, test=0.11)
    assert sentence is not None and "Try another init than zeros first (glorot or he)" in sentence
    assert "; then a learning_rate other than 0.1" in sentence
    # named once (it said "another init" twice), and why as the activation makes it: with tanh or relu
    # zero weights give zero outputs and no gradient, not units that "all learn the same thing"
    assert sentence.count("another init") == 1 and "learn as one" in sentence
    for activation in ("tanh", "relu"):
        stuck = near_chance(10, 0.01, 0.1, activation, validation=0.11, test=0.11)
        assert stuck is not None and stuck.count("another init") == 1, stuck
        assert f"with {activation}, zero weights make every hidden unit output 0" in stuck
        assert stuck.endswith("; then a larger learning_rate than 0.01 (its optimizer's default is 0.1).")
