"""Integer path and query parameters are digits, each query parameter is given once, and a list of ids
has no empty entry: anything else is a 422 naming the parameter, not another id or page than was meant.

Parametrized over the parameters of the OpenAPI document, so that a new route is covered as it comes."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import Settings
from tests.conftest import assert_problem

# What pydantic's lax int read as another number: '1.0', '+1', ' 1', '1 ' and '١' (ARABIC-INDIC DIGIT
# ONE) as 1, '1_0' as 10, '1e3' as 1000.
NOT_DIGITS = ["1.0", "1_0", "+1", " 1", "1 ", "1e3", "\u0661", "0x1", "-0"]  # -0: a second spelling of 0

Parameter = tuple[str, str, dict[str, Any], list[dict[str, Any]]]  # method, path, it, the operation's


def _is_integer(parameter: dict[str, Any]) -> bool:
    schema = parameter["schema"]
    return "integer" in [schema.get("type"), *(kind.get("type") for kind in schema.get("anyOf", []))]


def _operations() -> list[tuple[str, str, list[dict[str, Any]], bool]]:
    """Each operation of the OpenAPI document the app serves: method, path, its parameters, whether it
    reads a body."""
    app = create_app(Settings(database_url="sqlite://", download=False))
    document = TestClient(app).get("/openapi.json").json()
    return [
        (method.upper(), path, operation.get("parameters", []), "requestBody" in operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


OPERATIONS = _operations()
# Each path and query parameter of each operation
PARAMETERS: list[Parameter] = [
    (method, path, parameter, parameters)
    for method, path, parameters, _ in OPERATIONS
    for parameter in parameters
    if parameter["in"] in ("path", "query")
]
BODIES = {(method, path) for method, path, _, body in OPERATIONS if body}
NO_BODY = [(method, path, parameters) for method, path, parameters, body in OPERATIONS if not body]
INTEGERS = [p for p in PARAMETERS if _is_integer(p[2])]
QUERIES = [p for p in PARAMETERS if p[2]["in"] == "query"]


def _id(p: Parameter) -> str:
    return f"{p[0]} {p[1]} {p[2]['in']}.{p[2]['name']}"


def _url(path: str, parameters: list[dict[str, Any]], name: str, value: str) -> tuple[str, dict[str, str]]:
    """`path` with each path parameter its example, or `value` for `name`; `name` in the query if it is one."""
    for parameter in parameters:
        if parameter["in"] == "path":
            given = value if parameter["name"] == name else str(parameter["example"])
            path = path.replace("{" + parameter["name"] + "}", quote(given, safe=""))
    query = {name: value} if any(p["name"] == name and p["in"] == "query" for p in parameters) else {}
    return path, query


def _send(client, method: str, template: str, path: str, params: Any):
    """The request, with an empty JSON body where the operation reads one (a body elsewhere is a 422)."""
    return client.request(
        method, path, params=params, **({"json": {}} if (method, template) in BODIES else {})
    )


def test_the_integer_parameters_are_found():
    """A route whose ids stopped being integers in the document would drop out of these tests silently."""
    names = {p[2]["name"] for p in INTEGERS}
    assert names >= {"job_id", "study_id", "index", "limit", "offset", "after_step", "label", "predicted"}
    assert names >= {"jobs_limit", "trials_limit", "scale"} and len(INTEGERS) >= 40, names


@pytest.mark.parametrize("method,path,parameter,parameters", INTEGERS, ids=map(_id, INTEGERS))
def test_an_integer_parameter_is_digits(client, method, path, parameter, parameters):
    name, where = parameter["name"], f"{parameter['in']}.{parameter['name']}"
    for value in NOT_DIGITS + (["", "-"] if parameter["in"] == "query" else []):
        problem = assert_problem(
            _send(client, method, path, *_url(path, parameters, name, value)), 422, where
        )
        reasons = [p["reason"] for p in problem["invalid_params"] if p["name"] == where]
        assert reasons == [f"Input should be a whole number written in digits (got {value!r})"], reasons
    # Leading zeros still give the number.
    response = _send(client, method, path, *_url(path, parameters, name, "01"))
    assert response.status_code < 500 or response.status_code == 503, response.text[:500]
    if response.status_code == 422:
        assert where not in [p["name"] for p in response.json()["invalid_params"]], response.text[:500]
    # A minus is read, so that a number below the minimum hears the minimum.
    bounds = [parameter["schema"], *parameter["schema"].get("anyOf", [])]
    minimum = next((bound["minimum"] for bound in bounds if "minimum" in bound), None)
    if minimum is not None:
        response = _send(client, method, path, *_url(path, parameters, name, str(minimum - 1)))
        assert_problem(response, 422, f"{where}: Input should be greater than or equal to {minimum}")


@pytest.mark.parametrize("method,path,parameter,parameters", QUERIES, ids=map(_id, QUERIES))
def test_a_query_parameter_given_twice_is_refused(client, method, path, parameter, parameters):
    """The last was read: ?limit=1&limit=500 was a page of 500."""
    name, example = parameter["name"], str(parameter.get("example", parameter["schema"].get("default", "1")))
    filled, _ = _url(path, parameters, name, example)
    problem = assert_problem(
        _send(client, method, path, filled, [(name, example), (name, example)]),
        422,
        f"query.{name}: given 2 times; give it once",
    )
    assert problem["invalid_params"] == [{"name": f"query.{name}", "reason": "given 2 times; give it once"}]


PROBES = ("/healthz", "/readyz")  # a monitor's cache-buster is welcome there
READS_DECLARED = [o[:3] for o in OPERATIONS if o[1] not in PROBES]


@pytest.mark.parametrize(
    "method,path,parameters", READS_DECLARED, ids=[f"{o[0]} {o[1]}" for o in READS_DECLARED]
)
def test_a_query_parameter_the_route_does_not_read_is_refused(client, method, path, parameters):
    """It was ignored: ?splitt=train answered with the test split's confusion matrix, and POST /jobs?dry_run=1
    queued the job."""
    filled, _ = _url(path, parameters, "", "")
    problem = assert_problem(_send(client, method, path, filled, {"dry_run": "1"}), 422, "query.dry_run")
    assert problem["invalid_params"][0]["reason"].startswith("not a parameter of this route (it reads: ")
    assert client.get("/jobs").json()["count"] == 0


WRITES_WITHOUT_BODY = [o for o in NO_BODY if o[0] in ("POST", "PUT", "DELETE")]


@pytest.mark.parametrize(
    "method,path,parameters", WRITES_WITHOUT_BODY, ids=[f"{o[0]} {o[1]}" for o in WRITES_WITHOUT_BODY]
)
def test_a_body_sent_to_a_route_that_reads_none_is_refused(client, method, path, parameters):
    """It was ignored: POST /aliases/x/rollback {"to_model_id": 5} rolled back one move, not to model 5."""
    filled, _ = _url(path, parameters, "", "")
    problem = assert_problem(
        client.request(method, filled, json={"to_model_id": 5}), 422, "body: this route reads no body"
    )
    assert problem["invalid_params"][0]["name"] == "body"


def test_a_get_with_an_empty_chunked_or_zero_length_body_is_no_body(client):
    """Some proxies send a GET chunked, or Content-Length: 00: no body, and no 422 for one."""
    for headers in ({"transfer-encoding": "chunked"}, {"content-length": "00"}):
        assert client.get("/jobs", headers=headers).status_code == 200, headers
    assert client.get("/healthz", params={"_": "1712345678"}).status_code == 200  # a probe's cache-buster


def test_the_writes_without_a_body_are_found():
    assert {(m, p) for m, p, _ in WRITES_WITHOUT_BODY} >= {
        ("POST", "/jobs/{job_id}/cancel"),
        ("POST", "/aliases/{alias}/rollback"),
        ("DELETE", "/aliases/{alias}"),
    }


def test_every_parameter_given_more_than_once_is_named(client):
    problem = assert_problem(
        client.get("/jobs?limit=1&limit=500&offset=0&offset=1&offset=2&sort=newest"),
        422,
        "query.limit: given 2 times; give it once; query.offset: given 3 times; give it once",
    )
    assert [p["name"] for p in problem["invalid_params"]] == ["query.limit", "query.offset"]


@pytest.mark.parametrize("ids", ["1,,2", "1,2,", ",1,2", "1, ,2", ","])
@pytest.mark.parametrize("path", ["/compare", "/compare.png"])
def test_an_empty_entry_in_a_list_of_ids_is_refused(client, path, ids):
    """It was skipped: ids=1,,2 compared models 1 and 2, as if no other had been meant."""
    problem = assert_problem(
        client.get(path, params={"ids": ids}), 422, "query.ids: an empty entry between commas"
    )
    assert problem["invalid_params"] == [
        {
            "name": "query.ids",
            "reason": f"an empty entry between commas (got {ids!r}); give e.g. ids=3,7,champion",
        }
    ]


def test_no_problem_sends_a_clients_control_or_bidi_characters_as_they_are(client):
    """'No route matches GET /nosuch\\x1b[2J.' and an instance of /aliases/...\\u202e reached a terminal that
    printed the problem raw: the escape sequence ran, the text read right to left."""
    lost = client.get("/nosuch%1B%5B2J%E2%80%AE").json()
    assert lost["detail"] == "No route matches GET /nosuch%1B%5B2J%E2%80%AE."
    assert lost["instance"] == "/nosuch%1B%5B2J%E2%80%AE"
    named = client.get("/aliases/x%1B%5B31m%E2%80%AE").json()
    assert named["instance"] == "/aliases/x%1B%5B31m%E2%80%AE"
    unknown = client.get("/jobs", params={"\x1b[2J\u202e": "1"}).json()
    assert unknown["invalid_params"][0]["name"] == "query.\\x1b[2J\\u202e"
    keyed = client.post("/jobs", json={"backend": "numpy", "\x1b[2J": 1}).json()
    assert [p["name"] for p in keyed["invalid_params"]] == ["body.\\x1b[2J"]
    for problem in (lost, named, unknown, keyed):
        assert all(c.isprintable() for c in str(problem)), problem
