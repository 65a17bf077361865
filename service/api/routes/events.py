"""A job's live progress as Server-Sent Events, read from the database the worker writes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from service.api.deps import ReaderDep
from service.api.presenters import job_public
from service.api.schemas import EpochPoint, JobPublic
from service.errors import PROBLEM_RESPONSES, Responses, not_found
from service.store.db import session_scope
from service.store.models import JobStatus
from service.store.queries import get_epochs, get_job, get_losses

router = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=[ReaderDep], responses=PROBLEM_RESPONSES)

POLL_SECONDS = 0.5  # how often the stream reads the job's new rows
KEEPALIVE_SECONDS = 15.0  # a comment line after this long without an event, so proxies keep the connection

EVENTS_DOC: Responses = {
    200: {
        "content": {"text/event-stream": {}},
        "description": """Server-Sent Events, in order:

- `status`: `{"status", "attempts"}` first, and whenever the job changes state;
- `progress`: `{"epoch", "step", "steps", "loss"}` for each loss the worker records (every log_every steps);
- `epoch`: as each epoch ends, the epoch as `GET /jobs/{id}/epochs` lists it (`{"epoch", "loss",
  "train_accuracy", "test_accuracy", "seconds", "validation_loss", "validation_accuracy"}`);
- `end`: the final job (as `GET /jobs/{id}`), after which the stream closes.

Events carry ids: a client that reconnects with `Last-Event-ID` gets only what it had not seen.""",
    }
}


@dataclass
class Snapshot:
    """What one short read transaction saw: the job, and its rows after what was already sent."""

    job: JobPublic
    rows: list[tuple[str, dict[str, Any]]]  # (event, data) in the order they happened


def read_snapshot(
    factory: sessionmaker[Session], job_id: int, after_step: int, after_epoch: int
) -> Snapshot | None:
    """The job and its losses after `after_step` and epochs after `after_epoch`; None if there is no such job."""
    with session_scope(factory) as session:  # one transaction: the rows and the status agree
        job = get_job(session, job_id)
        if job is None:
            return None
        steps = job.steps
        keyed = [
            (
                (r.epoch, 0, r.step),
                "progress",
                {"epoch": r.epoch, "step": r.step, "steps": steps, "loss": r.loss},
            )
            for r in get_losses(session, job_id, after_step)
        ]
        keyed += [
            ((r.epoch, 1, 0), "epoch", EpochPoint.model_validate(r, from_attributes=True).model_dump())
            for r in get_epochs(session, job_id)
            if r.epoch > after_epoch
        ]
        keyed.sort(key=lambda k: k[0])  # an epoch's losses, then that epoch's metrics
        return Snapshot(job=job_public(job), rows=[(event, data) for _, event, data in keyed])


def sse(event: str, data: Any, event_id: str | None = None) -> str:
    """One event in the text/event-stream format (the data is one line of JSON)."""
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n"


def _resume_point(last_event_id: str | None) -> tuple[int, int]:
    """(step, epoch) already seen, from an id this stream sent ('<step>-<epoch>'); (0, 0) otherwise."""
    try:
        step, epoch = (int(part) for part in (last_event_id or "").split("-"))
        return max(step, 0), max(epoch, 0)
    except ValueError:
        return 0, 0


async def _read(
    request: Request, factory: sessionmaker[Session], job_id: int, step: int, epoch: int
) -> Snapshot | None:
    # A slot per read, not per stream: a stream lasts as long as its job (main.py: db_slots).
    async with request.app.state.db_slots:
        return await run_in_threadpool(read_snapshot, factory, job_id, step, epoch)


async def _stream(
    request: Request, factory: sessionmaker[Session], job_id: int, first: Snapshot, step: int, epoch: int
) -> AsyncIterator[str]:
    snapshot: Snapshot | None = first
    status = None
    quiet_since = time.monotonic()
    yield "retry: 2000\n\n"
    while snapshot is not None:
        finished = snapshot.job.status.finished
        # A start comes before its progress: a job seen queued (or not at all) and next finished,
        # with rows, ran in between - a replay, or a job shorter than a poll - so say so first.
        shown = "running" if finished and snapshot.rows and status != "running" else snapshot.job.status
        if shown != status and not JobStatus(shown).finished:
            status = shown
            yield sse("status", {"status": status, "attempts": snapshot.job.attempts})
            quiet_since = time.monotonic()
        for event, data in snapshot.rows:
            if event == "progress":
                step = data["step"]
            else:
                epoch = data["epoch"]
            yield sse(event, data, f"{step}-{epoch}")
            quiet_since = time.monotonic()
        if finished:  # an end comes after the last progress
            yield sse("status", {"status": snapshot.job.status, "attempts": snapshot.job.attempts})
            yield sse("end", snapshot.job.model_dump(mode="json"))
            return
        if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(POLL_SECONDS)
        if await request.is_disconnected():
            return
        snapshot = await _read(request, factory, job_id, step, epoch)


@router.get("/{job_id}/events", response_class=StreamingResponse, responses=EVENTS_DOC)
async def job_events(job_id: int, request: Request) -> StreamingResponse:
    """Follow a job live: its progress, each finished epoch, then its end (Server-Sent Events)."""
    factory = request.app.state.sessionmaker
    step, epoch = _resume_point(request.headers.get("last-event-id"))
    first = await _read(request, factory, job_id, step, epoch)
    if first is None:
        raise not_found("job", job_id)
    return StreamingResponse(
        _stream(request, factory, job_id, first, step, epoch),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
