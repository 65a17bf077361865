"""What a long job's records cost the API: losses a page at a time, curves of at most
MAX_CURVE_POINTS points; the event streams' one reader and their cap; the workers' records."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from service.api import streams
from service.api.schemas import MAX_CURVE_POINTS
from service.errors import ProblemError
from service.main import create_app
from service.ml.spec import TrainSpec
from service.settings import Settings
from service.store.db import make_engine, make_sessionmaker, migrate, session_scope
from service.store.jobs import claim_job, enqueue_job
from service.store.workers import register_worker, worker_heartbeat
from tests.conftest import assert_problem
from tests.factories import store_trained_job, tiny_spec
from tests.support import real_data_dir

# 20 epochs of 6,000 images at batch 10: 12,000 steps, a loss every 2: 6,000 losses
LONG = TrainSpec(backend="numpy", hidden_layers=[16], epochs=20, batch_size=10, train_limit=6000, log_every=2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("losses")
    settings = Settings(
        database_url=f"sqlite:///{root / 'api.db'}", data_dir=real_data_dir(), download=False, max_streams=3
    )
    engine = make_engine(settings.database_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    ids = [store_trained_job(sessions, LONG.model_copy(update={"seed": i}), every=2) for i in range(2)]
    with TestClient(create_app(settings)) as client:
        yield client, sessions, ids
    engine.dispose()


def test_losses_come_a_page_at_a_time_with_a_link_to_the_next(world):
    client, _, (job_id, _) = world
    first = client.get(f"/jobs/{job_id}/losses").json()
    assert [p["step"] for p in first["data"]] == list(range(2, 2001, 2))  # 1,000 by default
    assert first["next"] == f"/jobs/{job_id}/losses?after_step=2000&limit=1000"
    steps, url = [], f"/jobs/{job_id}/losses?limit=2500"
    while url:
        page = client.get(url).json()
        assert len(page["data"]) <= 2500
        steps += [p["step"] for p in page["data"]]
        url = page["next"]
    assert steps == list(range(2, 12_001, 2))  # every loss once, in order
    # each with the training images seen by then, as compare's points have (batch 10: 20 at step 2)
    assert first["data"][0] == {"epoch": 1, "step": 2, "samples": 20, "loss": first["data"][0]["loss"]}
    assert page["data"][-1]["samples"] == 20 * 6000
    assert client.get(f"/jobs/{job_id}/losses", params={"after_step": 12_000}).json() == {
        "data": [],
        "next": None,
    }
    assert_problem(client.get(f"/jobs/{job_id}/losses", params={"limit": 10_001}), 422, "query.limit")
    assert_problem(client.get(f"/jobs/{job_id}/losses", params={"limit": 0}), 422, "query.limit")


def test_curves_for_browsers_and_figures_have_at_most_max_curve_points(world):
    client, _, (a, b) = world
    curve = client.get(f"/jobs/{a}/loss-curve").json()
    assert curve["count"] == 6000 and len(curve["data"]) <= MAX_CURVE_POINTS
    last = client.get(f"/jobs/{a}/losses", params={"after_step": 11_998}).json()["data"]
    assert curve["data"][-1] == last[-1]  # the last loss as recorded
    assert [p["step"] for p in curve["data"]] == sorted({p["step"] for p in curve["data"]})
    compared = client.get("/compare", params={"ids": f"{a},{b}"}).json()["data"]
    assert [len(m["losses"]) for m in compared] == [len(curve["data"])] * 2
    assert compared[0]["losses"] == curve["data"]
    assert client.get(f"/jobs/{a}").json()["loss_every"] == 2


def test_a_replay_sends_the_curve_not_every_loss(world):
    client, _, (job_id, _) = world
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        text = response.read().decode()
    progress = text.count("event: progress")
    assert progress == len(client.get(f"/jobs/{job_id}/loss-curve").json()["data"]) <= MAX_CURVE_POINTS
    assert text.count("event: epoch") == 20 and text.rstrip().split("\n")[-2] == "event: end"


def test_one_read_serves_every_stream_and_streams_on_one_cursor_share_it(monkeypatch, world):
    _, sessions, (a, b) = world
    reads, read_cursors = [], streams.read_cursors

    def counting(factory, cursors):
        reads.append(sorted(cursors))
        return read_cursors(factory, cursors)

    monkeypatch.setattr(streams, "read_cursors", counting)

    async def scenario():
        hub = streams.EventHub(sessions, asyncio.Semaphore(1), max_streams=50, per_client=50)
        opened = [hub.subscribe(a, 0, 0) for _ in range(20)] + [hub.subscribe(b, 100, 1) for _ in range(20)]
        opened.append(hub.subscribe(999_999, 0, 0))
        await hub.read_once()
        firsts = [await s.next() for s in opened]
        hub.unsubscribe(opened.pop())  # as GET /jobs/{id}/events does on its 404
        await hub.read_once()  # nothing new for any of them: nobody is woken
        return hub, opened, firsts

    hub, opened, firsts = asyncio.run(scenario())
    # (job, step, epoch, attempt): the attempt unknown until the first read, then the job's (1)
    assert reads == [
        [(a, 0, 0, None), (b, 100, 1, None), (999_999, 0, 0, None)],
        [(a, 12_000, 20, 1), (b, 12_000, 20, 1)],
    ]
    assert firsts.pop() is None  # no such job
    assert {id(f) for f in firsts[:20]} == {id(firsts[0])}  # the 20 streams of a share one read
    event, data = firsts[20].events.split(b"\n")[:2]
    assert (
        event == b"event: progress" and json.loads(data.removeprefix(b"data: "))["step"] > 100
    )  # after its cursor
    assert all(s.waiting for s in opened)


def test_streams_and_losses_of_an_id_past_the_databases_integers_are_a_422_naming_the_limit(world):
    """2**64 overflowed SQLite in the reader (a 500); then a 404 here and a 422 in /compare?ids=."""
    client, _, _ = world
    for records in ("events", "losses", "loss-curve"):
        assert_problem(client.get(f"/jobs/{10**6}/{records}"), 404)  # a job there could be
        for job_id in (2**31, 2**64):
            assert_problem(
                client.get(f"/jobs/{job_id}/{records}"),
                422,
                "path.job_id: Input should be less than or equal to 2147483647",
            )
    for job_id in (-(2**64), -1, 0):  # no id at all: the client's mistake, as for a model's
        for records in ("", "/events", "/losses", "/loss-curve"):
            assert_problem(
                client.get(f"/jobs/{job_id}{records}"), 422, "path.job_id: Input should be greater"
            )
    assert_problem(
        client.get("/studies/-1"), 422, "path.study_id: Input should be greater than or equal to 1"
    )


def test_an_event_id_past_the_databases_integers_replays_from_the_start(world):
    """'0-99999999999999999999' overflowed SQLite in the one reader: a 500, and every other stream cut."""
    client, _, (job_id, _) = world
    for last_event_id in ("0-99999999999999999999", "99999999999999999999-0"):
        with client.stream(
            "GET", f"/jobs/{job_id}/events", headers={"last-event-id": last_event_id}
        ) as response:
            assert response.status_code == 200
            text = response.read().decode()
        assert text.count("event: epoch") == 20 and "99999999999999999999" not in text


def test_an_event_id_past_the_jobs_newest_replays_from_the_start(world):
    """'99999-0' on a job of 12,000 steps sent no progress, and each epoch's id echoed the 99999 back."""
    client, _, (job_id, _) = world
    for last_event_id in ("99999-0", "12001-20", "0-21"):
        with client.stream(
            "GET", f"/jobs/{job_id}/events", headers={"last-event-id": last_event_id}
        ) as response:
            ids = [
                line.removeprefix("id: ")
                for line in response.read().decode().splitlines()
                if line.startswith("id: ")
            ]
        steps, epochs, attempts = zip(*(map(int, i.split("-")) for i in ids), strict=True)
        assert set(attempts) == {1}
        assert max(steps) == 12_000 and max(epochs) == 20 and epochs.count(20) >= 1, last_event_id
        assert min(steps) < 12_000  # its progress from the start again


def test_a_read_that_fails_for_one_stream_ends_only_that_stream(monkeypatch, world):
    _, sessions, (a, b) = world
    read_cursors = streams.read_cursors

    def failing_for_b(factory, cursors):
        if any(cursor[0] == b for cursor in cursors):
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return read_cursors(factory, cursors)

    monkeypatch.setattr(streams, "read_cursors", failing_for_b)

    async def scenario():
        hub = streams.EventHub(sessions, asyncio.Semaphore(1), max_streams=50, per_client=50)
        kept, broken = hub.subscribe(a, 0, 0), hub.subscribe(b, 0, 0)
        await hub.read_once()
        with pytest.raises(OverflowError):
            await broken.next()
        return await kept.next()

    snapshot = asyncio.run(scenario())
    assert snapshot is not None and snapshot.job.id == a and snapshot.rows > 0


def test_a_stream_whose_reads_fail_midway_ends_whole(monkeypatch, world):
    """PostgreSQL stopped under an open stream: the response broke off mid-chunk ("response already
    started"); now it ends as a stream does, and the client resumes with Last-Event-ID."""
    client, _, _ = world
    queued = client.post("/jobs", json={"backend": "numpy"}).json()["id"]  # no worker: it follows the job
    reads, read_cursors = [], streams.read_cursors

    def failing_after_the_first(factory, cursors):
        reads.append(cursors)
        if len(reads) > 1:
            raise OperationalError("SELECT", {}, Exception("the database system is shutting down"))
        return read_cursors(factory, cursors)

    monkeypatch.setattr(streams, "read_cursors", failing_after_the_first)
    try:
        with client.stream("GET", f"/jobs/{queued}/events") as response:
            text = response.read().decode()
        assert response.status_code == 200 and "event: status" in text and len(reads) >= 2
    finally:
        client.post(f"/jobs/{queued}/cancel")


def test_past_max_streams_a_stream_is_refused_with_retry_after(world):
    _, sessions, (a, _) = world

    async def scenario():
        hub = streams.EventHub(sessions, asyncio.Semaphore(1), max_streams=2, per_client=2)
        first, _ = hub.subscribe(a, 0, 0), hub.subscribe(a, 0, 0)
        with pytest.raises(ProblemError) as refused:
            hub.subscribe(a, 0, 0)
        hub.unsubscribe(first)
        hub.subscribe(a, 0, 0)  # a closed stream frees its place
        return refused.value

    refused = asyncio.run(scenario())
    assert (refused.status, refused.headers) == (503, {"Retry-After": "5"})
    assert "MLPLAB_MAX_STREAMS" in refused.detail


def test_workers_are_listed_with_their_job_and_readyz_says_whether_one_is_alive(world):
    client, sessions, _ = world
    ready = client.get("/readyz").json()
    assert (ready["status"], ready["workers"]) == (
        "ready",
        "none alive in the last 30 s (MLPLAB_LEASE_SECONDS): queued jobs wait",
    )
    assert client.get("/workers").json() == {"data": [], "count": 0}
    with session_scope(sessions) as s:
        job_id = enqueue_job(s, tiny_spec()).id
    with session_scope(sessions) as s:
        claim_job(s, "box:7:ab")
        register_worker(s, "box:7:ab", "box", "boot-1", 7, lease_seconds=30)
    with session_scope(sessions) as s:
        worker_heartbeat(s, "box:7:ab", job_id, 2)
    listed = client.get("/workers").json()
    assert listed["count"] == 1
    assert {k: listed["data"][0][k] for k in ("id", "host", "pid", "job_id", "threads", "standing_by")} == {
        "id": "box:7:ab", "host": "box", "pid": 7, "job_id": job_id, "threads": 2, "standing_by": False,
    }  # fmt: skip
    with session_scope(sessions) as s:
        worker_heartbeat(s, "box:7:ab", None, 2, standing_by=True)  # beyond its host's cores
    idle = client.get("/workers").json()["data"][0]
    assert (idle["standing_by"], idle["job_id"], idle["threads"]) == (True, None, 0)  # no job, no threads
    assert client.get("/readyz").json()["workers"] == "1 alive"


def test_a_stream_announces_a_new_attempt_and_reads_its_progress_anew(world):
    """A worker lost mid-job: the job went back to the queue and trained again from the start while its
    stream said nothing (same status, running) until the new attempt passed the old one's last step."""
    from datetime import UTC, datetime, timedelta

    from service.api.routes.events import _chunk
    from service.store.jobs import record_progress, requeue_stalled

    _, sessions, _ = world
    spec = tiny_spec(epochs=2)
    with session_scope(sessions) as s:
        job_id = enqueue_job(s, spec).id
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    with session_scope(sessions) as s:
        claim_job(s, "lost", now=long_ago)
        record_progress(s, job_id, "lost", [(1, step, 1.0) for step in (10, 20, 30)], steps=60, now=long_ago)

    async def scenario():
        hub = streams.EventHub(sessions, asyncio.Semaphore(1), max_streams=50, per_client=50)
        stream = hub.subscribe(job_id, 0, 0)
        await hub.read_once()
        first = await stream.next()
        with session_scope(sessions) as s:
            requeue_stalled(s, now=None, lease_seconds=30, max_attempts=3)
            claim_job(s, "next")
            record_progress(s, job_id, "next", [(1, 10, 0.9)], steps=60)
        await hub.read_once()
        second = await asyncio.wait_for(stream.next(), 5)
        await hub.read_once()
        with session_scope(sessions) as s:
            record_progress(s, job_id, "next", [(1, 20, 0.8)], steps=60)
        await hub.read_once()
        return stream, first, second, await asyncio.wait_for(stream.next(), 5)

    stream, first, second, third = asyncio.run(scenario())
    told, seen = _chunk(first, None)
    assert (first.job.attempts, seen, first.step) == (1, ("running", 1), 30)
    again, seen = _chunk(second, seen)
    assert second.job.attempts == 2 and seen == ("running", 2)
    assert again.startswith(b'event: status\ndata: {"status":"running","attempts":2}'), again
    # read anew: the new attempt's step 10, which the old cursor (30) had hidden, and once only
    assert b'"step":10,"steps":60,"loss":0.9' in second.events, second.events
    assert third.events.count(b"event: progress") == 1 and b'"step":20,' in third.events, third.events


def test_a_client_back_after_a_new_attempt_passed_its_place_reads_the_new_attempt_whole(world):
    """Its id (step 30 of attempt 1: 30-0-1) said nothing of the attempt: reconnecting once attempt 2 had reached
    step 40, it got attempt 2's rows after step 30 only, beside attempt 1's up to 30."""
    from datetime import UTC, datetime, timedelta

    from service.store.jobs import record_progress, requeue_stalled

    _, sessions, _ = world
    with session_scope(sessions) as s:
        job_id = enqueue_job(s, tiny_spec(epochs=2)).id
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    with session_scope(sessions) as s:
        claim_job(s, "lost", now=long_ago)
        record_progress(s, job_id, "lost", [(1, step, 1.0) for step in (10, 20, 30)], steps=60, now=long_ago)

    async def read(stream_id: str | None = None, between=None):
        hub = streams.EventHub(sessions, asyncio.Semaphore(1), max_streams=50, per_client=50)
        from service.api.routes.events import _resume_point

        step, epoch, attempt = _resume_point(stream_id)
        stream = hub.subscribe(job_id, step, epoch, "", attempt)
        await hub.read_once()
        first = await asyncio.wait_for(stream.next(), 5)
        if between is None:
            return first, None
        between()
        await hub.read_once()
        return first, await asyncio.wait_for(stream.next(), 5)

    def requeued() -> None:
        with session_scope(sessions) as s:
            requeue_stalled(s, now=None, lease_seconds=30, max_attempts=3)

    # a live stream sees the requeue (nothing new: its rows past the checkpoint are gone), then the new
    # attempt's rows once, from the start
    first, after_requeue = asyncio.run(read(None, requeued))
    assert b'"step":30,' in first.events and after_requeue.job.status == "queued"
    assert b"event: progress" not in after_requeue.events
    with session_scope(sessions) as s:
        claim_job(s, "next")
        record_progress(s, job_id, "next", [(1, step, 0.9) for step in (10, 20, 30, 40)], steps=60)
    back, _ = asyncio.run(read("30-0-1"))
    assert back.job.attempts == 2 and back.events.count(b"event: progress") == 4, back.events
    assert b'"step":10,' in back.events and b"id: 40-0-2" in back.events
    same, _ = asyncio.run(read("30-0-2"))  # an id of this attempt resumes after it
    assert same.events.count(b"event: progress") == 1 and b'"step":40,' in same.events


def test_a_stream_asked_for_as_the_api_stops_is_a_503_not_a_500(monkeypatch, tmp_path):
    """Stopped between a stream's subscription and its first read, the request answered 500."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}", data_dir=real_data_dir(), download=False
    )

    async def stopping_instead(hub: streams.EventHub) -> None:
        hub.stop()

    monkeypatch.setattr(streams.EventHub, "read_once", stopping_instead)
    with TestClient(create_app(settings)) as client:
        job = client.post("/jobs", json={"backend": "numpy"}).json()["id"]
        refused = assert_problem(client.get(f"/jobs/{job}/events"), 503)
        assert refused["title"] == "API stopping" and client.get(f"/jobs/{job}/events").status_code == 503
