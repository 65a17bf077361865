"""Prometheus metrics: what this API served and what the service holds, in the text format."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError

from service.api.deps import MonitoringDep, ReaderDep, SessionDep, SettingsDep
from service.api.monitoring import read_state
from service.api.params import as_declared
from service.errors import PROBLEM_RESPONSES, database_unavailable

log = logging.getLogger(__name__)

# Not the database's 503 every other route documents: without the database a scrape answers 200 with
# mlplab_database_up 0.
router = APIRouter(
    tags=["metrics"],
    dependencies=[ReaderDep, Depends(as_declared)],
    responses={code: doc for code, doc in PROBLEM_RESPONSES.items() if code != 503},
)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus' text format"}},
)
def read_metrics(session: SessionDep, settings: SettingsDep, monitoring: MonitoringDep) -> Response:
    """Requests, latency and predictions served; jobs, queue, live workers and epochs (docs/deployment.md)."""
    try:
        state = read_state(session, settings.lease_seconds)
    except SQLAlchemyError as exc:
        if not database_unavailable(exc):
            raise
        # A scrape is how an operator learns the database is down: answer with what this replica counted.
        log.error("metrics without the database's state: %s", exc)
        session.rollback()
        state = None
    body = monitoring.exposition(state)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
