"""The workers that are alive, and what each one trains."""

from __future__ import annotations

from fastapi import Response
from sqlalchemy.orm import Session

from service.api.deps import DatabaseDep, SettingsDep, reader_router
from service.api.presenters import json_response
from service.api.schemas import WorkerPublic, WorkersPublic
from service.store.queries import live_workers

router = reader_router("workers", "/workers")


def _workers(session: Session, /, lease_seconds: float) -> WorkersPublic:
    rows = live_workers(session, lease_seconds)
    return WorkersPublic(
        data=[WorkerPublic.model_validate(w, from_attributes=True) for w in rows], count=len(rows)
    )


@router.get("", response_model=WorkersPublic)
async def read_workers(database: DatabaseDep, settings: SettingsDep) -> Response:
    """The live workers (a heartbeat younger than MLPLAB_LEASE_SECONDS), with the job each trains."""
    return json_response(await database.run(_workers, settings.lease_seconds))
