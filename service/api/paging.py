"""The query parameters every listing pages with: one limit, one offset."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from service.api.params import DIGITS

MAX_PAGE = 500  # most rows one page of a listing holds
PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Most rows in the page."), DIGITS]
PageOffset = Annotated[int, Query(ge=0, description="Rows to skip."), DIGITS]
