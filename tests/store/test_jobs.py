"""Job states and transitions on a fresh database per test: an SQLite file, then PostgreSQL (tests/conftest.py)."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from service.ml.train import EpochEnd
from service.selection import rank_key
from service.store import jobs, queries
from service.store.db import (
    LateWriteWarning,
    begin_write,
    current_revisions,
    head_revisions,
    is_migrated,
    make_engine,
    make_sessionmaker,
    migrate,
    session_scope,
)
from service.store.jobs import (
    JobConflict,
    JobNotFound,
    LeaseLost,
    cancel_job,
    claim_job,
    enqueue_job,
    fail_job,
    finish_job,
    heartbeat,
    load_checkpoint,
    record_epoch,
    record_progress,
    release_job,
    requeue_stalled,
    retry_decision,
    save_checkpoint,
)
from service.store.models import Base, EpochMetric, Job, JobCheckpoint, JobStatus, Loss, TrainedModel
from service.store.queries import get_job
from tests.conftest import POSTGRES_ONLY, SQLITE_ONLY
from tests.factories import tiny_spec
from tests.support import REPO

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def result(test_accuracy: float = 0.8, validation_accuracy: float | None = 0.85) -> SimpleNamespace:
    eye = [[int(i == j) for j in range(10)] for i in range(10)]
    return SimpleNamespace(
        weights=b"npz", train_accuracy=0.9, test_accuracy=test_accuracy,
        validation_accuracy=validation_accuracy, confusion_train=eye, confusion_test=eye,
        best_epoch=1, stopped_epoch=1, predictions={"train": b"p-train", "test": b"p-test"}, seconds=1.5,
    )  # fmt: skip


@pytest.fixture
def url(db_url) -> str:
    return db_url


@pytest.fixture
def engine(url):
    engine = make_engine(url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine):
    return make_sessionmaker(engine)


def enqueue(sessions, n: int = 1, **changes) -> list[int]:
    with session_scope(sessions) as s:
        return [enqueue_job(s, tiny_spec(seed=i, **changes)).id for i in range(n)]


def claim(sessions, worker: str = "w1", now: datetime | None = None) -> Job | None:
    with session_scope(sessions) as s:
        return claim_job(s, worker, now=now)


def state(sessions, job_id: int) -> Job:
    with session_scope(sessions) as s:
        return get_job(s, job_id)


# --- the database ------------------------------------------------------------------------------


@SQLITE_ONLY
def test_engine_pragmas_and_parent_folder(engine, tmp_path):
    assert (tmp_path / "db" / "mlplab.db").exists()
    with engine.connect() as c:
        pragmas = {p: c.exec_driver_sql(f"PRAGMA {p}").scalar() for p in
                   ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")}  # fmt: skip
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "synchronous": 1, "busy_timeout": 30000}


@SQLITE_ONLY
def test_a_write_lock_held_past_the_busy_timeout_is_sqlalchemys_operational_error(url, monkeypatch):
    """Another process holds the write lock (a VACUUM, an open sqlite3 shell): the driver's own error
    escaped every `except SQLAlchemyError`, killed the worker's lease and presence threads, and was a 500."""
    from sqlalchemy.exc import OperationalError as LockedOut

    from service.store import db

    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 100)
    engine = make_engine(url)
    migrate(engine)
    holder = sqlite3.connect(engine.url.database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with (
            pytest.raises(LockedOut, match="database is locked"),
            session_scope(make_sessionmaker(engine)) as s,
        ):
            begin_write(s)
    finally:
        holder.close()
        engine.dispose()


def test_migrate_twice_is_a_no_op_and_is_migrated(url):
    engine = make_engine(url)
    assert not is_migrated(engine)
    assert current_revisions(engine) == set()
    migrate(engine)
    assert is_migrated(engine)
    newest = max(p.stem for p in (REPO / "service/store/migrations/versions").glob("[0-9]*.py"))
    assert current_revisions(engine) == head_revisions() == {newest}
    migrate(url)  # by URL too
    assert is_migrated(engine)
    with engine.connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1
    engine.dispose()


# SQLite's reflection skips expression indexes (models.RANK_SCORE's); PostgreSQL's compares them
@pytest.mark.filterwarnings("ignore:.*expression-based index")
def test_migration_matches_the_models(engine):
    with engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_rows_stored_before_validation_existed_read_as_trained_without_one(url):
    """A database at 0005_indexes (the revision before 0006_model_selection) holding a finished job (its spec
    and weight file without validation_size) and an alias naming its model, migrated: the model kept its
    last epoch's weights, has no validation figures, trained on every image, and is still the alias's."""
    from alembic import command
    from sqlalchemy import MetaData, insert

    from service.ml.numpy_mlp import init_params
    from service.ml.weights import dump_weights, load_weights
    from service.store.db import alembic_config

    spec = tiny_spec(epochs=3)
    old = spec.model_dump(mode="json")
    del old["validation_size"], old["early_stopping"]
    with np.load(io.BytesIO(dump_weights(spec, init_params(spec)))) as npz:  # the file as written then
        arrays = {name: npz[name] for name in npz.files} | {"spec": np.array(json.dumps(old))}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    weights = buffer.getvalue()
    engine = make_engine(url)
    with engine.begin() as c:
        command.upgrade(alembic_config(c), "0005_indexes")
        tables = MetaData()
        tables.reflect(c)
        c.execute(insert(tables.tables["jobs"]).values(
            id=1, name=spec.name, spec=old, backend="numpy", status="succeeded", created_at=T0, epoch=3,
            step=24, train_accuracy=0.9, test_accuracy=0.8,
        ))  # fmt: skip
        c.execute(insert(tables.tables["epoch_metrics"]).values(
            job_id=1, epoch=3, loss=0.5, train_accuracy=0.9, test_accuracy=0.8, seconds=1.0
        ))  # fmt: skip
        c.execute(insert(tables.tables["models"]).values(
            job_id=1, weights=weights, train_accuracy=0.9, test_accuracy=0.8, confusion_train=[[0]],
            confusion_test=[[0]], seconds=3.0, created_at=T0,
        ))  # fmt: skip
        c.execute(insert(tables.tables["alias_events"]).values(
            id=1, alias="champion", action="promote", to_model_id=1, created_at=T0
        ))  # fmt: skip
        c.execute(insert(tables.tables["aliases"]).values(
            name="champion", model_id=1, event_id=1, updated_at=T0
        ))  # fmt: skip
    migrate(engine)  # SQLite: recreates the models table that the alias's rows reference
    with session_scope(make_sessionmaker(engine)) as s:
        model = queries.get_model(s, 1)
        assert (model.best_epoch, model.stopped_epoch, model.validation_accuracy) == (3, 3, None)
        assert model.predictions_test is None and model.job.validation_accuracy is None
        assert [(e.validation_loss, e.validation_accuracy) for e in queries.get_epochs(s, 1)] == [
            (None, None)
        ]
        assert queries.job_spec(model.job) == spec.model_copy(update={"validation_size": 0})
        assert load_weights(model.weights).spec == spec.model_copy(update={"validation_size": 0})
        assert queries.alias_target(s, "champion") == 1
    with engine.connect() as c:  # and the connection the migration used enforces foreign keys again
        assert c.dialect.name != "sqlite" or c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_concurrent_migrate_threads(url):
    engines = [make_engine(url) for _ in range(4)]
    errors: list[BaseException] = []

    def run(e):
        try:
            migrate(e)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(is_migrated(e) for e in engines)
    for e in engines:
        e.dispose()


@pytest.mark.slow  # migrating processes
def test_concurrent_migrate_processes(url):
    """An API and a worker starting at once on a fresh file: both migrate, neither fails."""
    code = f"from service.store.db import migrate; migrate({url!r})"
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    engine = make_engine(url)
    assert is_migrated(engine)
    engine.dispose()


def test_timestamps_are_aware_utc_and_naive_is_refused(sessions):
    (job_id,) = enqueue(sessions)
    job = state(sessions, job_id)
    assert job.created_at.tzinfo is UTC
    with pytest.raises(Exception, match="naive datetime"), session_scope(sessions) as s:
        enqueue_job(s, tiny_spec(), now=datetime(2025, 1, 1))


# --- transitions -------------------------------------------------------------------------------


def test_enqueue_claim_progress_finish(sessions):
    s1 = tiny_spec()
    with session_scope(sessions) as s:
        job = enqueue_job(s, s1, sweep_id="sw1")
    assert (job.status, job.attempts, job.backend, job.name, job.sweep_id) == (
        "queued",
        0,
        "numpy",
        s1.name,
        "sw1",
    )
    assert queries.job_spec(job) == s1

    job = claim(sessions, "w1", now=T0)
    assert (job.status, job.worker_id, job.attempts, job.started_at, job.heartbeat_at) == (
        "running",
        "w1",
        1,
        T0,
        T0,
    )

    with session_scope(sessions) as s:
        assert heartbeat(s, job.id, "w1", now=T0 + timedelta(seconds=5)) == jobs.Lease(alive=True)
        assert (
            record_progress(s, job.id, "w1", [(1, 1, 2.5), (1, 2, float("nan")), (1, 3, 2.0)], steps=8)
            is False
        )
        record_epoch(s, job.id, "w1", EpochEnd(1, 2.2, 0.5, 0.4, 0.1))
        save_checkpoint(s, job.id, "w1", 1, b"state")
    with session_scope(sessions) as s:
        begin_write(s)  # reads, then a write: take SQLite's write lock first
        assert jobs.load_checkpoint(s, job.id) == (1, b"state")
        finish_job(s, job.id, "w1", result())

    with session_scope(sessions) as s:
        done = get_job(s, job.id)
        assert (done.status, done.epoch, done.step, done.steps, done.loss) == ("succeeded", 1, 3, 8, 2.0)
        assert (done.train_accuracy, done.test_accuracy, done.error) == (0.9, 0.8, None)
        assert done.finished_at is not None and done.started_at == T0
        assert [(r.epoch, r.step, r.loss) for r in queries.get_losses(s, job.id)] == [
            (1, 1, 2.5),
            (1, 3, 2.0),
        ]
        assert [(r.step) for r in queries.get_losses(s, job.id, after_step=1)] == [3]
        assert [(e.epoch, e.loss, e.seconds) for e in queries.get_epochs(s, job.id)] == [(1, 2.2, 0.1)]
        model = queries.get_model(s, job.id)
        assert (model.weights, model.test_accuracy, model.seconds, model.job.id) == (b"npz", 0.8, 1.5, job.id)
        assert model.confusion_test[3][3] == 1
        assert jobs.load_checkpoint(s, job.id) is None  # finished: the checkpoint is gone
        assert queries.get_model(s, 999) is None and get_job(s, 999) is None


def test_claim_returns_none_on_an_empty_queue_and_takes_the_oldest(sessions):
    assert claim(sessions) is None
    ids = enqueue(sessions, 3)
    assert [claim(sessions).id for _ in ids] == ids
    assert claim(sessions) is None


def test_clients_take_turns_whatever_the_number_of_workers(sessions):
    """One client's backlog held every later client's job until it had all trained (oldest first), and
    ordering by jobs running changed nothing with one worker (nothing else runs when it claims)."""
    with session_scope(sessions) as s:
        backlog = [enqueue_job(s, tiny_spec(seed=i), client="10.0.0.1").id for i in range(4)]
        late = enqueue_job(s, tiny_spec(), client="10.0.0.2").id
        own = enqueue_job(s, tiny_spec()).id  # the process's own (or from before clients were kept)
    t = datetime(2026, 12, 3, 12, tzinfo=UTC)
    # one worker: each job ends before the next claim
    claimed = [claim(sessions, now=t + timedelta(minutes=k)).id for k in range(6)]
    assert claimed == [backlog[0], late, own, backlog[1], backlog[2], backlog[3]]


def test_a_client_whose_last_job_started_long_ago_counts_as_new(sessions):
    with session_scope(sessions) as s:
        old = enqueue_job(s, tiny_spec(), client="10.0.0.1").id
        later = [enqueue_job(s, tiny_spec(seed=i), client="10.0.0.2").id for i in range(2)]
        mine = enqueue_job(s, tiny_spec(seed=9), client="10.0.0.1").id
    t = datetime(2026, 12, 3, 12, tzinfo=UTC)
    assert claim(sessions, now=t).id == old
    assert claim(sessions, now=t + timedelta(minutes=1)).id == later[0]
    # two days on, neither has started a job within the window: the oldest again
    assert claim(sessions, now=t + timedelta(days=2)).id == later[1]
    assert claim(sessions, now=t + timedelta(days=2, minutes=1)).id == mine


def test_cancel_queued_running_and_finished(sessions):
    running, queued, finished = enqueue(sessions, 3)
    assert claim(sessions).id == running
    with session_scope(sessions) as s:
        job = cancel_job(s, queued)  # queued: cancelled at once
        assert (job.status, job.cancel_requested) == ("cancelled", True)
        assert job.finished_at is not None
        job = cancel_job(s, running)  # running: its worker is asked to stop
        assert (job.status, job.cancel_requested, job.finished_at) == ("running", True, None)
        assert cancel_job(s, running).status == "running"  # asking twice is fine
        assert heartbeat(s, running, "w1") == jobs.Lease(alive=True, cancel_requested=True)
        assert (
            record_progress(s, running, "w1", [(1, 1, 2.0)], steps=8) is True
        )  # the progress write says so too
    with session_scope(sessions) as s:
        jobs.mark_cancelled(s, running, "w1")
    assert state(sessions, running).status == "cancelled"

    assert claim(sessions, "w2").id == finished  # the cancelled one was skipped
    with session_scope(sessions) as s:
        finish_job(s, finished, "w2", result())
    for job_id in (running, queued, finished):
        before = state(sessions, job_id)
        with pytest.raises(JobConflict, match=f"job {job_id} is already"), session_scope(sessions) as s:
            cancel_job(s, job_id)
        after = state(sessions, job_id)
        assert (after.status, after.finished_at) == (before.status, before.finished_at)
    with pytest.raises(JobNotFound, match="job 12345 not found"), session_scope(sessions) as s:
        cancel_job(s, 12345)


def test_a_cancel_accepted_while_the_job_ran_is_honoured_at_its_end(sessions):
    """The API said "cancel requested"; the worker, in its final evaluation, had not looked since."""
    job_id, other = enqueue(sessions, 2)
    assert claim(sessions).id == job_id and claim(sessions, "w2").id == other
    with session_scope(sessions) as s:
        save_checkpoint(s, job_id, "w1", 1, b"state")
        cancel_job(s, job_id)
    with session_scope(sessions) as s:
        assert finish_job(s, job_id, "w1", result()) is None
        assert finish_job(s, other, "w2", result()) is not None  # no cancel: it succeeds
    ended = state(sessions, job_id)
    assert (ended.status, ended.train_accuracy) == ("cancelled", None) and ended.finished_at is not None
    with session_scope(sessions) as s:
        assert queries.get_model(s, job_id) is None and load_checkpoint(s, job_id) is None
        assert queries.get_model(s, other) is not None


def test_cancel_refreshes_a_job_already_loaded_in_the_session(sessions, url):
    first, second = enqueue(sessions, 2)
    with session_scope(sessions) as s:
        begin_write(s)
        loaded = get_job(s, first)
        assert cancel_job(s, first) is loaded
        assert loaded.status == "cancelled"
    # A read first, without begin_write: SQLite can't take the write lock any more (PostgreSQL doesn't mind).
    late = (
        pytest.warns(LateWriteWarning, match="begin_write")
        if url.startswith("sqlite")
        else contextlib.nullcontext()
    )
    with late, session_scope(sessions) as s:
        get_job(s, second)
        assert cancel_job(s, second).status == "cancelled"


@SQLITE_ONLY
def test_a_write_after_a_read_without_the_write_lock_can_fail(sessions):
    """Why begin_write matters: SQLite can't upgrade a read transaction another writer has overtaken."""
    first, second = enqueue(sessions, 2)
    late = sessions()
    try:
        get_job(late, first)
        with session_scope(sessions) as s:  # someone else commits in between
            cancel_job(s, second)
        with pytest.warns(LateWriteWarning), pytest.raises(OperationalError, match="database is locked"):
            cancel_job(late, first)
    finally:
        late.close()


def test_fail_job(sessions):
    (job_id,) = enqueue(sessions)
    claim(sessions)
    with session_scope(sessions) as s:
        save_checkpoint(s, job_id, "w1", 1, b"x")
        fail_job(s, job_id, "w1", "training diverged")
    job = state(sessions, job_id)
    assert (job.status, job.error) == ("failed", "training diverged")
    with session_scope(sessions) as s:
        assert jobs.load_checkpoint(s, job_id) is None


def test_release_keeps_the_checkpoint_and_the_attempt(sessions):
    (job_id,) = enqueue(sessions)
    claim(sessions)
    with session_scope(sessions) as s:
        record_progress(s, job_id, "w1", [(1, 1, 2.0), (1, 2, 1.9), (2, 3, 1.8)], steps=4)
        record_epoch(s, job_id, "w1", EpochEnd(1, 1.95, 0.5, 0.5, 0.1))
        record_epoch(s, job_id, "w1", EpochEnd(2, 1.8, 0.6, 0.6, 0.1))  # recorded, but no checkpoint after it
        save_checkpoint(s, job_id, "w1", 1, b"after epoch 1")
    with session_scope(sessions) as s:
        assert release_job(s, job_id, "w1") == "queued"
    job = state(sessions, job_id)
    assert (job.status, job.worker_id, job.attempts, job.heartbeat_at) == ("queued", None, 0, None)

    job = claim(sessions, "w2")  # resumes after epoch 1: epoch 2's rows are dropped, to be re-recorded
    assert (job.attempts, job.epoch, job.step, job.loss) == (1, 1, 2, 1.9)
    with session_scope(sessions) as s:
        begin_write(s)
        assert jobs.load_checkpoint(s, job_id) == (1, b"after epoch 1")
        assert [r.step for r in queries.get_losses(s, job_id)] == [1, 2]
        assert [e.epoch for e in queries.get_epochs(s, job_id)] == [1]
        record_progress(s, job_id, "w2", [(2, 3, 1.7)], steps=4)  # no duplicate-key error


def test_release_with_a_pending_cancel_cancels(sessions):
    (job_id,) = enqueue(sessions)
    claim(sessions)
    with session_scope(sessions) as s:
        cancel_job(s, job_id)
    with session_scope(sessions) as s:
        assert release_job(s, job_id, "w1") == "cancelled"
    assert state(sessions, job_id).finished_at is not None


def test_retry_decision():
    assert [retry_decision(a, 3) for a in (0, 1, 2, 3, 4)] == ["requeue"] * 3 + ["fail"] * 2


def test_requeue_stalled_requeues_then_gives_up(sessions):
    (job_id,) = enqueue(sessions)
    lease = 30.0
    for attempt in (1, 2, 3):
        job = claim(sessions, f"w{attempt}", now=T0)
        assert job.attempts == attempt
        with session_scope(sessions) as s:  # a fresh heartbeat is not stale
            assert requeue_stalled(s, T0 + timedelta(seconds=lease - 1), lease, max_attempts=3) == []
        with session_scope(sessions) as s:
            assert requeue_stalled(s, T0 + timedelta(seconds=lease + 1), lease, max_attempts=3) == [job_id]
        job = state(sessions, job_id)
        if attempt < 3:
            assert (job.status, job.worker_id, job.error) == ("queued", None, None)
    assert (job.status, job.attempts) == ("failed", 3)
    assert job.error == "worker lost 3 times; gave up after MLPLAB_MAX_ATTEMPTS=3 attempts"
    assert claim(sessions) is None


def test_requeue_stalled_with_a_pending_cancel_cancels(sessions):
    (job_id,) = enqueue(sessions)
    claim(sessions, now=T0)
    with session_scope(sessions) as s:
        cancel_job(s, job_id)
    with session_scope(sessions) as s:
        assert requeue_stalled(s, T0 + timedelta(hours=1), 30, 3) == [job_id]
    assert state(sessions, job_id).status == "cancelled"


def test_a_worker_that_lost_its_lease_cannot_write(sessions):
    (job_id,) = enqueue(sessions)
    claim(sessions, "old", now=T0)
    with session_scope(sessions) as s:
        requeue_stalled(s, T0 + timedelta(minutes=5), 30, 3)
    claim(sessions, "new")
    for write in (
        lambda s: record_progress(s, job_id, "old", [(1, 1, 1.0)], 4),
        lambda s: record_epoch(s, job_id, "old", EpochEnd(1, 1.0, 0.5, 0.5, 0.1)),
        lambda s: save_checkpoint(s, job_id, "old", 1, b"stale"),
        lambda s: finish_job(s, job_id, "old", result()),
        lambda s: fail_job(s, job_id, "old", "boom"),
        lambda s: jobs.mark_cancelled(s, job_id, "old"),
        lambda s: release_job(s, job_id, "old"),
    ):
        with pytest.raises(LeaseLost, match="no longer held by worker old"), session_scope(sessions) as s:
            write(s)
    with session_scope(sessions) as s:
        assert not heartbeat(s, job_id, "old")
        assert heartbeat(s, job_id, "new")
        assert s.scalar(select(func.count()).select_from(Loss)) == 0
        assert s.scalar(select(func.count()).select_from(EpochMetric)) == 0
        assert s.scalar(select(func.count()).select_from(JobCheckpoint)) == 0
        assert s.scalar(select(func.count()).select_from(TrainedModel)) == 0
        job = s.get(Job, job_id)
        assert (job.status, job.worker_id, job.attempts) == ("running", "new", 2)


def test_concurrent_claims_never_hand_a_job_twice(url, sessions):
    ids = enqueue(sessions, 40)
    claimed: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def work(name: str) -> None:
        engine = make_engine(url)  # its own engine, as a separate process would have
        own = make_sessionmaker(engine)
        got = claimed.setdefault(name, [])
        try:
            start.wait()
            while (job := claim(own, name)) is not None:
                got.append(job.id)
                with session_scope(own) as s:  # a write between claims, as a worker does
                    heartbeat(s, job.id, name)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    every = [i for got in claimed.values() for i in got]
    assert sorted(every) == ids  # each job exactly once
    with session_scope(sessions) as s:
        owners = dict(s.execute(select(Job.id, Job.worker_id)).all())
        assert all(owners[i] == name for name, got in claimed.items() for i in got)
        assert all(j.attempts == 1 for j in queries.list_jobs(s, limit=100)[0])


@contextlib.contextmanager
def open_transaction(sessions):
    """A session whose transaction stays open (its row locks held) until the block ends, then commits."""
    session = sessions()
    try:
        yield session
        session.commit()
    finally:
        session.close()


def no_waiting(session) -> None:
    """Make this transaction fail rather than wait for a row lock: waiting would mean SKIP LOCKED didn't skip."""
    session.connection().exec_driver_sql("SET LOCAL lock_timeout = '2s'")


@POSTGRES_ONLY
def test_a_claim_skips_the_job_an_open_claim_holds(sessions):
    first, second = enqueue(sessions, 2)
    with open_transaction(sessions) as a:
        assert claim_job(a, "A").id == first  # not committed: the row stays locked, still 'queued' to others
        with session_scope(sessions) as b:
            no_waiting(b)
            assert claim_job(b, "B").id == second  # at once, not after A commits
        with session_scope(sessions) as c:
            no_waiting(c)
            assert claim_job(c, "C") is None
    assert (state(sessions, first).worker_id, state(sessions, second).worker_id) == ("A", "B")


@POSTGRES_ONLY
def test_requeue_stalled_skips_a_job_whose_heartbeat_is_being_written(sessions):
    (job_id,) = enqueue(sessions)
    claim(sessions, "w1", now=T0)
    with open_transaction(sessions) as worker:
        assert heartbeat(worker, job_id, "w1", now=T0 + timedelta(minutes=5))  # row locked, not committed
        with session_scope(sessions) as s:
            no_waiting(s)
            assert requeue_stalled(s, T0 + timedelta(minutes=1), 30, 3) == []  # skipped, not waited for
    with session_scope(sessions) as s:  # committed: fresh, so still not stalled
        assert requeue_stalled(s, T0 + timedelta(minutes=5, seconds=10), 30, 3) == []
    assert (state(sessions, job_id).status, state(sessions, job_id).worker_id) == ("running", "w1")


# --- reads -------------------------------------------------------------------------------------


def test_list_jobs_filters_pages_and_counts(sessions):
    enqueue(sessions, 3)
    enqueue(sessions, 2)
    with session_scope(sessions) as s:
        enqueue_job(s, tiny_spec(backend="torch"), sweep_id="sw")
    claim(sessions)
    with session_scope(sessions) as s:
        rows, count = queries.list_jobs(s)
        assert count == 6 and [j.id for j in rows] == [6, 5, 4, 3, 2, 1]
        rows, count = queries.list_jobs(s, limit=2, offset=1)
        assert count == 6 and [j.id for j in rows] == [5, 4]
        assert queries.list_jobs(s, status="running")[1] == 1
        assert [j.id for j in queries.list_jobs(s, status=JobStatus.queued, backend="numpy")[0]] == [
            5,
            4,
            3,
            2,
        ]
        assert [j.id for j in queries.list_jobs(s, backend="torch")[0]] == [6]
        assert [j.id for j in queries.list_jobs(s, sweep_id="sw")[0]] == [6]
        assert queries.count_queued(s) == 5
        with pytest.raises(ValueError):
            queries.list_jobs(s, status="bogus")


def test_ids_and_bounds_past_the_integer_columns_find_nothing(sessions):
    """Integer is 32-bit on PostgreSQL (a larger parameter fails there), 64-bit on SQLite: no such row."""
    (job_id,) = enqueue(sessions)
    claim(sessions)
    with session_scope(sessions) as s:
        record_progress(s, job_id, "w1", [(1, 1, 1.0)], 1)
    with session_scope(sessions) as s:
        for huge in (2**31, 2**63, 10**30, -(2**31) - 1, -(10**30)):
            assert get_job(s, huge) is None and queries.get_model(s, huge) is None
        assert [r.step for r in queries.get_losses(s, job_id, after_step=2**31)] == []
        assert [r.step for r in queries.get_losses(s, job_id, after_step=10**30)] == []
        assert queries.list_jobs(s, offset=10**30) == ([], 1)
        assert queries.alias_history(s, "champion", offset=10**30) == ([], 0)
        assert queries.list_studies(s, offset=10**30) == ([], 0)


def test_list_models_sorts_and_leaves_weights_unloaded(sessions):
    ids = enqueue(sessions, 5)
    # (test, validation): the last two have no validation split
    accuracies = [(0.7, 0.95), (0.9, 0.8), (0.8, 0.9), (0.99, None), (0.6, None)]
    for job_id, (test, validation) in zip(ids, accuracies, strict=True):
        claim(sessions)
        with session_scope(sessions) as s:
            finish_job(s, job_id, "w1", result(test, validation), now=T0 + timedelta(minutes=job_id))
    with session_scope(sessions) as s:
        best = queries.list_models(s)
        # by validation accuracy, then those without one by test accuracy
        assert [m.job_id for m in best] == [1, 3, 2, 4, 5]
        assert best[0].job.name == tiny_spec(seed=0).name
        for column in ("weights", "predictions_test"):
            with pytest.raises(Exception, match="raiseload|deferred|not available"):
                getattr(best[0], column)
        assert [m.job_id for m in queries.list_models(s, sort="test_accuracy")] == [4, 2, 3, 1, 5]
        assert [m.job_id for m in queries.list_models(s, sort="created_at")] == [5, 4, 3, 2, 1]
        assert [m.job_id for m in queries.list_models(s, limit=1, offset=1)] == [3]
        assert queries.count_models(s) == (5, 3)
        assert queries.get_predictions(s, 3, "test") == b"p-test"
        assert queries.get_predictions(s, 3, "train") == b"p-train"
        with pytest.raises(ValueError):
            queries.list_models(s, sort="name")


def test_deleting_a_job_deletes_its_rows(sessions):
    (job_id,) = enqueue(sessions)
    claim(sessions)
    with session_scope(sessions) as s:
        record_progress(s, job_id, "w1", [(1, 1, 1.0)], 1)
        finish_job(s, job_id, "w1", result())
    with session_scope(sessions) as s:
        s.delete(s.get(Job, job_id))
    with session_scope(sessions) as s:
        assert s.scalar(select(func.count()).select_from(Loss)) == 0
        assert s.scalar(select(func.count()).select_from(TrainedModel)) == 0


def test_the_best_is_one_order_in_sql_and_in_python_ties_included(sessions):
    """GET /models, a sweep's order and promote (BEST_FIRST, in SQL) and the tables ranked in Python
    (rank_key) put the same model first, also when two are tied."""
    figures = [(0.9, 0.8), (0.9, 0.8), (0.9, 0.81), (None, 0.95), (0.95, 0.7), (None, 0.95), (0.9, 0.8)]
    ids = enqueue(sessions, len(figures))
    for job_id, (validation, test) in zip(ids, figures, strict=True):
        claim(sessions)
        with session_scope(sessions) as s:
            finish_job(s, job_id, "w1", result(test, validation))
    by_python = sorted(ids, key=lambda i: rank_key(*figures[ids.index(i)], i))
    with session_scope(sessions) as s:
        by_sql = list(s.scalars(select(TrainedModel.job_id).order_by(*queries.BEST_FIRST)))
        best = queries.best_model_id(s)
    assert by_sql == by_python and best == by_python[0] == ids[4]
    # four equal on validation: the newest first, whatever their test accuracy (0.81 is no better)
    assert by_python[1:5] == [ids[6], ids[2], ids[1], ids[0]]
    assert by_python[5:] == [ids[5], ids[3]]  # no validation split: after, by test, the newer first


def test_a_claim_that_skips_a_dataset_still_takes_a_job_stored_before_datasets_had_a_name(sessions):
    """Its spec has no "dataset" (MNIST): `!= 'fashion-mnist'` was NULL for it, so it was skipped too."""
    old, fashion = enqueue(sessions, 2)
    with session_scope(sessions) as s:
        job = s.get(Job, old)
        job.spec = {k: v for k, v in job.spec.items() if k != "dataset"}
        s.get(Job, fashion).spec = {**s.get(Job, fashion).spec, "dataset": "fashion-mnist"}
    with session_scope(sessions) as s:
        assert jobs.claim_job(s, "w1", skip=["fashion-mnist"]).id == old
    with session_scope(sessions) as s:
        assert jobs.claim_job(s, "w1", skip=["fashion-mnist"]) is None  # the other is skipped


def test_a_queued_job_cancelled_drops_the_checkpoint_its_last_worker_left(sessions):
    """A hand-back keeps the checkpoint for the next claim; a cancel before that claim left it (12 MB for
    a default torch job) in the database for good."""
    with session_scope(sessions) as s:
        ids = [enqueue_job(s, tiny_spec(seed=i), sweep_id="abcdef012345" if i else None).id for i in range(3)]
    for job_id in ids:
        with session_scope(sessions) as s:
            assert claim_job(s, f"w{job_id}").id == job_id
            save_checkpoint(s, job_id, f"w{job_id}", 1, b"state")
    for job_id in ids:
        with session_scope(sessions) as s:
            jobs.release_job(s, job_id, f"w{job_id}")  # a SIGTERM: queued again, its checkpoint kept
    with session_scope(sessions) as s:
        assert [jobs.load_checkpoint(s, i) for i in ids] == [(1, b"state")] * 3
    with session_scope(sessions) as s:
        jobs.cancel_job(s, ids[0])
        jobs.cancel_sweep(s, "abcdef012345")
    with session_scope(sessions) as s:
        assert [get_job(s, i).status for i in ids] == ["cancelled"] * 3
        assert [jobs.load_checkpoint(s, i) for i in ids] == [None] * 3


@pytest.mark.parametrize("how", ["released", "requeued"])
def test_a_job_back_in_the_queue_shows_the_progress_it_resumes_from(sessions, how):
    """Released on SIGTERM after epoch 2 and part of 3, checkpointed after 2: the queued job read epoch 3
    until the next claim rolled it back."""
    with session_scope(sessions) as s:
        job_id = enqueue_job(s, tiny_spec(epochs=4)).id
    with session_scope(sessions) as s:
        claim_job(s, "w1", now=T0)
        losses = [(1 + (n - 1) // 4, n, 2.0 / n) for n in range(1, 11)]  # 4 steps an epoch; 10: into epoch 3
        record_progress(s, job_id, "w1", losses, steps=16, now=T0)
        for epoch in (1, 2):
            record_epoch(s, job_id, "w1", EpochEnd(epoch, 1.0, 0.5, 0.4, 0.1))
        save_checkpoint(s, job_id, "w1", 2, b"state", now=T0)
    with session_scope(sessions) as s:
        if how == "released":
            jobs.release_job(s, job_id, "w1")
        else:
            assert jobs.requeue_stalled(s, T0 + timedelta(minutes=5), 30, 3) == [job_id]
    with session_scope(sessions) as s:
        job = get_job(s, job_id)
        assert (job.status, job.epoch, job.step, job.loss) == ("queued", 2, 8, 2.0 / 8)
        assert [loss.step for loss in queries.get_losses(s, job_id)] == list(range(1, 9))
        assert [e.epoch for e in queries.get_epochs(s, job_id)] == [1, 2]


def test_a_stalled_job_is_said_to_be_requeued_once_that_is_committed(sessions, caplog):
    """On a full disk the re-queue's commit failed each second, and each time the log said 're-queued'."""
    with session_scope(sessions) as s:
        job_id = enqueue_job(s, tiny_spec()).id
    with session_scope(sessions) as s:
        claim_job(s, "w1", now=T0)
    with caplog.at_level("WARNING", logger="service.store.jobs"):
        s = sessions()
        try:
            assert jobs.requeue_stalled(s, T0 + timedelta(minutes=5), 30, 3) == [job_id]
            s.rollback()  # the commit that never happened
            assert "stopped renewing" not in caplog.text
        finally:
            s.close()
        with session_scope(sessions) as s:
            assert jobs.requeue_stalled(s, T0 + timedelta(minutes=5), 30, 3) == [job_id]
        assert (
            f"job {job_id}: worker w1 stopped renewing its lease (attempt 1 of 3); re-queued" in caplog.text
        )
