"""Read tickets with MLPLAB_PROTECT_READS: a ticket, given for the token, reads through GET links that
cannot carry a header (images, event streams, downloads) for an hour, and does nothing else."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from service.api.guard import TICKET_SECONDS, read_ticket
from service.main import create_app
from service.settings import Settings
from tests.conftest import assert_problem
from tests.factories import job_body

AUTH = {"authorization": "Bearer t0k"}


@pytest.fixture
def protected(settings):
    settings = Settings(**settings.model_dump() | {"api_token": "t0k", "protect_reads": True})
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_ticket_reads_through_links_for_an_hour(protected):
    assert_problem(protected.get("/read-ticket"), 401)
    given = protected.get("/read-ticket", headers=AUTH)
    assert given.status_code == 200, given.text
    ticket = given.json()["ticket"]
    expires = datetime.fromisoformat(given.json()["expires_at"]).timestamp()
    assert abs(expires - (time.time() + TICKET_SECONDS)) < 5
    assert_problem(protected.get("/jobs"), 401)
    assert protected.get("/jobs", params={"ticket": ticket}).json()["count"] == 0
    image = protected.get("/datasets/mnist/test/0.png", params={"ticket": ticket, "scale": 2})
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.headers["cache-control"].startswith("private")


def test_a_ticket_neither_writes_nor_buys_another(protected):
    ticket = protected.get("/read-ticket", headers=AUTH).json()["ticket"]
    assert_problem(protected.post("/jobs", params={"ticket": ticket}, json=job_body()), 401)
    assert_problem(protected.get("/read-ticket", params={"ticket": ticket}), 401)
    assert protected.get("/jobs", headers=AUTH).json()["count"] == 0


def test_a_forged_expired_or_other_tokens_ticket_is_refused(protected):
    settings = protected.app.state.settings
    ticket = protected.get("/read-ticket", headers=AUTH).json()["ticket"]
    expires, mac = ticket.split(".")
    other = read_ticket(Settings(**settings.model_dump() | {"api_token": "another"}), time.time())[0]
    for bad in (
        f"{int(expires) + 1}.{mac}",  # a later expiry, the same signature
        other,
        "",
        "x" * 10_000,
        "\u00b2.\u00b2",
    ):
        assert_problem(protected.get("/jobs", params={"ticket": bad}), 403, "not valid")
    expired = read_ticket(settings, time.time() - TICKET_SECONDS - 1)[0]
    assert_problem(protected.get("/jobs", params={"ticket": expired}), 403, "has expired")
    # a good one beside a bad one: the last read won, so one order read and the other did not
    for pair in ([ticket, "bad"], ["bad", ticket]):
        assert_problem(protected.get("/jobs", params={"ticket": pair}), 422, "query.ticket", "given 2 times")


def test_a_ticket_given_twice_is_refused_where_reads_are_open_too(client):
    assert_problem(client.get("/jobs", params={"ticket": ["a", "b"]}), 422, "query.ticket", "given 2 times")


def test_open_reads_give_no_ticket(client, settings):
    assert_problem(client.get("/read-ticket"), 404, "need no token")
    guarded = Settings(**settings.model_dump() | {"api_token": "t0k"})
    with TestClient(create_app(guarded)) as writer_only:
        assert_problem(writer_only.get("/read-ticket", headers=AUTH), 404, "MLPLAB_PROTECT_READS")
        assert_problem(writer_only.get("/read-ticket"), 401)  # the token first, as for any write
