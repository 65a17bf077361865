"""A burst of study submissions cannot hold the API: their sampler's first asks (seconds for a large
grid) take turns, at most STUDIES_PLANNED_WAITING wait, one more is refused at once (503, Retry-After),
a full queue refuses a study before any ask, and reads go on meanwhile (44 studies at once held every
thread for 30 s: GET /models/1 took 32 s)."""

from __future__ import annotations

import asyncio

import httpx

from service.api.routes import studies
from service.errors import PROBLEM_JSON
from service.main import create_app
from service.settings import Settings
from tests.api.test_figure_queue import _client_at, _serve, _until
from tests.api.test_studies import STUDY
from tests.support import real_data_dir


def _app(tmp_path, **settings):
    return create_app(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'plan.db'}",
            data_dir=real_data_dir(),
            download=False,
            **settings,
        )
    )


def test_studies_submitted_at_once_take_turns_and_one_too_many_is_refused_at_once(tmp_path):
    waiting = studies.STUDIES_PLANNED_WAITING

    async def scenario(client: httpx.AsyncClient) -> None:
        with studies.PLANNING:  # a study being planned: the others queue behind it
            burst = [  # from as many clients: one client's share is smaller (next test)
                asyncio.create_task(_client_at(app, f"10.0.7.{i}").post("/studies", json=STUDY | {"seed": i}))
                for i in range(waiting)
            ]
            await _until(lambda: studies.PLANNING.waiting == waiting, "the burst waiting its turn")
            refused = await asyncio.wait_for(client.post("/studies", json=STUDY), 5)
            assert refused.status_code == 503 and refused.headers["content-type"] == PROBLEM_JSON
            assert refused.headers["retry-after"] == "5"
            assert refused.json()["title"] == "Study planning queue full"
            assert (await asyncio.wait_for(client.get("/jobs"), 5)).status_code == 200  # reads go on
        assert [r.status_code for r in await asyncio.gather(*burst)] == [202] * waiting
        assert (await client.get("/studies")).json()["count"] == waiting

    app = _app(tmp_path)
    _serve(app, scenario)


def test_one_client_holds_only_its_share_of_the_planning_queue(tmp_path):
    share = studies.STUDIES_PLANNED_PER_CLIENT

    async def scenario(client: httpx.AsyncClient) -> None:
        with studies.PLANNING:
            burst = [
                asyncio.create_task(client.post("/studies", json=STUDY | {"seed": i})) for i in range(share)
            ]
            await _until(lambda: studies.PLANNING.waiting == share, "its share waiting")
            refused = await asyncio.wait_for(client.post("/studies", json=STUDY | {"seed": share}), 5)
            assert refused.status_code == 429 and refused.headers["retry-after"] == "5"
            assert f"already has {share} studies being planned" in refused.json()["detail"]
            other = _client_at(app, "10.0.8.1").post("/studies", json=STUDY | {"seed": 99})
            another = asyncio.create_task(other)  # another client's study still queues
            await _until(lambda: studies.PLANNING.waiting == share + 1, "the other client's queued")
        assert [r.status_code for r in await asyncio.gather(*burst, another)] == [202] * (share + 1)

    app = _app(tmp_path)
    _serve(app, scenario)


def test_a_full_queue_refuses_a_study_before_its_sampler_is_asked(tmp_path, monkeypatch):
    def asked(*_args, **_kwargs):
        raise AssertionError("the sampler was asked")

    async def scenario(client: httpx.AsyncClient) -> None:
        first = await client.post("/studies", json=STUDY)  # parallelism 2: the queue's two places
        assert first.status_code == 202
        monkeypatch.setattr(studies, "next_trials", asked)
        again = await client.post("/studies", json=STUDY)
        assert again.status_code == 429, again.text

    _serve(_app(tmp_path, max_queued=2), scenario)


def test_a_study_planned_while_the_api_stops_is_not_written(tmp_path, monkeypatch):
    """Told to stop during a study's seconds of planning, the API went on to create it, then its answer
    was cut at the grace period's end: the client, told it failed, sent it again, and had two."""
    app = _app(tmp_path)
    planned = studies.next_trials

    def stopped_meanwhile(*args, **kwargs):
        app.state.events.stop()  # as end_streams at SIGTERM
        return planned(*args, **kwargs)

    async def scenario(client: httpx.AsyncClient) -> None:
        first = await client.post("/studies", json=STUDY)
        monkeypatch.setattr(studies, "next_trials", stopped_meanwhile)
        for path, body in (
            ("/studies", STUDY),
            (f"/studies/{first.json()['id']}/extend", {"trials": 2}),
        ):  # extend: after
            refused = await client.post(path, json=body)
            assert refused.status_code == 503 and refused.json()["title"] == "API stopping", refused.text
        listed = await client.get("/studies")
        assert [s["config"]["trials"] for s in listed.json()["data"]] == [STUDY["trials"]]  # none added

    _serve(app, scenario)
