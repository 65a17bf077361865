"""Comparing trained models, and their figures as PNG (Fashion-MNIST included), through the API."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from scipy import stats

from service import plots
from service.api.presenters import labels
from service.main import create_app
from service.ml.data import DATASETS
from service.ml.splits import validation_indices
from service.ml.weights import load_weights
from service.selection import p_text
from service.settings import Settings
from tests.conftest import assert_problem
from tests.factories import learner_body, tiny_spec
from tests.support import real_data_dir
from workers.worker import run_worker

TINY = learner_body(
    epochs=2,
    train_limit=600,
    batch_size=30,
    log_every=5,
)
FASHION = list(DATASETS["fashion-mnist"].classes)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Three trained models (two MNIST, one Fashion-MNIST), one queued job and one cancelled job."""
    root = tmp_path_factory.mktemp("compare")
    settings = Settings(database_url=f"sqlite:///{root / 'api.db'}", data_dir=real_data_dir(), download=False)
    with TestClient(create_app(settings)) as client:
        a = client.post("/jobs", json=TINY).json()["id"]
        b = client.post("/jobs", json=TINY | {"learning_rate": 0.003, "batch_size": 60}).json()["id"]
        fashion = client.post("/jobs", json=TINY | {"dataset": "fashion-mnist"}).json()["id"]
        partial = client.post("/jobs", json=TINY | {"batch_size": 64}).json()["id"]  # 600: 10 steps of 60
        held_more = client.post("/jobs", json=TINY | {"validation_size": 2000}).json()["id"]
        unvalidated = client.post("/jobs", json=TINY | {"validation_size": 0}).json()["id"]
        cancelled = client.post("/jobs", json=TINY).json()["id"]
        client.post(f"/jobs/{cancelled}/cancel")
        run_worker(settings, once=True)
        queued = client.post("/jobs", json=TINY).json()["id"]
        for job_id in (a, b, fashion):
            job = client.get(f"/jobs/{job_id}").json()
            assert job["status"] == "succeeded", job[
                "error"
            ]  # Fashion-MNIST: apt-get install dataset-fashion-mnist
        yield client, {
            "a": a, "b": b, "fashion": fashion, "partial": partial, "queued": queued, "cancelled": cancelled,
            "held_more": held_more, "unvalidated": unvalidated,
        }  # fmt: skip


def _png(response, min_size=(200, 150)) -> Image.Image:
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"] == "image/png"
    assert "max-age=" in response.headers["cache-control"]
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG"
    assert (
        image.width >= min_size[0] and image.height >= min_size[1] and image.width * image.height < 20_000_000
    )
    return image


def test_compare_puts_hyperparameters_side_by_side(world):
    client, ids = world
    response = client.get("/compare", params={"ids": f"{ids['b']},{ids['a']}"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == 2 and [m["id"] for m in body["data"]] == [ids["b"], ids["a"]]
    assert body["differing"] == ["learning_rate", "batch_size"]
    assert body["hyperparameters"]["learning_rate"] == [0.003, 0.01]
    assert body["hyperparameters"]["batch_size"] == [60, 30]
    assert body["hyperparameters"]["hidden_layers"] == [[16], [16]]
    assert body["data"][0]["label"] == f"#{ids['b']} learning_rate=0.003, batch_size=60"
    for model in body["data"]:
        stored = client.get(f"/models/{model['id']}").json()
        assert (model["train_accuracy"], model["test_accuracy"]) == (
            stored["train_accuracy"],
            stored["test_accuracy"],
        )
        assert model["spec"]["batch_size"] == stored["batch_size"] and model["name"] == stored["name"]
        assert (model["near_chance"], model["warning"]) == (stored["near_chance"], stored["warning"])
        assert [e["epoch"] for e in model["epochs"]] == [1, 2]
        assert model["epochs"][-1]["test_accuracy"] == model["test_accuracy"]
        losses = client.get(f"/jobs/{model['id']}/losses").json()["data"]
        assert [(p["step"], p["loss"]) for p in model["losses"]] == [(p["step"], p["loss"]) for p in losses]
        assert all(
            p["samples"] == p["step"] * model["spec"]["batch_size"] for p in model["losses"]
        )  # whole batches
    # 600 images: 20 steps an epoch at batch 30, 10 at batch 60; on the samples axis both end at 1,200
    assert body["data"][0]["losses"][-1]["samples"] == body["data"][1]["losses"][-1]["samples"] == 1200


def test_samples_count_the_images_each_step_took(world):
    """600 images at batch 64: ten steps of 60 an epoch; samples were 64 a step (1,280 after two epochs)."""
    client, ids = world
    (model,) = client.get("/compare", params={"ids": f"{ids['partial']},{ids['a']}"}).json()["data"][:1]
    seen = {p["step"]: p["samples"] for p in model["losses"]}
    assert seen[5] == 300 and seen[10] == 600 and seen[15] == 600 + 300 and seen[20] == 1200


def test_labels_say_all_and_off_for_unset_fields_and_spell_out_early_stopping():
    """No "None" in a legend: an unset train_limit trains on all images, unset early stopping is off."""
    specs = [
        tiny_spec(train_limit=None, early_stopping=None),
        tiny_spec(train_limit=500, early_stopping={"patience": 2}),
    ]
    assert labels([3, 4], specs) == [
        "#3 train_limit=all, early_stopping=off",
        "#4 train_limit=500, early_stopping=(patience=2, min_delta=0)",
    ]


@pytest.mark.parametrize(
    "ids,status,says",
    [
        ("{a},999999", 404, "There is no model 999999."),
        ("{a},{queued}", 409, "is queued"),
        ("{a},{cancelled}", 409, "is cancelled"),
        (
            "{a},\u00b2",
            422,
            "'\u00b2' is neither a model id nor an alias",
        ),  # a Unicode digit: str.isdigit() says yes
        (
            "{a},\u0661",
            422,
            "is neither a model id nor an alias",
        ),  # ARABIC-INDIC DIGIT ONE: int() reads it as 1
        (
            "{a}," + "9" * 5000,
            422,
            "is neither a model id nor an alias: give comma-separated ids (each an integer from 1 to 2,147,483,647)",
        ),
        ("{a},2147483648", 422, "is neither a model id nor an alias"),
        ("{a},0", 422, "is neither a model id nor an alias"),
        ("{a},X!", 422, "'X!' is neither a model id nor an alias"),
        (
            "{a}," + "a" * 64,
            422,
            "or aliases (lowercase letters, digits and dashes, starting with a letter, at most 63",
        ),
        ("{a},nobody", 404, "There is no alias nobody."),
        ("{a}", 422, "1 model given; compare 2 to 20 models"),
        (",".join(str(i) for i in range(1, 22)), 422, "21 models given"),
        ("{a},{a}", 422, "listed twice"),
    ],
)
def test_compare_refuses_what_it_cannot_compare(world, ids, status, says):
    client, known = world
    for path in ("/compare", "/compare.png"):
        problem = assert_problem(client.get(path, params={"ids": ids.format(**known)}), status)
        assert says in problem["detail"]
    assert assert_problem(client.get("/compare"), 422)["invalid_params"][0]["name"] == "query.ids"


def test_figures_of_a_model_are_pngs(world):
    client, ids = world
    _png(client.get(f"/models/{ids['a']}/confusion-matrix.png"), (500, 400))
    _png(client.get(f"/models/{ids['a']}/confusion-matrix.png", params={"split": "train"}), (500, 400))
    _png(client.get(f"/models/{ids['a']}/loss-curve.png"), (600, 400))
    _png(
        client.get("/compare.png", params={"ids": f"{ids['a']},{ids['b']},{ids['fashion']}", "x": "samples"}),
        (600, 400),
    )
    many = _png(client.get(f"/models/{ids['a']}/mistakes.png"), (600, 300))
    one = _png(
        client.get(f"/models/{ids['a']}/mistakes.png", params={"limit": 1, "split": "train"}), (50, 50)
    )
    assert one.height < many.height and one.width < many.width


def test_figures_refuse_unknown_untrained_and_invalid(world):
    client, ids = world
    for figure in ("confusion-matrix.png", "loss-curve.png", "mistakes.png"):
        assert (
            assert_problem(client.get(f"/models/999999/{figure}"), 404)["detail"]
            == "There is no model 999999."
        )
        assert "is queued" in assert_problem(client.get(f"/models/{ids['queued']}/{figure}"), 409)["detail"]
    for limit in (0, 101):
        problem = assert_problem(client.get(f"/models/{ids['a']}/mistakes.png", params={"limit": limit}), 422)
        assert problem["invalid_params"][0]["name"] == "query.limit"
    assert_problem(client.get(f"/models/{ids['a']}/loss-curve.png", params={"x": "time"}), 422)


def test_fashion_mnist_models_carry_its_class_names(world):
    client, ids = world
    model = client.get(f"/models/{ids['fashion']}").json()
    assert (
        model["dataset"] == "fashion-mnist" and model["test_accuracy"] > 0.5
    )  # far above chance on 600 images
    cm = client.get(f"/models/{ids['fashion']}/confusion-matrix").json()
    assert cm["classes"] == FASHION and sum(map(sum, cm["matrix"])) == 10_000
    # class names on the axes need room: the figure is larger than MNIST's digits'
    wide = _png(client.get(f"/models/{ids['fashion']}/confusion-matrix.png"), (600, 500))
    assert (
        wide.width
        > Image.open(io.BytesIO(client.get(f"/models/{ids['a']}/confusion-matrix.png").content)).width
    )
    _png(client.get(f"/models/{ids['fashion']}/mistakes.png", params={"limit": 12}), (400, 200))


def test_disagreements_are_the_two_models_predictions_compared(world, mnist):
    """Recomputed here from the two models' own weights (as downloaded): the counts both ways, McNemar's
    p-value (binomtest on those counts), each class's accuracies, and the disagreeing images."""
    client, ids = world
    a, b = ids["a"], ids["b"]
    body = client.get("/compare/disagreements", params={"a": a, "b": b, "limit": 500}).json()
    truth = mnist.test_labels
    pa, pb = (
        load_weights(client.get(f"/models/{m}/weights").content)
        .predict_proba(mnist.test_images)
        .argmax(axis=1)
        for m in (a, b)
    )
    right_a, right_b = pa == truth, pb == truth
    a_only, b_only = int(np.sum(right_a & ~right_b)), int(np.sum(right_b & ~right_a))
    assert (body["a"], body["b"], body["split"], body["images"]) == (a, b, "test", 10_000)
    assert (body["a_right_b_wrong"], body["b_right_a_wrong"]) == (a_only, b_only) and a_only + b_only > 0
    assert body["both_right"] == np.sum(right_a & right_b) and body["both_wrong"] == np.sum(
        ~right_a & ~right_b
    )
    assert body["p_value"] == pytest.approx(stats.binomtest(a_only, a_only + b_only, 0.5).pvalue, rel=1e-12)
    assert body["beyond_chance"] == (body["p_value"] < 0.05)
    disagreeing = np.flatnonzero(pa != pb)
    assert body["count"] == len(disagreeing)
    assert [d["index"] for d in body["data"]] == disagreeing[:500].tolist()
    assert all(
        (d["label"], d["a"], d["b"]) == (truth[d["index"]], pa[d["index"]], pb[d["index"]])
        for d in body["data"]
    )
    for row in body["per_class"]:
        of_class = truth == row["label"]
        assert row["images"] == of_class.sum() and row["name"] == str(row["label"])
        assert row["a_accuracy"] == pytest.approx(right_a[of_class].mean())
        assert row["difference"] == pytest.approx(right_a[of_class].mean() - right_b[of_class].mean())
    only_a = client.get(
        "/compare/disagreements", params={"a": a, "b": b, "only": "a_right", "offset": 2, "limit": 3}
    )
    assert only_a.json()["count"] == a_only
    # both wrong with one answer: no disagreement, and so under every filter
    alike = int(np.sum(~right_a & ~right_b & (pa == pb)))
    assert body["both_wrong_alike"] == only_a.json()["both_wrong_alike"] == alike
    assert [d["index"] for d in only_a.json()["data"]] == np.flatnonzero(right_a & ~right_b)[2:5].tolist()
    swapped = client.get("/compare/disagreements", params={"a": b, "b": a}).json()
    assert (swapped["a_right_b_wrong"], swapped["p_value"]) == (b_only, body["p_value"])
    one = _png(client.get("/compare/disagreements.png", params={"a": a, "b": b, "limit": 1}), (50, 50))
    many = _png(
        client.get("/compare/disagreements.png", params={"a": a, "b": b, "split": "train"}), (400, 300)
    )
    assert one.height < many.height


def test_disagreements_on_train_count_the_images_both_models_trained_on(world):
    """All 60,000 were counted: validation images and those past train_limit, which neither trained on."""
    client, ids = world
    a, b = ids["a"], ids["b"]
    body = client.get(
        "/compare/disagreements", params={"a": a, "b": b, "split": "train", "limit": 500}
    ).json()
    trained = client.get(f"/models/{a}/confusion-matrix", params={"split": "train"}).json()["matrix"]
    assert body["images"] == sum(map(sum, trained)) == 600  # TINY's train_limit, both models
    counted = {
        i["index"]
        for offset in (0, 500)
        for i in client.get(f"/models/{a}/predictions/train", params={"offset": offset, "limit": 500}).json()[
            "data"
        ]
    }
    assert len(counted) == 600
    assert body["count"] > 0 and {d["index"] for d in body["data"]} <= counted
    assert sum(row["images"] for row in body["per_class"]) == 600


def test_disagreements_on_validation_are_on_the_images_that_ranked_both_models(world, mnist):
    """The images both held out: each model's accuracy on them is its validation accuracy where it held out
    no more; with 1,000 and 2,000 held out, the 1,000 (which the 2,000 include)."""
    client, ids = world
    truth = mnist.train_labels
    predicted = {
        m: load_weights(client.get(f"/models/{ids[m]}/weights").content)
        .predict_proba(mnist.train_images)
        .argmax(1)
        for m in ("a", "b", "held_more")
    }
    for other, size in (("b", 1000), ("held_more", 1000)):
        body = client.get(
            "/compare/disagreements", params={"a": ids["a"], "b": ids[other], "split": "validation"}
        )
        body = body.json()
        shared = validation_indices(truth, size)
        assert set(shared) <= set(validation_indices(truth, 2000))
        right_a, right_b = (predicted[m][shared] == truth[shared] for m in ("a", other))
        assert (body["split"], body["images"]) == ("validation", size)
        assert (body["a_right_b_wrong"], body["b_right_a_wrong"]) == (
            int(np.sum(right_a & ~right_b)),
            int(np.sum(right_b & ~right_a)),
        )
        a_accuracy = (body["both_right"] + body["a_right_b_wrong"]) / body["images"]
        assert a_accuracy == pytest.approx(client.get(f"/models/{ids['a']}").json()["validation_accuracy"])
    png = client.get(
        "/compare/disagreements.png", params={"a": ids["a"], "b": ids["b"], "split": "validation"}
    )
    _png(png, (50, 50))


def test_a_p_value_that_underflowed_is_titled_as_a_bound_not_zero(world, monkeypatch):
    client, ids = world
    body = client.get("/compare/disagreements", params={"a": ids["a"], "b": ids["b"]}).json()
    assert body["p_value"] == 0.0  # thousands of images one way: below the smallest float
    titles: list[str] = []
    drawn = plots.gallery_png
    monkeypatch.setattr(plots, "gallery_png", lambda *args: titles.append(args[2]) or drawn(*args))
    _png(
        client.get("/compare/disagreements.png", params={"a": ids["a"], "b": ids["b"], "limit": 1}), (50, 50)
    )
    assert titles[0].endswith("McNemar p < 1e-300") and "p = 0" not in titles[0]
    assert (p_text(0.0), p_text(0.0342), p_text(5e-324)) == ("p < 1e-300", "p = 0.0342", "p = 4.94e-324")


@pytest.mark.parametrize(
    "params,status,says",
    [
        ({"a": "{a}", "b": "{a}"}, 422, "compare two different models"),
        ({"a": "{a}", "b": "{fashion}"}, 422, "trained on fashion-mnist, model {a} on mnist"),
        ({"a": "{a}", "b": "999999"}, 404, "There is no model 999999."),
        ({"a": "{queued}", "b": "{a}"}, 409, "is queued"),
        ({"a": "{a}", "b": "{b}", "split": "valid"}, 422, "split"),
        ({"a": "{a}", "b": "{unvalidated}", "split": "validation"}, 422, "has no validation split"),
        ({"a": "{a}", "b": "{b}", "only": "a"}, 422, "only"),
        ({"a": "{a}"}, 422, "query.b"),
    ],
)
def test_disagreements_refuse_what_they_cannot_compare(world, params, status, says):
    client, known = world
    query = {k: v.format(**known) for k, v in params.items()}
    for path in ("/compare/disagreements", "/compare/disagreements.png"):
        problem = assert_problem(client.get(path, params=query), status)
        assert says.format(**known) in problem["detail"], problem


def test_a_models_split_predictions_are_read_as_the_worker_stored_them(world, monkeypatch):
    """No split is recomputed by the API for a model the worker stored predictions with."""
    from service.api import inference
    from service.api.routes import plots as plots_routes

    client, ids = world
    monkeypatch.setattr(inference, "_predict", lambda *args: pytest.fail("the API recomputed a split"))
    monkeypatch.setattr(
        plots_routes, "first_mistakes", lambda *args: pytest.fail("the API looked for mistakes")
    )
    figure = client.get(f"/models/{ids['fashion']}/mistakes.png", params={"split": "train", "limit": 3})
    assert figure.status_code == 200 and figure.headers["content-type"] == "image/png"
    listed = client.get(f"/models/{ids['fashion']}/predictions/train", params={"label": 3, "limit": 500})
    assert listed.status_code == 200, listed.text
    body = listed.json()
    # what its confusion matrix counts: the images it trained on, not the validation images
    matrix = client.get(f"/models/{ids['fashion']}/confusion-matrix", params={"split": "train"}).json()[
        "matrix"
    ]
    assert body["count"] == sum(matrix[3]) < 6000
    for predicted, cell in enumerate(matrix[3]):
        params = {"label": 3, "predicted": predicted, "limit": 1}
        assert (
            client.get(f"/models/{ids['fashion']}/predictions/train", params=params).json()["count"] == cell
        )
    sample = body["data"][:5]
    for row in sample:
        one = client.get(f"/models/{ids['fashion']}/predictions/train/{row['index']}").json()
        assert one["predicted"] == row["predicted"] and one["label"] == 3


def test_with_reads_protected_figures_and_images_are_not_for_shared_caches(world):
    client, ids = world
    protected = Settings(
        **(client.app.state.settings.model_dump() | {"api_token": "t0k", "protect_reads": True})
    )
    figures = [
        f"/models/{ids['a']}/confusion-matrix.png",
        f"/models/{ids['a']}/loss-curve.png",
        f"/models/{ids['a']}/mistakes.png?limit=1",
        f"/compare.png?ids={ids['a']},{ids['b']}",
        "/datasets/mnist/test/0.png",
    ]
    with TestClient(create_app(protected)) as reader:
        for path in figures:
            response = reader.get(path, headers={"authorization": "Bearer t0k"})
            assert response.headers["cache-control"] == "private, max-age=86400", path
    for path in figures:  # open reads: any cache may keep them
        assert client.get(path).headers["cache-control"] == "public, max-age=86400", path


def test_each_train_image_says_whether_the_model_trained_on_it(world, mnist):
    """GET .../predictions/train/9 (a validation image) and /59999 (past train_limit) answered as any
    trained image; the Datasets page paired a page of images with a page of trained-on predictions."""
    client, ids = world
    model = ids["a"]
    spec = client.get(f"/jobs/{model}").json()["spec"]
    labels = mnist.split("train")[1]
    held = validation_indices(labels, spec["validation_size"])
    trained = np.setdiff1d(np.arange(len(labels)), held)[: spec["train_limit"]]
    expected = {int(held[0]): "validation", int(trained[0]): "trained", len(labels) - 1: "unused"}
    for index, use in expected.items():
        one = client.get(f"/models/{model}/predictions/train/{index}").json()
        assert (one["index"], one["use"]) == (index, use), one
    assert client.get(f"/models/{model}/predictions/test/0").json()["use"] == "test"

    start = int(held[0]) - 3  # a page across the first validation image
    page = client.get(
        f"/models/{model}/predictions/train", params={"images": "all", "offset": start, "limit": 8}
    )
    body = page.json()
    assert body["count"] == len(labels), body
    assert [row["index"] for row in body["data"]] == list(range(start, start + 8))
    assert [row["use"] for row in body["data"]][3] == "validation"
    for row in body["data"]:
        assert (
            client.get(f"/models/{model}/predictions/train/{row['index']}").json()["predicted"]
            == row["predicted"]
        )
    counted = client.get(f"/models/{model}/predictions/train", params={"limit": 500}).json()
    assert counted["count"] == spec["train_limit"] and {row["use"] for row in counted["data"]} == {"trained"}
    problem = assert_problem(client.get(f"/models/{model}/predictions/train", params={"images": "some"}), 422)
    assert "query.images" in problem["detail"], problem


def test_fields_that_do_not_shape_a_model_are_not_said_to_differ():
    """A compare of two models listed log_every among the 8 settings that differ (it only sets how often a
    loss is recorded), and momentum between two sgd models, which never read it."""
    from service.api.presenters import differing
    from service.ml.spec import TrainSpec

    base = {"backend": "numpy"}
    assert differing([TrainSpec(**base, log_every=10), TrainSpec(**base, log_every=100)]) == []
    assert differing([TrainSpec(**base, momentum=0.5), TrainSpec(**base, momentum=0.9)]) == []
    heavy_ball = TrainSpec(**base, optimizer="momentum", learning_rate=0.1)
    assert differing([TrainSpec(**base), heavy_ball]) == ["optimizer"]  # one change, not two
    assert differing([heavy_ball, heavy_ball.model_copy(update={"momentum": 0.5})]) == ["momentum"]


def test_a_legend_names_first_the_field_that_tells_most_models_apart():
    """Twelve models differing in seed (twelve values) and activation (two): entries cut after 'activation'
    read alike; the seed comes first."""
    specs = [tiny_spec(seed=k, activation="relu" if k % 2 else "tanh") for k in range(12)]
    assert labels(list(range(1, 13)), specs)[:2] == [
        "#1 seed=0, activation=tanh",
        "#2 seed=1, activation=relu",
    ]
