"""Aliases through the API: move, history, rollback, delete, promotion of a sweep's best, the token,
and every route that takes a model id taking an alias too."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import Settings
from tests.conftest import assert_problem
from tests.factories import job_body
from tests.support import real_data_dir, wait_for
from workers.worker import run_worker

TOKEN = "alias-token-5e1"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two trained models (`weak` and `strong`), a sweep of two, and a job still queued."""
    root = tmp_path_factory.mktemp("aliases")
    settings = Settings(database_url=f"sqlite:///{root / 'api.db'}", data_dir=real_data_dir(), download=False)
    with TestClient(create_app(settings)) as client:
        weak = client.post("/jobs", json=job_body(learning_rate=0.001)).json()["id"]
        strong = client.post("/jobs", json=job_body(optimizer="adam", learning_rate=0.01)).json()["id"]
        sweep = client.post(
            "/sweeps", json={"base": job_body(), "grid": {"learning_rate": [0.001, 0.5]}}
        ).json()
        run_worker(settings, once=True)
        queued = client.post("/jobs", json=job_body()).json()["id"]
        yield client, {"weak": weak, "strong": strong, "queued": queued, "sweep": sweep}


@pytest.fixture
def client(world):
    client, _ = world
    yield client
    for alias in client.get("/aliases").json()["data"]:  # each test starts without aliases
        client.delete(f"/aliases/{alias['name']}")


@pytest.fixture
def ids(world):
    return world[1]


def test_an_alias_moves_keeps_its_history_and_rolls_back_one_move_at_a_time(client, ids):
    weak, strong = ids["weak"], ids["strong"]
    created = client.put("/aliases/production", json={"model_id": weak})
    assert created.status_code == 201 and created.headers["location"] == "/aliases/production"
    assert created.json() | {"updated_at": None, "warning": None} == {
        "name": "production", "model_id": weak, "updated_at": None, "detail": None, "rollback_to": None,
        "warning": None,
    }  # fmt: skip
    assert "near chance level" in created.json()["warning"]  # the weak model learned next to nothing
    again = client.put("/aliases/production", json={"model_id": weak})  # where it is already: no history
    assert again.status_code == 200 and again.json() == created.json()
    moved = client.put("/aliases/production", json={"model_id": strong}).json()
    assert (moved["model_id"], moved["rollback_to"]) == (strong, weak)
    assert client.get("/aliases").json() == {"data": [moved], "count": 1}

    history = client.get("/aliases/production").json()["history"]
    assert [(e["action"], e["from_model_id"], e["to_model_id"]) for e in history] == [
        ("move", weak, strong),
        ("move", None, weak),
    ]
    assert history[0]["at"] == moved["updated_at"] and history[0]["at"] > history[1]["at"]

    back = client.post("/aliases/production/rollback").json()
    assert (back["model_id"], back["rollback_to"]) == (weak, None)
    assert client.get("/models/production").json()["id"] == weak
    assert_problem(client.post("/aliases/production/rollback"), 409, "nothing earlier to roll back to")
    assert client.get("/aliases/production").json()["history"][0] | {"at": None} == {
        "action": "rollback", "from_model_id": strong, "to_model_id": weak, "detail": None, "at": None
    }  # fmt: skip


def test_conditional_changes_move_only_the_alias_the_client_last_read(client, ids):
    """If-None-Match: * and If-Match were ignored: a create-only PUT moved another's alias."""
    weak, strong = ids["weak"], ids["strong"]
    created = client.put("/aliases/staging", json={"model_id": weak}, headers={"If-None-Match": "*"})
    assert created.status_code == 201, created.text
    tag = created.headers["etag"]
    read = client.get("/aliases/staging")
    assert read.headers["etag"] == tag
    assert client.get("/aliases/staging", headers={"If-None-Match": tag}).status_code == 304
    # If-Match on a read too (RFC 9110 13.2.2): it was ignored, 200 whatever the tag
    assert client.get("/aliases/staging", headers={"If-Match": tag}).status_code == 200
    stale = client.get("/aliases/staging", headers={"If-Match": '"nope"'})
    assert_problem(stale, 412, "does not match its ETag")

    # another client's create-only PUT, and a move from a stale read: 412, nothing changed
    problem = assert_problem(
        client.put("/aliases/staging", json={"model_id": strong}, headers={"If-None-Match": "*"}), 412
    )
    assert (
        f"names model {weak}, ETag {tag}" in problem["detail"] and "Nothing was changed" in problem["detail"]
    )
    for stale in ('"0"', f"W/{tag}", '"nope", "1"'):
        assert_problem(
            client.put("/aliases/staging", json={"model_id": strong}, headers={"If-Match": stale}), 412
        )
    assert client.get("/aliases/staging").json()["history_count"] == 1

    moved = client.put("/aliases/staging", json={"model_id": strong}, headers={"If-Match": f'"0", {tag}'})
    assert moved.status_code == 200 and moved.json()["model_id"] == strong
    assert moved.headers["etag"] not in (tag, None)
    assert client.get("/aliases/staging", headers={"If-None-Match": tag}).status_code == 200
    assert_problem(client.post("/aliases/staging/rollback", headers={"If-Match": tag}), 412)
    assert_problem(client.delete("/aliases/staging", headers={"If-Match": tag}), 412)
    back = client.post("/aliases/staging/rollback", headers={"If-Match": moved.headers["etag"]})
    assert back.status_code == 200 and back.json()["model_id"] == weak
    assert client.delete("/aliases/staging", headers={"If-Match": "*"}).status_code == 204
    assert_problem(client.delete("/aliases/staging", headers={"If-Match": "*"}), 412, "does not exist")
    assert (
        client.put("/aliases/staging", json={"model_id": weak}, headers={"If-None-Match": "*"}).status_code
        == 201
    )


def test_a_rollback_walks_back_through_every_move(client, ids):
    weak, strong = ids["weak"], ids["strong"]
    for model in (weak, strong, weak, strong):
        client.put("/aliases/staging", json={"model_id": model})
    named = [client.post("/aliases/staging/rollback").json()["model_id"] for _ in range(3)]
    assert named == [weak, strong, weak]
    assert client.post("/aliases/staging/rollback").status_code == 409


def test_the_aliases_come_in_pages_each_as_its_own_page_tells_it(client, ids):
    weak, strong = ids["weak"], ids["strong"]
    for name, models in {"a-one": [weak], "b-two": [weak, strong], "c-three": [strong, weak]}.items():
        for model in models:
            client.put(f"/aliases/{name}", json={"model_id": model})
    first, rest = (client.get("/aliases", params={"limit": 2, "offset": o}).json() for o in (0, 2))
    assert first["count"] == rest["count"] == 3
    listed = first["data"] + rest["data"]
    assert [a["name"] for a in listed] == ["a-one", "b-two", "c-three"]
    assert [a["rollback_to"] for a in listed] == [None, weak, strong]
    for alias in listed:  # the listing's rollback target and warning are those of the alias alone
        alone = client.get(f"/aliases/{alias['name']}").json()
        assert {k: alone[k] for k in alias} == alias
    assert_problem(client.get("/aliases", params={"limit": 0}), 422, "limit")


def test_a_deleted_alias_is_gone_but_its_history_stays(client, ids):
    client.put("/aliases/champion", json={"model_id": ids["weak"]})
    assert client.delete("/aliases/champion").status_code == 204
    # every route that names it says so, and where its history stays (it said only that there is none)
    for response in (
        client.get("/aliases/champion"),
        client.get("/models/champion"),
        client.post("/models/champion/predict", json={"pixels": [0] * 784}),
        client.post("/aliases/champion/rollback"),
        client.delete("/aliases/champion"),
    ):
        gone = assert_problem(response, 404, "There is no alias champion: it was removed.")
        assert gone["detail"].endswith("Its history: /aliases/champion/history."), gone
    assert client.get("/aliases").json() == {"data": [], "count": 0}
    kept = client.get("/aliases/champion/history", params={"limit": 2}).json()  # readable while it is gone
    assert [(e["action"], e["to_model_id"]) for e in kept["data"]] == [
        ("delete", None),
        ("move", ids["weak"]),
    ]
    assert kept["count"] >= 2
    assert_problem(client.get("/aliases/never-named/history"), 404, "There is no alias never-named.")

    reborn = client.put("/aliases/champion", json={"model_id": ids["strong"]})
    assert reborn.status_code == 201 and reborn.json()["rollback_to"] is None  # a fresh start
    assert_problem(  # it said "names the first model it named", beside a history of two before
        client.post("/aliases/champion/rollback"),
        409,
        "since it was created (a deletion ends what a rollback",
    )
    alias = client.get(
        "/aliases/champion", params={"limit": 3}
    ).json()  # newest first; earlier tests' lives after
    actions = [(e["action"], e["to_model_id"]) for e in alias["history"]]
    assert actions == [("move", ids["strong"]), ("delete", None), ("move", ids["weak"])]
    pages = [client.get("/aliases/champion/history", params={"limit": 2, "offset": o}).json() for o in (0, 2)]
    assert [e for page in pages for e in page["data"]][:3] == alias["history"]
    assert alias["history_count"] == pages[0]["count"] == pages[1]["count"] >= 3


def test_an_alias_can_be_pointed_where_another_points(client, ids):
    client.put("/aliases/staging", json={"model_id": ids["strong"]})
    promoted = client.put("/aliases/champion", json={"model_id": "staging"})
    assert promoted.status_code == 201 and promoted.json()["model_id"] == ids["strong"]


@pytest.mark.parametrize(
    "name", ["Champion", "2fast", "-champion", "champ_ion", "champ.ion", "a" * 64, "%C3%A9t%C3%A9"]
)
def test_a_bad_name_is_refused_and_changes_nothing(client, ids, name):
    assert_problem(client.put(f"/aliases/{name}", json={"model_id": ids["weak"]}), 422, "path.alias")
    assert client.get("/aliases").json()["count"] == 0


def test_pointing_at_what_is_not_a_trained_model_is_refused(client, ids):
    body = assert_problem(client.put("/aliases/champion", json={"model_id": 999_999}), 422)
    assert body["invalid_params"] == [{"name": "body.model_id", "reason": "there is no model 999999"}]
    assert_problem(
        client.put("/aliases/champion", json={"model_id": "nobody"}), 422, "there is no alias nobody"
    )
    assert_problem(client.put("/aliases/champion", json={"model_id": ids["queued"]}), 409, "is queued")
    assert_problem(client.put("/aliases/champion", json={"model_id": "Not An Alias"}), 422, "not an alias")
    said = assert_problem(client.put("/aliases/champion", json={"model_id": "12"}), 422)
    assert "a model id is a JSON number: send 12, not the string" in said["detail"]
    long = assert_problem(client.put("/aliases/champion", json={"model_id": "a" * 100_000}), 422)
    # quoted once and cut (it was the 100,000 characters twice, 200 kB), the length limit named
    assert "at most 63 characters" in long["detail"] and len(str(long)) < 3000, len(str(long))
    refused = assert_problem(
        client.put("/aliases/champion", json={"model_id": -1}),
        422,
        "a model id is an integer from 1 to 2,147,483,647",
    )
    assert refused["detail"].count("-1") == 1  # quoted once, not twice
    # one problem named for the field: a value of neither kind was two, body.model_id.int and .str
    for wrong, shown in ((True, "true"), (1.0, "1.0"), (None, "null")):
        answer = assert_problem(client.put("/aliases/champion", json={"model_id": wrong}), 422)
        assert answer["invalid_params"] == [
            {
                "name": "body.model_id",
                "reason": f"Input should be a model id (an integer from 1 to 2,147,483,647) or an alias (got {shown})",
            }
        ]
    # "send 0, not the string", then 0 refused; past the database's integers "there is no model"
    for wrong in ("0", 0, 2**31, "2147483648"):
        body = {"model_id": wrong}
        assert_problem(
            client.put("/aliases/champion", json=body),
            422,
            "a model id is an integer from 1 to 2,147,483,647",
        )
    assert_problem(client.put("/aliases/champion", json={}), 422, "body.model_id")
    assert client.get("/aliases").json()["count"] == 0
    assert_problem(client.get("/aliases/champion"), 404)


def test_a_sweeps_best_model_is_promoted(client, ids):
    sweep = ids["sweep"]
    models = {
        m["id"]: (m["validation_accuracy"], m["test_accuracy"]) for m in client.get("/models").json()["data"]
    }
    best = max((job["id"] for job in sweep["jobs"]), key=lambda i: (*models[i], i))  # as GET /models ranks
    promoted = client.post(f"/sweeps/{sweep['id']}/promote", json={"alias": "champion"})
    # it made the alias: 201 and where it is, as PUT answers a creation (it answered 200)
    assert (promoted.status_code, promoted.headers["location"]) == (201, "/aliases/champion"), promoted.text
    assert promoted.json()["model_id"] == best
    event = client.get("/aliases/champion").json()["history"][0]
    assert event["action"] == "promote"
    assert event["detail"] == (
        f"the best model of sweep {sweep['id']} by validation_accuracy; it is not shown better than the next "
        "configuration (no test)"  # one seed each
    )
    assert promoted.json()["detail"] == event["detail"]
    assert client.get(f"/models/{best}").json()["aliases"] == ["champion"]
    # promote moves an alias too: conditional as PUT is
    path = f"/sweeps/{sweep['id']}/promote"
    tag = promoted.headers["etag"]
    assert_problem(client.post(path, json={"alias": "champion"}, headers={"If-None-Match": "*"}), 412)
    stale = f'"{int(tag.strip(chr(34))) + 1}"'  # not its tag: "1" was, run alone (the first alias event)
    assert_problem(client.post(path, json={"alias": "champion"}, headers={"If-Match": stale}), 412)
    again = client.post(path, json={"alias": "champion"}, headers={"If-Match": tag})
    assert again.status_code == 200 and again.headers["etag"] == tag  # where it was: no change
    fresh = client.post(path, json={"alias": "fresh"}, headers={"If-None-Match": "*"})
    assert fresh.status_code == 201 and fresh.json()["model_id"] == best  # If-None-Match: * creates

    assert_problem(client.post("/sweeps/0123456789ab/promote", json={"alias": "x"}), 404, "no sweep")
    assert_problem(client.post(f"/sweeps/{sweep['id']}/promote", json={"alias": "Bad"}), 422, "body.alias")


def test_a_sweep_without_a_trained_model_has_nothing_to_promote(client):
    sweep = client.post("/sweeps", json={"base": job_body(), "grid": {"seed": [7]}}).json()
    client.post(f"/sweeps/{sweep['id']}/cancel")
    assert_problem(
        client.post(f"/sweeps/{sweep['id']}/promote", json={"alias": "champion"}),
        409,
        f"Sweep {sweep['id']} has no trained model yet.",
    )
    assert client.get("/aliases").json()["count"] == 0


def test_the_models_list_shows_each_models_aliases(client, ids):
    client.put("/aliases/staging", json={"model_id": ids["weak"]})
    client.put("/aliases/champion", json={"model_id": ids["weak"]})
    named = {m["id"]: m["aliases"] for m in client.get("/models").json()["data"]}
    assert named[ids["weak"]] == ["champion", "staging"] and named[ids["strong"]] == []


def _routes(other: int) -> list[tuple[str, str, dict]]:
    """Every route that names a model, as (method, path with {m}, request options)."""
    png = [f"/models/{{m}}/{figure}.png" for figure in ("confusion-matrix", "loss-curve", "mistakes")]
    return [
        *[
            ("GET", f"/models/{{m}}{path}", {})
            for path in ("", "/accuracy", "/confusion-matrix", "/weights", "/model.onnx")
        ],
        *[("GET", path, {}) for path in png],
        ("GET", "/models/{m}/predictions/test/3", {}),
        ("GET", "/models/{m}/predictions/test", {"params": {"label": 3, "limit": 5}}),
        ("POST", "/models/{m}/predict", {"json": {"images": [[0] * 784, [255] * 784]}}),
        ("POST", "/models/{m}/predict", {"json": {"images": [[7] * 784] * 60}}),  # 141 kB: off the event loop
        ("GET", "/compare", {"params": {"ids": f"{{m}},{other}"}}),
        ("GET", "/compare.png", {"params": {"ids": f"{{m}},{other}"}}),
        ("GET", "/compare/disagreements", {"params": {"a": "{m}", "b": other}}),
        ("GET", "/compare/disagreements.png", {"params": {"a": other, "b": "{m}", "limit": 4}}),
    ]


def test_every_route_that_takes_a_model_id_takes_an_alias(client, ids):
    weak, strong = ids["weak"], ids["strong"]
    client.put("/aliases/champion", json={"model_id": strong})
    for method, path, options in _routes(other=weak):

        def send(m, options=options, method=method, path=path):
            opts = dict(options)
            if "params" in opts:
                opts["params"] = {k: str(v).replace("{m}", str(m)) for k, v in opts["params"].items()}
            return client.request(method, path.replace("{m}", str(m)), **opts)

        by_id, by_alias = send(strong), send("champion")
        where = f"{method} {path}"
        assert by_id.status_code == by_alias.status_code == 200, (where, by_alias.text[:300])
        if by_id.headers["content-type"] == "application/json":
            assert by_alias.json() == by_id.json(), where
        else:
            assert by_alias.content == by_id.content, where
        if "compare" not in path:
            assert by_id.headers["x-model-id"] == by_alias.headers["x-model-id"] == str(strong), where
        # it names another model tomorrow: on every route, comparisons' JSON too (they lacked it)
        assert by_alias.headers["cache-control"] == "no-cache", where
        if path.endswith(".png"):
            assert "max-age" in by_id.headers["cache-control"], where


def test_an_alias_and_the_id_it_names_are_one_model_in_a_comparison(client, ids):
    client.put("/aliases/champion", json={"model_id": ids["strong"]})
    body = assert_problem(client.get("/compare", params={"ids": f"champion,{ids['strong']}"}), 422)
    assert body["detail"] == (
        f"query.ids: model {ids['strong']} is listed twice (champion and {ids['strong']} are both model {ids['strong']})"
    )
    pair = {"a": ids["strong"], "b": "champion"}
    body = assert_problem(client.get("/compare/disagreements", params=pair), 422)
    assert body["detail"] == (
        f"query.b: model {ids['strong']} is A too ({ids['strong']} and champion are both model {ids['strong']}): "
        "compare two different models"
    )
    assert_problem(
        client.get("/compare/disagreements", params={"a": "nobody", "b": ids["weak"]}), 404, "nobody"
    )


def test_with_a_token_moving_an_alias_needs_it(tmp_path, world):
    _, ids = world
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'token.db'}", data_dir=real_data_dir(), api_token=TOKEN
    )
    with TestClient(create_app(settings)) as client:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        job = client.post("/jobs", json=job_body(), headers=auth).json()["id"]
        run_worker(settings, once=True)
        for method, path, body in (
            ("PUT", "/aliases/champion", {"model_id": job}),
            ("POST", "/aliases/champion/rollback", None),
            ("DELETE", "/aliases/champion", None),
            ("POST", "/sweeps/0123456789ab/promote", {"alias": "champion"}),
            ("POST", "/studies/1/promote", {"alias": "champion"}),
        ):
            assert_problem(client.request(method, path, json=body), 401)
            assert_problem(
                client.request(method, path, json=body, headers={"Authorization": "Bearer no"}), 401
            )
        assert client.get("/aliases").json()["count"] == 0
        assert client.put("/aliases/champion", json={"model_id": job}, headers=auth).status_code == 201
        assert client.get("/aliases/champion").status_code == 200  # reads stay open (MLPLAB_PROTECT_READS)


@pytest.mark.slow  # a second API process
def test_another_api_process_sees_a_move_within_its_alias_cache_time(tmp_path, world):
    _, ids = world
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'two.db'}", data_dir=real_data_dir(), alias_cache_seconds=0.5
    )
    with TestClient(create_app(settings)) as mover, TestClient(create_app(settings)) as other:
        first, second = (mover.post("/jobs", json=job_body(seed=s)).json()["id"] for s in (1, 2))
        run_worker(settings, once=True)
        mover.put("/aliases/champion", json={"model_id": first})

        def served(client) -> int:
            return int(client.get("/models/champion/accuracy").headers["x-model-id"])

        assert served(other) == first  # now cached there
        mover.put("/aliases/champion", json={"model_id": second})
        moved = time.monotonic()
        assert served(mover) == second  # the process that moved it, at once
        seen = wait_for(lambda: served(other) == second, timeout=5, what="the move", interval=0.01)
        assert seen and time.monotonic() - moved < 0.5 + 1.0  # its cache time, and a request or two


def test_every_prediction_of_a_model_near_chance_says_so(client, ids):
    weak, strong = ids["weak"], ids["strong"]
    client.put("/aliases/production", json={"model_id": weak})
    blank = {"pixels": [0] * 784}
    many = {"images": [[0] * 784] * 60}  # past predict's on-loop size: answered off the event loop
    for model in (weak, "production"):
        single = client.post(f"/models/{model}/predict", json=blank).json()
        assert "near chance level" in single["model_warning"], single
        batch = client.post(f"/models/{model}/predict", json=many).json()
        assert "near chance level" in batch["model_warning"] and batch["data"][0]["model_warning"] is None
        few = client.post(f"/models/{model}/predict", json={"images": [[0] * 784]}).json()
        assert "near chance level" in few["model_warning"]
        image = client.get(f"/models/{model}/predictions/test/0").json()
        assert "near chance level" in image["model_warning"]
    assert client.post(f"/models/{strong}/predict", json=blank).json()["model_warning"] is None
    assert client.post(f"/models/{strong}/predict", json=many).json()["model_warning"] is None
    assert client.get(f"/models/{strong}/predictions/test/0").json()["model_warning"] is None
