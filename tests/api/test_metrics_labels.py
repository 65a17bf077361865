"""/metrics' series are bounded whatever clients send: a method outside the usual few is counted as "other",
so PROPFIND, PURGE and the rest the HTTP parser accepts add no series however many a client tries."""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.api.monitoring import OTHER_METHOD
from service.errors import HTTP_METHODS
from service.main import create_app
from tests.api.test_metrics import scrape, settings, value  # noqa: F401  (settings: the fixture)

PATHS = ("/jobs", "/models/1/confusion-matrix.png", "/metrics", "/no/such/route")


def _other(samples) -> set:
    """The request series labelled "other", without their values."""
    return {
        key for key in samples if key[0].startswith("mlplab_http_") and ("method", OTHER_METHOD) in key[1]
    }


def test_unusual_methods_are_counted_as_other_and_add_no_series(settings):  # noqa: F811
    with TestClient(create_app(settings)) as client:
        for method in ("PROPFIND", "MKCOL", "PURGE", "SEARCH"):
            for path in PATHS:
                client.request(method, path)
        first = scrape(client)
        for method in ("COPY", "MOVE", "LOCK", "UNLOCK", "PROPPATCH", "REPORT", "BREW"):
            for path in PATHS:
                client.request(method, path)
        second = scrape(client)

    methods = {dict(labels)["method"] for name, labels in second if name == "mlplab_http_requests_total"}
    assert methods <= {*HTTP_METHODS, OTHER_METHOD} and OTHER_METHOD in methods
    assert value(second, "mlplab_http_requests_total", method="other", route="/jobs", status="405") == 11
    assert value(second, "mlplab_http_requests_total", method="other", route="unmatched", status="404") == 11
    assert _other(second) == _other(first)  # seven more methods on the same paths: no new series
