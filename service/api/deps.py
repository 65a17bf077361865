"""Dependencies, typed once: the session, the settings, and lookups that raise the right problem."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.concurrency import contextmanager_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.api.database import Database
from service.api.guard import TICKET_PARAM, check_ticket, check_token
from service.api.inference import Inference
from service.api.monitoring import Monitoring
from service.api.params import ALIAS_NAMED, ID_RANGE, DeclaredRoute, Whole, as_declared, is_id
from service.api.presenters import (
    IdsQuery,
    distinct_models,
    parse_ids,
    require_job,
    require_study,
    require_trained,
    trained_model,
)
from service.api.schemas import MODEL_ID_HEADER, MODEL_PATTERN
from service.errors import PROBLEM_RESPONSES, Responses, invalid
from service.quoting import echo
from service.settings import Settings
from service.store.db import session_scope
from service.store.models import Job, Study, TrainedModel


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


async def _monitoring(request: Request) -> Monitoring:
    monitoring: Monitoring = request.app.state.monitoring
    return monitoring


MonitoringDep = Annotated[Monitoring, Depends(_monitoring)]


def _job(job_id: Whole, session: SessionDep) -> Job:
    return require_job(session, job_id)


MODEL_REF = "its id (12), or an alias that names it now (champion)"
ModelPath = Annotated[str, Path(pattern=MODEL_PATTERN, description=f"A model: {MODEL_REF}.")]


@dataclass(frozen=True)
class ModelRef:
    """The model a request names, resolved once for the whole request: its id, and the alias used."""

    id: int
    alias: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        """Which model answered (the route marks an answer about an alias uncacheable: ALIAS_NAMED)."""
        return {MODEL_ID_HEADER: str(self.id)}


async def resolve_model(model: str, inference: Inference, name: str = "path.model") -> ModelRef:
    """The model that `model` (an id, or an alias: MODEL_PATTERN) names; 404 for an unknown alias, 422 for
    an id no model can have (named `name`)."""
    # An id needs no query; an alias at most one, reused for MLPLAB_ALIAS_CACHE_SECONDS (Inference.resolve).
    if model.isdigit():
        if not is_id(model):
            raise invalid(name, f"Input should be a model id, {ID_RANGE}, or an alias (got {echo(model)})")
        return ModelRef(int(model))
    ALIAS_NAMED.set(True)  # DeclaredRoute: no cache may keep the answer
    return ModelRef(await inference.resolve(model), model)


async def _model_ref(model: ModelPath, inference: InferenceDep, response: Response) -> ModelRef:
    ref = await resolve_model(model, inference)
    response.headers.update(ref.headers)  # a route that builds its own Response adds ref.headers itself
    return ref


async def _model_refs(ids: IdsQuery, inference: InferenceDep) -> list[ModelRef]:
    names = parse_ids(ids)
    refs = [await resolve_model(name, inference) for name in names]
    distinct_models(names, [ref.id for ref in refs])
    return refs


ModelRefDep = Annotated[ModelRef, Depends(_model_ref)]
ModelRefsDep = Annotated[list[ModelRef], Depends(_model_refs)]  # those of ?ids=3,7,champion, in that order


def _trained_job(ref: ModelRefDep, session: SessionDep) -> Job:
    return require_trained(session, ref.id)


def _model(ref: ModelRefDep, session: SessionDep) -> TrainedModel:
    return trained_model(session, ref.id)


def _study(study_id: Whole, session: SessionDep) -> Study:
    return require_study(session, study_id)


JobDep = Annotated[Job, Depends(_job)]
StudyDep = Annotated[Study, Depends(_study)]
TrainedJobDep = Annotated[Job, Depends(_trained_job)]  # the job of a trained model, without its weights
ModelDep = Annotated[TrainedModel, Depends(_model)]


# Declares the bearer token in the OpenAPI document, so that /docs offers "Authorize" (check_token checks it).
BEARER = HTTPBearer(auto_error=False, scheme_name="token", description="MLPLAB_API_TOKEN")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]


async def require_writer(request: Request, _: BearerDep) -> None:
    """State-changing requests need the token when MLPLAB_API_TOKEN is set (guard.py has already checked
    it, before the body, for every method but GET, HEAD, OPTIONS; this holds for any route that writes)."""
    check_token(request.headers, request.app.state.settings)


async def require_reader(request: Request, _: BearerDep) -> None:
    """Reads need the token only with MLPLAB_PROTECT_READS=true: in the header, or as a read ticket in the
    query (`?ticket=`) where there is no header. A wrong token sent to an open read is refused all the
    same (RFC 6750 3.1): a client holding a stale one learns it before its first write."""
    settings: Settings = request.app.state.settings
    if not settings.protect_reads:
        if settings.api_token is not None and "authorization" in request.headers:
            check_token(request.headers, settings)
        return
    tickets = request.query_params.getlist(TICKET_PARAM)
    if len(tickets) > 1:  # one valid among them let the others through, or not, by their order
        raise invalid(f"query.{TICKET_PARAM}", f"given {len(tickets)} times; give it once")
    ticket = tickets[0] if tickets else None
    if ticket is not None and "authorization" not in request.headers:
        check_ticket(ticket, settings, time.time())
    else:
        check_token(request.headers, settings)


WriterDep = Depends(require_writer)
ReaderDep = Depends(require_reader)


def reader_router(tag: str, prefix: str = "", responses: Responses | None = None) -> APIRouter:
    """A router whose routes need the reader's token (when MLPLAB_PROTECT_READS asks for one), refuse what
    they do not declare (as_declared, after the token: a query parameter twice or unknown, a body where
    none is read, a JSON key twice), and document the problems any route may answer, and `responses`."""
    return APIRouter(
        prefix=prefix,
        tags=[tag],
        route_class=DeclaredRoute,
        dependencies=[ReaderDep, Depends(as_declared)],
        responses=PROBLEM_RESPONSES | (responses or {}),
    )


__all__ = [
    "SessionDep",
    "SettingsDep",
    "DatabaseDep",
    "InferenceDep",
    "JobDep",
    "ModelRef",
    "ModelRefDep",
    "ModelRefsDep",
    "MODEL_REF",
    "resolve_model",
    "TrainedJobDep",
    "ModelDep",
    "StudyDep",
    "WriterDep",
    "ReaderDep",
]
