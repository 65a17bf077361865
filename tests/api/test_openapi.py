"""The OpenAPI document a person reads at /docs: every endpoint tagged, summarised, with examples."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.api import schemas
from service.api.openapi import CONDITIONS
from service.main import create_app
from service.settings import Settings
from tests.conftest import assert_problem


def test_every_operation_has_a_tag_a_summary_and_examples(client):
    schema = client.get("/openapi.json").json()
    operations = [(path, method, op) for path, ops in schema["paths"].items() for method, op in ops.items()]
    assert len(operations) >= 25
    for path, method, op in operations:
        where = f"{method.upper()} {path}"
        assert op.get("tags"), where
        assert op.get("summary") and op.get("description"), where
        for parameter in op.get("parameters", []):
            if parameter["name"] in CONDITIONS:  # the docs UI sends every example: none is the right one
                assert "example" not in parameter, where
                continue
            assert "example" in parameter or "default" in parameter["schema"], f"{where}: {parameter['name']}"
        for media in op.get("requestBody", {}).get("content", {}).values():
            ref = media.get("schema", {}).get("$ref")
            body_schema = (
                schema["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else media.get("schema", {})
            )
            has_example = "examples" in media or "example" in media or "examples" in body_schema
            assert has_example or body_schema.get("format") == "binary" or "properties" in body_schema, where


def test_every_summary_is_a_whole_sentence(client):
    """Summaries were the first line of a docstring: 'Point an alias at the best model of the sweep's best
    configuration (GET /sweeps/{id}'s first; with', cut mid-sentence in the docs UI's list."""
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        for method, op in operations.items():
            first = " ".join(op["description"].split("\n\n", 1)[0].split())
            rest = first.removeprefix(op["summary"])
            assert first.startswith(op["summary"]) and rest[:1] in ("", "."), (method, path, op["summary"])
            assert op["summary"].count("(") == op["summary"].count(")"), (method, path, op["summary"])
    promote = client.get("/openapi.json").json()["paths"]["/sweeps/{sweep_id}/promote"]["post"]["summary"]
    assert promote.startswith("Point an alias at the best model of the sweep's best configuration (GET")
    assert promote.endswith("creating the alias if need be; once its jobs have ended"), promote


def test_every_problem_is_documented_as_problem_json_with_its_schema(client):
    schema = client.get("/openapi.json").json()
    problems = 0
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            for code, response in op["responses"].items():
                if int(code) >= 400 and path != "/readyz":  # /readyz's 503 is its Readiness body
                    assert list(response["content"]) == ["application/problem+json"], (
                        f"{method} {path} {code}"
                    )
                    assert response["content"]["application/problem+json"]["schema"] == {
                        "$ref": "#/components/schemas/Problem"
                    }, f"{method} {path} {code}"
                    problems += 1
    assert problems > 100


def test_the_docs_ui_is_served_without_a_cdn(client):
    response = client.get("/docs")
    assert response.status_code == 200 and "swagger-ui" in response.text
    assert "cdn" not in response.text and "https://" not in response.text
    for asset in ("/static/swagger/swagger-ui-bundle.js", "/static/swagger/swagger-ui.css"):
        assert asset in response.text
        served = client.get(asset)
        assert (
            served.status_code == 200
            and len(served.content) > 100_000
            and "max-age" in served.headers["cache-control"]
        )
    # and nothing else of the package: its demo page calls petstore.swagger.io, its maps weigh 8 MB
    for other in ("index.html", "oauth2-redirect.html", "swagger-ui-bundle.js.map", "swagger-ui.js"):
        assert client.get(f"/static/swagger/{other}").status_code == 404, other


@pytest.mark.parametrize("page", ["/", "/docs"])
def test_a_page_revalidated_with_its_etag_is_a_304(client, page):
    """The pages say no-cache and send an ETag, but a browser's revalidation got the whole page again."""
    first = client.get(page)
    assert first.status_code == 200 and first.headers["cache-control"] == "no-cache"
    again = client.get(page, headers={"If-None-Match": first.headers["etag"]})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", first.headers["etag"])
    assert client.get(page, headers={"If-None-Match": '"another"'}).content == first.content


@pytest.mark.parametrize("page", ["/", "/docs"])
def test_the_pages_icon_is_served_where_browsers_ask_for_it(client, page):
    """Browsers ask for /favicon.ico, a JSON answer's tab too: it was a 404 problem each time."""
    assert '<link rel="icon" href="/favicon.ico">' in client.get(page).text
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO file's header
    assert "max-age" in icon.headers["cache-control"] and "icon" in icon.headers["content-type"]


DATASET_ROUTES = [
    ("get", "/datasets/{name}/{split}"),
    ("get", "/datasets/{name}/{split}/{index}.png"),
    ("get", "/models/{model}/predictions/{split}/{index}"),
    ("get", "/models/{model}/predictions/{split}"),
    ("get", "/models/{model}/mistakes.png"),
]


def test_a_missing_dataset_is_a_documented_503_naming_the_setting(settings, tmp_path):
    empty = settings.model_copy(update={"data_dir": tmp_path / "no-data"})
    with TestClient(create_app(empty)) as client:
        for path in ("/datasets/mnist/test", "/datasets/mnist/test/0.png"):
            response = client.get(path)
            body = assert_problem(response, 503, "MLPLAB_DATA_DIR")
            assert body["title"] == "Dataset unavailable"
            assert (
                str(tmp_path) not in response.text and "no-data" not in response.text
            )  # the log's, not ours
        paths = client.get("/openapi.json").json()["paths"]
    for method, path in DATASET_ROUTES:  # every route that reads a dataset says so
        response = paths[path][method]["responses"].get("503")
        assert response and "application/problem+json" in response["content"], f"{method.upper()} {path}"


@pytest.mark.parametrize(("token", "protect_reads"), [(None, False), ("t0ken", False), ("t0ken", True)])
def test_the_document_asks_for_the_token_where_this_api_does(tmp_path, token, protect_reads):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}", api_token=token, protect_reads=protect_reads
    )
    with TestClient(create_app(settings)) as client:
        schema = client.get("/openapi.json").json()
    secured = {
        (method, path)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if operation.get("security") == [{"token": []}]
    }
    writes = {(m, p) for p, ops in schema["paths"].items() for m in ops if m in ("post", "put", "delete")}
    reads = {(m, p) for p, ops in schema["paths"].items() for m in ops if m == "get"}
    if token is None:
        assert not secured and "securitySchemes" not in schema.get("components", {})
        return
    assert schema["components"]["securitySchemes"]["token"] == {
        "type": "http", "scheme": "bearer", "description": "MLPLAB_API_TOKEN"
    }  # fmt: skip
    assert writes <= secured  # /docs' "Authorize" sends it with every write
    opened = {("get", p) for p in ("/healthz", "/readyz", "/openapi.json") if ("get", p) in reads}
    assert (reads & secured) == (reads - opened if protect_reads else set())


def test_the_headers_a_client_reads_are_documented(client):
    """No response said it carried a header: x-model-id, the only way to learn which model answered a
    predict by alias, was in no document."""
    paths = client.get("/openapi.json").json()["paths"]

    def headers(path: str, method: str, status: str) -> set[str]:
        return set(paths[path][method]["responses"][status].get("headers", {}))

    assert "X-Model-Id" in headers("/models/{model}/predict", "post", "200")
    assert {"X-Model-Id", "Content-Disposition"} <= headers("/models/{model}/weights", "get", "200")
    assert "Location" in headers("/jobs", "post", "202") and "Location" in headers(
        "/aliases/{alias}", "put", "201"
    )
    assert "ETag" in headers("/aliases/{alias}", "get", "200") and "ETag" in headers(
        "/sweeps/{sweep_id}/promote", "post", "200"
    )
    assert "Retry-After" in headers("/jobs", "post", "429")
    sent = client.post("/jobs", json={"backend": "numpy"})
    assert sent.status_code == 202 and sent.headers["location"]  # what the document says is sent


def test_no_operation_documents_a_problem_it_cannot_answer(client):
    """The router-wide "not trained" (409) was on GET /models, a list, and the upload limit (413) on the
    GET routes of predictions, which read no body."""
    paths = client.get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method, op in operations.items():
            if "409" in op["responses"] and op["responses"]["409"]["description"] == "Not trained yet":
                assert path != "/models", (method, path)
            if "413" in op["responses"]:
                assert "requestBody" in op, (method, path)


def test_every_field_a_response_always_sends_is_required_in_its_schema(client):
    """Fields with defaults (worker, sweep_id, warning, ...) were optional in the document though every
    answer carries them: a generated client typed them optional."""
    components = client.get("/openapi.json").json()["components"]["schemas"]
    answers = [
        c.__name__ for c in vars(schemas).values() if isinstance(c, type) and issubclass(c, schemas.Answer)
    ]
    checked = [name for name in answers if name in components and name != "Answer"]
    assert len(checked) >= 30, checked
    for name in checked:
        schema = components[name]
        assert set(schema.get("required", [])) == set(schema["properties"]), name


def test_the_predict_operation_names_every_image_format_an_upload_may_be_in(client):
    """It said PNG/JPEG, where the API (and its 415) reads GIF, BMP and WebP too."""
    from service.imaging import ACCEPTED_NAMES

    operation = client.get("/openapi.json").json()["paths"]["/models/{model}/predict"]["post"]
    assert ACCEPTED_NAMES in " ".join(operation["description"].split()), operation["description"]
