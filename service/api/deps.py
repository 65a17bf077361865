"""Dependencies, typed once: the session, the settings, and lookups that raise the right problem."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import contextmanager_in_threadpool
from sqlalchemy.orm import Session

from service.api.database import Database
from service.api.guard import check_token
from service.api.inference import Inference
from service.api.presenters import IdsQuery, parse_ids, require_trained, trained_model
from service.errors import not_found
from service.settings import Settings
from service.store.db import session_scope
from service.store.models import Job, TrainedModel
from service.store.queries import get_job


async def _settings(request: Request) -> Settings:  # async: no threadpool hop
    settings: Settings = request.app.state.settings
    return settings


async def _session(request: Request) -> AsyncIterator[Session]:
    """One unit of work (session_scope), inside a slot (main.py: db_slots)."""
    # The slot is awaited holding no thread; the scope runs in the pool, its exit shielded from cancellation.
    async with (
        request.app.state.db_slots,
        contextmanager_in_threadpool(session_scope(request.app.state.sessionmaker)) as session,
    ):
        yield session


async def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def _inference(request: Request) -> Inference:
    inference: Inference = request.app.state.inference
    return inference


SettingsDep = Annotated[Settings, Depends(_settings)]
# scope="function": commit before the response is sent (FastAPI's default runs a yield dependency's exit
# after it), so a client that got 202 can read what it created, and a failed commit is a 500, not a 202.
SessionDep = Annotated[Session, Depends(_session, scope="function")]
DatabaseDep = Annotated[Database, Depends(_database)]  # await database.run(fn, ...): one thread hop
InferenceDep = Annotated[Inference, Depends(_inference)]


def _job(job_id: int, session: SessionDep) -> Job:
    job = get_job(session, job_id)
    if job is None:
        raise not_found("job", job_id)
    return job


def _trained_job(job_id: int, session: SessionDep) -> Job:
    return require_trained(session, job_id)


def _trained_jobs(ids: IdsQuery, session: SessionDep) -> list[Job]:
    return [require_trained(session, job_id) for job_id in parse_ids(ids)]


def _model(job_id: int, session: SessionDep) -> TrainedModel:
    return trained_model(session, job_id)


JobDep = Annotated[Job, Depends(_job)]
TrainedJobDep = Annotated[Job, Depends(_trained_job)]  # the job of a trained model, without its weights
TrainedJobsDep = Annotated[list[Job], Depends(_trained_jobs)]  # those of ?ids=3,7,12, in that order
ModelDep = Annotated[TrainedModel, Depends(_model)]


async def require_writer(request: Request) -> None:
    """State-changing requests need the token when MLPLAB_API_TOKEN is set (guard.py has already checked
    it, before the body, for every method but GET, HEAD, OPTIONS; this holds for any route that writes)."""
    check_token(request.headers, request.app.state.settings)


async def require_reader(request: Request) -> None:
    """Reads need the token only with MLPLAB_PROTECT_READS=true."""
    settings: Settings = request.app.state.settings
    if settings.protect_reads:
        check_token(request.headers, settings)


WriterDep = Depends(require_writer)
ReaderDep = Depends(require_reader)

__all__ = [
    "SessionDep",
    "SettingsDep",
    "DatabaseDep",
    "InferenceDep",
    "JobDep",
    "TrainedJobDep",
    "TrainedJobsDep",
    "ModelDep",
    "WriterDep",
    "ReaderDep",
]
