"""`mlplab alias`: a name pointed at a model, at a sweep's best, moved back, and shown with its history."""

from __future__ import annotations

import httpx

from tests.cli.conftest import mlplab
from tests.factories import job_body, learner_body


def test_a_name_is_pointed_moved_back_and_shown(api, capsys):
    weak = api.post("/jobs", json=job_body())["id"]
    strong = api.post("/jobs", json=learner_body())["id"]
    api.train()
    assert mlplab(capsys, "alias", "champion", str(weak))[:2] == (0, f"champion -> model {weak}\n")
    status, out, _ = mlplab(capsys, "alias", "champion", str(strong))
    assert (status, out) == (0, f"champion -> model {strong}; rollback to model {weak}\n")
    assert mlplab(capsys, "alias", "staging", "champion")[1] == f"staging -> model {strong}\n"
    status, out, _ = mlplab(capsys, "alias", "champion", "--rollback")
    assert status == 0 and out.startswith(f"champion -> model {weak}")
    assert api.client.get("/aliases/champion").json()["model_id"] == weak  # the API's, not only the output

    status, out, _ = mlplab(capsys, "alias", "champion")
    lines = out.splitlines()
    assert status == 0 and lines[0].startswith(f"champion -> model {weak}")
    assert lines[1].split() == ["AT", "ACTION", "FROM", "TO", "DETAIL"]
    assert [line.split()[2:5] for line in lines[2:]] == [
        ["rollback", str(strong), str(weak)],
        ["move", str(weak), str(strong)],
        ["move", "-", str(weak)],
    ]  # newest first


def test_a_sweeps_best_is_promoted_and_mistakes_are_the_apis_problems(api, capsys):
    sweep = api.post("/sweeps", json={"base": job_body(), "grid": {"learning_rate": [1e-6, 0.5]}})
    api.train()
    best = api.client.get(f"/sweeps/{sweep['id']}").json()["jobs"][0]["id"]
    status, out, err = mlplab(capsys, "alias", "champion", "--sweep", sweep["id"])
    assert (status, out) == (0, f"champion -> model {best}\n")
    # one seed each: first, but nothing says by how much (the sweep page says so too)
    assert err == (
        f"the best model of sweep {sweep['id']} by validation_accuracy; it is not shown better than the next "
        "configuration (no test)\n"
    )
    assert mlplab(capsys, "alias", "staging", str(best))[0] == 0
    status, out, err = mlplab(capsys, "alias", "staging", "--sweep", sweep["id"])  # named it already
    assert (status, err) == (0, f"staging already named model {best}: unchanged\n")
    status, out, err = mlplab(capsys, "alias", "champion", "--sweep", sweep["id"])  # promoted again
    assert (status, err) == (0, f"champion already named model {best}: unchanged\n")
    status, out, err = mlplab(capsys, "alias", "Champion", str(best))
    assert status == 1 and "422" in err and "should be an alias: lowercase letters" in err and out == ""
    assert "NAME" in err and "path.alias" not in err  # the argument the user gave, not the API's path
    status, _, err = mlplab(capsys, "alias", "nobody")
    assert status == 1 and "404" in err and "Make it with: mlplab alias nobody MODEL" in err
    assert [a["name"] for a in api.client.get("/aliases").json()["data"]] == ["champion", "staging"]


def test_a_long_history_says_how_much_is_shown(api, capsys):
    first = api.post("/jobs", json=job_body())["id"]
    second = api.post("/jobs", json=job_body(seed=1))["id"]
    api.train()
    for i in range(101):  # 101 changes of a new name: more than one page
        api.client.put("/aliases/busy", json={"model_id": (first, second)[i % 2]})
    status, out, _ = mlplab(capsys, "alias", "busy")
    assert (
        status == 0 and len(out.splitlines()) == 1 + 1 + 100 + 1
    )  # the name, the header, 100 rows, the note
    assert out.splitlines()[-1] == "the latest 100 of 101 changes: /aliases/busy/history pages them"


def test_a_name_pointed_at_a_model_near_chance_says_so(api, capsys):
    untrained = api.post("/jobs", json=job_body(learning_rate=1e-6))["id"]  # 8 steps at 1e-6 learn nothing
    strong = api.post("/jobs", json=learner_body())["id"]
    api.train()
    status, out, err = mlplab(capsys, "alias", "champion", str(untrained))
    assert (status, out) == (0, f"champion -> model {untrained}\n")
    assert err.startswith("! ") and "near chance level" in err, err
    assert mlplab(capsys, "alias", "champion")[2] == err  # shown, it still says so
    status, _, err = mlplab(capsys, "alias", "champion", str(strong))
    assert (status, err) == (0, "")
    status, out, err = mlplab(capsys, "compare", str(untrained), str(strong))  # side by side: marked too
    test_row = next(line for line in out.splitlines() if line.startswith("test accuracy"))
    assert status == 0 and test_row.count("!") == 1 and err.startswith(f"! {untrained}: ")


def test_compare_says_which_ranks_first_by_how_much_and_what_the_test_images_say(api, capsys):
    """`mlplab compare` gave the figures and no verdict: the page's 'is best' and its McNemar test."""
    weak = api.post("/jobs", json=job_body(learning_rate=1e-6))["id"]
    strong = api.post("/jobs", json=learner_body())["id"]
    api.train()
    status, out, err = mlplab(capsys, "compare", str(weak), str(strong))
    assert status == 0, err
    models = {m: api.client.get(f"/models/{m}").json() for m in (weak, strong)}
    d = api.client.get("/compare/disagreements", params={"a": strong, "b": weak, "split": "test"}).json()
    gap = 100 * (models[strong]["validation_accuracy"] - models[weak]["validation_accuracy"])
    assert (
        f"#{strong} ranks first on validation accuracy, {gap:.2f} points ahead of #{weak}; on the test images "
        f"#{strong} alone is right on {d['a_right_b_wrong']:,}, #{weak} alone on {d['b_right_a_wrong']:,}: "
        "McNemar p " in out  # with the table: `mlplab compare ... > out.txt` kept the figures alone
    ), out
    assert (
        d["beyond_chance"]
        and f"#{strong} does better on them. McNemar weighs these two trained models, not the settings" in out
    ), out
    assert any(line.startswith("its training loss") for line in out.splitlines())


def test_aliases_are_listed_and_one_is_removed_by_name(api, capsys):
    """`mlplab alias` without a name was a usage error, and GET /aliases and DELETE had no command."""
    status, out, err = mlplab(capsys, "aliases")
    assert (status, err) == (0, "no aliases yet: mlplab alias NAME MODEL makes one\n")
    first = api.post("/jobs", json=learner_body())["id"]
    second = api.post("/jobs", json=learner_body(seed=1))["id"]
    api.train()
    for name, model in (("champion", first), ("staging", second), ("champion", second)):
        assert mlplab(capsys, "alias", name, str(model))[0] == 0
    status, out, err = mlplab(capsys, "aliases")
    assert status == 0 and err == "", err
    header, *rows = [line.split() for line in out.splitlines()]
    assert header[:2] == ["ALIAS", "MODEL"]
    assert [(r[0], r[1], r[-1]) for r in rows] == [
        ("champion", str(second), str(first)),
        ("staging", str(second), "-"),
    ]
    status, out, err = mlplab(capsys, "alias", "staging", "--delete")
    assert (status, out) == (0, f"staging removed (it named model {second}); its history stays\n"), err
    assert api.client.get("/aliases/staging").status_code == 404
    # "its history stays": shown where the alias is asked for, which said only that there is none
    status, out, err = mlplab(capsys, "alias", "staging")
    assert (
        status == 1
        and "There is no alias staging: it was removed. Its history: /aliases/staging/history." in err
    )
    assert out.splitlines()[1].split()[2:5] == ["delete", str(second), "-"], out
    status, _, err = mlplab(capsys, "alias", "staging", "--delete")
    assert status == 1 and "There is no alias staging" in err, err


def test_compare_says_level_models_are_level_and_keeps_its_table_when_the_test_fails(elsewhere, capsys):
    """Two models level on validation were '#8 ranks first ... 0.00 points ahead'; a 503 of the test
    (an API without the dataset's files) made the whole command fail after its table."""
    model = {
        "spec": {"dataset": "mnist", "epochs": 1},
        "validation_accuracy": 0.9,
        "test_accuracy": 0.91,
        "epochs": [],
    }
    model |= {"train_accuracy": 0.95, "best_epoch": 1, "stopped_epoch": 1, "near_chance": False}
    compared = {"data": [model | {"id": 7}, model | {"id": 8}], "hyperparameters": {}, "differing": []}

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/compare":
            return httpx.Response(200, json=compared)
        problem = {"type": "about:blank", "title": "Dataset unavailable", "status": 503, "detail": "no files"}
        return httpx.Response(503, json=problem, headers={"content-type": "application/problem+json"})

    elsewhere(server)
    status, out, err = mlplab(capsys, "--url", "http://api.test", "compare", "7", "8")
    assert status == 0 and out.startswith(" "), (out, err)
    assert (
        "#8 and #7 are level on validation accuracy; no test on the test images: Dataset unavailable" in out
    )


def test_an_alias_moved_between_read_and_delete_is_not_removed(elsewhere, capsys):
    """It read the alias, then deleted whatever it named by then, and named the model it read."""
    asked = []

    def server(request: httpx.Request) -> httpx.Response:
        asked.append((request.method, request.headers.get("if-match")))
        if request.method == "GET":
            alias = {
                "name": "champion",
                "model_id": 6,
                "updated_at": "2026-12-03T10:00:00Z",
                "rollback_to": None,
            }
            return httpx.Response(
                200, json=alias | {"history": [], "history_count": 1}, headers={"etag": '"a1"'}
            )
        problem = {"type": "about:blank", "title": "Precondition failed", "status": 412, "detail": "moved"}
        return httpx.Response(412, json=problem, headers={"content-type": "application/problem+json"})

    elsewhere(server)
    status, out, err = mlplab(capsys, "--url", "http://api.test", "alias", "champion", "--delete")
    assert (status, out) == (1, "") and asked == [("GET", None), ("DELETE", '"a1"')]
    assert "champion changed since it was read (it named model 6): not removed." in err, err
