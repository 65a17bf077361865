"""The OpenAPI document as /docs shows it: each operation summarised by its handler's docstring's first
line, an example for every parameter, so each endpoint can be tried as is, every problem documented as
what it is (application/problem+json with the Problem schema), and the response headers a client reads."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from service.api.schemas import MODEL_ID_HEADER
from service.errors import NOT_TRAINED_DOC, PROBLEM_JSON
from service.settings import Settings
from service.store.models import JobStatus

# By parameter name: the values a first session has (job 1 trained, MNIST present).
EXAMPLES: dict[str, Any] = {
    "job_id": 1,
    "model": "1",
    "alias": "champion",
    "sweep_id": "3f9c2a1b7d4e",
    "study_id": 1,
    "figure": "history",
    "split": "test",
    "index": 10,
    "name": "mnist",
    "dataset": "mnist",
    "ids": "1,2,3",  # as its schema's example
    "status": JobStatus.succeeded,
    "backend": "numpy",
    "limit": 20,
    "offset": 0,
    "sort": "validation_accuracy",
    "a": "1",  # a model id or an alias: a string
    "b": "2",
    "only": "a_right",
    "after_step": 0,
    "label": 7,
    "predicted": 2,
    "correct": False,
    "order": "confidence",
    "scale": 4,
    "x": "step",
    "last-event-id": "200-2-1",  # step 200, epoch 2, attempt 1: as the stream's ids are
    "jobs_limit": 10,
    "trials_limit": 10,
    "images": "counted",
}
# No example for If-Match and If-None-Match: the docs UI sends every example it shows, and no alias can
# meet both at once (every try would be a 412).
CONDITIONS = ("if-match", "if-none-match")

_LOCATION = {"description": "Where the created or accepted resource is read", "schema": {"type": "string"}}
_ETAG = {"description": "The alias's ETag, for If-Match on its next change", "schema": {"type": "string"}}
_MODEL_ID = {
    "description": "The id of the model that answered (an alias may name another by the next request)",
    "schema": {"type": "string"},
}
_DISPOSITION = {"description": "attachment, and the file's name", "schema": {"type": "string"}}
_RETRY = {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}
_ALIAS_MOVES = (
    "/aliases/{alias}",
    "/aliases/{alias}/rollback",
    "/sweeps/{sweep_id}/promote",
    "/studies/{study_id}/promote",
)
_DOWNLOADS = ("/models/{model}/weights", "/models/{model}/model.onnx")


def _names_a_model(operation: dict[str, Any]) -> bool:
    """Whether a request names a model: in its path or query (model, ids, a, b) or in its body."""
    named = {parameter["name"] for parameter in operation.get("parameters", [])}
    return bool(named & {"model", "ids", "a", "b"}) or "requestBody" in operation


def _response_headers(path: str, method: str, status: str) -> dict[str, Any]:
    """The headers a client reads on this response, as the routes send them."""
    headers: dict[str, Any] = {}
    code = int(status) if status.isdigit() else 0
    if code in (201, 202):
        headers["Location"] = _LOCATION
    if code in (200, 201) and path in _ALIAS_MOVES and method in ("get", "put", "post"):
        headers["ETag"] = _ETAG
    if 200 <= code < 300 and path.startswith("/models/{model}"):
        headers[MODEL_ID_HEADER] = _MODEL_ID
    if code == 200 and path in _DOWNLOADS:
        headers["Content-Disposition"] = _DISPOSITION
    if code in (429, 503):
        headers["Retry-After"] = _RETRY
    return headers


def _problem_only(response: dict[str, Any]) -> None:
    """FastAPI lists a response declared with a model under the route's media type (application/json,
    text/event-stream), beside the media type declared for it; a problem is only ever sent as
    application/problem+json, so that one gets the schema."""
    content = response.get("content", {})
    others = [media for media in content if media != PROBLEM_JSON]
    if PROBLEM_JSON in content and others:
        response["content"] = {PROBLEM_JSON: content[others[0]]}


def _security_as_configured(schema: dict[str, Any], settings: Settings) -> None:
    """The token only where this API asks for it: nowhere without MLPLAB_API_TOKEN, on reads only with
    MLPLAB_PROTECT_READS (every route declares it: deps.BEARER)."""
    for operations in schema["paths"].values():
        for method, operation in operations.items():
            if settings.api_token is None or (method == "get" and not settings.protect_reads):
                operation.pop("security", None)
    if settings.api_token is None:
        schema.get("components", {}).pop("securitySchemes", None)


def summary_of(description: str) -> str:
    """An operation's summary: its description's first sentence, whole (the first line of a docstring cut
    'Point an alias at the best model ... (GET /sweeps/{id}'s first; with' mid-sentence)."""
    paragraph = " ".join(description.split("\n\n", 1)[0].split())
    return paragraph.split(". ", 1)[0].rstrip(".")


def add_parameter_examples(app: FastAPI) -> None:
    """Install the post-processing above on app.openapi (computed once, on the first request)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            _security_as_configured(schema, app.state.settings)
            for path, operations in schema["paths"].items():
                for method, operation in operations.items():
                    if operation.get("description"):
                        operation["summary"] = summary_of(operation["description"])
                    for parameter in operation.get("parameters", []):
                        if parameter["name"] in EXAMPLES and "example" not in parameter:
                            parameter["example"] = EXAMPLES[parameter["name"]]
                    # the models router documents "not trained" on all its routes: only one naming a model can
                    said = operation["responses"].get("409", {}).get("description")
                    if said == NOT_TRAINED_DOC[409]["description"] and not _names_a_model(operation):
                        del operation["responses"]["409"]
                    for status, response in operation.get("responses", {}).items():
                        _problem_only(response)
                        if headers := _response_headers(path, method, status):
                            response["headers"] = response.get("headers", {}) | headers
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
