"""Every invalid request gets its 4xx as problem+json naming the field or limit, and changes nothing."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from service.main import create_app
from service.ml.spec import TrainSpec
from service.settings import Settings
from tests.conftest import assert_problem
from tests.factories import job_body


def _job_count(client) -> int:
    return client.get("/jobs").json()["count"]


@pytest.mark.parametrize(
    "field,value,says",
    [
        ("epochs", 0, "greater than or equal to 1"),
        ("epochs", 201, "less than or equal to 200"),
        ("learning_rate", 0, "greater than 0"),
        ("learning_rate", 11, "less than or equal to 10"),
        ("momentum", 1, "less than 1"),
        # 1 in float32, where training reads it: a velocity that never decays, under a job named mom=1
        ("momentum", 0.99999999, "less than 1 in float32, the precision training reads it in"),
        ("l2", -0.1, "greater than or equal to 0"),
        # below float32's smallest normal, trained as 0 under a job named for them (lr=9.99989e-321)
        ("learning_rate", 1e-320, "at least 1.18e-38 in size"),
        ("learning_rate", 1e-50, "at least 1.18e-38 in size"),
        ("l2", 5e-324, "at least 1.18e-38 in size"),
        ("momentum", 1e-40, "at least 1.18e-38 in size"),
        ("batch_size", 60001, "less than or equal to 60000"),
        ("hidden_layers", [], "at least 1 item"),
        ("hidden_layers", [10] * 9, "at most 8 items"),
        ("hidden_layers", [0], "greater than or equal to 1"),
        ("hidden_layers", [5000], "less than or equal to 4096"),
        ("activation", "softplus", "'sigmoid', 'tanh' or 'relu'"),
        ("init", "orthogonal", "'zeros', 'random', 'glorot' or 'he'"),
        ("optimizer", "rmsprop", "'sgd', 'momentum' or 'adam'"),
        ("optimizer", ["adam"], "'sgd', 'momentum' or 'adam'"),
        ("optimizer", {}, "'sgd', 'momentum' or 'adam'"),
        ("train_limit", 0, "greater than or equal to 1"),
        ("train_limit", 55_001, "mnist's training split has 55,000 besides the 5,000 held out"),
        ("train_limit", int("9" * 4300), "images; mnist's training split"),  # was trained on every image
        ("epochs", "ten", "valid integer"),
        ("epochs", 1.5, "valid integer"),
        ("batch_size", True, "valid integer"),
        ("learning_rate", "fast", "valid number"),
        ("dataset", "cifar10", "'mnist' or 'fashion-mnist'"),
        ("surprise", 1, "Extra inputs are not permitted"),
    ],
)
def test_invalid_spec_fields_are_named_with_their_limit(client, field, value, says):
    body = assert_problem(client.post("/jobs", json={"backend": "numpy", field: value}), 422)
    names = [p["name"] for p in body["invalid_params"]]
    assert any(n == f"body.{field}" or n.startswith(f"body.{field}.") for n in names), names
    assert says in body["detail"]
    assert _job_count(client) == 0


def test_missing_backend_and_non_json_bodies(client):
    body = assert_problem(client.post("/jobs", json={}), 422)
    assert body["invalid_params"][0]["name"] == "body.backend"
    assert_problem(
        client.post("/jobs", content=b"{not json", headers={"content-type": "application/json"}), 400
    )
    assert_problem(client.post("/jobs", json=[1, 2]), 422)
    assert _job_count(client) == 0


@pytest.mark.parametrize(
    "body,says",
    [
        (b'{"backend": "numpy", "epochs": ' + b"9" * 5000 + b"}", "a number has more than 4,300 digits"),
        (b"[" * 5000 + b"]" * 5000, "it is nested too deeply"),
        (
            '{"backend": "numpy", "name": "café"}'.encode("latin-1"),
            "it is not UTF-8 (byte 34); a compressed body is not read",
        ),
        # the last was kept: {"model_id": 2, "model_id": "x"} moved an alias to x
        (
            b'{"backend": "numpy", "epochs": 1, "epochs": 200}',
            "the key 'epochs' is given twice in one object: give it once",
        ),
        # each unknown key a problem to word, held the event loop 4 s at 90,000 (under 1 MB)
        (
            json.dumps({"backend": "numpy"} | {f"e{i}": 0 for i in range(1000)}).encode(),
            "an object has 1,001 keys; none here takes more than 1,000",
        ),
        # an attacker's pass: quoted back as "got 0.0", and an l2 of 1e-400 stored as 0
        (
            b'{"backend": "numpy", "learning_rate": 1e-400}',
            "the number 1e-400 is too small for a double (about 5e-324 at least): it would read as 0",
        ),
        (
            b'{"backend": "numpy", "l2": 0.0001E-400}',
            "the number 0.0001E-400 is too small for a double (about 5e-324 at least): it would read as 0",
        ),
        # after a byte order mark, the byte counted in the body as sent (it said byte 34)
        (
            b"\xef\xbb\xbf" + '{"backend": "numpy", "name": "café"}'.encode("latin-1"),
            "it is not UTF-8 (byte 37); a compressed body is not read",
        ),
    ],
    ids=[
        "long-number",
        "deep",
        "latin-1",
        "key-twice",
        "many-keys",
        "underflow",
        "underflow-l2",
        "bom-latin-1",
    ],
)
def test_a_body_json_cannot_read_is_400_saying_why(client, body, says):
    """FastAPI says only "There was an error parsing the body" for what json.loads raises on."""
    problem = assert_problem(
        client.post("/jobs", content=body, headers={"content-type": "application/json"}), 400, says
    )
    assert problem["invalid_params"] == [{"name": "body", "reason": says}]
    assert _job_count(client) == 0


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
@pytest.mark.parametrize("path", ["/jobs", "/aliases/u16"])
def test_a_json_body_in_utf_16_or_32_is_a_400_naming_it_on_every_route(client, encoding, path):
    """An attacker's pass: json.loads reads UTF-16 and UTF-32 from bytes, so such a body queued a job (202),
    moved an alias (201), answered a prediction (tests/api/test_predictions.py), where RFC 8259 JSON is
    UTF-8 and the same bytes declared charset=utf-16 were a 415."""
    body = {"/jobs": job_body(), "/aliases/u16": {"model_id": 1}}
    method = "PUT" if path.startswith("/aliases") else "POST"
    sent = json.dumps(body[path]).encode(encoding)
    response = client.request(method, path, content=sent, headers={"content-type": "application/json"})
    name = encoding.upper()
    problem = assert_problem(response, 400, f"it is {name}: JSON is UTF-8 (RFC 8259), send it so")
    assert problem["invalid_params"][0]["name"] == "body"
    assert _job_count(client) == 0 and client.get("/aliases/u16").status_code == 404
    # a UTF-8 byte order mark is ignored, as RFC 8259 lets a parser do
    with_bom = client.post(
        "/jobs",
        content=b"\xef\xbb\xbf" + json.dumps(job_body()).encode(),
        headers={"content-type": "application/json"},
    )
    assert with_bom.status_code == 202, with_bom.text


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("coding", ["gzip", "br", "identity, gzip"])
def test_a_compressed_body_is_415_whether_or_not_it_is(client, coding, compressed):
    """Content-Encoding: gzip on a plain JSON body was read as JSON (202), on a gzipped one a 400."""
    body = json.dumps(job_body()).encode()
    sent = gzip.compress(body) if compressed else body
    headers = {"content-type": "application/json", "content-encoding": coding}
    response = client.post("/jobs", content=sent, headers=headers)
    problem = assert_problem(response, 415, f"Content-Encoding {coding!r} is not read")
    assert response.headers["accept-encoding"] == "identity", problem
    assert _job_count(client) == 0
    plain = {"content-type": "application/json", "content-encoding": "identity"}
    assert client.post("/jobs", content=body, headers=plain).status_code == 202


@pytest.mark.parametrize("coding", ["gzip, chunked", "deflate"])
def test_a_body_in_a_transfer_coding_but_chunked_is_501(client, coding):
    """Transfer-Encoding: gzip, chunked passed the Content-Encoding check and reached the app gzipped."""
    headers = {"content-type": "application/json", "transfer-encoding": coding}
    response = client.post("/jobs", content=gzip.compress(json.dumps(job_body()).encode()), headers=headers)
    assert_problem(response, 501, f"Transfer-Encoding {coding!r} is not read")
    assert _job_count(client) == 0


def test_a_model_stored_before_the_train_limit_rule_can_still_be_reproduced(client, settings):
    """A train_limit past the images (60,000 meant "all") was accepted once: its model is trained again."""
    from service.store.db import make_engine, make_sessionmaker
    from tests.factories import store_trained_job

    engine = make_engine(settings.database_url)
    spec = TrainSpec.model_validate({"backend": "numpy", "epochs": 1, "train_limit": 60_000})
    model = store_trained_job(make_sessionmaker(engine), spec, every=100)
    engine.dispose()
    again = client.post(f"/models/{model}/reproduce")
    assert again.status_code == 202, again.text
    assert again.json()["spec"]["train_limit"] == 60_000


def test_a_job_stored_with_a_subnormal_rate_before_they_were_refused_still_reads_back(client, settings):
    from service.store.db import make_engine, make_sessionmaker
    from tests.factories import store_trained_job

    engine = make_engine(settings.database_url)
    fields = TrainSpec.model_validate({"backend": "numpy", "epochs": 1}).__dict__ | {"learning_rate": 1e-320}
    spec = TrainSpec.model_construct(**fields)  # as a job row of an older version holds it
    model = store_trained_job(make_sessionmaker(engine), spec, every=100)
    engine.dispose()
    assert client.get(f"/models/{model}").json()["learning_rate"] == 1e-320
    assert client.get("/jobs").status_code == 200


def test_budgets_refuse_oversized_jobs(client):
    body = assert_problem(client.post("/jobs", json={"backend": "numpy", "hidden_layers": [4096] * 3}), 422)
    assert body["invalid_params"][0]["name"] == "body.hidden_layers"
    assert "20,000,000" in body["detail"] and "MLPLAB_MAX_PARAMETERS" in body["detail"]
    # 200 epochs of 60,000 is the default budget exactly: allowed; the limit is a setting
    assert client.post("/jobs", json={"backend": "numpy", "epochs": 200}).status_code == 202


def test_sample_epoch_budget_is_a_setting(tmp_path):
    from fastapi.testclient import TestClient

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}", max_sample_epochs=100_000)
    with TestClient(create_app(settings)) as client:
        body = assert_problem(client.post("/jobs", json={"backend": "numpy", "epochs": 2}), 422)
        assert "110,000" in body["detail"] and "100,000" in body["detail"]  # 2 x the 55,000 not validated on
        assert (
            client.post("/jobs", json={"backend": "numpy", "epochs": 1, "train_limit": 50_000}).status_code
            == 202
        )


def test_a_full_queue_answers_429_with_retry_after(client):
    for _ in range(3):
        assert client.post("/jobs", json={"backend": "torch"}).status_code == 202
    response = client.post("/jobs", json={"backend": "torch"})
    body = assert_problem(response, 429)
    assert response.headers["retry-after"].isdigit()
    assert "MLPLAB_MAX_QUEUED" in body["detail"]
    assert _job_count(client) == 3


def test_unknown_things_are_404(client):
    assert_problem(client.get("/jobs/999"), 404)
    assert_problem(client.post("/jobs/999/cancel"), 404)
    assert_problem(client.get("/jobs/999/losses"), 404)
    assert_problem(client.get("/models/999/accuracy"), 404)
    assert_problem(client.get("/models/999/confusion-matrix"), 404)
    assert_problem(client.post("/models/999/predict", json={"pixels": [0] * 784}), 404)
    assert_problem(
        client.get("/datasets/cifar/test/0.png"), 422
    )  # not one of the datasets: named in the message
    assert_problem(client.get("/datasets/mnist/test/10000.png"), 404)
    assert_problem(client.get("/nowhere"), 404)


def test_queued_job_is_not_a_model_yet(client):
    job = client.post("/jobs", json={"backend": "numpy"}).json()
    for path in (
        f"/models/{job['id']}/accuracy",
        f"/models/{job['id']}/confusion-matrix",
        f"/models/{job['id']}/predictions/test/0",
        f"/models/{job['id']}/weights",
    ):
        body = assert_problem(client.get(path), 409)
        assert "queued" in body["detail"]
    assert_problem(client.post(f"/models/{job['id']}/predict", json={"pixels": [0] * 784}), 409)


def test_bad_query_parameters(client):
    assert_problem(client.get("/jobs", params={"status": "sleeping"}), 422)
    assert_problem(client.get("/jobs", params={"limit": 0}), 422)
    assert_problem(client.get("/jobs", params={"offset": -1}), 422)
    assert_problem(client.get("/models", params={"sort": "name"}), 422)
    assert_problem(client.get("/jobs/abc"), 422)
    for bad in ("\x00", "", "NOT-HEX"):  # a NUL reached PostgreSQL as an error: a 500
        assert_problem(
            client.get("/jobs", params={"sweep_id": bad}),
            422,
            "query.sweep_id",
            "should be a sweep id: 1 to 32 hex digits",
        )
    assert_problem(client.get("/sweeps/ab%00cd"), 422, "path.sweep_id")
    paths = client.get("/openapi.json").json()["paths"]
    listings = [  # every listing that pages (GET /aliases' was a 500: its offset reached SQLite unbounded)
        path
        for path, operations in paths.items()
        if "{" not in path
        and any(p["name"] == "offset" for p in operations.get("get", {}).get("parameters", []))
        and not any(p["required"] for p in operations["get"]["parameters"])
    ]
    assert {"/jobs", "/sweeps", "/studies", "/models", "/aliases"} <= set(listings)
    for path in [*listings, "/datasets/mnist/test"]:  # past the end: an empty page
        page = client.get(path, params={"offset": 2**76})
        assert page.status_code == 200 and page.json()["data"] == [], (path, page.text[:300])


def test_token_guards_writes_and_optionally_reads(tmp_path):
    from fastapi.testclient import TestClient

    settings = Settings(database_url=f"sqlite:///{tmp_path / 't.db'}", api_token="s3cret-token")
    with TestClient(create_app(settings)) as client:
        body = assert_problem(client.post("/jobs", json={"backend": "numpy"}), 401)
        assert "s3cret" not in str(body)
        wrong = client.post("/jobs", json={"backend": "numpy"}, headers={"authorization": "Bearer wrong"})
        assert_problem(wrong, 401, "The bearer token is not valid")
        assert wrong.headers["www-authenticate"] == 'Bearer realm="mlplab", error="invalid_token"'  # RFC 6750
        assert client.get("/jobs").status_code == 200  # reads stay open
        # but a wrong token sent to one is refused: its holder learns it before its first write
        stale = client.get("/jobs", headers={"authorization": "Bearer wrong"})
        assert_problem(stale, 401, "The bearer token is not valid")
        assert client.get("/jobs", headers={"authorization": "Bearer s3cret-token"}).status_code == 200
        assert _job_count(client) == 0
        ok = client.post("/jobs", json={"backend": "numpy"}, headers={"authorization": "Bearer s3cret-token"})
        assert ok.status_code == 202
        # two tokens: the first one counted, so a wrong one after the right one was let in
        for order in (["s3cret-token", "wrong"], ["wrong", "s3cret-token"]):
            twice = [("authorization", f"Bearer {token}") for token in order]
            refused = client.post("/jobs", json={"backend": "numpy"}, headers=twice)
            assert assert_problem(refused, 400, "authorization 2 times")["title"] == "Repeated header"
        typed = [("authorization", "Bearer s3cret-token"), ("content-type", "application/json")]
        typed.append(("content-type", "text/plain"))
        assert_problem(client.post("/jobs", content=b"{}", headers=typed), 400, "content-type 2 times")
        assert _job_count(client) == 1
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 't.db'}", api_token="s3cret-token", protect_reads=True
    )
    with TestClient(create_app(settings)) as client:
        assert_problem(client.get("/jobs"), 401)
        assert client.get("/jobs", headers={"authorization": "Bearer s3cret-token"}).json()["count"] == 1
        assert client.get("/healthz").status_code == 200  # probes never need the token


def test_cancel_a_queued_job_at_once(client):
    job = client.post("/jobs", json={"backend": "numpy"}).json()
    cancelled = client.post(f"/jobs/{job['id']}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"]
    assert_problem(client.post(f"/jobs/{job['id']}/cancel"), 409)


def test_an_echoed_input_is_cut_to_a_few_hundred_characters(client):
    """A 500 kB string (or key) came back whole, twice: in the detail and in invalid_params."""
    long = "x" * 500_000
    for body in ({"backend": "numpy", "surprise": long}, {"backend": "numpy", long: 1}, {"backend": long}):
        response = client.post("/jobs", json=body)
        problem = assert_problem(response, 422)
        assert len(response.content) < 3000 and "x" * 201 not in response.text, len(response.content)
        assert problem["invalid_params"][0]["name"].startswith("body.")
    assert "(500,000 characters)" in client.post("/jobs", json={"backend": long}).json()["detail"]
    for path in ("/jobs/" + "9" * 5000, "/nowhere/" + "y" * 5000, "/compare?ids=1," + "z" * 5000):
        response = client.get(path)
        assert 400 <= response.status_code < 500 and len(response.content) < 3000, (path[:20], response.text)
    assert _job_count(client) == 0


def test_a_body_of_many_problems_lists_a_hundred_and_says_how_many_there_are(client):
    """Past the hundred listed, the rest were dropped without a word (after each was worded)."""
    body = {"backend": "numpy"} | {f"e{i}": 0 for i in range(150)}
    problem = assert_problem(
        client.post("/jobs", json=body), 422, "; 150 problems in all, the first 100 listed"
    )
    assert len(problem["invalid_params"]) == 100 and problem["invalid_params"][0]["name"] == "body.e0"
    # and a list of problems found by the API's own checks (a study's choices), cut where every problem is
    space = {"activation": {"choice": [f"x{n}" for n in range(151)]}}
    study = {"base": {"backend": "numpy"}, "space": space, "trials": 2}
    assert_problem(client.post("/studies", json=study), 422, "; 151 problems in all, the first 100 listed")
    assert _job_count(client) == 0


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/models/{}", "path.model"),
        ("/models/{}/predictions/test/0", "path.model"),
        ("/compare/disagreements?a={}&b=1", "query.a"),
        ("/compare?ids=1,{}", "query.ids"),
        ("/jobs/{}", "path.job_id"),
        ("/studies/{}/importance", "path.study_id"),
    ],
)
def test_an_id_no_row_can_have_is_a_422_naming_it_on_every_route(client, path, name):
    """From an attacker's pass: /models/0 and /compare/disagreements?a=0 were 404s, /jobs/0 a 422;
    /models/2147483648 a 404 where ?ids= said ids end at 2,147,483,647; 26 digits at /models/ 'not digits'."""
    for value in ("0", str(2**31), "9" * 26):
        problem = assert_problem(client.get(path.format(value)), 422)
        [reason] = [p["reason"] for p in problem["invalid_params"] if p["name"] == name]
        assert re.search(
            r"greater than or equal to 1|less than or equal to 2147483647|from 1 to 2,147,483,647", reason
        ), reason


def _every_path(client) -> dict[str, set[str]]:
    """Each path of the app (path parameters filled in) and the methods it serves."""
    fill = {"{job_id}": "1", "{split}": "test", "{index}": "0", "{name}": "mnist", "{sweep_id}": "abc"}
    paths: dict[str, set[str]] = {}
    for template, operations in client.get("/openapi.json").json()["paths"].items():
        for placeholder, value in fill.items():
            template = template.replace(placeholder, value)
        path = re.sub(r"\{[^}]+\}", "1", template)
        paths[path] = {method.upper() for method in operations}
        if "GET" in paths[path]:
            paths[path].add("HEAD")  # every GET answers HEAD too
    static = ["/", "/docs", "/openapi.json", "/static/index.html", "/static/swagger/swagger-ui.css"]
    static.append("/static/vendor/plotly.min.js")
    return paths | dict.fromkeys(static, {"GET", "HEAD"})


def test_every_405_lists_the_methods_of_its_path_in_allow(client):
    paths = _every_path(client)
    assert len(paths) >= 30
    for path, methods in paths.items():
        for method in sorted({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} - methods):
            response = client.request(method, path)
            if method == "HEAD":  # the problem's head, without its body
                assert response.status_code == 405 and response.content == b""
            else:
                assert_problem(response, 405)
            assert response.headers["allow"] == ", ".join(sorted(methods)), f"{method} {path}"


@pytest.mark.parametrize(
    ("method", "path", "body", "name"),
    [
        ("POST", "/sweeps", {"base": {}, "grid": {}, "replicates": True}, "body.replicates"),
        ("POST", "/sweeps", {"base": {}, "grid": {}, "seeds": ["1"]}, "body.seeds.0"),
        ("POST", "/studies/1/extend", {"trials": True}, "body.trials"),
        ("POST", "/sweeps/0123456789ab/promote", {"alias": 5}, "body.alias"),
    ],
)
def test_no_request_body_takes_a_boolean_or_a_string_for_a_number(client, method, path, body, name):
    # every request model is strict, as TrainSpec is: lax parsing took false for 0 (found by the fuzzer)
    response = assert_problem(client.request(method, path, json=body), 422)
    assert any(p["name"].startswith(name) for p in response["invalid_params"]), response


def test_pixels_are_numbers_not_booleans():
    from pydantic import ValidationError

    from service.api.schemas import PredictCreate

    with pytest.raises(ValidationError):
        PredictCreate.model_validate({"pixels": [True] * 784})
    assert PredictCreate.model_validate({"pixels": [0] * 783 + [255.0]}).pixels is not None


def _json_body_routes(client) -> list[tuple[str, str]]:
    """Every operation whose body is JSON alone, its path parameters filled with 1 / a name."""
    routes = []
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if list(content) == ["application/json"]:
                routes.append(
                    (method.upper(), re.sub(r"\{[^}]+\}", "1", path).replace("/aliases/1", "/aliases/x"))
                )
    return routes


def test_a_json_body_sent_without_its_content_type_is_a_415_that_says_so(client):
    routes = _json_body_routes(client)
    assert ("POST", "/jobs") in routes and ("PUT", "/aliases/x") in routes and len(routes) >= 6, routes
    before = client.get("/jobs").json()["count"]
    for method, path in routes:
        for headers in (
            {"content-type": "application/x-www-form-urlencoded"},
            {"content-type": "text/plain"},
        ):
            response = client.request(method, path, content=b'{"backend": "numpy"}', headers=headers)
            body = assert_problem(response, 415, "application/json")
            assert headers["content-type"] in body["detail"], (method, path, body)
    assert client.get("/jobs").json()["count"] == before  # nothing created


def test_malformed_json_says_where_and_why_and_a_validators_sentence_stands_alone(client):
    """A 400, as a body that is JSON but not UTF-8, or names a key twice (it was a 422 here, as if the
    JSON had said something wrong)."""
    response = client.post(
        "/jobs", content=b'{"backend": "numpy", epochs: 1}', headers={"content-type": "application/json"}
    )
    body = assert_problem(response, 400, "The body cannot be read as JSON: not valid JSON at character 22")
    assert body["invalid_params"] == [
        {
            "name": "body",
            "reason": "not valid JSON at character 22: Expecting property name enclosed in double quotes",
        }
    ]
    study = {"base": {"backend": "numpy"}, "space": {"l2": {"choice": [0, 0.1]}}, "sampler": "TPE"}
    body = assert_problem(client.post("/studies", json=study), 422)
    assert "Value error" not in body["detail"] and "sampler" in body["detail"], body


LONE = "\ud800"  # a lone surrogate: valid in JSON text ("\ud800"), no UTF-8 at all


@pytest.mark.parametrize(
    ("path", "body", "name", "says"),
    [
        ("/jobs", {"backend": "numpy", "epochs": None}, "body.epochs", "(got null)"),
        ("/jobs", {"backend": "numpy", "early_stopping": {"patience": False}}, "body.early_stopping.patience", "(got false)"),
        ("/sweeps", {"base": {"backend": "numpy"}, "grid": {"hidden_layers": [[64, True]]}}, "body.grid.hidden_layers", "(got true), in [64, true]"),
        ("/studies", {"base": {"backend": "numpy"}, "space": {"activation": {"choice": ["relu", None]}}, "trials": 2}, "body.space.activation", "(got null)"),
    ],
    ids=["job", "nested", "sweep", "study"],
)  # fmt: skip
def test_a_value_is_quoted_back_as_json_writes_it(client, path, body, name, says):
    """null, true and false came back as Python writes them: "(got None)", "in [64, True]"."""
    problem = assert_problem(client.post(path, json=body), 422, says)
    assert [p["name"] for p in problem["invalid_params"]] == [name], problem
    assert client.get("/jobs").json()["count"] == 0


@pytest.mark.parametrize("path", ["/sweeps", "/studies"])
def test_a_value_nested_as_deep_as_json_allows_is_quoted_back(client, path):
    """A grid's value nested 500 deep, which the JSON reader admits, is quoted back like any other: quoting
    that recurses meets Python's recursion limit there (a 500)."""
    deep = "[" * 500 + "1" + "]" * 500
    kind = (
        '"grid": {"hidden_layers": [%s]}'
        if path == "/sweeps"
        else '"space": {"hidden_layers": {"choice": [%s]}}, "trials": 2'
    )
    body = '{"base": {"backend": "numpy"}, %s}' % (kind % deep)
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert_problem(response, 422, "[[[[[[[[[[")
    assert client.get("/jobs").json()["count"] == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/sweeps", {"base": {"backend": "numpy", LONE: 1}, "grid": {"learning_rate": [0.1]}}),
        ("/sweeps", {"base": {"backend": "numpy"}, "grid": {LONE: [1]}}),
        ("/studies", {"base": {"backend": "numpy"}, "space": {LONE: {"choice": [1]}}, "trials": 1}),
        ("/sweeps", {"base": {"backend": "numpy"}, "grid": {"k" * 100_000: [1]}}),
        ("/studies", {"base": {"backend": "numpy"}, "space": {"k" * 100_000: {"choice": [1]}}, "trials": 1}),
        (
            "/studies",
            {"base": {"backend": "numpy"}, "space": {"activation": {"choice": ["x" * 100_000]}}, "trials": 1},
        ),
    ],
    ids=[
        "surrogate-base-key",
        "surrogate-grid-key",
        "surrogate-space-key",
        "long-grid-key",
        "long-space-key",
        "long-choice",
    ],  # fmt: skip
)
def test_a_clients_keys_and_values_are_quoted_back_whole_and_short(client, path, body):
    """A lone surrogate in a key was a 500 (the problem could not be encoded); a 100,000-character key or
    choice came back in full, twice (200 kB)."""
    response = client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
    assert_problem(response, 422)
    assert len(response.content) < 3_000, len(response.content)
    assert client.get("/jobs").json()["count"] == 0


@pytest.mark.parametrize(
    "path",
    [
        "/models/1/predictions/validation/0",
        "/models/1/predictions/validation",
        "/datasets/mnist/validation/0.png",
    ],
)
def test_a_validation_split_in_a_path_says_where_its_images_are(client, path):
    """The figures have a validation split, the files do not: 'Input should be train or test' alone left
    a student with no way to a validation image."""
    problem = client.get(path).json()
    (reason,) = [p["reason"] for p in problem["invalid_params"] if p["name"] == "path.split"]
    assert (
        "the validation images are train images" in reason and "predictions/train?images=validation" in reason
    )


@pytest.mark.parametrize(
    ("path", "body", "name", "says"),
    [
        ("/jobs", {"backend": "numpy", "activaton": "relu"}, "body.activaton", "; did you mean activation?"),
        (
            "/jobs",
            {"backend": "numpy", "early_stopping": {"patience": 2, "min_delat": 0}},
            "body.early_stopping.min_delat",
            "; did you mean min_delta?",
        ),  # fmt: skip
        (
            "/sweeps",
            {"base": {"backend": "numpy"}, "grid": {"seed": [1]}, "replicate": 3},
            "body.replicate",
            "; did you mean replicates?",
        ),  # fmt: skip
        ("/jobs", {"backend": "numpy", "zzzz": 1}, "body.zzzz", "; the fields are backend, dataset, hidden_"),
        ("/models/1/reproduce", {"seed": 1}, "body.seed", "; it takes no fields: send {} or no body"),
    ],
    ids=["job", "nested", "sweep", "far", "none"],
)
def test_a_misspelt_body_field_hears_the_nearest_name(client, path, body, name, says):
    """ "Extra inputs are not permitted" alone: the settings and a sweep's grid named the field meant."""
    problem = client.post(path, json=body).json()
    (reason,) = [p["reason"] for p in problem["invalid_params"] if p["name"] == name]
    assert reason.startswith("Extra inputs are not permitted") and says in reason, reason
    assert client.get("/jobs").json()["count"] == 0


@pytest.mark.parametrize(
    ("path", "body", "name"),
    [
        ("/jobs", job_body(optimizer="sgd", momentum=0.5), "body.momentum"),
        (
            "/sweeps",
            {"base": job_body(optimizer="adam", momentum=0.5), "grid": {"seed": [1, 2]}},
            "base.momentum",
        ),
        (
            "/studies",
            {"base": job_body(momentum=0.5), "space": {"learning_rate": {"float": [0.01, 1.0]}}, "trials": 2},
            "base.momentum",
        ),
    ],
    ids=["job", "sweep", "study"],
)
def test_a_momentum_its_optimizer_never_reads_is_refused(client, path, body, name):
    """sgd with momentum 0.5 was queued (202) and listed as momentum 0.5: a student read a setting it
    never used; a sweep's grid over it was already refused."""
    problem = assert_problem(client.post(path, json=body), 422, name)
    assert "only the momentum optimizer reads it" in problem["detail"]
    assert client.get("/jobs").json()["count"] == 0
    # its default, which every spec carries, and a momentum the optimizer reads, are taken
    assert client.post("/jobs", json=job_body(optimizer="sgd", momentum=0.9)).status_code == 202
    assert client.post("/jobs", json=job_body(optimizer="momentum", momentum=0.5)).status_code == 202


@pytest.mark.parametrize(
    "path,text,name",
    [
        ("/jobs", '{"backend": "numpy", "learning_rate": NaN}', "body.learning_rate"),
        ("/jobs", '{"backend": "numpy", "l2": -Infinity}', "body.l2"),
        (
            "/jobs",
            '{"backend": "numpy", "early_stopping": {"patience": 2, "min_delta": NaN}}',
            "body.early_stopping.min_delta",
        ),
        (
            "/sweeps",
            '{"base": {"backend": "numpy", "l2": NaN}, "grid": {"init": ["he", "glorot"]}}',
            "body.base.l2",
        ),
        (
            "/sweeps",
            '{"base": {"backend": "numpy"}, "grid": {"learning_rate": [0.1, Infinity]}}',
            "body.grid.learning_rate",
        ),
    ],
)
def test_nan_and_infinity_are_told_to_be_finite_not_to_keep_within_a_bound(client, path, text, name):
    """Python's JSON reads NaN: the learning rate was told it 'should be less than or equal to 10'."""
    problem = assert_problem(
        client.post(path, content=text, headers={"content-type": "application/json"}), 422
    )
    [param] = problem["invalid_params"]
    assert param["name"] == name and param["reason"].startswith("Input should be a finite number (got "), (
        param
    )
    assert _job_count(client) == 0


@pytest.mark.parametrize("path", ["/jobs", "/sweeps", "/models/1/predict"])
def test_a_json_body_declared_in_another_charset_is_a_415_naming_it(client, path):
    """Latin-1 bytes sent as such were told 'not UTF-8 (byte 35); a compressed body is not read'."""
    latin1 = '{"backend": "numpy", "activation": "rélu"}'.encode("latin-1")
    for charset in ("iso-8859-1", '"latin1"', "bogus"):
        response = client.post(
            path, content=latin1, headers={"content-type": f"application/json; charset={charset}"}
        )
        problem = assert_problem(response, 415, f"charset={charset.strip(chr(34))!r}: JSON is read as UTF-8")
        assert response.headers["accept"] == "application/json", problem
    assert _job_count(client) == 0
    for charset in (
        "utf-8",
        '"UTF-8"',
        "us-ascii",
    ):  # what RFC 8259's JSON is, said out loud (3: the queue's room)
        sent = client.post(
            "/jobs",
            json={"backend": "numpy"},
            headers={"content-type": f"application/json; charset={charset}"},
        )
        assert sent.status_code == 202, sent.text


def test_a_charset_is_refused_only_where_a_body_is_sent_and_ascii_and_json_types_alike(client):
    """A bodyless DELETE with charset=latin1 was a 415 (its route documents none); charset=ascii, a part of
    UTF-8, was refused; application/problem+json (read as JSON too) let any charset through."""
    latin1 = {"content-type": "application/json; charset=latin1"}
    assert client.delete("/aliases/nothing", headers=latin1).status_code == 404  # no body: nothing to decode
    sent = client.post(
        "/jobs", json={"backend": "numpy"}, headers={"content-type": "application/json; charset=ascii"}
    )
    assert sent.status_code == 202, sent.text
    empty = client.post(
        "/jobs", json={"backend": "numpy"}, headers={"content-type": "application/json; charset="}
    )
    assert empty.status_code == 202, empty.text
    problem = client.post(
        "/jobs",
        content=b'{"backend": "numpy"}',
        headers={"content-type": "application/problem+json; charset=latin-1"},
    )
    assert_problem(problem, 415, "charset='latin-1': JSON is read as UTF-8")
