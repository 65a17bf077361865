"""The workers' own records, and a job's loss curve cut to a bounded number of points, on SQLite then
PostgreSQL (tests/conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from service.store import queries
from service.store.db import session_scope
from service.store.jobs import claim_job, enqueue_job, record_progress
from service.store.models import Loss
from service.store.workers import register_worker, unregister_worker, worker_heartbeat
from tests.factories import tiny_spec

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
LEASE = 30.0


def job_with_losses(sessions, losses: list[tuple[int, int, float]]) -> int:
    with session_scope(sessions) as s:
        job_id = enqueue_job(s, tiny_spec()).id
    with session_scope(sessions) as s:
        claim_job(s, "w1")
    with session_scope(sessions) as s:
        s.execute(insert(Loss), [{"job_id": job_id, "epoch": e, "step": n, "loss": x} for e, n, x in losses])
    return job_id


def test_a_curve_of_few_losses_is_the_losses(sessions):
    rows = [(1, 1, 2.0), (1, 2, 1.5), (2, 3, 1.0)]
    job_id = job_with_losses(sessions, rows)
    with session_scope(sessions) as s:
        assert queries.get_loss_curve(s, job_id, max_points=3) == (rows, 3)
        assert queries.get_loss_curve(s, job_id, max_points=3, after_step=1) == (rows[1:], 2)
        assert queries.get_loss_curve(s, 999, max_points=3) == ([], 0)


def test_a_long_curve_is_its_first_loss_means_over_equal_spans_of_steps_and_its_last(sessions):
    # 1,000 losses, every 10 steps over 5 epochs of 2,000 steps; the loss is step / 1000
    rows = [(1 + (n - 1) // 2000, n, n / 1000) for n in range(10, 10_001, 10)]
    job_id = job_with_losses(sessions, rows)
    with session_scope(sessions) as s:
        points, count = queries.get_loss_curve(s, job_id, max_points=100)
    assert count == 1000 and len(points) <= 100
    # the first and last losses as recorded (a long curve's start, near ln 10, was averaged away)
    assert points[0] == (1, 10, 0.01) and points[-1] == (5, 10_000, 10.0)
    # between, 98 spans of ceil(9989 / 98) = 102 steps: each point is its span's mean, at its last step
    assert points[1].step == 110 and points[1].loss == pytest.approx(sum(range(20, 111, 10)) / 10 / 1000)
    assert points[2].step == 210 and points[2].loss == pytest.approx(sum(range(120, 211, 10)) / 10 / 1000)
    assert [p.step for p in points] == sorted({p.step for p in points})
    assert all(p.epoch == 1 + (p.step - 1) // 2000 for p in points)
    # every loss between the first and the last is in exactly one mean
    means, starts = points[1:-1], [p.step for p in points[:-2]]
    weighted = sum(
        p.loss * len(range(start + 10, p.step + 1, 10)) for start, p in zip(starts, means, strict=True)
    )
    assert weighted == pytest.approx(sum(x for _, _, x in rows[1:-1]))

    with session_scope(sessions) as s:  # the same after a step: only what follows it
        later, count = queries.get_loss_curve(s, job_id, max_points=100, after_step=9_000)
    assert count == 100 and [p.step for p in later] == list(range(9010, 10_001, 10))


def test_pages_of_losses(sessions):
    job_id = job_with_losses(sessions, [(1, n, 1.0 / n) for n in range(1, 8)])
    with session_scope(sessions) as s:
        assert [r.step for r in queries.get_losses(s, job_id, limit=3)] == [1, 2, 3]
        assert [r.step for r in queries.get_losses(s, job_id, after_step=3, limit=3)] == [4, 5, 6]
        assert [r.step for r in queries.get_losses(s, job_id, after_step=6, limit=3)] == [7]


def test_record_progress_stores_the_interval_the_worker_chose(sessions):
    with session_scope(sessions) as s:
        job_id = enqueue_job(s, tiny_spec(log_every=1)).id
    with session_scope(sessions) as s:
        claim_job(s, "w1")
    with session_scope(sessions) as s:
        record_progress(s, job_id, "w1", [(1, 1225, 2.0)], steps=12_000_000, loss_every=1225)
    with session_scope(sessions) as s:
        assert queries.get_job(s, job_id).loss_every == 1225


def register(sessions, worker_id: str, host_key: str = "boot-a", now: datetime = T0) -> None:
    with session_scope(sessions) as s:
        register_worker(s, worker_id, "box", host_key, 100, LEASE, now=now)


def live(sessions, now: datetime, host_key: str | None = None) -> list[tuple[str, int | None, int]]:
    with session_scope(sessions) as s:
        return [(w.id, w.job_id, w.threads) for w in queries.live_workers(s, LEASE, host_key, now=now)]


def test_workers_are_live_while_they_beat_and_gone_when_they_stop(sessions):
    with session_scope(sessions) as s:
        job_id = enqueue_job(s, tiny_spec()).id
    register(sessions, "a")
    register(sessions, "b", now=T0 + timedelta(seconds=1))
    register(sessions, "c", host_key="boot-b", now=T0 + timedelta(seconds=2))
    assert live(sessions, T0 + timedelta(seconds=5)) == [("a", None, 0), ("b", None, 0), ("c", None, 0)]
    assert live(sessions, T0 + timedelta(seconds=5), "boot-a") == [("a", None, 0), ("b", None, 0)]

    with session_scope(sessions) as s:  # a trains, b beats idle, c says nothing
        assert worker_heartbeat(s, "a", job_id, 2, now=T0 + timedelta(seconds=25))
        assert worker_heartbeat(s, "b", None, 0, now=T0 + timedelta(seconds=25))
    assert live(sessions, T0 + timedelta(seconds=40)) == [("a", job_id, 2), ("b", None, 0)]
    with session_scope(sessions) as s:
        assert queries.last_worker_heartbeat(s) == T0 + timedelta(seconds=25)
        # what /metrics and /readyz count is that same list: live, and of those training
        assert queries.count_live_workers(s, LEASE, now=T0 + timedelta(seconds=40)) == (2, 1, 0)

    with session_scope(sessions) as s:
        unregister_worker(s, "b")
    assert live(sessions, T0 + timedelta(seconds=40)) == [("a", job_id, 2)]
    # a new worker clears the records of those dead for a lease; one removed so must register again
    with session_scope(sessions) as s:
        assert worker_heartbeat(s, "a", job_id, 2, now=T0 + timedelta(seconds=50))
    register(sessions, "d", now=T0 + timedelta(seconds=60))
    with session_scope(sessions) as s:
        assert not worker_heartbeat(s, "c", None, 0, now=T0 + timedelta(seconds=61))
        assert queries.last_worker_heartbeat(s) == T0 + timedelta(seconds=60)
    assert live(sessions, T0 + timedelta(seconds=61)) == [("a", job_id, 2), ("d", None, 0)]
