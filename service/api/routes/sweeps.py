"""Sweeps: a grid of training specs submitted as one request, then read back best first."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy.orm import Session

from service.api.deps import ReaderDep, SessionDep, SettingsDep, WriterDep
from service.api.grid import check_budgets, check_grid, sweep_specs
from service.api.presenters import enqueue, job_public
from service.api.schemas import (
    SWEEP_ID_PATTERN,
    ConfigurationPublic,
    SummaryPublic,
    SweepCreate,
    SweepPublic,
    SweepsPublic,
)
from service.errors import PROBLEM_RESPONSES, SUBMIT_DOCS, not_found
from service.ml.spec import TrainSpec
from service.selection import Configuration, Run, Summary, group_runs, rank_key
from service.store.models import Job, JobStatus
from service.store.queries import list_jobs, list_sweep_ids, training_seconds

router = APIRouter(prefix="/sweeps", tags=["sweeps"], dependencies=[ReaderDep], responses=PROBLEM_RESPONSES)

MAX_LISTED = 100_000  # a sweep's jobs are all listed: the limit is only a guard


def sweep_public(sweep_id: str, jobs: list[Job], seconds: Mapping[int, float]) -> SweepPublic:
    """The sweep as its jobs show it: what they share, what varies, the jobs best first and grouped by
    configuration (`seconds`: the training time of those that are trained models)."""
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
    runs = [
        Run(
            job_id=p.id,
            hyperparameters={field: spec[field] for field in grid if field != "seed"},
            seed=p.spec.seed,
            succeeded=p.status == JobStatus.succeeded,
            validation_accuracy=p.validation_accuracy,
            test_accuracy=p.test_accuracy,
            seconds=seconds.get(p.id),
        )
        for p, spec in zip(publics, specs, strict=True)
    ]
    configurations, order = group_runs(runs)
    publics.sort(
        key=lambda p: (
            p.status != JobStatus.succeeded,
            rank_key(p.validation_accuracy, p.test_accuracy),
            p.id,
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
        jobs=publics,
        count=len(publics),
        status=summary,
        configurations=[configuration_public(c) for c in configurations],
        ranked_by=order,
    )


def _summary(summary: Summary | None) -> SummaryPublic | None:
    if summary is None:
        return None
    return SummaryPublic(mean=summary.mean, std=summary.std, ci_low=summary.ci_low, ci_high=summary.ci_high)


def configuration_public(c: Configuration) -> ConfigurationPublic:
    return ConfigurationPublic(
        hyperparameters=c.hyperparameters,
        jobs=c.job_ids,
        seeds=c.seeds,
        n=c.n,
        validation_accuracy=_summary(c.validation),
        test_accuracy=_summary(c.test),
        seconds=c.seconds,
        tied_with_best=c.tied_with_best,
        p_value=c.p_value,
    )


def read_sweep_public(session: Session, sweep_id: str) -> SweepPublic | None:
    """The stored sweep, or None when no job has this sweep id."""
    jobs, count = list_jobs(session, sweep_id=sweep_id, limit=MAX_LISTED)
    if not count:
        return None
    return sweep_public(sweep_id, jobs, training_seconds(session, (job.id for job in jobs)))


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
    public = sweep_public(sweep_id, jobs, {})
    session.commit()  # release the write lock in this thread hop
    return public


@router.get("", response_model=SweepsPublic)
def read_sweeps(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> SweepsPublic:
    """Sweeps, newest first, each with its jobs best first."""
    ids, count = list_sweep_ids(session, limit=limit, offset=offset)
    data = [sweep for sweep_id in ids if (sweep := read_sweep_public(session, sweep_id)) is not None]
    return SweepsPublic(data=data, count=count)


@router.get("/{sweep_id}", response_model=SweepPublic)
def read_sweep(
    sweep_id: Annotated[str, Path(pattern=SWEEP_ID_PATTERN, description="As POST /sweeps made it")],
    session: SessionDep,
) -> SweepPublic:
    """A sweep's jobs with their status and accuracies, best first, and grouped by configuration.

    Each configuration's mean, standard deviation and 95 % confidence interval of each accuracy over its
    seeds, and whether the data can tell it from the best (Welch's t-test)."""
    sweep = read_sweep_public(session, sweep_id)
    if sweep is None:
        raise not_found("sweep", sweep_id)
    return sweep
