"""Sweeps: a grid of training specs submitted as one request, then read back best first."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import Path, Query, Response
from sqlalchemy import ColumnElement, Row
from sqlalchemy.orm import Session

from service.api.conditions import PRECONDITION_DOC, ConditionsDep, check_preconditions, tagged
from service.api.deps import (
    DatabaseDep,
    InferenceDep,
    SessionDep,
    SettingsDep,
    WriterDep,
    reader_router,
)
from service.api.grid import check_budgets, check_grid, count_field, sweep_specs
from service.api.paging import PageOffset
from service.api.params import DIGITS
from service.api.presenters import (
    ALIAS_CREATED_DOC,
    enqueue,
    job_public,
    json_response,
    promote_best,
    set_created,
    still_running,
)
from service.api.schemas import (
    SWEEP_ID_PATTERN,
    AliasPublic,
    ConfigurationPublic,
    GapPublic,
    PromoteCreate,
    SummaryPublic,
    SweepCreate,
    SweepPublic,
    SweepsPublic,
)
from service.errors import JSON_BODY_DOC, SUBMIT_DOCS, ProblemError, not_found, problem_doc
from service.ml.spec import DEFAULT_LEARNING_RATE, TrainSpec
from service.ml.train import DIVERGED
from service.quoting import counted
from service.selection import Configuration, Run, Summary, group_runs, rank_key
from service.store.db import begin_write
from service.store.jobs import JobConflict, JobNotFound, cancel_sweep
from service.store.models import Job, JobStatus
from service.store.queries import list_sweep_ids, list_sweep_jobs, training_seconds

router = reader_router("sweeps", "/sweeps")


def sweep_public(
    sweep_id: str, jobs: Sequence[Job | Row[Any]], seconds: Mapping[int, float], shown: int | None = None
) -> SweepPublic:
    """The sweep as its jobs show it: what they share, what varies, the jobs best first (the best `shown`
    of them; `count`, `status` and `configurations` count them all) and grouped by configuration
    (`seconds`: the training time of those that are trained models)."""
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
    # learning_rate's default is per optimizer (DEFAULT_LEARNING_RATE): a grid of optimizers alone varies it
    follows = (
        {"learning_rate": "optimizer"}
        if {"learning_rate", "optimizer"} <= grid.keys()
        and all(s["learning_rate"] == DEFAULT_LEARNING_RATE[s["optimizer"]] for s in specs)
        else {}
    )
    runs = [
        Run(
            job_id=p.id,
            hyperparameters={field: spec[field] for field in grid if field != "seed"},
            seed=p.spec.seed,
            succeeded=p.status == JobStatus.succeeded,
            failed=p.status == JobStatus.failed,
            diverged=p.status == JobStatus.failed and (p.error or "").startswith(DIVERGED),
            validation_accuracy=p.validation_accuracy,
            test_accuracy=p.test_accuracy,
            seconds=seconds.get(p.id),
        )
        for p, spec in zip(publics, specs, strict=True)
    ]
    configurations, order = group_runs(runs)
    # The trained best first, as promote picks; the others in the grid's order.
    publics.sort(
        key=lambda p: (
            (False, rank_key(p.validation_accuracy, p.test_accuracy, p.id))
            if p.status == JobStatus.succeeded
            else (True, (p.id,))
        )
    )
    summary = dict.fromkeys(JobStatus, 0)
    for p in publics:
        summary[p.status] += 1
    return SweepPublic(
        id=sweep_id,
        created_at=min(p.created_at for p in publics),
        base=base,
        grid=grid,
        follows=follows,
        jobs=publics[:shown],
        count=len(publics),
        status=summary,
        configurations=[configuration_public(c) for c in configurations],
        ranked_by=order,
    )


def _summary(summary: Summary | None) -> SummaryPublic | None:
    if summary is None:
        return None
    return SummaryPublic(
        mean=summary.mean,
        std=summary.std,
        ci_low=summary.ci_low,
        ci_high=summary.ci_high,
        clipped=summary.clipped,
    )


def configuration_public(c: Configuration) -> ConfigurationPublic:
    return ConfigurationPublic(
        hyperparameters=c.hyperparameters,
        jobs=c.job_ids,
        seeds=c.seeds,
        n=c.n,
        validation_accuracy=_summary(c.validation),
        test_accuracy=_summary(c.test),
        seconds=c.seconds,
        failed=c.failed,
        diverged=c.diverged,
        versus_best=c.versus_best,
        tied_with_best=c.tied_with_best,
        p_value=c.p_value,
        tested_by=c.tested_by,
        pairs=c.pairs,
        gap_to_best=None
        if c.gap is None
        else GapPublic(difference=c.gap.difference, ci_low=c.gap.ci_low, ci_high=c.gap.ci_high),
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
    jobs = enqueue(session, settings, specs, sweep_id=sweep_id, field=count_field(body))
    response.headers["Location"] = f"/sweeps/{sweep_id}"
    public = sweep_public(sweep_id, jobs, {})
    session.commit()  # release the write lock in this thread hop
    return public


def _sweeps_page(session: Session, /, limit: int, offset: int, shown: int) -> SweepsPublic:
    ids, count = list_sweep_ids(session, limit=limit, offset=offset)
    jobs = list_sweep_jobs(session, ids)
    seconds = training_seconds(session, ids)
    data = [sweep_public(sweep_id, jobs[sweep_id], seconds, shown) for sweep_id in ids]
    return SweepsPublic(data=data, count=count)


@router.get("", response_model=SweepsPublic)
async def read_sweeps(
    database: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=100), DIGITS] = 20,
    offset: PageOffset = 0,
    jobs_limit: Annotated[
        int,
        Query(ge=0, le=100, description="Jobs listed per sweep, best first (GET /sweeps/{id} lists all)"),
        DIGITS,
    ] = 10,
) -> Response:
    """Sweeps, newest first, each with its best jobs and its configurations."""
    return json_response(await database.read_page(_sweeps_page, limit, offset, jobs_limit))


def _sweep(session: Session, /, sweep_id: str) -> SweepPublic:
    jobs = list_sweep_jobs(session, [sweep_id]).get(sweep_id)
    if not jobs:
        raise not_found("sweep", sweep_id)
    return sweep_public(sweep_id, jobs, training_seconds(session, [sweep_id]))


SweepPath = Annotated[str, Path(pattern=SWEEP_ID_PATTERN, description="As POST /sweeps made it")]


@router.get("/{sweep_id}", response_model=SweepPublic)
async def read_sweep(sweep_id: SweepPath, database: DatabaseDep) -> Response:
    """A sweep's jobs with their status and accuracies, best first, and grouped by configuration.

    Each configuration's mean, standard deviation and 95 % confidence interval of each accuracy over its
    seeds, and whether the data can tell it from the best (a t-test, paired by seed where they share seeds)."""
    return json_response(await database.read_page(_sweep, sweep_id))


@router.post(
    "/{sweep_id}/cancel",
    response_model=SweepPublic,
    dependencies=[WriterDep],
    responses={409: problem_doc("Every job of the sweep has already ended")},
)
def cancel(sweep_id: SweepPath, session: SessionDep) -> SweepPublic:
    """Stop a sweep: its queued jobs are cancelled, its running ones stop at their worker's next write;
    its ended jobs keep their status and results."""
    # The write lock is taken and released in this one thread hop (docs/reliability.md, API notes).
    begin_write(session)
    try:
        cancel_sweep(session, sweep_id)
    except JobNotFound:
        raise not_found("sweep", sweep_id) from None
    except JobConflict:
        raise ProblemError(
            409,
            "Sweep not running",
            f"Every job of sweep {sweep_id} has ended: only queued or running jobs can be cancelled.",
        ) from None
    public = _sweep(session, sweep_id)
    session.commit()
    return public


@router.post(
    "/{sweep_id}/promote",
    response_model=AliasPublic,
    dependencies=[WriterDep],
    responses=JSON_BODY_DOC
    | PRECONDITION_DOC
    | ALIAS_CREATED_DOC
    | {409: problem_doc("The sweep has jobs queued or running, or none has succeeded")},
)
def promote(
    sweep_id: SweepPath,
    body: PromoteCreate,
    session: SessionDep,
    inference: InferenceDep,
    response: Response,
    conditions: ConditionsDep,
) -> AliasPublic:
    """Point an alias at the best model of the sweep's best configuration (GET /sweeps/{id}'s first; with
    one seed each, the sweep's best model), creating the alias if need be; once its jobs have ended."""
    begin_write(session)  # the write lock first: the reads below and the move are one transaction
    jobs = list_sweep_jobs(session, [sweep_id]).get(sweep_id)
    if not jobs:
        raise not_found("sweep", sweep_id)
    sweep = sweep_public(sweep_id, jobs, {})
    if unfinished := sweep.status[JobStatus.queued] + sweep.status[JobStatus.running]:
        pending = f"{counted(unfinished, 'job')} still queued or running"
        raise still_running(f"sweep {sweep_id}", pending, f"/sweeps/{sweep_id}/cancel")
    # Not the single best run: a lucky seed of a configuration that failed on others is not its best.
    top, *rest = sweep.configurations
    where: ColumnElement[bool] = Job.sweep_id == sweep_id
    source = f"sweep {sweep_id}"
    if top.n and len(top.jobs) > 1:
        where, source = Job.id.in_(top.jobs), f"sweep {sweep_id}'s best configuration"
    caveat = None
    if top.n and rest and rest[0].n and rest[0].versus_best in (None, "can't tell"):
        # the history keeps what the sweep could say of it when it was promoted
        tested = "no test" if rest[0].p_value is None else f"p = {rest[0].p_value:.2g}"
        caveat = f"it is not shown better than the next configuration ({tested})"
    check_preconditions(session, body.alias, conditions)
    public, created = promote_best(session, body.alias, source, where, caveat=caveat)
    tagged(session, body.alias, response)
    session.commit()
    inference.forget(body.alias)
    set_created(response, body.alias, created)
    return public
