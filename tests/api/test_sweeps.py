"""Sweeps: a grid becomes its cartesian product of jobs, all or nothing, read back best first."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy import stats

from service.main import create_app
from service.ml.spec import TrainSpec
from service.settings import Settings
from tests.conftest import assert_problem
from tests.factories import job_body
from tests.support import real_data_dir
from workers.worker import run_worker

NOTEBOOK = {
    "base": {"backend": "numpy", "activation": "sigmoid", "optimizer": "sgd"},
    "grid": {"init": ["random", "glorot"], "learning_rate": [0.01, 0.05, 0.1, 0.3]},
}


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        data_dir=real_data_dir(),
        download=False,
        max_queued=20,
        max_sweep_jobs=10,
    )


def _jobs(client) -> list[dict]:
    return client.get("/jobs", params={"limit": 500}).json()["data"]


def test_the_notebooks_experiment_is_one_request(client):
    response = client.post("/sweeps", json=NOTEBOOK)
    assert response.status_code == 202, response.text
    sweep = response.json()
    assert response.headers["location"] == f"/sweeps/{sweep['id']}"
    assert sweep["count"] == 8 and len(sweep["jobs"]) == 8
    assert sweep["status"] == {
        "queued": 8,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 0,
        "pruned": 0,
    }
    expected = [
        TrainSpec.model_validate(NOTEBOOK["base"] | {"init": i, "learning_rate": lr}).model_dump(mode="json")
        for i, lr in itertools.product(*NOTEBOOK["grid"].values())
    ]
    assert [job["spec"] for job in sweep["jobs"]] == expected  # the product, in the grid's order
    assert {job["sweep_id"] for job in sweep["jobs"]} == {sweep["id"]}
    assert sweep["grid"] == NOTEBOOK["grid"]
    assert sweep["base"] | sweep["grid"] == expected[0] | sweep["grid"]
    assert sweep["base"]["activation"] == "sigmoid" and "init" not in sweep["base"]
    # stored, not just answered: the queue holds exactly these jobs
    assert sorted(j["id"] for j in _jobs(client)) == sorted(j["id"] for j in sweep["jobs"])
    assert client.get(f"/sweeps/{sweep['id']}").json() == sweep


@pytest.mark.parametrize(
    "body,name,says",
    [
        ({"grid": {"learning_rate": [0.1, -1]}}, "body.grid.learning_rate", "-1"),
        ({"grid": {"hidden_layers": [[32], [0]]}}, "body.grid.hidden_layers", "[0]"),
        ({"grid": {"activation": ["relu", "softplus"]}}, "body.grid.activation", "'softplus'"),
        ({"grid": {"epochs": [1, 2.5]}}, "body.grid.epochs", "2.5"),
        ({"grid": {"dropout": [0.1, 0.5]}}, "body.grid.dropout", "not a TrainSpec field"),
        ({"grid": {"learning_rte": [0.1, 0.5]}}, "body.grid.learning_rte", "did you mean learning_rate?"),
        # the part of a value at fault, and what was sent (the whole path in base, as POST /jobs names it)
        (
            {"grid": {"seed": [1, 2]}, "base": {"hidden_layers": [8, 0]}},
            "body.base.hidden_layers.1",
            "(got 0)",
        ),
        (
            {"grid": {"early_stopping": [{"patience": 1}, {"patience": 999}]}},
            "body.grid.early_stopping",
            "patience: Input should be less than or equal to 200 (got 999), in {'patience': 999}",
        ),
        ({"grid": {"seed": [1, 2]}, "base": {"epoch": 2}}, "body.base.epoch", "did you mean epochs?"),
        ({"grid": {"init": []}}, "body.grid.init", "empty list"),
        ({"grid": {"dataset": ["mnist", "fashion-mnist"]}}, "body.grid.dataset", "on one dataset"),
        ({"grid": {"validation_size": [20, 1000]}}, "body.grid.validation_size", "same validation images"),
        # settings no run reads: three jobs of one model, ranked as three configurations
        ({"grid": {"log_every": [1, 50]}}, "body.grid.log_every", "not what is learned"),
        (
            {"grid": {"momentum": [0.1, 0.9]}, "base": {"optimizer": "adam"}},
            "body.grid.momentum",
            "only the momentum optimizer reads it, and this search's (adam) does not",
        ),
        ({"grid": {"momentum": [0.1, 0.9]}}, "body.grid.momentum", "this search's (sgd) does not"),
        ({"grid": {"momentum": [0.5], "seed": [1, 2]}}, "body.grid.momentum", "(sgd) does not"),
        ({"grid": {"momentum": [0.9], "seed": [1, 2]}}, "body.grid.momentum", "(sgd) does not"),
        ({"grid": {}}, "body.grid", "at least one"),
        ({"grid": {"seed": list(range(11))}}, "body.grid", "MLPLAB_MAX_SWEEP_JOBS"),
        # counted before any value is read as a spec, which took seconds for 100,000 (an attacker's pass)
        ({"grid": {"learning_rate": [0.1] * 11}}, "body.grid", "11 jobs; the limit is 10"),
        ({"grid": {"seed": [0, 1]}, "base": {"epochs": 0}}, "body.base.epochs", "greater than or equal to 1"),
        (
            {"grid": {"hidden_layers": [[32], [4096, 4096, 4096]]}},
            "body.grid.hidden_layers",
            "MLPLAB_MAX_PARAMETERS",
        ),
    ],
)
def test_an_invalid_grid_is_refused_whole_and_names_the_value(client, body, name, says):
    body = {"base": {"backend": "numpy"} | body.get("base", {}), "grid": body["grid"]}
    problem = assert_problem(client.post("/sweeps", json=body), 422)
    assert name in [p["name"] for p in problem["invalid_params"]], problem
    assert says in problem["detail"]
    assert _jobs(client) == []  # not one job of the valid combinations was created


def test_an_optimizer_beside_a_momentum_it_never_reads_is_one_job(client):
    """optimizer [sgd, momentum] x momentum [0.5, 0.9] queued two sgd jobs of one model, ranked apart."""
    body = {"base": {"backend": "numpy"}, "grid": {"optimizer": ["sgd", "momentum"], "momentum": [0.5, 0.9]}}
    response = client.post("/sweeps", json=body)
    assert response.status_code == 202, response.text
    specs = [(job["spec"]["optimizer"], job["spec"]["momentum"]) for job in response.json()["jobs"]]
    assert sorted(specs) == [("momentum", 0.5), ("momentum", 0.9), ("sgd", 0.5)]


def test_a_value_listed_twice_or_a_field_also_in_base_is_refused_naming_each(client):
    """[1, 0.5, 1.0] was one learning rate trained once, and a base learning rate beside a grid of them was
    dropped, both without a word (a typo for 0.1, a base left over); a study's space refuses both."""
    body = {
        "base": {"backend": "numpy", "l2": 1e-4},
        "grid": {"learning_rate": [1, 0.5, 1.0], "init": ["he", "glorot", "he"], "l2": [0.0]},  # 9 jobs of 10
    }
    problem = assert_problem(client.post("/sweeps", json=body), 422)
    assert problem["invalid_params"] == [
        {"name": "body.grid.learning_rate", "reason": "1.0 is listed twice (as the spec stores it)"},
        {"name": "body.grid.init", "reason": '"he" is listed twice (as the spec stores it)'},
        {
            "name": "body.grid.l2",
            "reason": "also set in base: a field is either fixed (base) or varied (grid)",
        },
    ]
    assert _jobs(client) == []
    # said once, with how often; a seed in both as any field; a value the spec refuses, for what it is
    body = {
        "base": {"backend": "numpy", "seed": 1},
        "grid": {"learning_rate": [0.1, 0.1, 0.1], "seed": [2], "train_limit": [None, None]},
    }
    assert [
        p["reason"] for p in assert_problem(client.post("/sweeps", json=body), 422)["invalid_params"]
    ] == [
        "0.1 is listed 3 times (as the spec stores it)",
        "also set in base: a field is either fixed (base) or varied (grid)",
        "null is listed twice (as the spec stores it)",
    ]
    nan = '{"base": {"backend": "numpy"}, "grid": {"l2": [NaN, NaN]}}'
    reasons = assert_problem(
        client.post("/sweeps", content=nan, headers={"content-type": "application/json"}), 422
    )
    assert reasons["detail"] == "body.grid.l2: Input should be a finite number (got NaN)"


@pytest.mark.parametrize("field", ["l2", "momentum"])
def test_zero_and_negative_zero_are_one_value(client, field):
    body = {"base": {"backend": "numpy", "optimizer": "momentum"}, "grid": {field: [0.0, -0.0]}}
    problem = assert_problem(client.post("/sweeps", json=body), 422)
    assert problem["detail"] == f"body.grid.{field}: 0.0 is listed twice (as the spec stores it)"
    sweep = client.post("/sweeps", json=body | {"grid": {field: [-0.0, 0.5]}}).json()
    assert str(sweep["jobs"][0]["spec"][field]) == "0.0"  # not "-0.0": the spec a model's key is built from


def test_the_sweep_limit_is_named(client):
    problem = assert_problem(
        client.post(
            "/sweeps",
            json={"base": {"backend": "numpy"}, "grid": {"seed": [0, 1, 2, 3], "epochs": [1, 2, 3]}},
        ),
        422,
    )
    assert "4 x 3 = 12 jobs; the limit is 10" in problem["detail"]


def test_the_queue_limit_holds_for_the_whole_sweep(client):
    assert (
        client.post(
            "/sweeps", json={"base": {"backend": "numpy"}, "grid": {"seed": list(range(10))}}
        ).status_code
        == 202
    )
    assert (
        client.post(
            "/sweeps", json={"base": {"backend": "numpy"}, "grid": {"seed": list(range(5))}}
        ).status_code
        == 202
    )
    over = client.post("/sweeps", json={"base": {"backend": "numpy"}, "grid": {"seed": list(range(6))}})
    problem = assert_problem(over, 429)
    assert over.headers["retry-after"] == "30"
    assert "adds 6 jobs to the 15 queued; the limit is 20 (MLPLAB_MAX_QUEUED)" in problem["detail"]
    assert len(_jobs(client)) == 15  # none of the six
    assert (
        client.post(
            "/sweeps", json={"base": {"backend": "numpy"}, "grid": {"seed": list(range(5))}}
        ).status_code
        == 202
    )
    assert len(_jobs(client)) == 20


def test_a_sweep_needs_the_writer_token(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 't.db'}", api_token="s3cret")
    with TestClient(create_app(settings)) as client:
        assert_problem(client.post("/sweeps", json=NOTEBOOK), 401)
        assert (
            client.post("/sweeps", json=NOTEBOOK, headers={"Authorization": "Bearer s3cret"}).status_code
            == 202
        )


def test_an_unknown_sweep_is_a_404(client):
    problem = assert_problem(client.get("/sweeps/0123456789ab"), 404)
    assert problem["detail"] == "There is no sweep 0123456789ab."


def test_a_finished_sweep_lists_its_jobs_best_first(client, settings):
    body = {
        "base": job_body(log_every=4),
        "grid": {"learning_rate": [0.001, 0.5, 0.05], "activation": ["relu"]},
    }
    sweep = client.post("/sweeps", json=body).json()
    cancelled = sweep["jobs"][0]["id"]  # the first one never runs
    assert client.post(f"/jobs/{cancelled}/cancel").status_code == 200
    run_worker(settings, once=True)
    done = client.get(f"/sweeps/{sweep['id']}").json()
    assert done["status"] == {
        "queued": 0,
        "running": 0,
        "succeeded": 2,
        "failed": 0,
        "cancelled": 1,
        "pruned": 0,
    }
    assert [j["status"] for j in done["jobs"]] == ["succeeded", "succeeded", "cancelled"]
    accuracies = [j["validation_accuracy"] for j in done["jobs"][:2]]  # ranked on validation, not test
    assert accuracies == sorted(accuracies, reverse=True) and accuracies[0] > 0.2
    assert done["ranked_by"] == "validation_accuracy"
    assert done["jobs"][-1]["id"] == cancelled and done["jobs"][-1]["test_accuracy"] is None
    assert done["grid"] == {"learning_rate": [0.001, 0.5, 0.05]}  # activation took one value: it is shared


def test_sweeps_are_listed_newest_first(client):
    assert client.get("/sweeps").json() == {"data": [], "count": 0}
    first = client.post("/sweeps", json={"base": {"backend": "numpy"}, "grid": {"seed": [1, 2]}}).json()
    client.post("/jobs", json={"backend": "numpy"})  # a lone job is no sweep
    second = client.post(
        "/sweeps", json={"base": {"backend": "torch"}, "grid": {"init": ["he", "glorot"]}}
    ).json()
    listed = client.get("/sweeps").json()
    assert listed["count"] == 2
    assert [s["id"] for s in listed["data"]] == [second["id"], first["id"]]
    assert listed["data"][1]["grid"] == {"seed": [1, 2]} and listed["data"][1]["count"] == 2
    page = client.get("/sweeps", params={"limit": 1, "offset": 1}).json()
    assert page["count"] == 2 and [s["id"] for s in page["data"]] == [first["id"]]
    assert_problem(client.get("/sweeps", params={"limit": 0}), 422)


def test_a_sweep_with_seeds_ranks_configurations_with_confidence_intervals(client, settings):
    """2 configurations x 3 seeds: each configuration's statistics are scipy's, recomputed here from its
    jobs' own accuracies; ranked by mean validation accuracy; the other tested against the best."""
    base = job_body(activation="relu", init="he", optimizer="adam", epochs=2, log_every=8)
    sweep = client.post(
        "/sweeps", json={"base": base, "grid": {"learning_rate": [0.001, 0.01]}, "replicates": 3}
    )
    assert sweep.status_code == 202, sweep.text
    created = sweep.json()
    assert created["count"] == 6
    assert [(j["spec"]["learning_rate"], j["spec"]["seed"]) for j in sorted(created["jobs"], key=lambda j: j["id"])] == [
        (lr, seed) for lr in (0.001, 0.01) for seed in (0, 1, 2)
    ]  # fmt: skip
    run_worker(settings, once=True)
    done = client.get(f"/sweeps/{created['id']}").json()
    assert done["status"]["succeeded"] == 6 and done["ranked_by"] == "validation_accuracy"
    jobs = {j["id"]: j for j in done["jobs"]}
    configurations = done["configurations"]
    assert [c["n"] for c in configurations] == [3, 3] and [c["seeds"] for c in configurations] == [
        [0, 1, 2]
    ] * 2
    assert [c["failed"] for c in configurations] == [0, 0]
    assert sorted(c["hyperparameters"]["learning_rate"] for c in configurations) == [0.001, 0.01]
    samples = []
    for c in configurations:
        assert {jobs[i]["spec"]["learning_rate"] for i in c["jobs"]} == {
            c["hyperparameters"]["learning_rate"]
        }
        for metric in ("validation_accuracy", "test_accuracy"):
            values = [jobs[i][metric] for i in c["jobs"]]
            mean, std = np.mean(values), np.std(values, ddof=1)
            low, high = stats.t.interval(0.95, 2, loc=mean, scale=stats.sem(values))
            assert c[metric].pop("clipped") == (low < 0 or high > 1)
            assert c[metric] == pytest.approx(
                {"mean": mean, "std": std, "ci_low": max(low, 0), "ci_high": min(high, 1)}, rel=1e-9
            )
        models = [client.get(f"/models/{i}").json() for i in c["jobs"]]
        assert c["seconds"] == pytest.approx(np.median([m["seconds"] for m in models]))
        # each replicate's model says its seed (models listed alike, told apart by nothing shown)
        assert [m["seed"] for m in models] == [jobs[i]["spec"]["seed"] for i in c["jobs"]]
        assert {(m["momentum"], m["early_stopping"]) for m in models} == {(0.9, None)}
        by_seed = dict(zip(c["seeds"], c["jobs"], strict=True))
        samples.append([jobs[by_seed[seed]]["validation_accuracy"] for seed in (0, 1, 2)])
    best, other = configurations
    assert best["validation_accuracy"]["mean"] >= other["validation_accuracy"]["mean"]
    assert (best["versus_best"], best["tied_with_best"], best["p_value"]) == ("best", True, None)
    # both ran seeds 0-2: paired by seed
    p = stats.ttest_rel(samples[0], samples[1]).pvalue
    assert other["p_value"] == pytest.approx(p, rel=1e-9) and other["tied_with_best"] == (p >= 0.05)
    # in the words the CLI and pages show: p >= 0.05 is "can't tell", never a tie
    assert other["versus_best"] == ("can't tell" if p >= 0.05 else "behind")
    assert (other["tested_by"], other["pairs"]) == ("paired", 3)
    # and how far behind, by that test: its accuracy minus the best's, with the interval scipy gives
    interval = stats.ttest_rel(samples[1], samples[0]).confidence_interval(0.95)
    assert (best["gap_to_best"], other["gap_to_best"]) == (
        None,
        pytest.approx(
            {
                "difference": np.mean(samples[1]) - np.mean(samples[0]),
                "ci_low": interval.low,
                "ci_high": interval.high,
            },
            rel=1e-9,
        ),
    )
    # the jobs themselves, best validation accuracy first
    ranked = [j["validation_accuracy"] for j in done["jobs"]]
    assert ranked == sorted(ranked, reverse=True)


@pytest.mark.parametrize(
    "extra,name,says",
    [
        ({"seeds": [0, 1], "replicates": 2}, "body.replicates", "not both"),
        ({"seeds": [3, 1, 3]}, "body.seeds", "3 is listed twice"),
        ({"seeds": [0, -1]}, "body.seeds", "greater than or equal to 0 (got -1)"),
        (
            {"seeds": [0, 1], "grid": {"seed": [5, 6]}},
            "body.grid.seed",
            "`seeds` sets the seeds: leave seed out of the grid",  # "the seeds are seeds's"
        ),
        (
            {"replicates": 2, "base": {"backend": "numpy", "seed": 4}},
            "body.base.seed",
            "`replicates` sets the seeds: leave seed out of the base",
        ),
        (
            {"replicates": 6, "grid": {"init": ["he", "glorot"]}},
            "body.replicates",
            "2 x 6 = 12 jobs; the limit is 10",
        ),
        ({"replicates": 0}, "body.replicates", "greater than or equal to 1"),
        ({"seeds": []}, "body.seeds", "at least 1 item"),
        ({"seeds": list(range(101))}, "body.seeds", "at most 100 items"),
    ],
)
def test_invalid_seeds_are_refused_and_named(client, extra, name, says):
    body = {"base": {"backend": "numpy"}, "grid": {"init": ["he"]}} | extra
    problem = assert_problem(client.post("/sweeps", json=body), 422)
    assert name in [p["name"] for p in problem["invalid_params"]], problem
    assert says in problem["detail"]
    assert _jobs(client) == []


def test_replicates_alone_make_a_sweep_of_one_configuration(client):
    sweep = client.post("/sweeps", json={"base": {"backend": "numpy"}, "replicates": 4}).json()
    assert sorted(j["spec"]["seed"] for j in sweep["jobs"]) == [0, 1, 2, 3]
    assert sweep["grid"] == {"seed": [0, 1, 2, 3]}
    assert len(sweep["configurations"]) == 1 and sweep["configurations"][0]["hyperparameters"] == {}
    assert sweep["configurations"][0]["n"] == 0  # none has run yet


def test_without_a_validation_split_rankings_fall_back_to_test_and_say_so(client, settings):
    notebook = job_body(validation_size=0, activation="relu", optimizer="adam")
    sweep = client.post("/sweeps", json={"base": notebook, "grid": {"learning_rate": [0.0001, 0.01]}}).json()
    validated = client.post("/jobs", json=job_body()).json()["id"]
    run_worker(settings, once=True)
    done = client.get(f"/sweeps/{sweep['id']}").json()
    assert done["ranked_by"] == "test_accuracy (no validation split)"
    tests = [j["test_accuracy"] for j in done["jobs"]]
    assert tests == sorted(tests, reverse=True) and {j["validation_accuracy"] for j in done["jobs"]} == {None}
    assert [c["validation_accuracy"] for c in done["configurations"]] == [None, None]
    assert [c["versus_best"] for c in done["configurations"]] == ["best", None]  # one run each: no test
    described = client.get("/openapi.json").json()["components"]["schemas"]["ConfigurationPublic"]
    assert described["properties"]["tied_with_best"]["deprecated"] is True
    assert "which with few seeds is no tie" in described["properties"]["versus_best"]["description"]
    models = client.get("/models").json()
    assert (
        models["ranked_by"] == "validation_accuracy, then test_accuracy for those without a validation split"
    )
    assert models["data"][0]["id"] == validated  # those with a validation split first
    assert [m["test_accuracy"] for m in models["data"][1:]] == sorted(tests, reverse=True)
    by_test = client.get("/models", params={"sort": "test_accuracy"}).json()
    assert by_test["ranked_by"] == "test_accuracy"
    assert [m["test_accuracy"] for m in by_test["data"]] == sorted(
        (m["test_accuracy"] for m in models["data"]), reverse=True
    )


@contextmanager
def sweep_ended_as(tmp_path, body: dict, accuracy_of) -> Iterator[tuple[TestClient, str]]:
    """A client and the id of a sweep (`body`) whose jobs a stand-in worker has ended: succeeded with
    validation accuracy accuracy_of(learning_rate, seed), or failed where that is None."""
    from service.store.db import make_engine, make_sessionmaker, session_scope
    from service.store.jobs import claim_job, fail_job, finish_job
    from tests.store.test_jobs import result

    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'p.db'}", data_dir=real_data_dir(), download=False
    )
    with TestClient(create_app(settings)) as client:
        sweep = client.post("/sweeps", json=body).json()
        engine = make_engine(settings.database_url)
        with session_scope(make_sessionmaker(engine)) as s:
            while (job := claim_job(s, "w")) is not None:
                accuracy = accuracy_of(job.spec["learning_rate"], job.spec["seed"])
                if accuracy is None:
                    fail_job(s, job.id, "w", "the loss is nan")
                else:
                    finish_job(s, job.id, "w", result(0.9, accuracy))
        engine.dispose()
        yield client, sweep["id"]


def test_promote_picks_the_best_configurations_best_model_not_a_lucky_seed(tmp_path):
    """lr=0.3 diverges on one seed of two and reaches 0.99 on the other; lr=0.01 reaches 0.95 on both:
    the best configuration is lr=0.01, and its model is promoted, not the single best run."""
    body = {"base": job_body(), "grid": {"learning_rate": [0.3, 0.01]}, "replicates": 2}
    outcome = {(0.3, 0): 0.99, (0.3, 1): None, (0.01, 0): 0.95, (0.01, 1): 0.951}
    with sweep_ended_as(tmp_path, body, lambda lr, seed: outcome[lr, seed]) as (client, sweep):
        ranked = client.get(f"/sweeps/{sweep}").json()["configurations"]
        assert [(c["hyperparameters"]["learning_rate"], c["failed"]) for c in ranked] == [(0.01, 0), (0.3, 1)]
        promoted = client.post(f"/sweeps/{sweep}/promote", json={"alias": "champion"}).json()
        steady = client.get(f"/models/{promoted['model_id']}").json()
        assert steady["learning_rate"] == 0.01 and steady["validation_accuracy"] == 0.951
        detail = client.get("/aliases/champion").json()["history"][0]["detail"]
        assert detail == (
            f"the best model of sweep {sweep}'s best configuration by validation_accuracy; it is not "
            "shown better than the next configuration (no test)"  # whose one succeeded seed did better
        )


def test_a_sweep_is_promoted_once_its_jobs_have_ended_not_while_one_may_yet_beat_its_best(tmp_path):
    """Promoted with one job of two trained, the alias stayed on a model the finished sweep ranked behind."""
    body = {"base": job_body(), "grid": {"learning_rate": [0.3, 0.01]}}
    with sweep_ended_as(tmp_path, body, lambda lr, seed: 0.9) as (client, sweep):
        more = client.post("/sweeps", json=body | {"grid": {"learning_rate": [0.2, 0.02]}}).json()["id"]
        from service.store.db import make_engine, make_sessionmaker, session_scope
        from service.store.jobs import claim_job, finish_job
        from tests.store.test_jobs import result

        engine = make_engine(client.app.state.settings.database_url)
        with session_scope(make_sessionmaker(engine)) as s:
            finish_job(s, claim_job(s, "w").id, "w", result(0.9, 0.5))  # one trained, one queued
        engine.dispose()
        promote = f"/sweeps/{more}/promote"
        assert_problem(
            client.post(promote, json={"alias": "champion"}),
            409,
            f"Sweep {more} has 1 job still queued or running: its best is known once they end. Wait for "
            f"it, or cancel it (POST /sweeps/{more}/cancel; its running jobs stop at their next write) to "
            "promote the best of those that ended.",
        )
        assert client.get("/aliases").json()["count"] == 0
        assert client.post(f"/sweeps/{more}/cancel").status_code == 200
        assert client.post(promote, json={"alias": "champion"}).status_code == 201
        assert client.post(f"/sweeps/{sweep}/promote", json={"alias": "ended"}).status_code == 201


@pytest.mark.parametrize(
    ("runner_up", "caveat"),
    [
        ((0.50, 0.52, 0.49), ""),
        ((0.949, 0.953, 0.950), "; it is not shown better than the next configuration (p = "),
    ],
    ids=["behind", "cant-tell"],
)
def test_a_promotion_keeps_what_the_sweep_said_of_the_next_configuration(tmp_path, runner_up, caveat):
    """The sweep's page said it could not tell the first two configurations apart (p = 0.46), and
    `mlplab alias champion --sweep` promoted its first without a word."""
    body = {"base": job_body(), "grid": {"learning_rate": [0.3, 0.01]}, "replicates": 3}
    best = (0.950, 0.951, 0.953)

    def accuracy(lr: float, seed: int) -> float:
        return best[seed] if lr == 0.01 else runner_up[seed]

    with sweep_ended_as(tmp_path, body, accuracy) as (client, sweep):
        second = client.get(f"/sweeps/{sweep}").json()["configurations"][1]
        assert second["versus_best"] == ("behind" if not caveat else "can't tell"), second
        promoted = client.post(f"/sweeps/{sweep}/promote", json={"alias": "champion"}).json()
        detail = client.get("/aliases/champion").json()["history"][0]["detail"]
        assert promoted["detail"] == detail  # the answer says it too: it was the history alone
        assert detail.startswith(
            f"the best model of sweep {sweep}'s best configuration by validation_accuracy{caveat}"
        )
        assert detail.endswith(f"p = {second['p_value']:.2g})" if caveat else "by validation_accuracy")


@pytest.mark.parametrize("values", [{"choice": [0.1, 0.01]}, 0.1])
def test_a_grid_value_that_is_no_list_is_shown_a_list(client, values):
    """A study's {"choice": [...]} sent as a grid was told only 'Input should be a valid list'."""
    body = {"base": {"backend": "numpy"}, "grid": {"learning_rate": values}}
    [param] = assert_problem(client.post("/sweeps", json=body), 422)["invalid_params"]
    assert param["name"] == "body.grid.learning_rate"
    assert param["reason"].startswith("a grid lists the values to try, e.g. [0.1, 0.01]"), param
    assert _jobs(client) == []


def test_a_learning_rate_that_varies_only_as_each_optimizers_default_is_said_to_follow_it(client):
    """optimizer x l2 read 'varies optimizer, learning_rate, l2' and drew a chart by learning_rate, which
    the grid never named: each job took its optimizer's default."""
    defaulted = {"base": job_body(), "grid": {"optimizer": ["sgd", "adam"], "l2": [0, 0.01]}}
    sweep = client.post("/sweeps", json=defaulted).json()
    read = client.get(f"/sweeps/{sweep['id']}").json()
    assert sorted(read["grid"]) == ["l2", "learning_rate", "optimizer"]
    assert read["follows"] == {"learning_rate": "optimizer"}
    crossed = {"base": job_body(), "grid": {"optimizer": ["sgd", "adam"], "learning_rate": [0.1, 0.001]}}
    assert client.get(f"/sweeps/{client.post('/sweeps', json=crossed).json()['id']}").json()["follows"] == {}
