"""Studies: adaptive searches (service.search) whose trials are jobs; read back with their best trial,
each parameter's importance, and their figures as PNG and as JSON."""

from __future__ import annotations

import itertools
from typing import Annotated, Any

from fastapi import Path, Query, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.api.conditions import PRECONDITION_DOC, ConditionsDep, check_preconditions, tagged
from service.api.deps import (
    DatabaseDep,
    InferenceDep,
    SessionDep,
    SettingsDep,
    StudyDep,
    WriterDep,
    reader_router,
)
from service.api.paging import PageOffset
from service.api.params import DIGITS, Whole
from service.api.presenters import (
    ALIAS_CREATED_DOC,
    BUDGET_FIELDS,
    check_budget_of,
    check_queue_room,
    one_run_caveat,
    promote_best,
    require_study,
    set_created,
    still_running,
    study_public,
)
from service.api.routes.plots import FIGURE_DOC
from service.api.schemas import (
    AliasPublic,
    ImportancePublic,
    PromoteCreate,
    StudiesPublic,
    StudyExtend,
    StudyPublic,
)
from service.api.streams import stopping_problem
from service.errors import (
    JSON_BODY_DOC,
    SUBMIT_DOCS,
    ProblemError,
    Responses,
    found,
    invalid,
    invalid_all,
    problem_doc,
    worded,
)
from service.ml.spec import TrainSpec, parameters_of
from service.plots import DRAWING
from service.quoting import counted
from service.search import (
    StudyCreate,
    TrialRecord,
    analysis,
    check_study,
    importance_warning,
    next_trials,
    trials_to_queue,
)
from service.search.figures import FIGURES, figure_data, figure_png
from service.settings import Settings
from service.store.db import begin_write
from service.store.jobs import foresee_extend, lock_study
from service.store.models import FINISHED, Job, JobStatus, Study, StudyStatus
from service.store.queries import count_jobs, count_models, list_studies, study_config, study_trials
from service.store.studies import StudyConflict, cancel_study, create_study, extend_study
from service.turns import CLIENT, Turns, share_full

router = reader_router("studies", "/studies")

FigureName = Annotated[
    str,
    Path(
        pattern=worded(f"^({'|'.join(FIGURES)})$", f"one of {', '.join(FIGURES)}"),
        description=", ".join(FIGURES),
    ),
]
CONFLICT_DOC: Responses = {409: problem_doc("The study is not in a state that allows this")}


def _extremes(config: StudyCreate) -> dict[str, list[Any]]:
    """Each searched field that bears on a budget, with the values that bound its cost (_bounding). The
    others (a seed, a learning rate) change no budget."""
    return {
        f: _bounding(f, d.choice if d.choice is not None else list(d.bounds or ()))
        for f, d in config.space.items()
        if f in BUDGET_FIELDS
    }


def _bounding(field: str, values: list[Any]) -> list[Any]:
    """The values of `field` among which the costliest trial lies: every budget grows with a network's
    parameters or its units, and moves one way with each number (validation_size both: it shrinks the
    training images and the room left for train_limit), so the layers with the most of each and a
    number's two ends; every other choice (a dataset). At most 2^5 x datasets combinations, all checked:
    1,000 layer choices had each field checked alone, and let past a costliest combination."""
    if field == "hidden_layers":
        costliest = [max(values, key=parameters_of), max(values, key=sum)]
        return [list(layers) for layers in dict.fromkeys(tuple(v) for v in costliest)]
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return list(dict.fromkeys([min(values), max(values)]))
    return values


def _cancelled(study_id: int) -> ProblemError:
    return ProblemError(409, "Study cancelled", f"Study {study_id} is cancelled: submit a new one.")


def check_extensible(study: Study, settings: Settings, more: int) -> None:
    """409 for a cancelled study (before its queue is counted: a 429 said to retry what never can) or one
    whose space the limits, lowered since it was submitted, no longer admit; 422 past MLPLAB_MAX_STUDY_TRIALS."""
    if study.status == StudyStatus.cancelled:
        raise _cancelled(study.id)
    check_trial_limit(settings, study.trials + more, f"{study.trials:,} + {more:,}")
    try:
        check_study_budget(study_config(study), settings)
    except ProblemError as exc:
        reason = exc.invalid_params[0]["reason"] if exc.invalid_params else exc.detail
        raise ProblemError(
            409,
            "Study over the limits",
            f"Study {study.id}'s space no longer fits this service's limits: {reason}. "
            "Submit a new study within them.",
        ) from None


def check_trial_limit(settings: Settings, total: int, spelled: str) -> None:
    """Refuse a study of more than MLPLAB_MAX_STUDY_TRIALS trials in all (`spelled`: how they add up)."""
    if total > settings.max_study_trials:
        raise invalid(
            "trials",
            f"{spelled} trials; the limit is {settings.max_study_trials:,} (MLPLAB_MAX_STUDY_TRIALS)",
        )


def check_study_budget(config: StudyCreate, settings: Settings) -> None:
    """POST /jobs's budgets for the costliest trials the space allows (every combination of the values
    that bound each field's cost); the problem names the field at fault."""
    extremes = _extremes(config)
    # a searched field that bears on no budget takes any of its values: one without a default (backend)
    # must have one for the spec to be whole
    others = {
        f: d.choice[0] if d.choice is not None else (d.bounds or (None,))[0] for f, d in config.space.items()
    }
    corners = [dict(zip(extremes, values, strict=True)) for values in itertools.product(*extremes.values())]
    for corner in corners:
        check_budget_of(TrainSpec.read_back(config.base | others | corner), settings, "space", corner)


# A study's first trials are asked of its sampler before it is stored, on the API's threads: one study at
# a time, STUDIES_PLANNED_WAITING more waiting (44 studies at once held all 40 threads for 30 s, and
# every read of a model or an alias waited).
STUDIES_PLANNED_WAITING = 4
STUDIES_PLANNED_PER_CLIENT = 2  # of those and the one planned, the most one client holds
PLANNING_RETRY_SECONDS = 5
PLANNING = Turns(
    STUDIES_PLANNED_WAITING,
    "Study planning queue full",
    f"{STUDIES_PLANNED_WAITING} studies already wait on this API process for their sampler to plan "
    f"their trials, the most it holds. Retry in {PLANNING_RETRY_SECONDS} s.",
    PLANNING_RETRY_SECONDS,
    STUDIES_PLANNED_PER_CLIENT,
    f"This client already has {STUDIES_PLANNED_PER_CLIENT} studies being planned or waiting to be on this "
    f"API process, its share. Retry in {PLANNING_RETRY_SECONDS} s.",
)


def refuse_if_stopping(request: Request) -> None:
    """Before and after the seconds of planning: a process told to stop writes nothing, since its answer
    may be cut at the grace period's end and a client that retries would make the study twice."""
    if request.app.state.events.stopping:
        raise stopping_problem()


PLANNING_DOC: Responses = {
    429: problem_doc(f"Queue full, or this client's share of it; or {share_full(PLANNING.shares.mine)}"),
    503: problem_doc(
        f"{PLANNING.title}: {PLANNING.detail} Or API stopping: the process was told to stop (a study planned "
        "meanwhile is not written). Or the database unavailable."
    ),
}


@router.post(
    "",
    status_code=202,
    response_model=StudyPublic,
    dependencies=[WriterDep],
    responses=SUBMIT_DOCS | PLANNING_DOC,
)
def submit_study(
    body: StudyCreate, session: SessionDep, settings: SettingsDep, request: Request, response: Response
) -> StudyPublic:
    """Start an adaptive search: its first `parallelism` trials are queued now, each next one as one ends."""
    problems = check_study(body)
    if problems:
        raise invalid_all(problems)
    check_trial_limit(settings, body.trials, f"{body.trials:,}")
    if body.parallelism > settings.max_study_trials:
        raise invalid(
            "parallelism",
            f"{body.parallelism:,} in flight; the limit is {settings.max_study_trials:,} (MLPLAB_MAX_STUDY_TRIALS)",
        )
    check_study_budget(body, settings)
    adding, client = trials_to_queue(body, []), CLIENT.get()
    check_queue_room(session, settings, adding, "parallelism", client=client, ahead=True)  # before the asks
    refuse_if_stopping(request)
    with PLANNING.place(), PLANNING:  # asked before the write lock (a grid of 10,000 points asks for seconds)
        next_trials(body, [])
    refuse_if_stopping(request)
    check_queue_room(session, settings, adding, "parallelism", client=client)
    study, _ = create_study(session, body, client=client)
    response.headers["Location"] = f"/studies/{study.id}"
    public = study_public(session, study)
    session.commit()  # release the write lock in this thread hop
    return public


@router.get("", response_model=StudiesPublic)
def read_studies(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100), DIGITS] = 20,
    offset: PageOffset = 0,
    trials_limit: Annotated[
        int,
        Query(ge=0, le=100, description="Trials listed per study, the latest (GET /studies/{id} lists all)"),
        DIGITS,
    ] = 10,
) -> StudiesPublic:
    """Studies, newest first, each with its latest trials, its best and its trials counted by status."""
    studies, count = list_studies(session, limit=limit, offset=offset)
    return StudiesPublic(data=[study_public(session, study, trials_limit) for study in studies], count=count)


@router.get("/{study_id}", response_model=StudyPublic)
def read_study(study: StudyDep, session: SessionDep) -> StudyPublic:
    """A study's trials with their parameters, status, best epoch and accuracies; its best trial."""
    return study_public(session, study)


@router.post(
    "/{study_id}/cancel", response_model=StudyPublic, dependencies=[WriterDep], responses=CONFLICT_DOC
)
def cancel(study_id: Whole, session: SessionDep) -> StudyPublic:
    """Stop a study: its queued trials are cancelled, its running ones stop at their worker's next write."""
    begin_write(session)  # before the first read: the write lock in this one thread hop
    study = require_study(session, study_id)
    try:
        cancel_study(session, study.id)
    except StudyConflict:
        raise ProblemError(
            409,
            "Study not running",
            f"Study {study.id} is {study.status}: only a running study can be cancelled.",
        ) from None
    public = study_public(session, study)
    session.commit()
    return public


@router.post(
    "/{study_id}/extend",
    status_code=202,
    response_model=StudyPublic,
    dependencies=[WriterDep],
    responses=SUBMIT_DOCS | CONFLICT_DOC | PLANNING_DOC,
)
def extend(
    body: StudyExtend,
    study_id: Whole,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
) -> StudyPublic:
    """Ask for more trials: a finished study runs again, from what its trials so far have taught its sampler."""
    before = require_study(session, study_id)  # the cheap checks before the asks, which can take seconds
    check_extensible(before, settings, body.trials)
    config, records = study_trials(session, before)
    adding = trials_to_queue(config.model_copy(update={"trials": before.trials + body.trials}), records)
    # its trials are its creator's, whoever extends it; a study from before clients were kept, its extender's
    check_queue_room(session, settings, adding, "trials", client=before.client or CLIENT.get(), ahead=True)
    refuse_if_stopping(request)
    with PLANNING.place(), PLANNING:
        foresee_extend(session, study_id, body.trials)
    refuse_if_stopping(request)
    begin_write(session)
    # again, under the lock (the row's, on PostgreSQL): ten extensions at once took a study past its limit
    study = found(lock_study(session, study_id), "study", study_id)
    check_extensible(study, settings, body.trials)
    total = study.trials + body.trials
    config, records = study_trials(session, study)
    study.client = study.client or CLIENT.get()
    adding = trials_to_queue(config.model_copy(update={"trials": total}), records)
    check_queue_room(session, settings, adding, "trials", client=study.client)
    try:
        extend_study(session, study.id, body.trials)
    except StudyConflict:  # checked above; extend_study checks it again itself
        raise _cancelled(study.id) from None
    except ValueError as exc:  # a grid with too few points left
        raise invalid("trials", str(exc)) from None
    public = study_public(session, study)
    session.commit()
    response.headers["Location"] = f"/studies/{study.id}"  # as every 202: where to follow it
    return public


@router.post(
    "/{study_id}/promote",
    response_model=AliasPublic,
    dependencies=[WriterDep],
    responses=JSON_BODY_DOC
    | PRECONDITION_DOC
    | ALIAS_CREATED_DOC
    | {409: problem_doc("The study is running, or none of its trials has succeeded")},
)
def promote(
    study_id: Whole,
    body: PromoteCreate,
    session: SessionDep,
    inference: InferenceDep,
    response: Response,
    conditions: ConditionsDep,
) -> AliasPublic:
    """Point an alias at the study's best trial's model (by validation accuracy), creating it if need be;
    once the study has finished or been cancelled."""
    begin_write(session)  # the write lock first: the reads below and the move are one transaction
    study = require_study(session, study_id)
    if study.status == StudyStatus.running:  # its trials not yet asked for may beat every one so far
        ended = count_jobs(session, Job.study_id == study.id, Job.status.in_(FINISHED))
        pending = f"{counted(max(study.trials - ended, 1), 'trial')} not yet ended"
        raise still_running(f"study {study.id}", pending, f"/studies/{study.id}/cancel")
    check_preconditions(session, body.alias, conditions)
    trained, _ = count_models(session, Job.study_id == study.id)
    # the history keeps it, as a sweep's promote keeps its test: each trial is one run of its configuration
    caveat = one_run_caveat(trained)
    public, created = promote_best(
        session, body.alias, f"study {study.id}", Job.study_id == study.id, caveat=caveat
    )
    tagged(session, body.alias, response)
    session.commit()
    inference.forget(body.alias)
    set_created(response, body.alias, created)
    return public


def _trials(session: Session, study_id: int) -> tuple[StudyCreate, list[TrialRecord]]:
    return study_trials(session, require_study(session, study_id))


# The three below read in one database hop and compute outside it: PED-ANOVA and matplotlib (which
# waits for the process's one drawing lock) would otherwise hold a database slot all the while.


@router.get("/{study_id}/importance", response_model=ImportancePublic)
async def read_importance(study_id: Whole, database: DatabaseDep) -> ImportancePublic:
    """Each varied field's importance for validation accuracy, summing to 1 (Optuna's PED-ANOVA)."""
    config, trials = await database.run(_trials, study_id)
    succeeded = sum(t.status == JobStatus.succeeded for t in trials)
    fields, scores = await run_in_threadpool(analysis, config, trials)
    return ImportancePublic(
        importance=scores,
        not_varied=[field for field in config.space if field not in fields] if succeeded else [],
        trials=succeeded,
        warning=importance_warning(succeeded, scores, fields),
    )


@router.get("/{study_id}/figures/{figure}")
async def read_figure_data(study_id: Whole, database: DatabaseDep, figure: FigureName) -> dict[str, Any]:
    """What a figure shows, as lists for the dashboard to draw (succeeded trials only)."""
    trials = await database.run(_trials, study_id)
    return await run_in_threadpool(figure_data, figure, *trials)


@router.get("/{study_id}/{figure}.png", response_class=Response, responses=FIGURE_DOC)
async def read_figure_png(study_id: Whole, database: DatabaseDep, figure: FigureName) -> Response:
    """history (best so far against trials), parallel (coordinates), slice, importance: a PNG."""
    with DRAWING.place():
        trials = await database.run(_trials, study_id)
        png = await run_in_threadpool(figure_png, figure, *trials)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-cache"})
