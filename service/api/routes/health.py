"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.api.presenters import dataset_public
from service.api.schemas import Health, Readiness
from service.ml.data import DATASETS
from service.store.db import is_migrated

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process answers."""
    return Health()


@router.get(
    "/readyz", response_model=Readiness, responses={503: {"model": Readiness, "description": "Not ready"}}
)
def readyz(request: Request) -> JSONResponse:
    """200 when the database is reachable and migrated; also says whether each dataset is present."""
    settings = request.app.state.settings
    engine = request.app.state.engine
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        database = "migrated" if is_migrated(engine) else "not migrated"
    except Exception as exc:  # the point of this endpoint is to report it, not to raise it
        database = f"unreachable: {type(exc).__name__}"
    body = Readiness(
        status="ready" if database == "migrated" else "not ready",
        database=database,
        datasets=[dataset_public(name, settings) for name in DATASETS],
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.status == "ready" else 503)
