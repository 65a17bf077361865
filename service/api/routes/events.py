"""A job's live progress as Server-Sent Events, read from the database the worker writes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Header, Request
from fastapi.responses import StreamingResponse
from fastapi.sse import KEEPALIVE_COMMENT, EventSourceResponse
from starlette.background import BackgroundTask

from service.api.deps import reader_router
from service.api.params import Whole
from service.api.schemas import MAX_CURVE_POINTS, EpochPoint
from service.api.streams import EventHub, ServerStopping, Snapshot, Subscription, sse, stopping_problem
from service.errors import Responses, not_found, problem_doc
from service.store.models import JobStatus
from service.turns import CLIENT

log = logging.getLogger("mlplab.api")

router = reader_router("jobs", "/jobs")

RETRY_MS = 2000  # how long a browser waits before it reconnects
KEEPALIVE_SECONDS = 15.0  # a comment after this long without an event, so proxies keep the connection
# The last line of a stream the API ends as it stops: a comment, which EventSource ignores as it reconnects
STOPPING_COMMENT = b": the API is stopping; reconnect with Last-Event-ID to resume\n\n"
# What FastAPI sends with an event stream: no caching, and no buffering by nginx.
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

EPOCH_FIELDS = ", ".join(f'"{name}"' for name in EpochPoint.model_fields)
EVENTS_DOC: Responses = {
    200: {
        "content": {"text/event-stream": {}},
        "description": f"""Server-Sent Events, in order:

- `status`: `{{"status", "attempts"}}` first, and whenever the job changes state or starts a new attempt
  (it then trains again from its checkpoint, and its `progress` and `epoch` events start over);
- `progress`: `{{"epoch", "step", "steps", "loss"}}` for each loss the worker records (the first step's,
  every `loss_every` steps and each epoch's last); a replay of more than {MAX_CURVE_POINTS:,} of them
  (a finished job, or a reconnection long after) comes as {MAX_CURVE_POINTS:,}: the first and last
  losses as recorded, means over equal spans of steps between;
- `epoch`: as each epoch ends, the epoch as `GET /jobs/{{id}}/epochs` lists it (`{{{EPOCH_FIELDS}}}`);
- `end`: the final job (as `GET /jobs/{{id}}`), after which the stream closes.

Events carry ids: a client that reconnects with `Last-Event-ID` gets only what it had not seen. A stream
the API ends as it stops closes after a comment line saying so, without `end`: reconnect to resume.""",
    },
    503: problem_doc(
        "MLPLAB_MAX_STREAMS event streams are open on this API process, or it is stopping (Retry-After)"
    ),
    429: problem_doc("This client has MLPLAB_MAX_STREAMS_PER_CLIENT event streams open (Retry-After)"),
}


MOST_EVENT_ID_PART = 2**31 - 1  # steps and epochs are INTEGER columns: a larger id is none this API sent


def _resume_point(last_event_id: str | None) -> tuple[int, int, int | None]:
    """(step, epoch, attempt) already seen, from an id this stream sent ('<step>-<epoch>-<attempt>'; an
    older API's '<step>-<epoch>' has no attempt); (0, 0, None) otherwise."""
    try:
        numbers = [int(part) for part in (last_event_id or "").split("-")]
    except ValueError:
        return 0, 0, None
    if len(numbers) not in (2, 3) or max(numbers) > MOST_EVENT_ID_PART:
        return 0, 0, None
    return max(numbers[0], 0), max(numbers[1], 0), numbers[2] if len(numbers) == 3 else None


# Not response_class=EventSourceResponse: FastAPI would then expect a generator of events, whose
# machinery costs a write per event (docs/reliability.md, "One reader for all event streams").
@router.get("/{job_id}/events", response_class=StreamingResponse, responses=EVENTS_DOC)
async def job_events(
    job_id: Whole,
    request: Request,
    last_event_id: Annotated[
        str | None,
        Header(description="Resume after this event's id (step-epoch-attempt, as the stream sent it)"),
    ] = None,
) -> EventSourceResponse:
    """Follow a job live: its progress, each finished epoch, then its end (Server-Sent Events)."""
    hub: EventHub = request.app.state.events
    client = CLIENT.get() or ""  # keyed as every share is (turns.client_key)
    step, epoch, attempt = _resume_point(last_event_id)
    subscription = hub.subscribe(job_id, step, epoch, client, attempt)  # 503 / 429 when full
    try:
        first = await subscription.next()
        if first is None:
            raise not_found("job", job_id)
    except ServerStopping:  # between its subscription and its first read
        hub.unsubscribe(subscription)
        raise stopping_problem() from None
    except BaseException:
        hub.unsubscribe(subscription)
        raise
    # Unsubscribed when the stream ends, however it ends (the background runs after a disconnect too).
    return EventSourceResponse(
        _stream(hub, subscription, first),
        headers=STREAM_HEADERS,
        background=BackgroundTask(hub.unsubscribe, subscription),
    )


async def _stream(hub: EventHub, subscription: Subscription, snapshot: Snapshot) -> AsyncIterator[bytes]:
    """Each read's events as one chunk (one write for all of them), then `end` once the job has ended."""
    seen: Shown | None = None
    try:
        yield sse(retry=RETRY_MS)
        while True:
            chunk, seen = _chunk(snapshot, seen)
            yield chunk
            if snapshot.job.status.finished:
                return
            while True:
                try:
                    async with asyncio.timeout(KEEPALIVE_SECONDS):
                        following = await subscription.next()
                    break
                except TimeoutError:
                    yield KEEPALIVE_COMMENT
                except ServerStopping:
                    yield STOPPING_COMMENT
                    return
                except Exception as exc:  # the database, mid-stream: end it whole (a client may resume by id)
                    log.warning("event stream of job %d ended: %s", subscription.cursor[0], exc)
                    return
            if following is None:  # the job is gone
                return
            snapshot = following
    finally:
        hub.unsubscribe(subscription)


Shown = tuple[JobStatus, int]  # the status and attempt a stream last announced


def _chunk(snapshot: Snapshot, seen: Shown | None) -> tuple[bytes, Shown | None]:
    """The events of one read for a stream that last announced `seen`, and what it announced next. A new
    attempt is announced too: its job trains again from its checkpoint, and its progress starts over."""
    job, parts = snapshot.job, []
    # A start comes before its progress: a job seen queued (or not at all) and next finished, with
    # rows, ran in between - a replay, or a job shorter than a poll - so say so first.
    shown = (
        JobStatus.running
        if job.status.finished and snapshot.rows and (seen is None or seen[0] != JobStatus.running)
        else job.status
    )
    if (shown, job.attempts) != seen and not shown.finished:
        seen = (shown, job.attempts)
        parts.append(sse("status", {"status": shown, "attempts": job.attempts}))
    parts.append(snapshot.events)
    if job.status.finished:  # an end comes after the last progress
        parts.append(sse("status", {"status": job.status, "attempts": job.attempts}))
        parts.append(sse("end", job.model_dump(mode="json")))
    return b"".join(parts), seen
