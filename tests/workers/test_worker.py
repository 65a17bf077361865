"""The worker as users run it: `python -m workers` processes on a tiny IDX dataset in tmp_path.

A few in-process tests (run_worker with a stand-in train()) cover the paths a real dataset
can't reach quickly: unexpected exceptions, a lost lease, the idle loop's stop.
Every test runs on SQLite and on PostgreSQL (the `db_url` fixture of tests/conftest.py).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from service.ml.data import load_dataset
from service.ml.evaluation import decode_predictions
from service.ml.spec import TrainSpec
from service.ml.train import StepProgress, TrainingCancelled, train
from service.ml.weights import load_weights
from service.settings import Settings
from service.store import jobs, queries
from service.store.db import session_scope
from service.store.models import EpochMetric, Job, Loss, utcnow
from service.store.workers import register_worker
from tests.factories import tiny_spec
from tests.store.test_db import migration_lock_held
from tests.store.test_jobs import result
from tests.support import REPO, wait_for
from tests.workers.conftest import write_dataset
from workers import presence, worker


@pytest.fixture
def env(tmp_path, data_dir, db_url) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MLPLAB_DATA_DIR": str(data_dir),
        "MLPLAB_DATABASE_URL": db_url,
        "MLPLAB_DOWNLOAD": "false",
        "MLPLAB_HEARTBEAT_SECONDS": "0.2",
        "MLPLAB_WORKER_POLL_SECONDS": "0.2",
        "MLPLAB_WORKER_THREADS": "1",
    }


def small(**changes) -> TrainSpec:
    """Two epochs of 150 images of the tiny dataset, validated on the other 50: 3 steps of 64 an epoch,
    each loss recorded."""
    return tiny_spec(**{"epochs": 2, "train_limit": 150, "validation_size": 50, "log_every": 1, **changes})


def long(**changes) -> TrainSpec:
    """Tens of seconds of training, with a checkpoint every ~0.1 s."""
    return small(**{"hidden_layers": [256], "batch_size": 1, "epochs": 200, **changes})


def enqueue(sessions, *specs: TrainSpec) -> list[int]:
    with session_scope(sessions) as s:
        return [jobs.enqueue_job(s, spec).id for spec in specs]


def job(sessions, job_id: int) -> Job:
    with session_scope(sessions) as s:
        return queries.get_job(s, job_id)


def start_worker(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"worker-{time.monotonic_ns()}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "workers", *args], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    return proc, log


def stopped_within(proc: subprocess.Popen, seconds: float, ready: Callable[[], bool], what: str) -> None:
    """Once `ready()`, SIGTERM the worker, which must exit within `seconds` (killed either way)."""
    try:
        wait_for(ready, what=what)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=seconds + 5)
        assert time.monotonic() - sent < seconds
    finally:
        proc.kill()


def run_once(tmp_path: Path, env: dict[str, str], timeout: float = 60) -> str:
    proc, log = start_worker(tmp_path, env, "--once")
    proc.wait(timeout=timeout)
    output = log.read_text()
    assert proc.returncode == 0, output
    return output


def count(sessions, table, job_id: int) -> int:
    with session_scope(sessions) as s:
        return s.scalar(select(func.count()).select_from(table).where(table.job_id == job_id))


# --- real processes ----------------------------------------------------------------------------


@pytest.mark.slow
def test_once_trains_every_queued_job_and_records_it(tmp_path, env, sessions):
    ids = enqueue(sessions, small(), small(backend="torch", seed=1))
    output = run_once(tmp_path, env)
    for job_id in ids:
        done = job(sessions, job_id)
        assert (done.status, done.attempts, done.error) == ("succeeded", 1, None), output
        assert (done.epoch, done.step, done.steps) == (2, 6, 6)  # 150 images / batch 64 = 3 steps x 2 epochs
        assert 0 <= done.test_accuracy <= 1 and done.finished_at >= done.started_at
        with session_scope(sessions) as s:
            assert [loss.step for loss in queries.get_losses(s, job_id)] == [1, 2, 3, 4, 5, 6]
            epochs = queries.get_epochs(s, job_id)
            assert [e.epoch for e in epochs] == [1, 2]
            assert all(e.validation_loss > 0 and 0 <= e.validation_accuracy <= 1 for e in epochs)
            model = queries.get_model(s, job_id)
            assert model.weights[:2] == b"PK" and model.test_accuracy == done.test_accuracy
            assert model.validation_accuracy == done.validation_accuracy == epochs[-1].validation_accuracy
            assert (model.best_epoch, model.stopped_epoch) == (2, 2)
            assert len(decode_predictions(model.predictions_train).predicted) == 200  # every training image
            assert len(model.confusion_test) == 10 and sum(map(sum, model.confusion_test)) == 100
            assert jobs.load_checkpoint(s, job_id) is None
    assert f"claimed job {ids[0]} (attempt 1): numpy," in output
    assert f"job {ids[1]} succeeded: test accuracy " in output


@pytest.mark.slow  # a worker process
def test_a_failing_job_is_recorded_and_the_worker_goes_on(tmp_path, env, sessions):
    # A data dir with Fashion-MNIST but no MNIST (which, unlike Fashion-MNIST, has no system-wide copy).
    write_dataset(tmp_path / "other" / "fashion-mnist")
    env = {**env, "MLPLAB_DATA_DIR": str(tmp_path / "other")}
    missing, fine = enqueue(sessions, small(), small(dataset="fashion-mnist"))
    output = run_once(tmp_path, env)
    failed = job(sessions, missing)
    assert failed.status == "failed", output
    assert "MLPLAB_DATA_DIR" in failed.error and "Traceback" not in failed.error
    assert (
        str(tmp_path) not in failed.error and str(tmp_path / "other") in output
    )  # the path: in the log only
    assert failed.finished_at is not None
    assert job(sessions, fine).status == "succeeded"


def test_a_worker_without_the_data_gives_the_job_back_to_one_with_it(
    tmp_path, data_dir, db_url, sessions, caplog
):
    """One machine without MNIST failed every job of the queue, for good, while others could train them:
    it gives the job back, its attempt not counted, and trains the other datasets' jobs meanwhile."""
    write_dataset(tmp_path / "fashion-only" / "fashion-mnist")
    missing, other = enqueue(sessions, small(), small(dataset="fashion-mnist"))
    with session_scope(sessions) as s:  # another machine's worker, live: the job has somewhere to go
        register_worker(s, "other:1:ab", "other", "boot-other", 1, lease_seconds=3600)
    lacking = Settings(
        database_url=db_url,
        data_dir=tmp_path / "fashion-only",
        download=False,
        worker_threads=1,
        lease_seconds=3600,
    )
    stop = threading.Event()
    broken = threading.Thread(target=worker.run_worker, args=(lacking,), kwargs={"stop_event": stop})
    with caplog.at_level(logging.INFO, logger="workers"):
        broken.start()
        try:
            wait_for(lambda: job(sessions, other).status == "succeeded", 60, "the job it can train")
            handed = job(sessions, missing)
            assert (handed.status, handed.attempts) == ("queued", 0)
            assert "mnist dataset is not available" in handed.error and "another worker" in handed.error
            assert f"job {missing} went back to the queue: this machine cannot load mnist" in caplog.text
            assert "no claim of mnist jobs for 30 s" in caplog.text
            worker.run_worker(lacking.model_copy(update={"data_dir": data_dir}), once=True)
        finally:
            stop.set()
            broken.join(30)
    trained = job(sessions, missing)
    assert (trained.status, trained.attempts, trained.error) == ("succeeded", 1, None)  # the reason went
    # --once gives it back and trains what else it can, then exits (it claimed the same job again)
    again, other = enqueue(sessions, small(seed=1), small(dataset="fashion-mnist", seed=1))
    worker.run_worker(lacking, once=True)
    assert (job(sessions, again).status, job(sessions, again).attempts) == ("queued", 0)
    assert job(sessions, other).status == "succeeded"


def test_a_worker_alone_without_the_data_fails_the_job_at_once(tmp_path, db_url, sessions):
    """No other machine's worker could train it (this machine's lack the data too): the job fails with
    the reason, as before, not queued for ever."""
    (missing,) = enqueue(sessions, small())
    with session_scope(sessions) as s:  # a sibling on this machine: no help
        register_worker(s, "sibling:1:ab", "sibling", presence.host_key(), 1, lease_seconds=3600)
    lacking = Settings(
        database_url=db_url, data_dir=tmp_path / "empty", download=False, worker_threads=1, lease_seconds=3600
    )
    worker.run_worker(lacking, once=True)
    failed = job(sessions, missing)
    assert (failed.status, failed.attempts) == ("failed", 1) and "MLPLAB_DATA_DIR" in failed.error


def test_a_worker_without_the_data_gives_the_job_back_to_a_sibling_that_trained_it(
    tmp_path, db_url, sessions
):
    """A second worker of this machine started with another MLPLAB_DATA_DIR failed the jobs it claimed,
    for good, while its sibling, which had trained that dataset, sat idle."""
    (earlier,) = enqueue(sessions, small())
    sibling = "sibling:1:ab"
    with session_scope(sessions) as s:
        register_worker(s, sibling, "sibling", presence.host_key(), 1, lease_seconds=3600)
        claimed = jobs.claim_job(s, sibling)
        assert claimed is not None and claimed.id == earlier
        jobs.finish_job(s, earlier, sibling, result())
    (missing,) = enqueue(sessions, small(seed=1))
    lacking = Settings(
        database_url=db_url, data_dir=tmp_path / "empty", download=False, worker_threads=1, lease_seconds=3600
    )
    worker.run_worker(lacking, once=True)
    handed = job(sessions, missing)
    assert (handed.status, handed.attempts) == ("queued", 0) and "another worker" in handed.error


def test_a_sibling_counts_as_holding_the_data_once_its_job_is_past_its_first_step(sessions):
    """One that claimed a job and lacks the files has none yet: two such would hand jobs to each other."""
    (running,) = enqueue(sessions, small())
    with session_scope(sessions) as s:
        register_worker(s, "sibling:1:ab", "sibling", presence.host_key(), 1, lease_seconds=3600)
        assert jobs.claim_job(s, "sibling:1:ab") is not None
        assert not queries.dataset_held(s, "mnist", 3600, besides="me")
        s.get(Job, running).step = 5
        s.flush()
        assert queries.dataset_held(s, "mnist", 3600, besides="me")
        assert not queries.dataset_held(s, "mnist", 3600, besides="sibling:1:ab")
        assert not queries.dataset_held(s, "fashion-mnist", 3600, besides="me")


@pytest.mark.slow  # a worker process
def test_sigterm_releases_the_job_and_exits_quickly(tmp_path, env, sessions):
    (job_id,) = enqueue(sessions, long())
    proc, log = start_worker(tmp_path, env)  # not --once: it would wait for more work
    stopped_within(proc, 5, lambda: count(sessions, EpochMetric, job_id) >= 1, "a finished epoch")
    output = log.read_text()
    assert proc.returncode == 0, output
    released = job(sessions, job_id)
    assert (released.status, released.worker_id, released.attempts) == ("queued", None, 0), output
    with session_scope(sessions) as s:
        saved = jobs.load_checkpoint(s, job_id)
    assert saved is not None and saved[0] >= 1  # the next claim resumes from it
    assert f"job {job_id} released (queued) on shutdown" in output


@pytest.mark.slow  # a worker process
def test_a_worker_told_to_stop_while_another_holds_the_migration_lock_stops_at_once(tmp_path, env, db_url):
    """It went on waiting for the lock: up to 159 s on SQLite, without end on PostgreSQL."""
    with migration_lock_held(db_url):
        proc, log = start_worker(tmp_path, env)
        stopped_within(
            proc, 3, lambda: "waiting for it" in log.read_text(), "the worker waiting for the lock"
        )
    output = log.read_text()
    assert proc.returncode == 0 and "nothing migrated" in output, output


@pytest.mark.slow  # a worker process
@pytest.mark.parametrize("heartbeat", ["0.2", "60"])
def test_cancel_while_running(tmp_path, env, sessions, heartbeat):
    """A running job ends cancelled, its checkpoint dropped; with a 60 s heartbeat as well, because
    the worker's next progress write (every 0.5 s at most) reports the cancel."""
    env = {**env, "MLPLAB_HEARTBEAT_SECONDS": heartbeat, "MLPLAB_LEASE_SECONDS": "120"}
    (job_id,) = enqueue(sessions, long())
    proc, log = start_worker(tmp_path, env, "--once")
    try:
        wait_for(lambda: job(sessions, job_id).step > 0, what="training to start")
        with session_scope(sessions) as s:
            assert jobs.cancel_job(s, job_id).status == "running"
        proc.wait(timeout=15)  # a quarter of a 60 s heartbeat
    finally:
        proc.kill()
    output = log.read_text()
    cancelled = job(sessions, job_id)
    assert cancelled.status == "cancelled", output
    assert cancelled.finished_at is not None
    assert f"job {job_id}: cancel requested" in output
    with session_scope(sessions) as s:
        assert queries.get_model(s, job_id) is None and jobs.load_checkpoint(s, job_id) is None


@pytest.mark.slow
def test_a_crashed_workers_job_is_requeued_and_resumed(tmp_path, env, sessions, data_dir):
    """kill -9 mid-epoch: another worker re-queues the job once its lease is stale, resumes it from the
    last epoch's checkpoint, and ends on the weights of an uninterrupted run; nothing recorded twice."""
    env = {**env, "MLPLAB_LEASE_SECONDS": "1", "MLPLAB_CHECKPOINT_SECONDS": "0"}  # one after every epoch
    spec = long(epochs=12)
    (job_id,) = enqueue(sessions, spec)
    proc, log = start_worker(tmp_path, env, "--once")
    try:
        wait_for(lambda: count(sessions, EpochMetric, job_id) >= 2, what="two finished epochs")
        proc.kill()  # SIGKILL: no release, the lease just goes stale
        proc.wait(timeout=5)
    finally:
        proc.kill()
    assert job(sessions, job_id).status == "running"
    time.sleep(1.3)  # past the lease

    output = run_once(tmp_path, env)
    done = job(sessions, job_id)
    assert (done.status, done.attempts) == ("succeeded", 2), output
    assert "resuming after epoch" in output
    with session_scope(sessions) as s:
        epochs = queries.get_epochs(s, job_id)
        assert [e.epoch for e in epochs] == list(range(1, 13))
        assert [loss.step for loss in queries.get_losses(s, job_id)] == list(range(1, 150 * 12 + 1))
        model = queries.get_model(s, job_id)
        # every epoch's time, the first attempt's too (it was only the last attempt's)
        assert model.seconds == pytest.approx(sum(e.seconds for e in epochs))
        resumed = load_weights(model.weights)
    uninterrupted = load_weights(train(spec, load_dataset("mnist", data_dir, download=False)).weights)
    for (W, b), (W0, b0) in zip(resumed.params, uninterrupted.params, strict=True):
        assert np.array_equal(W, W0) and np.array_equal(b, b0)  # NumPy is bit-reproducible


# --- in process --------------------------------------------------------------------------------


def settings_for(db_url: str, data_dir: Path, **changes) -> Settings:
    return Settings(**{"database_url": db_url, "data_dir": data_dir, "download": False, "heartbeat_seconds": 0.05,
                       "worker_poll_seconds": 0.05, "worker_threads": 1, **changes})  # fmt: skip


def _outage(monkeypatch, verb_name: str, failures: int) -> list[str]:
    """The worker's `verb_name` raises the database's OperationalError `failures` times, then works."""
    verb, calls = getattr(worker, verb_name), []

    def down_then_up(*args, **kwargs):
        calls.append(verb_name)
        if len(calls) <= failures:
            raise OperationalError("UPDATE jobs", {}, Exception("the database system is starting up"))
        return verb(*args, **kwargs)

    monkeypatch.setattr(worker, verb_name, down_then_up)
    return calls


def test_a_database_outage_while_a_job_trains_loses_nothing_and_costs_no_attempt(
    monkeypatch, data_dir, db_url, sessions
):
    """PostgreSQL restarting mid-job: its progress writes failed, train() raised them, the job sat until
    its lease lapsed and trained again from scratch (attempts 2). Now they are kept and written later."""
    progress = _outage(monkeypatch, "record_progress", 3)
    epochs = _outage(monkeypatch, "record_epoch", 1)
    (job_id,) = enqueue(sessions, small(epochs=3))
    assert worker.run_worker(settings_for(db_url, data_dir), once=True) == 1
    done = job(sessions, job_id)
    assert (done.status, done.attempts) == ("succeeded", 1) and len(progress) > 3 and len(epochs) > 1
    with session_scope(sessions) as s:
        assert [e.epoch for e in queries.get_epochs(s, job_id)] == [1, 2, 3]
        assert [loss.step for loss in queries.get_losses(s, job_id)] == list(range(1, 10))  # 3 steps an epoch


def _database_down(monkeypatch, down: threading.Event) -> list[tuple[str, bool]]:
    """While `down` is set, the worker's sweep for stalled jobs, its claims and its presence's beats raise
    the database's OperationalError, as in an outage; each try, by name, and whether it went through."""
    tries: list[tuple[str, bool]] = []

    def unless_down(real):
        def call(*args, **kwargs):
            tries.append((real.__name__, not down.is_set()))
            if down.is_set():
                raise OperationalError("SELECT 1", {}, Exception("the database system is starting up"))
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(presence, "requeue_stalled", unless_down(presence.requeue_stalled))
    monkeypatch.setattr(presence.Presence, "claim", unless_down(presence.Presence.claim))
    monkeypatch.setattr(presence.Presence, "_record", unless_down(presence.Presence._record))
    return tries


def _idle_worker(settings: Settings) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_worker, args=(settings,), kwargs={"stop_event": stop})
    thread.start()
    return thread, stop


def _held_long_ago(sessions, holder: str) -> int:
    """A job running for `holder`, whose last heartbeat was a minute ago."""
    (job_id,) = enqueue(sessions, small())
    with session_scope(sessions) as s:
        jobs.claim_job(s, holder, now=utcnow() - timedelta(seconds=60))
    return job_id


def test_after_an_outage_a_worker_leaves_others_time_to_renew_before_taking_their_jobs(
    monkeypatch, data_dir, db_url, sessions
):
    """PostgreSQL down for longer than the lease: no worker could renew its lease, and an idle worker
    re-queued and took a healthy job a second after the database came back, throwing away what its
    holder had trained. Now it waits two heartbeats first, within which the holder renews."""
    job_id = _held_long_ago(sessions, "holder")
    down = threading.Event()
    down.set()
    tries = _database_down(monkeypatch, down)
    idle, stop = _idle_worker(settings_for(db_url, data_dir, lease_seconds=2, heartbeat_seconds=0.5))
    wait_for(lambda: tries, 30, "the idle worker's first try in the outage")
    time.sleep(0.8)  # an outage longer than a heartbeat
    down.clear()  # the database is back: the holder renews within its heartbeat
    time.sleep(0.3)
    with session_scope(sessions) as s:
        jobs.heartbeat(s, job_id, "holder")
    time.sleep(1.5)  # past two heartbeats since the outage: the idle worker looks, at a live lease
    stop.set()
    idle.join(10)
    held = job(sessions, job_id)
    assert (held.status, held.worker_id, held.attempts) == ("running", "holder", 1)
    assert ("requeue_stalled", True) in tries  # it did look, once it could


def test_a_database_that_fails_now_and_then_still_lets_a_dead_workers_job_be_requeued(
    monkeypatch, data_dir, db_url, sessions
):
    """Every error held the sweep back a full lease: errors more often than that, and a dead worker's job
    stayed running for ever. A blip shorter than a heartbeat lapses no lease, and holds nothing back."""
    job_id = _held_long_ago(sessions, "dead")
    calls, claim = [], presence.Presence.claim

    def every_other(self, *args, **kwargs):
        calls.append(1)
        if len(calls) % 2:
            raise OperationalError("UPDATE jobs", {}, Exception("server closed the connection unexpectedly"))
        return claim(self, *args, **kwargs)

    monkeypatch.setattr(presence.Presence, "claim", every_other)
    idle, stop = _idle_worker(settings_for(db_url, data_dir, lease_seconds=2, heartbeat_seconds=0.5))
    try:
        wait_for(lambda: job(sessions, job_id).worker_id != "dead", 15, "the dead worker's job taken back")
    finally:
        stop.set()
        idle.join(30)
    assert len(calls) > 10  # its claims failed every other time, many times a lease


def test_a_busy_worker_requeues_a_dead_workers_job(data_dir, db_url, sessions):
    """Only an idle worker re-queued stalled jobs: with every live worker busy, a dead one's job showed
    'running', its progress frozen, for as long as the others' jobs took (50 s of a 10 s lease)."""
    dead = _held_long_ago(sessions, "dead")
    (busy,) = enqueue(sessions, long())
    thread, stop = _idle_worker(settings_for(db_url, data_dir, lease_seconds=2, heartbeat_seconds=0.5))
    try:
        wait_for(lambda: job(sessions, busy).status == "running", 30, "the long job claimed")
        wait_for(lambda: job(sessions, dead).status == "queued", 10, "the dead worker's job re-queued")
        assert job(sessions, busy).status == "running"  # by the worker still training its own
    finally:
        stop.set()
        thread.join(30)


def test_a_progress_write_whose_answer_was_lost_is_written_once(monkeypatch, data_dir, db_url, sessions):
    """Connections killed just after a commit: the write happened, the worker heard an error and wrote
    again. The repeated rows broke the (job, step) key on every retry, and no epoch was ever recorded."""
    verb, calls = worker.record_progress, []

    def committed_then_dropped(session, *args, **kwargs):
        calls.append(1)
        cancel = verb(session, *args, **kwargs)
        if len(calls) == 2:
            session.commit()
            raise OperationalError("INSERT INTO losses", {}, Exception("server closed the connection"))
        return cancel

    monkeypatch.setattr(worker, "record_progress", committed_then_dropped)
    (job_id,) = enqueue(sessions, small(epochs=3))
    assert worker.run_worker(settings_for(db_url, data_dir), once=True) == 1
    done = job(sessions, job_id)
    assert (done.status, done.attempts) == ("succeeded", 1) and len(calls) > 2
    with session_scope(sessions) as s:
        assert [e.epoch for e in queries.get_epochs(s, job_id)] == [1, 2, 3]
        assert [loss.step for loss in queries.get_losses(s, job_id)] == list(range(1, 10))


def test_a_job_whose_end_cannot_be_written_at_once_is_recorded_when_it_can(
    monkeypatch, data_dir, db_url, sessions
):
    tries = _outage(monkeypatch, "finish_job", 2)
    monkeypatch.setattr(worker, "RETRY_SECONDS", 0.01)
    (job_id,) = enqueue(sessions, small())
    assert worker.run_worker(settings_for(db_url, data_dir), once=True) == 1
    done = job(sessions, job_id)
    assert (done.status, done.attempts, len(tries)) == ("succeeded", 1, 3)


def test_a_job_that_cannot_be_handed_back_on_shutdown_says_its_lease_will_requeue_it(
    monkeypatch, data_dir, db_url, sessions, caplog
):
    """SIGTERM with the database down: 'could not record how it ended', of a job that had not ended and
    showed running, its progress stale, until another worker's lease check re-queued it."""
    _outage(monkeypatch, "release_job", 100)
    (job_id,) = enqueue(sessions, long())
    stop = threading.Event()
    runs = threading.Thread(
        target=worker.run_worker, args=(settings_for(db_url, data_dir),), kwargs={"stop_event": stop}
    )
    with caplog.at_level(logging.ERROR):
        runs.start()
        wait_for(lambda: job(sessions, job_id).step > 0, what="training to start")
        stop.set()
        runs.join(30)
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(
        f"job {job_id}: could not hand it back to the queue" in line and "MLPLAB_LEASE_SECONDS" in line
        for line in said
    ), said
    assert not any("could not record how it ended" in line for line in said), said
    assert job(sessions, job_id).status == "running"


def test_a_trained_job_whose_end_cannot_be_written_for_longer_than_its_lease_is_kept_and_recorded(
    monkeypatch, data_dir, db_url, sessions
):
    """A full disk fails the model's megabytes: the worker gave up after its lease, the job was re-queued,
    trained again and, after MLPLAB_MAX_ATTEMPTS of that, failed as 'worker lost'. Now the result waits."""
    tries = _outage(monkeypatch, "finish_job", 8)
    monkeypatch.setattr(worker, "RETRY_SECONDS", 0.05)  # doubling, to the heartbeat's 0.5 s at most
    ages = []
    failing = worker.finish_job

    def aged(session, job_id, *args, **kwargs):  # how old the job's heartbeat is at each try
        ages.append((utcnow() - job(sessions, job_id).heartbeat_at).total_seconds())
        return failing(session, job_id, *args, **kwargs)

    monkeypatch.setattr(worker, "finish_job", aged)
    (job_id,) = enqueue(sessions, small())
    started = time.monotonic()
    settings = settings_for(db_url, data_dir, lease_seconds=1.0, heartbeat_seconds=0.5)
    assert worker.run_worker(settings, once=True) == 1
    done = job(sessions, job_id)
    assert time.monotonic() - started > 1.5  # well past its lease, and still its worker's
    assert (done.status, done.attempts, len(tries)) == ("succeeded", 1, 9)
    assert max(ages) < 1.0, ages  # renewed meanwhile: no other worker would have re-queued it


def test_unexpected_errors_are_recorded_without_a_traceback(monkeypatch, data_dir, db_url, sessions):
    calls = []

    def broken_train(spec, data, callbacks=None, **kwargs):
        calls.append(spec.seed)
        if spec.seed == 0:
            raise RuntimeError("boom\non two lines")
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(worker, "train", broken_train)
    first, second = enqueue(sessions, small(seed=0), small(seed=1))
    assert worker.run_worker(settings_for(db_url, data_dir), once=True) == 2
    assert calls == [0, 1]
    assert job(sessions, first).error == "RuntimeError: boom\non two lines"
    assert job(sessions, second).error == "ZeroDivisionError: division by zero"


def test_a_lost_lease_drops_the_job(monkeypatch, data_dir, db_url, sessions):
    (job_id,) = enqueue(sessions, small())

    def train_while_taken_over(spec, data, callbacks, **kwargs):
        with session_scope(sessions) as s:  # the lease expires and another worker claims the job
            s.execute(Job.__table__.update().values(status="queued", worker_id=None))
        with session_scope(sessions) as s:
            jobs.claim_job(s, "other")
        callbacks.on_progress(StepProgress(1, 1, 6, 2.0, 1))  # this write is refused, quietly
        wait_for(callbacks.should_stop, timeout=5, what="should_stop")
        raise TrainingCancelled("stopped")

    monkeypatch.setattr(worker, "train", train_while_taken_over)
    assert worker.run_worker(settings_for(db_url, data_dir), once=True) == 0
    taken = job(sessions, job_id)
    assert (taken.status, taken.worker_id, taken.attempts, taken.step) == ("running", "other", 2, 0)
    assert count(sessions, Loss, job_id) == 0


def test_an_idle_worker_stops_when_asked(data_dir, db_url, sessions):
    stop = threading.Event()
    done = []
    settings = settings_for(db_url, data_dir)
    thread = threading.Thread(target=lambda: done.append(worker.run_worker(settings, stop_event=stop)))
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive()  # an empty queue: it polls
    stop.set()
    thread.join(timeout=2)
    assert done == [0]


def test_workers_beyond_the_hosts_cores_stand_by_until_one_stops(monkeypatch, data_dir, db_url, sessions):
    """Two cores, two older live workers here: a third claims nothing until one of them stops, then
    trains on the free cores (both: the other is idle and one job is queued). A worker on another
    machine does not count."""
    from service.store.workers import register_worker, unregister_worker
    from workers import presence

    monkeypatch.setattr(presence, "host_cores", lambda: 2)
    with session_scope(sessions) as s:
        for name in ("x", "y"):
            register_worker(s, name, "here", presence.host_key(), 1, lease_seconds=3600)
        register_worker(s, "far", "there", "another-boot-id", 1, lease_seconds=3600)
    threads = []

    def train_and_look(spec, data, callbacks, **options):
        threads.append(options["threads"])
        raise RuntimeError("seen enough")

    monkeypatch.setattr(worker, "train", train_and_look)
    (job_id,) = enqueue(sessions, small())
    stop, done = threading.Event(), []
    settings = settings_for(db_url, data_dir, worker_threads=0, lease_seconds=3600)
    thread = threading.Thread(target=lambda: done.append(worker.run_worker(settings, stop_event=stop)))
    thread.start()

    def mine() -> list[bool]:  # this worker's standing_by, once it has registered
        with session_scope(sessions) as s:
            return [w.standing_by for w in queries.live_workers(s, 3600) if w.id not in {"x", "y", "far"}]

    def wait_for(condition) -> None:
        deadline = time.monotonic() + 10  # the worker compiles its kernels first
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)

    try:
        wait_for(lambda: mine() == [True])  # it says so (GET /workers) ...
        time.sleep(0.5)  # ten polls
        assert job(sessions, job_id).status == "queued" and threads == []  # ... and claims nothing
        with session_scope(sessions) as s:
            assert [(w.id, w.standing_by) for w in queries.live_workers(s, 3600)][:2] == [
                ("x", False),
                ("y", False),
            ]
        with session_scope(sessions) as s:
            unregister_worker(s, "y")
        wait_for(lambda: job(sessions, job_id).status == "failed")
        assert job(sessions, job_id).status == "failed" and threads == [2]
        assert mine() == [False]
    finally:
        stop.set()
        thread.join(timeout=5)
    assert done == [1]


def test_losses_are_buffered_not_written_per_step(monkeypatch, data_dir, db_url, sessions):
    writes = []
    real = jobs.record_progress

    def counting(session, job_id, worker_id, losses, steps, now=None):
        writes.append(len(losses))
        return real(session, job_id, worker_id, losses, steps, now)

    monkeypatch.setattr(worker, "record_progress", counting)
    (job_id,) = enqueue(sessions, small(batch_size=1, epochs=3))
    assert worker.run_worker(settings_for(db_url, data_dir), once=True) == 1
    assert sum(writes) == 450 and count(sessions, Loss, job_id) == 450
    assert len(writes) < 20  # the first step, then at most every 0.5 s and at each epoch's end


@pytest.mark.parametrize("seconds, written", [(30, [3]), (0, [1, 2, 3])])
def test_checkpoints_are_written_at_most_every_checkpoint_seconds(monkeypatch, data_dir, db_url, sessions,
                                                                   seconds, written):  # fmt: skip
    """A short job writes only the checkpoint after its second-to-last epoch; with 0, every epoch's."""
    epochs = []
    real = jobs.save_checkpoint
    monkeypatch.setattr(worker, "save_checkpoint", lambda s, j, w, epoch, state: epochs.append(epoch) or
                        real(s, j, w, epoch, state))  # fmt: skip
    enqueue(sessions, small(epochs=4))
    assert worker.run_worker(settings_for(db_url, data_dir, checkpoint_seconds=seconds), once=True) == 1
    assert epochs == written


def test_a_long_job_records_at_most_max_loss_points_and_says_at_which_interval(data_dir, db_url, sessions):
    # 150 images at batch 1, 3 epochs, a loss every step: 450 losses, past a cap of 400
    (job_id,) = enqueue(sessions, small(batch_size=1, epochs=3))
    assert worker.run_worker(settings_for(db_url, data_dir, max_loss_points=400), once=True) == 1
    done = job(sessions, job_id)
    assert (done.status, done.loss_every, done.step) == ("succeeded", 2, 450)  # ceil(450 / (400 - 3))
    with session_scope(sessions) as s:
        assert [loss.step for loss in queries.get_losses(s, job_id)] == [1, *range(2, 451, 2)]


def test_a_job_takes_its_share_of_the_hosts_cores_among_the_jobs_running_and_about_to_be_claimed(
    monkeypatch, data_dir, db_url, sessions
):
    """12 cores, of which another worker's job holds 4; two more workers idle here, one elsewhere. Two
    queued jobs: the first takes a third of the cores (three jobs are about to share them); alone in the
    queue, the second takes half (two share them). Torch and NumPy's BLAS get them, and the record
    says so."""
    from threadpoolctl import threadpool_info

    from service.store.workers import register_worker, worker_heartbeat
    from workers import presence

    monkeypatch.setattr(presence, "host_cores", lambda: 12)
    (held,) = enqueue(sessions, small())
    with session_scope(sessions) as s:
        for name in ("x", "y", "z"):
            register_worker(s, name, "here", presence.host_key(), 1, lease_seconds=3600)
        register_worker(s, "far", "there", "another-boot-id", 1, lease_seconds=3600)
        jobs.claim_job(s, "x")
        worker_heartbeat(s, "x", held, 4)
    seen = []

    def train_and_look(spec, data, callbacks, **options):
        blas = {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}
        with session_scope(sessions) as s:
            me = [(w.job_id, w.threads) for w in queries.live_workers(s, 3600) if w.pid == os.getpid()]
        seen.append((options["threads"], blas, me))
        raise RuntimeError("seen enough")

    monkeypatch.setattr(worker, "train", train_and_look)
    first, second = enqueue(sessions, small(seed=1), small(seed=2))
    settings = settings_for(db_url, data_dir, worker_threads=0, lease_seconds=3600)
    assert worker.run_worker(settings, once=True) == 2
    assert seen == [(4, {4}, [(first, 4)]), (6, {6}, [(second, 6)])]
    with session_scope(sessions) as s:  # stopped: its record is gone, the others' stay
        assert [w.id for w in queries.live_workers(s, 3600)] == ["x", "y", "z", "far"]


def test_a_worker_waits_while_running_jobs_hold_every_core(monkeypatch, data_dir, db_url, sessions):
    """Two cores, both held by another worker's job (whose worker has not yet given one up): a queued
    job waits (no third thread on two cores), and is claimed with both cores once that job ends."""
    from service.store.workers import register_worker, worker_heartbeat
    from workers import presence

    monkeypatch.setattr(presence, "host_cores", lambda: 2)
    (held,) = enqueue(sessions, small())
    with session_scope(sessions) as s:
        register_worker(s, "x", "here", presence.host_key(), 1, lease_seconds=3600)
        jobs.claim_job(s, "x")
        worker_heartbeat(s, "x", held, 2)
    threads = []

    def train_and_look(spec, data, callbacks, **options):
        threads.append(options["threads"])
        raise RuntimeError("seen enough")

    monkeypatch.setattr(worker, "train", train_and_look)
    (job_id,) = enqueue(sessions, small(seed=1))
    stop, done = threading.Event(), []
    settings = settings_for(db_url, data_dir, worker_threads=0, lease_seconds=3600)
    thread = threading.Thread(target=lambda: done.append(worker.run_worker(settings, stop_event=stop)))
    thread.start()
    try:
        wait_for(lambda: live_workers_here(sessions) == 2, timeout=10, what="the worker's record")
        time.sleep(0.5)  # ten polls
        assert job(sessions, job_id).status == "queued" and threads == []
        with session_scope(sessions) as s:
            worker_heartbeat(s, "x", None, 2)  # its job ended
        wait_for(lambda: job(sessions, job_id).status == "failed", timeout=10, what="the claim")
        assert threads == [2]
    finally:
        stop.set()
        thread.join(timeout=5)
    assert done == [1]


def live_workers_here(sessions) -> int:
    with session_scope(sessions) as s:
        return len(queries.live_workers(s, 3600))


def test_a_running_job_trains_on_fewer_threads_once_another_waits_and_its_provenance_says_so(
    monkeypatch, data_dir, db_url, sessions
):
    """Two cores and an idle worker beside this one: a lone job starts on both; once a second job is
    queued, it carries on with one thread (NumPy's BLAS, between two steps), and its provenance notes
    the change, since NumPy's weights then differ from a run on fixed threads."""
    from threadpoolctl import threadpool_info

    from service.store.workers import register_worker
    from workers import presence

    monkeypatch.setattr(presence, "host_cores", lambda: 2)
    with session_scope(sessions) as s:
        register_worker(s, "x", "here", presence.host_key(), 1, lease_seconds=3600)
    blas: list[set[int]] = []

    def train_and_look(spec, data, callbacks, **options):
        def threads() -> set[int]:
            return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

        blas.append(threads())
        if len(blas) > 1:  # the second job: seen enough
            raise RuntimeError("the second job")
        enqueue(sessions, small(seed=2))
        callbacks.on_progress(StepProgress(1, 1, 6, 2.0, 1))
        wait_for(lambda: callbacks.should_stop() or threads() == {1}, timeout=10, what="one thread")
        blas.append(threads())
        raise RuntimeError("seen enough")

    monkeypatch.setattr(worker, "train", train_and_look)
    (job_id,) = enqueue(sessions, small())
    settings = settings_for(db_url, data_dir, worker_threads=0, lease_seconds=3600)
    assert worker.run_worker(settings, once=True) == 2  # the second job too: it fails the same way
    assert blas[:2] == [{2}, {1}]
    provenance = job(sessions, job_id).provenance
    assert (provenance["threads"], provenance["threads_changed"]) == (2, [[1, 1]])
