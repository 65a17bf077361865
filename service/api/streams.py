"""One reader per API process for all its open event streams (routes/events.py).

Every POLL_SECONDS, and at once when a stream opens, the reader reads what is new for every stream
in one short transaction, one database slot and one thread-pool hop, however many streams are open,
and hands each stream its part. Streams that follow one job from the same point share one read.
A stream that has not yet taken its last part (a slow client) is skipped until it has: nothing
queues up for it. At most MLPLAB_MAX_STREAMS streams per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi.sse import format_sse_event
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from service.api.presenters import epoch_points, job_public
from service.api.schemas import MAX_CURVE_POINTS, JobPublic
from service.errors import ProblemError
from service.store.db import session_scope, transient
from service.store.models import EpochMetric, Job
from service.store.queries import get_jobs_by_id, get_loss_curve

log = logging.getLogger("mlplab.api")
SERVER_LOG = "uvicorn.error"  # where uvicorn reports a request that ended in an exception

POLL_SECONDS = 0.5  # how often the open streams' jobs are read
MIN_GAP_SECONDS = 0.05  # between two reads, however fast streams open
RETRY_AFTER_SECONDS = 5  # a refused stream's Retry-After

# (job id, last step sent, last epoch sent, the attempt they were of or None): streams that share one
# share a read
Cursor = tuple[int, int, int, int | None]


def sse(
    event: str | None = None, data: Any = None, event_id: str | None = None, retry: int | None = None
) -> bytes:
    """One Server-Sent Event as FastAPI encodes it (fastapi.sse), its data one line of compact JSON."""
    text = None if data is None else json.dumps(data, separators=(",", ":"))
    return format_sse_event(data_str=text, event=event, id=event_id, retry=retry)


@dataclass
class Snapshot:
    """What one read saw for a cursor: the job, its rows after the cursor, and the cursor after them."""

    job: JobPublic
    rows: int  # how many progress and epoch events
    events: bytes  # those events, encoded once for every stream that shares the cursor, each with its id
    step: int
    epoch: int


@dataclass(eq=False)
class Subscription:
    """One open stream: where it is in its job, and the read waiting for it."""

    job_id: int
    step: int  # the last step read for it (its progress events' ids carry it, for Last-Event-ID)
    epoch: int
    client: str = ""  # the address it was opened from
    attempt: int | None = None  # the attempt its step and epoch are of; None until its first read
    seen: tuple[str, int] | None = None  # (status, attempts) of the last read handed over
    _snapshot: Snapshot | None = None
    _error: BaseException | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def cursor(self) -> Cursor:
        return (self.job_id, self.step, self.epoch, self.attempt)

    @property
    def waiting(self) -> bool:
        """It has taken its last read: the reader may read for it again."""
        return not self._ready.is_set()

    async def next(self) -> Snapshot | None:
        """The next read with something new; None when the job does not exist; raises what a read raised."""
        await self._ready.wait()
        self._ready.clear()
        if self._error is not None:
            raise self._error
        snapshot, self._snapshot = self._snapshot, None
        return snapshot

    def deliver(self, snapshot: Snapshot | None) -> None:
        if snapshot is not None:
            state = (str(snapshot.job.status), snapshot.job.attempts)
            if not snapshot.rows and state == self.seen:
                return  # nothing new: do not wake the stream
            self.seen, self.step, self.epoch = state, snapshot.step, snapshot.epoch
            self.attempt = snapshot.job.attempts
        self._snapshot = snapshot
        self._ready.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._ready.set()


def read_cursors(factory: sessionmaker[Session], cursors: Iterable[Cursor]) -> dict[Cursor, Snapshot]:
    """For each cursor whose job exists, a Snapshot of its rows after the cursor; one transaction for all."""
    cursors = list(cursors)
    with session_scope(factory) as session:  # one transaction: the rows and the statuses agree
        jobs = get_jobs_by_id(session, (c[0] for c in cursors))
        return {c: _snapshot(session, jobs[c[0]], *c[1:]) for c in cursors if c[0] in jobs}


def _snapshot(session: Session, job: Job, step: int, epoch: int, attempt: int | None) -> Snapshot:
    keyed: list[tuple[tuple[int, int, int], str, dict[str, Any]]] = []
    if attempt is not None and attempt != job.attempts:  # it trains again from its checkpoint: read anew
        step, epoch = 0, 0
    elif step > job.step or epoch > job.epoch:
        # past the job's newest: back in the queue, its rows past the checkpoint gone (nothing new), or an
        # id of no known attempt (forged, or from an older API): read it all
        step, epoch = (job.step, job.epoch) if attempt is not None else (0, 0)
    # The worker writes an epoch's metrics after its last loss, and job.step/epoch are those of the
    # newest loss: a job whose newest loss is not past the cursor has no row to read.
    if job.step > step or job.epoch > epoch:
        losses, _ = get_loss_curve(session, job.id, MAX_CURVE_POINTS, after_step=step)
        keyed += [
            ((e, 0, s), "progress", {"epoch": e, "step": s, "steps": job.steps, "loss": x})
            for e, s, x in losses
        ]
        epochs = session.scalars(
            select(EpochMetric)
            .where(EpochMetric.job_id == job.id, EpochMetric.epoch > epoch)
            .order_by(EpochMetric.epoch)
        )
        keyed += [((p.epoch, 1, 0), "epoch", p.model_dump()) for p in epoch_points(job, epochs)]
        keyed.sort(key=lambda k: k[0])  # an epoch's losses, then that epoch's metrics
    events = []
    for _, event, data in keyed:  # an id says how far the client got: Last-Event-ID resumes after it
        step, epoch = (data["step"], epoch) if event == "progress" else (step, data["epoch"])
        events.append(sse(event, data, f"{step}-{epoch}-{job.attempts}"))
    return Snapshot(job_public(job), len(events), b"".join(events), step, epoch)


class ServerStopping(Exception):
    """The API process is stopping: its streams end now, whole; their clients reconnect (Last-Event-ID)."""


def stopping_problem() -> ProblemError:
    """The 503 for what a stopping process refuses: a new event stream, a study still to be written."""
    return ProblemError(
        503,
        "API stopping",
        f"This API process is stopping. Retry in {RETRY_AFTER_SECONDS} s (another process, or its restart).",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


_HUBS: weakref.WeakSet[EventHub] = weakref.WeakSet()


def end_streams() -> None:
    """As the server shuts down (cli/protocol.py): every open stream ends at once, cleanly. Each was cut
    past the grace period instead, mid-chunk (curl: exit 18), with an ERROR line in the log."""
    for hub in list(_HUBS):
        hub.stop()


class EventHub:
    """The process's open streams and the one task that reads for them all (run it with `run()`)."""

    def __init__(
        self, factory: sessionmaker[Session], slots: asyncio.Semaphore, max_streams: int, per_client: int
    ) -> None:
        self.factory, self.slots, self.max_streams, self.per_client = factory, slots, max_streams, per_client
        self.subscriptions: set[Subscription] = set()
        self.stopping = False
        self._wake = asyncio.Event()
        _HUBS.add(self)

    def stop(self) -> None:
        """End every open stream and refuse new ones: the process is stopping."""
        self.stopping = True
        for subscription in self.subscriptions:
            subscription.fail(ServerStopping())

    def subscribe(
        self, job_id: int, step: int, epoch: int, client: str = "", attempt: int | None = None
    ) -> Subscription:
        """A new stream, read for at once; 503 when MLPLAB_MAX_STREAMS are open, 429 when `client` has
        MLPLAB_MAX_STREAMS_PER_CLIENT open, or the process is stopping."""
        if self.stopping:
            raise stopping_problem()
        if len(self.subscriptions) >= self.max_streams:
            raise ProblemError(
                503,
                "Too many event streams",
                f"This API process has {self.max_streams} event streams open, its limit (MLPLAB_MAX_STREAMS). "
                f"Retry in {RETRY_AFTER_SECONDS} s, or poll GET /jobs/{{id}} meanwhile.",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        if sum(s.client == client for s in self.subscriptions) >= self.per_client:
            raise ProblemError(
                429,
                "Too many event streams from this client",
                f"This client has {self.per_client} event streams open on this API process, its limit "
                f"(MLPLAB_MAX_STREAMS_PER_CLIENT). Close one, retry in {RETRY_AFTER_SECONDS} s, or poll "
                "GET /jobs/{id} meanwhile.",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        subscription = Subscription(job_id, step, epoch, client, attempt)
        self.subscriptions.add(subscription)
        self._wake.set()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)

    async def run(self) -> None:
        """Read for the open streams every POLL_SECONDS, and when one opens; until cancelled."""
        while True:
            if not self.subscriptions:
                await self._wake.wait()
            self._wake.clear()
            await self.read_once()
            await asyncio.sleep(MIN_GAP_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS - MIN_GAP_SECONDS)

    async def read_once(self) -> None:
        """One read for every stream that has taken its last one, each handed its part."""
        groups: dict[Cursor, list[Subscription]] = defaultdict(list)
        for subscription in self.subscriptions:
            if subscription.waiting:
                groups[subscription.cursor].append(subscription)
        if not groups:
            return
        try:
            snapshots = await self._read(list(groups))
        except Exception:  # one cursor's read may fail (its values, or a bug): read each alone
            log.exception("event streams: reading their jobs failed; reading each stream's alone")
            pending = list(groups.items())
            while pending:
                cursor, subscriptions = pending.pop(0)
                down = await self._read_alone(cursor, subscriptions)
                if down is not None:  # the database itself: the others end at once, not a timeout each
                    for subscription in (s for _, group in pending for s in group):
                        subscription.fail(down)
                    return
            return
        for cursor, subscriptions in groups.items():
            for subscription in subscriptions:
                subscription.deliver(snapshots.get(cursor))

    async def _read(self, cursors: list[Cursor]) -> dict[Cursor, Snapshot]:
        async with self.slots:  # main.py: db_slots
            return await run_in_threadpool(read_cursors, self.factory, cursors)

    async def _read_alone(self, cursor: Cursor, subscriptions: list[Subscription]) -> Exception | None:
        """One cursor's read: delivered, or its streams end (their clients reconnect); no other's does.
        Returns the error when it was the database's (unreachable, locked), for the caller to end all."""
        try:
            snapshot = (await self._read([cursor])).get(cursor)
        except Exception as exc:
            log.warning("event streams: reading job %d failed: %s", cursor[0], exc)
            for subscription in subscriptions:
                subscription.fail(exc)
            return exc if transient(exc) else None
        for subscription in subscriptions:
            subscription.deliver(snapshot)
        return None


class CutAtShutdown(logging.Filter):
    """uvicorn cancels the requests still open past its shutdown's grace period (a slow upload; event
    streams end before it, end_streams) and logs each as 'Exception in ASGI application' with a
    traceback: one line instead, for a cut that is deliberate and that a client recovers from by retrying."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:  # anyio's task groups
            exc = exc.exceptions[0]
        if isinstance(exc, asyncio.CancelledError):
            record.msg, record.args, record.exc_info, record.exc_text = (
                "a request still open past the shutdown's grace period was cut; its client may retry it",
                (),
                None,
                None,
            )
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True

    @classmethod
    def install(cls) -> None:
        """On uvicorn's logger, once a process (tests start many apps)."""
        logger = logging.getLogger(SERVER_LOG)
        if not any(isinstance(f, cls) for f in logger.filters):
            logger.addFilter(cls())
