"""Liveness and readiness."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from service.api.presenters import dataset_public
from service.api.schemas import FULL_DISK_BYTES, LOW_DISK_BYTES, Health, Readiness
from service.ml.data import DATASETS
from service.store.db import is_migrated, read_each_table, unwritable
from service.store.queries import count_live_workers

log = logging.getLogger("mlplab.api")
# No as_declared: a probe may add a cache-buster; these read nothing a client could mistype.
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
    engine = request.app.state.engine
    database = database_state(engine)
    free = disk_free(engine)
    body = Readiness(
        status="ready" if database == "migrated" else "not ready",
        database=database,
        datasets=[dataset_public(name, settings) for name in DATASETS],
        workers=workers_alive(engine, settings.lease_seconds) if database == "migrated" else "unknown",
        disk=disk_words(free),
        writes=(unwritable(engine) or no_room(free) or "possible") if database == "migrated" else "unknown",
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.status == "ready" else 503)


def disk_free(engine: Engine) -> int | None:
    """Bytes free where the SQLite file is (None on a server, or unknown)."""
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        return None
    try:
        return shutil.disk_usage(Path(path).resolve().parent).free
    except OSError:
        return None


def disk_words(free: int | None) -> str | None:
    if free is None:
        return None
    said = f"{free / 2**20:,.0f} MB free where the SQLite database is"
    if free < FULL_DISK_BYTES:
        return f"only {said}: full (see writes)"
    return f"only {said}: writes fail once it is full" if free < LOW_DISK_BYTES else said


def no_room(free: int | None) -> str | None:
    """Why writes fail for want of space, or None: the permission check (unwritable) cannot see it."""
    if free is None or free >= FULL_DISK_BYTES:
        return None
    return f"the disk under the SQLite database is full ({free / 2**10:,.0f} kB free): writes fail until space is freed"


def workers_alive(engine: Engine, lease_seconds: float) -> str:
    """How many workers have renewed their heartbeat within the lease, in words."""
    try:
        with Session(engine) as session:
            alive = count_live_workers(session, lease_seconds).live
    except Exception as exc:  # reported, like the database's state
        return f"unknown: {type(exc).__name__}"
    if alive:
        return f"{alive} alive"
    return f"none alive in the last {lease_seconds:g} s (MLPLAB_LEASE_SECONDS): queued jobs wait"
