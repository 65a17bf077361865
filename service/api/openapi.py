"""The OpenAPI document as /docs shows it: each operation summarised by its handler's docstring's first
line, an example for every parameter, so each endpoint can be tried as is, and every problem
documented as what it is: application/problem+json with the Problem schema."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from service.errors import PROBLEM_JSON
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
    "ids": "1,2",
    "status": JobStatus.succeeded,
    "backend": "numpy",
    "limit": 20,
    "offset": 0,
    "sort": "validation_accuracy",
    "a": 1,
    "b": 2,
    "only": "a_right",
    "after_step": 0,
    "label": 7,
    "predicted": 2,
    "correct": False,
    "order": "confidence",
    "scale": 4,
    "x": "step",
    "last-event-id": "120-1",
    "if-match": ['"12"'],  # an alias's ETag, as GET /aliases/{alias} gave it
    "if-none-match": ["*"],
}


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


def add_parameter_examples(app: FastAPI) -> None:
    """Install the post-processing above on app.openapi (computed once, on the first request)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            _security_as_configured(schema, app.state.settings)
            for operations in schema["paths"].values():
                for operation in operations.values():
                    if operation.get("description"):
                        operation["summary"] = operation["description"].split("\n", 1)[0].rstrip(".")
                    for parameter in operation.get("parameters", []):
                        if parameter["name"] in EXAMPLES and "example" not in parameter:
                            parameter["example"] = EXAMPLES[parameter["name"]]
                    for response in operation.get("responses", {}).values():
                        _problem_only(response)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
