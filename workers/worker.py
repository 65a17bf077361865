"""The worker: re-queue stalled jobs, claim one, train it, record it, repeat.

One job at a time per process; run several processes (on one SQLite file, or on several
machines with PostgreSQL) for more. While a job trains, a heartbeat thread renews its lease;
losses are buffered and written in short transactions; an epoch's end saves a checkpoint at most
every MLPLAB_CHECKPOINT_SECONDS (and after the second-to-last epoch, and when the worker stops),
from which the next claim resumes when this worker dies or is stopped.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from threadpoolctl import threadpool_limits

from service import configure_logging
from service.ml import kernels
from service.ml.data import DataError, load_dataset, unavailable_reason
from service.ml.network import BackendOptions
from service.ml.provenance import (
    MOST_THREAD_CHANGES,
    Provenance,
    Trained,
    collect,
    compare,
    resumed,
    stored_provenance,
)
from service.ml.train import (
    Callbacks,
    Checkpoint,
    EpochEnd,
    Progress,
    StepProgress,
    TrainingCancelled,
    TrainingError,
    TrainResult,
    train,
)
from service.ml.weights import load_weights
from service.search import should_prune
from service.settings import Settings, SettingsError, get_settings
from service.store.db import (
    DatabaseFolderMissing,
    MigrationLockHeld,
    UnknownRevision,
    database_error,
    make_engine,
    make_sessionmaker,
    migrate,
    session_scope,
    shown_url,
    transient,
)
from service.store.jobs import (
    LeaseLost,
    fail_job,
    finish_job,
    foresee_end,
    heartbeat,
    load_checkpoint,
    mark_cancelled,
    prune_job,
    record_epoch,
    record_progress,
    record_provenance,
    release_job,
    save_checkpoint,
)
from service.store.models import Job, JobStatus
from service.store.queries import (
    dataset_held,
    get_epochs,
    get_job,
    get_model,
    get_study,
    job_spec,
    live_workers,
    study_trials,
)
from workers.presence import Presence, Reach, host_key

log = logging.getLogger("workers")

FLUSH_SECONDS = 0.5  # buffered losses are written at most this often (and at each epoch's end)
RETRY_SECONDS = 1.0  # between two tries to record a job's end in a database that cannot be written
RETRY_MAX_SECONDS = 30.0  # ... doubling up to this
DATA_BACKOFF_SECONDS = 30.0  # a worker that lacks a job's dataset claims none of its jobs this long, doubling
MOST_DATA_BACKOFF_SECONDS = 600.0
FIRST_IDLE_SLEEP = 0.05  # an empty queue's first sleep; it doubles up to settings.worker_poll_seconds


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


def run_worker(settings: Settings, once: bool = False, stop_event: threading.Event | None = None) -> int:
    """Process jobs until `stop_event` is set (or, with `once`, until the queue holds none it can train).

    Returns how many jobs this worker brought to an end (succeeded, failed or cancelled).
    """
    stop = stop_event or threading.Event()
    kernels.warm()  # the NumPy step's compiled kernels, before any claim: no job's wall time pays for them
    engine = make_engine(settings.database_url)
    if not migrate(engine, stop=stop.is_set):
        engine.dispose()
        return 0
    sessions = make_sessionmaker(engine)
    worker_id = make_worker_id()
    presence = Presence(sessions, worker_id, settings, once=once)
    presence.start()
    log.info(
        "worker %s started on %s%s", worker_id, shown_url(settings.database_url), " (--once)" if once else ""
    )
    processed = idle = 0
    backoffs: dict[str, float] = {}  # dataset -> the next wait before claiming its jobs again
    try:
        while not stop.is_set():
            try:
                presence.judge_others()
                job = presence.claim(once)
            except SQLAlchemyError as exc:
                if once:
                    raise
                presence.reach.failed()
                log.error("database error, retrying: %s", exc)
                job = None
            else:
                presence.reach.answered()
            if job is None:
                if once:
                    break
                stop.wait(min(settings.worker_poll_seconds, FIRST_IDLE_SLEEP * 2**idle))
                idle = min(idle + 1, 30)
                continue
            idle = 0
            try:
                processed += run_job(job, settings, sessions, worker_id, stop, presence)
                # its data loads now: a later failure waits the first back-off again
                backoffs.pop(job_spec(job).dataset, None)
            except DataUnavailable as missing:
                presence.end_job()
                dataset = str(missing)
                log.error("job %d went back to the queue: this machine cannot load %s", job.id, dataset)
                if once:  # --once trains what else it finds, then exits
                    presence.lacking[dataset] = math.inf
                    continue
                wait = backoffs.get(dataset, DATA_BACKOFF_SECONDS)
                backoffs[dataset] = min(wait * 2, MOST_DATA_BACKOFF_SECONDS)
                presence.lacking[dataset] = time.monotonic() + wait
                log.info("no claim of %s jobs for %g s (MLPLAB_DATA_DIR)", dataset, wait)
                continue
            presence.end_job()
    finally:
        presence.stop()
        engine.dispose()
    log.info("worker %s stopped after %d job(s)", worker_id, processed)
    return processed


def backend_options(settings: Settings, threads: int) -> BackendOptions:
    """How this machine runs the torch backend: the MLPLAB_TORCH_* settings and the job's threads."""
    return {"device": settings.torch_device, "threads": threads, "cpu_matmul": settings.torch_cpu_matmul}


def run_job(
    job: Job,
    settings: Settings,
    sessions: sessionmaker[Session],
    worker_id: str,
    stop: threading.Event,
    presence: Presence,
) -> int:
    """Train one claimed job on its worker's share of the host's cores (torch's and NumPy's BLAS threads,
    `presence.threads`) and record how it ended; 1 if it ended here, 0 if released or dropped."""
    log.info("claimed job %d (attempt %d): %s", job.id, job.attempts, job.name)
    lease = LeaseKeeper(sessions, job.id, worker_id, settings.heartbeat_seconds, presence.reach)
    recorder = Recorder(sessions, job.id, worker_id, lease, Checkpoints(settings.checkpoint_seconds))
    pruning = Pruning(sessions, job)
    threads = presence.threads
    result: TrainResult | None = None
    error: str | None = None
    resume: Checkpoint | None = None
    missing_data = False
    lease.start()
    try:
        spec = job_spec(job)
        with session_scope(sessions) as session:
            saved = load_checkpoint(session, job.id)
        resume = None if saved is None else Checkpoint(*saved)
        if resume is not None:
            log.info("job %d: resuming after epoch %d", job.id, resume.epoch)
        data = load_dataset(spec.dataset, settings.data_dir, download=settings.download)
        options = backend_options(settings, threads)
        first = 1 if resume is None else resume.epoch + 1
        share = ThreadShare(lambda: presence.threads, threads, spec.backend, recorder, first)

        def should_stop() -> bool:
            share.follow()  # between two steps: the job's threads follow its share of the cores
            return stop.is_set() or lease.stopping() or pruning.pruned

        callbacks = Callbacks(
            on_progress=share.after(pruning.after(recorder.on_progress)),
            should_stop=should_stop,
            on_checkpoint=recorder.on_checkpoint,
        )
        with threadpool_limits(threads):  # before collect(), so that the provenance records the job's threads
            share.provenance = collect(spec, data, options)
            if resume is not None and (earlier := stored_provenance(job.provenance)) is not None:
                share.provenance = resumed(earlier, share.provenance, first)
            recorder.write(record_provenance, share.provenance.model_dump(mode="json"))
            result = train(
                spec, data, callbacks, resume=resume, max_losses=settings.max_loss_points, **options
            )
    except TrainingCancelled:
        pass
    except DataError as exc:  # its message names server paths: the log's, not the job's
        log.error("job %d: %s", job.id, exc)
        error = unavailable_reason(job_spec(job).dataset)
        missing_data = True
    except TrainingError as exc:  # written for the user
        error = str(exc)
    except Exception as exc:
        log.exception("job %d: unexpected error", job.id)
        # a database's error without its SQL, which is the log's
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        error = f"{type(cause).__name__}: {cause}"
    finally:
        lease.stop()
    if missing_data and _handed_back(job, recorder, sessions, settings):
        raise DataUnavailable(job_spec(job).dataset)
    if result is not None and resume is not None:
        add_earlier_seconds(sessions, job.id, resume.epoch, result)
    return settle(
        job,
        result,
        error,
        lease,
        recorder,
        stop,
        pruning.pruned,
        settings.lease_seconds,
        settings.heartbeat_seconds,
    )


class DataUnavailable(Exception):
    """This machine cannot load a job's dataset: the job went back to the queue for another worker."""


def _handed_back(job: Job, recorder: Recorder, sessions: sessionmaker[Session], settings: Settings) -> bool:
    """Give a job whose dataset this worker lacks back to the queue, its attempt not counted, when a live
    worker of another machine may have it, or one of this machine has trained that dataset (one worker's
    missing files failed every job of the queue); False (fail it) when there is none."""
    dataset = job_spec(job).dataset
    try:
        with session_scope(sessions) as session:
            here = host_key()
            elsewhere = any(w.host_key != here for w in live_workers(session, settings.lease_seconds)) or (
                dataset_held(session, dataset, settings.lease_seconds, besides=recorder.worker_id)
            )
        if not elsewhere:
            return False
        # not a failed attempt (the job is not at fault); the queued job says why it waits
        reason = f"{unavailable_reason(dataset)} Given back for another worker."
        recorder.write(release_job, reason=reason)
    except (SQLAlchemyError, LeaseLost) as exc:
        log.warning("job %d: could not give it back: %s", job.id, exc)
        return False
    return True


def add_earlier_seconds(
    sessions: sessionmaker[Session], job_id: int, resumed_after: int, result: TrainResult
) -> None:
    """A resumed job's model counts the training time of the epochs its earlier attempts trained."""
    try:
        with session_scope(sessions) as session:
            before = [e.seconds for e in get_epochs(session, job_id) if e.epoch <= resumed_after]
        result.seconds += sum(before)
    except SQLAlchemyError as exc:  # not worth losing the model over: its time is this attempt's
        log.warning("job %d: could not read its earlier epochs' times: %s", job_id, exc)


def settle(
    job: Job,
    result: TrainResult | None,
    error: str | None,
    lease: LeaseKeeper,
    recorder: Recorder,
    stop: threading.Event,
    pruned: bool = False,
    patience: float = 0.0,
    beat: float = RETRY_MAX_SECONDS,
) -> int:
    """Record how the job ended: succeeded, failed, cancelled, pruned, released or (lease lost) dropped.

    A database that cannot be written (restarting, locked, its disk full) is tried again, from a second
    apart to RETRY_MAX_SECONDS or `beat` (the heartbeat's), its lease renewed between tries, for as long
    as this worker runs: giving up let the lease lapse, and the job, trained, was re-queued and trained
    again, an attempt counted each time, until it failed. Progress not yet written goes first for
    `patience` seconds, then is left. Another error is tried for `patience` seconds."""

    def record(whole: bool) -> int:
        """One try; `whole`: the progress not yet written goes first, or this raises."""
        recorder.flush(strict=whole)
        if lease.lost.is_set():
            log.warning("job %d: lease lost (re-queued or taken over); dropping it", job.id)
            return 0
        ends = ending(result, error, lease, pruned)
        if job.study_id is not None and ends.finished:
            recorder.foresee(ends, result)
        if ends == JobStatus.cancelled:  # even with a result: the user asked to stop it
            recorder.write(mark_cancelled)
            log.info("job %d cancelled", job.id)
        elif result is not None:
            if recorder.write(finish_job, result, reproduction(recorder.sessions, job, result)) is None:
                log.info("job %d cancelled as it ended", job.id)
            else:
                log.info(
                    "job %d succeeded: test accuracy %.4f in %.1f s",
                    job.id, result.test_accuracy, result.seconds,
                )  # fmt: skip
        elif error is not None:
            recorder.write(fail_job, error)
            log.error("job %d failed: %s", job.id, error)
        elif ends == JobStatus.pruned:
            recorder.write(prune_job)
            log.info("job %d pruned by its study's pruner", job.id)
        else:
            # back to the queue (resuming from its latest epoch), or cancelled if that was asked meanwhile
            recorder.save_checkpoint(strict=whole)
            status = recorder.write(release_job)
            log.info("job %d released (%s)%s", job.id, status, " on shutdown" if stop.is_set() else "")
            return int(status == JobStatus.cancelled)
        return 1

    deadline, wait = time.monotonic() + patience, RETRY_SECONDS
    while True:
        try:
            return record(whole=time.monotonic() < deadline)
        except LeaseLost as exc:
            log.warning("job %d: %s; dropping it", job.id, exc)
            return 0
        except SQLAlchemyError as exc:
            # asked to stop (SIGTERM's grace is short), or an error that waiting will not mend: the lease
            # lapses and the job is re-queued
            if stop.is_set() or (not transient(exc) and time.monotonic() >= deadline):
                if stop.is_set() and result is None and error is None:  # stopped mid-training, not ended
                    log.error(
                        "job %d: could not hand it back to the queue (%s): it shows running until its "
                        "lease lapses (MLPLAB_LEASE_SECONDS), then another worker resumes it",
                        job.id, exc,
                    )  # fmt: skip
                else:
                    log.error("job %d: could not record how it ended: %s", job.id, exc)
                return 0
            if wait == RETRY_SECONDS:
                log.warning("job %d: could not record how it ended (%s); trying again", job.id, exc)
            if transient(exc) and not _renewed(recorder):
                log.warning("job %d: lease lost (re-queued or taken over); dropping it", job.id)
                return 0
            stop.wait(wait)
            wait = min(2 * wait, RETRY_MAX_SECONDS, beat)  # a heartbeat each try: never past the lease
        except Exception:
            log.exception("job %d: could not record how it ended", job.id)
            return 0


def _renewed(recorder: Recorder) -> bool:
    """A heartbeat for the job while its end waits to be written: False once it is no longer ours. A
    heartbeat that fails too (a row rewritten, where the model needs megabytes) changes nothing."""
    try:
        with session_scope(recorder.sessions) as session:
            return heartbeat(session, recorder.job_id, recorder.worker_id).alive
    except SQLAlchemyError:
        return True


def ending(result: TrainResult | None, error: str | None, lease: LeaseKeeper, pruned: bool) -> JobStatus:
    """The status settle() gives a job that trained to `result` or stopped with `error`."""
    if lease.cancelled.is_set():
        return JobStatus.cancelled
    if result is not None:
        return JobStatus.succeeded
    if error is not None:
        return JobStatus.failed
    return JobStatus.pruned if pruned else JobStatus.queued


def reproduction(sessions: sessionmaker[Session], job: Job, result: TrainResult) -> dict[str, Any] | None:
    """How a reproduction's model (POST /models/{id}/reproduce) compares with the original; None for
    other jobs."""
    if job.reproduces is None:
        return None
    with session_scope(sessions) as session:
        original, this = get_model(session, job.reproduces), get_job(session, job.id)
        if original is None or this is None:
            return None
        before = Trained(
            load_weights(original.weights),
            original.train_accuracy,
            original.test_accuracy,
            stored_provenance(original.job.provenance),
            original.validation_accuracy,
        )
    after = Trained(
        load_weights(result.weights),
        result.train_accuracy,
        result.test_accuracy,
        stored_provenance(this.provenance),
        result.validation_accuracy,
    )
    return compare(job.reproduces, before, after).model_dump(mode="json")


class Pruning:
    """A study's trial asks its study's pruner after each epoch whether to stop (service.search);
    a job of no study never asks."""

    def __init__(self, sessions: sessionmaker[Session], job: Job) -> None:
        self.sessions, self.job = sessions, job
        self.pruned = False

    def after(self, on_progress: Callable[[Progress], None]) -> Callable[[Progress], None]:
        """on_progress, then the pruner's question once an epoch's end is recorded."""

        def report(event: Progress) -> None:
            on_progress(event)
            if isinstance(event, EpochEnd) and self.job.study_id is not None and not self.pruned:
                self.pruned = self.ask(event)

        return report

    def ask(self, end: EpochEnd) -> bool:
        if end.validation_accuracy is None or self.job.trial_number is None:
            return False
        try:
            with session_scope(self.sessions) as session:
                study = get_study(session, self.job.study_id or 0)
                if study is None:
                    return False
                config, trials = study_trials(session, study)
            return should_prune(config, trials, self.job.trial_number, end.epoch, end.validation_accuracy)
        except (SQLAlchemyError, ValueError) as exc:  # not a reason to stop: the trial trains on
            log.warning("job %d: could not ask its study's pruner: %s", self.job.id, exc)
            return False


class LeaseKeeper(threading.Thread):
    """Renews one job's lease every `interval` seconds, on its own sessions, whatever training does.

    Sets `cancelled` when a cancel was requested and `lost` when the job was taken away.
    """

    def __init__(
        self, sessions: sessionmaker[Session], job_id: int, worker_id: str, interval: float, reach: Reach
    ) -> None:
        super().__init__(name=f"lease-{job_id}", daemon=True)
        self.sessions, self.job_id, self.worker_id, self.interval = sessions, job_id, worker_id, interval
        self.reach = reach
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self._done = threading.Event()

    def stopping(self) -> bool:
        return self.cancelled.is_set() or self.lost.is_set()

    def cancel_requested(self) -> None:
        if not self.cancelled.is_set():
            log.info("job %d: cancel requested", self.job_id)
            self.cancelled.set()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            try:
                with session_scope(self.sessions) as session:
                    lease = heartbeat(session, self.job_id, self.worker_id)
            except SQLAlchemyError as exc:  # transient (e.g. locked): try again; the lease has slack
                self.reach.failed()
                log.warning("job %d: heartbeat failed: %s", self.job_id, exc)
                continue
            self.reach.answered()
            if lease.cancel_requested:
                self.cancel_requested()
            if not lease.alive:
                self.lost.set()
                return

    def stop(self) -> None:
        self._done.set()
        self.join()


class Checkpoints:
    """Which of train()'s checkpoints to write: one every `seconds` at most, and the one after the
    second-to-last epoch (so a crash in the last epoch loses one epoch); the others wait in memory,
    the latest to be written when the worker stops (save_checkpoint)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.written_at = time.monotonic()  # training starts now: the first is due `seconds` later

    def due(self, checkpoint: Checkpoint) -> bool:
        return checkpoint.final or time.monotonic() - self.written_at >= self.seconds

    def written(self) -> None:
        self.written_at = time.monotonic()


class ThreadShare:
    """A running job's threads, following its worker's share of the host's cores (presence.py): a change
    is applied between two steps and noted in the job's provenance, since NumPy's weights then differ in
    the last bits from a run on fixed threads."""

    def __init__(
        self, wanted: Callable[[], int], threads: int, backend: str, recorder: Recorder, epoch: int
    ) -> None:
        self.wanted, self.threads, self.backend, self.recorder = wanted, threads, backend, recorder
        self.epoch = epoch  # the one under way
        self.provenance: Provenance | None = None
        self.unrecorded = False

    def after(self, on_progress: Callable[[Progress], None]) -> Callable[[Progress], None]:
        """on_progress, noting the epoch under way."""

        def report(event: Progress) -> None:
            on_progress(event)
            self.epoch = event.epoch + (1 if isinstance(event, EpochEnd) else 0)

        return report

    def follow(self) -> None:
        threads = self.wanted()
        if threads != self.threads:
            threadpool_limits(threads)  # left set: run_job's own limits restore the worker's after the job
            if self.backend == "torch":
                import torch  # loaded already: a torch job is running

                torch.set_num_threads(threads)
            self.threads = threads
            if self.provenance is not None and len(self.provenance.threads_changed) < MOST_THREAD_CHANGES:
                self.provenance.threads_changed.append((self.epoch, threads))
                self.unrecorded = True
        if self.unrecorded and self.provenance is not None:
            try:
                self.recorder.write_unless_lost(record_provenance, self.provenance.model_dump(mode="json"))
                self.unrecorded = False
            except SQLAlchemyError as exc:  # transient: written at a later step
                log.warning("job %d: could not record its threads: %s", self.recorder.job_id, exc)


class Recorder:
    """train()'s callbacks: losses buffered and written every FLUSH_SECONDS and at each epoch's end;
    epoch metrics written as they come, checkpoints when due. A lost lease stops all writing; a
    database that cannot be written keeps them for the next write, and training goes on."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        job_id: int,
        worker_id: str,
        lease: LeaseKeeper,
        checkpoints: Checkpoints,
    ) -> None:
        self.sessions, self.job_id, self.worker_id, self.lease = sessions, job_id, worker_id, lease
        self.losses: list[tuple[int, int, float]] = []
        self.steps: int | None = None
        self.every: int | None = None
        self.flushed_at = time.monotonic() - FLUSH_SECONDS  # the first step is written at once
        self.checkpoints = checkpoints
        self.unsaved: Checkpoint | None = None  # the latest checkpoint not yet written
        self.epochs: list[EpochEnd] = []  # finished epochs not yet written
        self.failure: SQLAlchemyError | None = None  # the last write's database error, until one succeeds

    def on_progress(self, event: Progress) -> None:
        if isinstance(event, StepProgress):
            self.losses.append((event.epoch, event.step, event.loss))
            self.steps, self.every = event.steps, event.every
            if time.monotonic() - self.flushed_at >= FLUSH_SECONDS:
                self.flush()
        else:
            self.epochs.append(event)
            self.flush()

    def on_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.unsaved = checkpoint
        if self.checkpoints.due(checkpoint):
            self.save_checkpoint()

    def save_checkpoint(self, strict: bool = False) -> None:
        """Write the latest checkpoint, unless it is written already (kept for the next try if the
        database cannot be written; `strict`: then raise)."""
        # Not past progress still unwritten: a claim resumes after the checkpoint and would never write it.
        if self.unsaved is not None and not (self.losses or self.epochs):
            if self.attempt(save_checkpoint, self.unsaved.epoch, self.unsaved.state)[0]:
                self.unsaved = None
                self.checkpoints.written()
            elif strict and self.failure is not None:
                raise self.failure

    def flush(self, strict: bool = False) -> None:
        """Write the buffered losses, then the finished epochs, in order. While the database cannot be
        written, they are kept and the job trains on (`strict`: raise instead)."""
        if self.losses:
            # Every FLUSH_SECONDS while training: a cancel stops the job within about that, not a heartbeat.
            written, cancel = self.attempt(record_progress, self.losses, self.steps, self.every)
            if written:
                self.losses = []
                if cancel:
                    self.lease.cancel_requested()
        while not self.losses and self.epochs and self.attempt(record_epoch, self.epochs[0])[0]:
            self.epochs.pop(0)
        self.flushed_at = time.monotonic()
        if strict and (self.losses or self.epochs) and self.failure is not None:
            raise self.failure

    def attempt(self, transition: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
        """write_unless_lost, a database error kept rather than raised: (written, what it returned)."""
        try:
            value = self.write_unless_lost(transition, *args)
        except SQLAlchemyError as exc:
            if not transient(exc):
                raise
            # restarting, locked, read only for now: what was not written is kept
            if self.failure is None:
                log.warning("job %d: cannot write to the database (%s); kept, tried again", self.job_id, exc)
            self.failure = exc
            return False, None
        if self.failure is not None:
            log.info("job %d: writing to the database again", self.job_id)
            self.failure = None
        return True, value

    def write(self, transition: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """transition(session, job_id, worker_id, *args, **kwargs) in its own short transaction."""
        try:
            with session_scope(self.sessions) as session:
                return transition(session, self.job_id, self.worker_id, *args, **kwargs)
        except LeaseLost:
            self.lease.lost.set()
            raise

    def foresee(self, status: JobStatus, result: TrainResult | None) -> None:
        """Work out what the job's study will decide once it ends with `status`, outside the write lock."""
        value = result.validation_accuracy if result is not None else None
        try:
            with session_scope(self.sessions) as session:
                foresee_end(session, self.job_id, status, None if value is None else float(value))
        except Exception:  # only a shortcut: the end decides under the lock all the same
            log.warning(
                "job %d: could not work out its study's next trials ahead", self.job_id, exc_info=True
            )

    def write_unless_lost(self, transition: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # Inside train(): a lost lease is not an error of the job; should_stop() ends training next.
        if not self.lease.lost.is_set():
            try:
                return self.write(transition, *args, **kwargs)
            except LeaseLost as exc:
                log.warning("job %d: %s", self.job_id, exc)
        return None


def _cuda_available() -> bool:
    import torch  # here alone: a worker on NumPy jobs never pays for it otherwise

    return bool(torch.cuda.is_available())


def main(argv: list[str] | None = None, prog: str = "python -m workers") -> int:
    """`python -m workers [--once]` (or `mlplab worker`, its `prog` in messages): SIGTERM/SIGINT stop
    after the current step; a second one at once."""
    parser = argparse.ArgumentParser(prog=prog, description="Train queued mlplab jobs.")
    parser.add_argument("--once", action="store_true", help="process the queued jobs, then exit")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        settings = get_settings()
    except SettingsError as exc:
        parser.exit(2, f"{parser.prog}: {exc}\n")
    if settings.torch_device == "cuda" and not _cuda_available():  # else every torch job it claims fails
        parser.exit(
            2,
            f"{parser.prog}: MLPLAB_TORCH_DEVICE: cuda, but this machine's torch sees no CUDA device "
            "('auto' uses one where there is one)\n",
        )

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("%s again: exiting now", name)
            os._exit(128 + signum)
        log.info(
            "%s: stopping; a job it is training goes back to the queue (send it again to exit at once)", name
        )
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # The loop runs in a thread and the main thread only waits: Python runs signal handlers in the
    # main thread between bytecodes, so a main thread inside a seconds-long matrix product would
    # hear nothing until it returned, and two signals sent meanwhile would arrive as one.
    failure: list[BaseException] = []

    def loop() -> None:
        try:
            run_worker(settings, once=args.once, stop_event=stop)
        except BaseException as exc:  # re-raised in the main thread, as if the loop had run there
            failure.append(exc)

    thread = threading.Thread(target=loop, name="worker-loop")
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    if failure:
        if isinstance(failure[0], Exception) and transient(failure[0]):  # unreachable, refused: a line
            parser.exit(1, f"{parser.prog}: {database_error(settings.database_url, failure[0])}\n")
        if isinstance(failure[0], UnknownRevision | MigrationLockHeld | DatabaseFolderMissing):
            parser.exit(1, f"{parser.prog}: {failure[0]}\n")
        raise failure[0]
    return 0
