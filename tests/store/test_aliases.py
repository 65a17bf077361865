"""The alias verbs and the /metrics reads, on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from service.ml.train import EpochEnd
from service.store.aliases import AliasNotFound, NothingToRollBack, delete_alias, move_alias, rollback_alias
from service.store.db import session_scope
from service.store.jobs import claim_job, enqueue_job, finish_job, record_epoch
from service.store.models import AliasAction, JobStatus
from service.store.queries import (
    alias_changes,
    alias_history,
    alias_target,
    aliases_by_model,
    count_live_workers,
    epoch_times,
    job_counts,
    oldest_queued_at,
)
from service.store.workers import register_worker, worker_heartbeat
from tests.factories import tiny_spec
from tests.store.test_jobs import result

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def trained(sessions, n: int) -> list[int]:
    """n trained models (their job ids)."""
    ids = []
    for i in range(n):
        with session_scope(sessions) as s:
            enqueue_job(s, tiny_spec(seed=i))
        with session_scope(sessions) as s:
            job = claim_job(s, "w")
        with session_scope(sessions) as s:
            finish_job(s, job.id, "w", result())
        ids.append(job.id)
    return ids


def test_moves_rollbacks_and_a_deletion(sessions):
    a, b, c = trained(sessions, 3)
    for model in (a, b, c):
        with session_scope(sessions) as s:
            move_alias(s, "champion", model)
    with session_scope(sessions) as s:
        alias, created = move_alias(s, "champion", c)  # where it is: nothing happens
        assert (alias.model_id, created) == (c, False)
        assert alias_changes(s, [alias]) == {alias.name: (None, b)}
    with session_scope(sessions) as s:
        assert rollback_alias(s, "champion").model_id == b
    with session_scope(sessions) as s:
        alias = rollback_alias(s, "champion")
        assert alias.model_id == a and alias_changes(s, [alias]) == {alias.name: (None, None)}
    with session_scope(sessions) as s, pytest.raises(NothingToRollBack):
        rollback_alias(s, "champion")
    with session_scope(sessions) as s:
        move_alias(s, "champion", c, AliasAction.promote, "the best of sweep x")
        delete_alias(s, "champion")
    for verb in (rollback_alias, delete_alias):
        with session_scope(sessions) as s, pytest.raises(AliasNotFound):
            verb(s, "champion")
    with session_scope(sessions) as s:
        assert alias_target(s, "champion") is None and aliases_by_model(s) == {}
        history = [(e.action, e.from_model_id, e.to_model_id) for e in alias_history(s, "champion")[0]]
    assert history == [
        ("delete", c, None),
        ("promote", a, c),
        ("rollback", b, a),
        ("rollback", c, b),
        ("move", b, c),
        ("move", a, b),
        ("move", None, a),
    ]


def test_concurrent_moves_of_a_new_alias_all_land_one_after_another(sessions):
    models = trained(sessions, 4)
    errors: list[BaseException] = []
    start = threading.Barrier(len(models))

    def move(model: int) -> None:
        try:
            start.wait()
            with session_scope(sessions) as s:
                move_alias(s, "staging", model)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=move, args=(m,)) for m in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with session_scope(sessions) as s:
        history = list(reversed(alias_history(s, "staging")[0]))
        final = alias_target(s, "staging")
    assert sorted(e.to_model_id for e in history) == sorted(models)  # one event per move, none lost
    assert history[0].from_model_id is None  # one of them created it; the others moved it
    assert [e.from_model_id for e in history[1:]] == [e.to_model_id for e in history[:-1]]  # a chain
    assert final == history[-1].to_model_id


def test_the_reads_metrics_make(sessions):
    with session_scope(sessions) as s:
        for i in range(3):
            enqueue_job(s, tiny_spec(seed=i), now=T0 + timedelta(seconds=i))
        enqueue_job(s, tiny_spec(backend="torch"), now=T0 + timedelta(seconds=5))
    with session_scope(sessions) as s:
        assert oldest_queued_at(s) == T0 and job_counts(s)[JobStatus.queued] == 4
    with session_scope(sessions) as s:
        running = claim_job(s, "w1", now=T0 + timedelta(seconds=10))
    with session_scope(sessions) as s:
        for epoch, seconds in ((1, 0.2), (2, 3.0)):
            record_epoch(
                s, running.id, "w1", EpochEnd(epoch, 0.5, 0.9, 0.9, seconds), now=T0 + timedelta(seconds=11)
            )
    with session_scope(sessions) as s:
        assert job_counts(s) == dict.fromkeys(JobStatus, 0) | {JobStatus.queued: 3, JobStatus.running: 1}
        assert oldest_queued_at(s) == T0 + timedelta(seconds=1)
    with session_scope(sessions) as s:  # w1 trains, w2 waits: both live, from their own records
        for worker_id, job_id in (("w1", running.id), ("w2", None)):
            register_worker(s, worker_id, "box", "boot-a", 100, 30, now=T0 + timedelta(seconds=10))
            worker_heartbeat(s, worker_id, job_id, 1, now=T0 + timedelta(seconds=10))
    with session_scope(sessions) as s:
        assert count_live_workers(s, 30, now=T0 + timedelta(seconds=20)) == (2, 1, 0)
        assert count_live_workers(s, 30, now=T0 + timedelta(seconds=60)) == (0, 0, 0)  # stale heartbeats
        times = epoch_times(s, [0.1, 1.0, 10.0])
    assert list(times) == ["numpy"]
    assert (times["numpy"].count, times["numpy"].at_most) == (2, [0, 1, 2])
    assert times["numpy"].seconds == pytest.approx(3.2)
