"""Sweeps: a grid of training specs submitted as one request, then read back best first."""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import ValidationError
from sqlalchemy import Row
from sqlalchemy.orm import Session

from service.api.deps import DatabaseDep, ReaderDep, SessionDep, SettingsDep, WriterDep
from service.api.presenters import check_budget, enqueue, job_public, json_response
from service.api.schemas import SWEEP_ID_PATTERN, SweepCreate, SweepPublic, SweepsPublic
from service.errors import PROBLEM_RESPONSES, SUBMIT_DOCS, ProblemError, echo, invalid, not_found
from service.ml.spec import TrainSpec
from service.settings import Settings
from service.store.models import Job, JobStatus
from service.store.queries import list_sweep_ids, list_sweep_jobs

router = APIRouter(prefix="/sweeps", tags=["sweeps"], dependencies=[ReaderDep], responses=PROBLEM_RESPONSES)


def check_grid(body: SweepCreate, max_jobs: int) -> None:
    """Refuse a grid that names no spec field, an empty list of values, or too many jobs."""
    if not body.grid:
        raise invalid("grid", "name at least one TrainSpec field to vary (one job alone is POST /jobs)")
    for field, values in body.grid.items():
        if field not in TrainSpec.model_fields:
            raise invalid(
                f"grid.{field}", f"not a TrainSpec field; the fields are {', '.join(TrainSpec.model_fields)}"
            )
        if not values:
            raise invalid(f"grid.{field}", "an empty list: give at least one value")
    for field in body.base:
        if field not in TrainSpec.model_fields:
            raise invalid(
                f"base.{field}", f"not a TrainSpec field; the fields are {', '.join(TrainSpec.model_fields)}"
            )
    count = math.prod(len(values) for values in body.grid.values())
    if count > max_jobs:
        sizes = " x ".join(str(len(v)) for v in body.grid.values()) + " = " if len(body.grid) > 1 else ""
        raise invalid("grid", f"{sizes}{count:,} jobs; the limit is {max_jobs:,} (MLPLAB_MAX_SWEEP_JOBS)")


def sweep_specs(body: SweepCreate) -> list[TrainSpec]:
    """One TrainSpec per combination of the grid (in the grid's order), each validated in full, each once:
    values that validate alike ([1, 1.0], or one listed twice) would train the same job twice.

    Every invalid value of every combination is reported at once, named `grid.<field>` (or
    `base.<field>` when the shared part is at fault), with the value that failed.
    """
    fields = list(body.grid)
    specs: list[TrainSpec] = []
    problems: dict[tuple[str, str], None] = {}  # (name, reason), each once, in order
    for values in itertools.product(*body.grid.values()):
        combination = dict(zip(fields, values, strict=True))
        try:
            specs.append(TrainSpec.model_validate(body.base | combination))
        except ValidationError as exc:
            for error in exc.errors():
                field = str(error["loc"][0]) if error["loc"] else "base"
                if field in combination:
                    name, reason = f"grid.{field}", f"{error['msg']} (got {echo(combination[field])})"
                else:
                    name, reason = f"base.{field}", error["msg"]
                problems[(name, reason)] = None
    if problems:
        params = [{"name": name, "reason": reason} for name, reason in problems]
        detail = "; ".join(f"{p['name']}: {p['reason']}" for p in params[:5])
        raise ProblemError(422, "Invalid request", detail, invalid_params=params)
    return list({spec.model_dump_json(): spec for spec in specs}.values())  # equal specs, one job


def check_budgets(specs: list[TrainSpec], body: SweepCreate, settings: Settings) -> None:
    """POST /jobs's budgets, for every combination; the problem names the grid values at fault."""
    for spec in specs:
        try:
            check_budget(spec, settings)
        except ProblemError as exc:
            if not exc.invalid_params:
                raise
            field, reason = exc.invalid_params[0]["name"], exc.invalid_params[0]["reason"]
            where = f"grid.{field}" if field in body.grid else f"base.{field}"
            combination = ", ".join(f"{f}={echo(getattr(spec, f))}" for f in body.grid)
            raise invalid(where, f"{reason} (with {combination})") from None


def sweep_public(sweep_id: str, jobs: Sequence[Job | Row[Any]], shown: int | None = None) -> SweepPublic:
    """The sweep as its jobs show it: what they share, what varies, and the jobs best first (the best
    `shown` of them; `count` and `status` count them all)."""
    publics = sorted((job_public(job) for job in jobs), key=lambda p: p.id)  # creation order: the grid's
    specs = [p.spec.model_dump(mode="json") for p in publics]
    base: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}
    for field in TrainSpec.model_fields:
        values: list[Any] = []
        for spec in specs:
            if spec[field] not in values:
                values.append(spec[field])
        if len(values) == 1:
            base[field] = values[0]
        else:
            grid[field] = values
    publics.sort(key=lambda p: (p.status != JobStatus.succeeded, -(p.test_accuracy or 0.0), p.id))
    summary = dict.fromkeys(JobStatus, 0)
    for p in publics:
        summary[p.status] += 1
    return SweepPublic(
        id=sweep_id,
        created_at=min(p.created_at for p in publics),
        base=base,
        grid=grid,
        jobs=publics[:shown],
        count=len(publics),
        status=summary,
    )


@router.post("", status_code=202, response_model=SweepPublic, dependencies=[WriterDep], responses=SUBMIT_DOCS)
def submit_sweep(
    body: SweepCreate, session: SessionDep, settings: SettingsDep, response: Response
) -> SweepPublic:
    """Submit a grid search: one job per combination, all queued at once (or none)."""
    check_grid(body, settings.max_sweep_jobs)
    specs = sweep_specs(body)
    check_budgets(specs, body, settings)
    sweep_id = uuid.uuid4().hex[:12]
    jobs = enqueue(session, settings, specs, sweep_id=sweep_id)
    response.headers["Location"] = f"/sweeps/{sweep_id}"
    public = sweep_public(sweep_id, jobs)
    session.commit()  # release the write lock in this thread hop
    return public


def _sweeps_page(session: Session, /, limit: int, offset: int, shown: int) -> SweepsPublic:
    ids, count = list_sweep_ids(session, limit=limit, offset=offset)
    jobs = list_sweep_jobs(session, ids)
    return SweepsPublic(data=[sweep_public(sweep_id, jobs[sweep_id], shown) for sweep_id in ids], count=count)


@router.get("", response_model=SweepsPublic)
async def read_sweeps(
    database: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
    jobs_limit: Annotated[
        int, Query(ge=0, le=100, description="Jobs listed per sweep, best first (GET /sweeps/{id} lists all)")
    ] = 10,
) -> Response:
    """Sweeps, newest first, each with its best jobs."""
    return json_response(await database.run(_sweeps_page, limit, offset, jobs_limit))


def _sweep(session: Session, /, sweep_id: str) -> SweepPublic:
    jobs = list_sweep_jobs(session, [sweep_id]).get(sweep_id)
    if not jobs:
        raise not_found("sweep", sweep_id)
    return sweep_public(sweep_id, jobs)


@router.get("/{sweep_id}", response_model=SweepPublic)
async def read_sweep(
    sweep_id: Annotated[str, Path(pattern=SWEEP_ID_PATTERN, description="As POST /sweeps made it")],
    database: DatabaseDep,
) -> Response:
    """A sweep's jobs with their status and accuracies, best first."""
    return json_response(await database.run(_sweep, sweep_id))
