"""A job's one step is bounded: images x parameters (its time, which a cancel waits out) by
MLPLAB_MAX_BATCH_PARAMETERS, images x hidden units (its memory) by MLPLAB_MAX_BATCH_UNITS; on POST /jobs,
each point of a sweep, a study's costliest corner and a reproduced model, each 422 naming the field and
the setting and storing nothing."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.ml.spec import TrainSpec
from tests.conftest import assert_problem
from tests.factories import job_body

# [4090, 4090]: 19,983,750 parameters; 5,004 images x that = 99,998,685,000, the default's edge
WIDE = {"backend": "numpy", "hidden_layers": [4090, 4090]}
# [4096]: 21,972 images x 4,096 units = 89,997,312, MLPLAB_MAX_BATCH_UNITS's default's edge
ONE_LAYER = {"backend": "numpy", "hidden_layers": [4096]}


def nothing_stored(client) -> bool:
    return all(client.get(f"/{what}").json()["count"] == 0 for what in ("jobs", "sweeps", "studies"))


@pytest.mark.parametrize(
    ("body", "setting", "says"),
    [
        (WIDE | {"batch_size": 5005}, "MLPLAB_MAX_BATCH_PARAMETERS", "100,018,668,750"),
        (ONE_LAYER | {"batch_size": 21_973}, "MLPLAB_MAX_BATCH_UNITS", "21,973 images x 4,096 hidden units"),
        # the reviewer's: 68-97 s a step on 2 cores, 4.9 GB
        (WIDE | {"batch_size": 60_000}, "MLPLAB_MAX_BATCH_PARAMETERS", "55,000 training images"),
        (
            {"backend": "torch", "hidden_layers": [3773], "batch_size": 60_000},
            "MLPLAB_MAX_BATCH_PARAMETERS",
            "",
        ),
        # within the parameters' limit, not the units': 23,000 x 4,096 = 94,208,000
        (ONE_LAYER | {"batch_size": 23_000}, "MLPLAB_MAX_BATCH_UNITS", "94,208,000"),
    ],
)
def test_a_step_past_a_limit_is_a_422_naming_batch_size_and_the_setting(client, body, setting, says):
    problem = assert_problem(client.post("/jobs", json=body), 422)
    assert problem["invalid_params"][0]["name"] == "body.batch_size", problem
    assert setting in problem["detail"] and says in problem["detail"]
    assert nothing_stored(client)


def test_the_largest_steps_are_accepted(client):
    for body in (WIDE | {"batch_size": 5004}, ONE_LAYER | {"batch_size": 21_972}):
        assert client.post("/jobs", json=body).status_code == 202, body
    # the default network full-batch, on every training image
    full = {"backend": "numpy", "batch_size": 60_000, "validation_size": 0}
    assert client.post("/jobs", json=full).status_code == 202


def test_a_step_counts_the_images_it_trains_on_not_the_batch_size_asked_for(client):
    # tests/e2e's full batch: 55,000 images (5,000 validated on) through 1,536 units
    full = {"backend": "numpy", "hidden_layers": [1024, 512], "batch_size": 60_000}
    assert client.post("/jobs", json=full).status_code == 202
    assert (
        client.post("/jobs", json=ONE_LAYER | {"batch_size": 60_000, "train_limit": 21_972}).status_code
        == 202
    )
    problem = assert_problem(
        client.post("/jobs", json=ONE_LAYER | {"batch_size": 60_000, "train_limit": 21_973}), 422
    )
    assert "MLPLAB_MAX_BATCH_UNITS" in problem["detail"]


def test_the_limits_are_settings(tmp_path):
    from fastapi.testclient import TestClient

    from service.main import create_app
    from service.settings import Settings

    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 's.db'}", max_batch_parameters=10**12, max_batch_units=10**9
    )
    with TestClient(create_app(settings)) as client:
        assert client.post("/jobs", json=WIDE | {"batch_size": 30_000}).status_code == 202
    # 256 images x 16 units = 4,096
    settings = Settings(database_url=f"sqlite:///{tmp_path / 't.db'}", max_batch_units=256 * 16 - 1)
    with TestClient(create_app(settings)) as client:
        problem = assert_problem(client.post("/jobs", json=job_body(batch_size=256)), 422)
        assert "4,095 (MLPLAB_MAX_BATCH_UNITS)" in problem["detail"]


@pytest.mark.parametrize(
    ("base", "grid", "name", "setting"),
    [
        (ONE_LAYER, {"batch_size": [64, 21_973]}, "body.grid.batch_size", "MLPLAB_MAX_BATCH_UNITS"),
        (
            {"backend": "numpy", "batch_size": 8000},
            {"hidden_layers": [[16], [4090, 4090]]},
            "body.grid.hidden_layers",
            "MLPLAB_MAX_BATCH_PARAMETERS",
        ),
        (
            WIDE | {"batch_size": 6000},
            {"seed": [0, 1]},
            "body.base.batch_size",
            "MLPLAB_MAX_BATCH_PARAMETERS",
        ),
    ],
)
def test_a_sweep_with_one_refused_point_creates_nothing(client, base, grid, name, setting):
    problem = assert_problem(client.post("/sweeps", json={"base": base, "grid": grid}), 422)
    assert name in [p["name"] for p in problem["invalid_params"]], problem
    assert setting in problem["detail"]
    assert nothing_stored(client)


STUDY = {"sampler": "random", "trials": 2, "parallelism": 2}  # trials within a space of two choices


def study_base(base: dict, space: dict) -> dict:
    """job_body on every training image, with `base` on top, less the fields `space` searches."""
    return {k: v for k, v in (job_body(train_limit=None) | base).items() if k not in space}


@pytest.mark.parametrize(
    ("base", "space", "name", "setting"),
    [
        (ONE_LAYER, {"batch_size": {"int": [32, 30_000], "log": True}}, "body.space.batch_size", "UNITS"),
        (
            {"batch_size": 8000},
            {"hidden_layers": {"choice": [[16], [4090, 4090]]}},
            "body.space.hidden_layers",
            "PARAMETERS",
        ),
        # each end alone fits: only the corner of the widest network and the largest batch is refused
        (
            {},
            {"batch_size": {"int": [32, 6000]}, "hidden_layers": {"choice": [[4090, 4090], [16]]}},
            "body.space.batch_size",
            "PARAMETERS",
        ),
        # a space of train_limit under a full batch: its largest train_limit makes the largest step
        (
            ONE_LAYER | {"batch_size": 60_000},
            {"train_limit": {"int": [1000, 30_000]}},
            "body.space.train_limit",
            "UNITS",
        ),
    ],
)
def test_a_study_whose_costliest_corner_is_refused_creates_nothing(client, base, space, name, setting):
    body = STUDY | {"base": study_base(base, space), "space": space}
    problem = assert_problem(client.post("/studies", json=body), 422)
    assert name in [p["name"] for p in problem["invalid_params"]], problem
    assert f"MLPLAB_MAX_BATCH_{setting}" in problem["detail"]
    assert nothing_stored(client)


def test_a_study_within_the_limits_is_accepted(client):
    space = {"batch_size": {"int": [32, 5004]}, "hidden_layers": {"choice": [[4090, 4090], [16]]}}
    body = STUDY | {"base": study_base({}, space), "space": space}
    assert client.post("/studies", json=body).status_code == 202


def test_a_model_whose_step_is_past_the_limits_now_is_not_reproduced(client, settings):
    from service.store.db import make_engine, make_sessionmaker
    from tests.factories import store_trained_job

    engine = make_engine(settings.database_url)
    spec = TrainSpec.model_validate(ONE_LAYER | {"epochs": 1, "batch_size": 25_000, "validation_size": 0})
    model = store_trained_job(make_sessionmaker(engine), spec, every=1)
    engine.dispose()
    problem = assert_problem(client.post(f"/models/{model}/reproduce"), 422)
    assert problem["invalid_params"][0]["name"] == "body.batch_size"
    assert "MLPLAB_MAX_BATCH_UNITS" in problem["detail"]
    assert client.get("/jobs").json()["count"] == 1  # the model's own job only


def test_a_sweep_of_train_limits_is_not_blamed_for_a_step_its_batch_size_makes(settings):
    """The step is batch_size images whatever train_limit is: the 422 names base.batch_size, not the grid."""
    tight = settings.model_copy(update={"max_batch_units": 49_999})
    with TestClient(create_app(tight)) as client:
        base = job_body(batch_size=100, hidden_layers=[500])
        del base["train_limit"]  # the grid's
        body = {"base": base, "grid": {"train_limit": [50_000]}}
        problem = assert_problem(client.post("/sweeps", json=body), 422, "MLPLAB_MAX_BATCH_UNITS")
        assert problem["invalid_params"][0]["name"] == "body.base.batch_size", problem
