"""Prometheus metrics: what this API served and what the service holds, in the text format."""

from __future__ import annotations

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.api.deps import SessionDep, SettingsDep, reader_router
from service.api.monitoring import Monitoring, read_state

router = reader_router("metrics")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus' text format"}},
)
def read_metrics(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """Requests, latency and predictions served; jobs, queue, live workers and epochs (docs/deployment.md)."""
    monitoring: Monitoring = request.app.state.monitoring
    body = monitoring.exposition(read_state(session, settings.lease_seconds))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
