"""Liveness and readiness."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text

from service.api.presenters import dataset_public
from service.api.schemas import Health, Readiness
from service.ml.data import DATASETS
from service.store.db import is_migrated, read_each_table

log = logging.getLogger("mlplab.api")
router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process answers."""
    return Health()


def database_state(engine: Engine) -> str:
    """'migrated' when the data routes can read every table; else what stops them, by exception name."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # the point of readiness is to report it, not to raise it
        return f"unreachable: {type(exc).__name__}"
    try:
        if not is_migrated(engine):
            return "not migrated"
        read_each_table(engine)
    except Exception as exc:
        log.error("readiness: the database cannot be read: %s", exc)
        return f"unreadable: {type(exc).__name__}"
    return "migrated"


@router.get(
    "/readyz", response_model=Readiness, responses={503: {"model": Readiness, "description": "Not ready"}}
)
def readyz(request: Request) -> JSONResponse:
    """200 when the database is reachable, migrated and readable; also says whether each dataset is present."""
    settings = request.app.state.settings
    database = database_state(request.app.state.engine)
    body = Readiness(
        status="ready" if database == "migrated" else "not ready",
        database=database,
        datasets=[dataset_public(name, settings) for name in DATASETS],
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.status == "ready" else 503)
