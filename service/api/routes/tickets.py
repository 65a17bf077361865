"""Read tickets: the token's stand-in on a link, for what a browser fetches by itself."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi import APIRouter, Depends

from service.api.deps import SettingsDep, WriterDep
from service.api.guard import read_ticket
from service.api.params import as_declared
from service.api.schemas import ReadTicket
from service.errors import PROBLEM_RESPONSES, ProblemError

router = APIRouter(tags=["health"], dependencies=[Depends(as_declared)], responses=PROBLEM_RESPONSES)


@router.get("/read-ticket", response_model=ReadTicket, dependencies=[WriterDep])
def give_read_ticket(settings: SettingsDep) -> ReadTicket:
    """With MLPLAB_PROTECT_READS, a ticket that lets GET requests read for an hour without the Authorization
    header (`?ticket=`): the dashboard puts it on its images, event streams and download links. It asks
    for the token itself: a ticket does not buy another."""
    if settings.api_token is None or not settings.protect_reads:
        raise ProblemError(
            404, "No tickets", "Reads need no token here (MLPLAB_API_TOKEN and MLPLAB_PROTECT_READS)."
        )
    ticket, expires = read_ticket(settings, time.time())
    return ReadTicket(ticket=ticket, expires_at=datetime.fromtimestamp(expires, UTC))
