"""The workers that are alive, and what each one trains."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import ReaderDep, SessionDep, SettingsDep
from service.api.schemas import WorkerPublic, WorkersPublic
from service.errors import PROBLEM_RESPONSES
from service.store.queries import live_workers

router = APIRouter(prefix="/workers", tags=["workers"], dependencies=[ReaderDep], responses=PROBLEM_RESPONSES)


@router.get("", response_model=WorkersPublic)
def read_workers(session: SessionDep, settings: SettingsDep) -> WorkersPublic:
    """The workers whose heartbeat is younger than MLPLAB_LEASE_SECONDS, with the job each trains."""
    rows = live_workers(session, settings.lease_seconds)
    return WorkersPublic(
        data=[WorkerPublic.model_validate(w, from_attributes=True) for w in rows], count=len(rows)
    )
