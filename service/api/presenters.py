"""What the routers share: the public shape of a job and a dataset, the budget and queue room a job
must fit, which jobs are trained models, the model ids of a comparison, an image of a split, a figure. A router
imports these, deps, schemas and the store, never another router."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, get_args

import numpy as np
from fastapi import Query, Response
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Row
from sqlalchemy.orm import Session

from service.api.params import ID_RANGE, is_id
from service.api.schemas import (
    ALIAS_NAME,
    ALIAS_WORDS,
    AliasPublic,
    DatasetPublic,
    EpochPoint,
    JobPublic,
    LossPoint,
    Progress,
    StudyPublic,
    TrialPublic,
)
from service.errors import ProblemError, Responses, found, invalid, not_found, not_trained
from service.lru import LRU
from service.ml.data import DATASETS, Dataset, dataset_status, epoch_steps, images_into_epoch
from service.ml.metrics import near_chance
from service.ml.provenance import Reproduction, stored_provenance
from service.ml.spec import DEFAULT_LEARNING_RATE, NUM_CLASSES, SplitName, TrainSpec
from service.quoting import counted, echo
from service.search import sampler_note
from service.selection import ranked_by
from service.settings import Settings
from service.store.aliases import move_alias
from service.store.db import begin_write, lock_queue
from service.store.jobs import enqueue_job
from service.store.models import (
    Alias,
    AliasAction,
    EpochMetric,
    Job,
    JobStatus,
    Study,
    StudyStatus,
    TrainedModel,
)
from service.store.queries import (
    alias_changes,
    alias_history,
    alias_target,
    best_epochs,
    best_model_id,
    count_models,
    count_queued,
    get_job,
    get_jobs_by_id,
    get_model,
    get_study,
    job_spec,
    study_config,
    study_epochs,
    study_jobs,
    trial_records,
    validation_curves,
)
from service.turns import CLIENT, CLIENT_SHARE_FULL


def json_response(body: BaseModel | bytes) -> Response:
    """The model as JSON (or JSON already made), sent as it is: FastAPI re-validates a returned model
    against response_model."""
    return Response(
        body if isinstance(body, bytes) else body.model_dump_json(), media_type="application/json"
    )


def chance_warning(spec: TrainSpec, validation: float | None, test: float | None) -> str | None:
    """near_chance's sentence for a model of this spec with these accuracies."""
    usual = DEFAULT_LEARNING_RATE[spec.optimizer]
    zeros_with = spec.activation if spec.init == "zeros" and spec.hidden_layers else None
    sigmoids = len(spec.hidden_layers) if spec.activation == "sigmoid" and spec.optimizer != "adam" else 0
    return near_chance(
        NUM_CLASSES,
        spec.learning_rate,
        usual,
        zeros_with,
        sigmoid_layers=sigmoids,
        validation=validation,
        test=test,
    )


def job_warning(job: Job | Row[Any]) -> str | None:
    """chance_warning of a finished job's model (None for a job without accuracies)."""
    return chance_warning(job_spec(job), job.validation_accuracy, job.test_accuracy)


def epoch_points(job: Job, rows: Iterable[EpochMetric]) -> list[EpochPoint]:
    """The job's epoch rows (in order, up to its latest) as the API shows them: each says whether its train
    and test accuracies are on samples (every epoch but the last trained: service/ml/evaluation.py), as the
    worker recorded it; for a row from before it did, the spec's last epoch or a succeeded job's last row."""
    rows = list(rows)
    last = {job_spec(job).epochs}
    if rows and job.status == JobStatus.succeeded:
        last.add(rows[-1].epoch)  # early stopping's
    fields = EpochPoint.model_fields.keys() - {"sampled"}
    return [
        EpochPoint.model_validate(
            {f: getattr(r, f) for f in fields}
            | {"sampled": r.epoch not in last if r.sampled is None else r.sampled}
        )
        for r in rows
    ]


def job_public(job: Job | Row[Any]) -> JobPublic:
    spec = job_spec(job)
    warning = job_warning(job)
    return JobPublic(
        id=job.id,
        name=job.name,
        status=job.status,
        spec=spec,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        attempts=job.attempts,
        worker=job.worker_id,
        error=job.error,
        cancel_requested=job.cancel_requested,
        sweep_id=job.sweep_id,
        study_id=job.study_id,
        trial_number=job.trial_number,
        train_accuracy=job.train_accuracy,
        validation_accuracy=job.validation_accuracy,
        test_accuracy=job.test_accuracy,
        provenance=stored_provenance(job.provenance),
        reproduces=job.reproduces,
        reproduction=None if job.reproduction is None else Reproduction.model_validate(job.reproduction),
        loss_every=job.loss_every,
        near_chance=warning is not None,
        warning=warning,
        progress=Progress(
            epoch=job.epoch or None, epochs=spec.epochs, step=job.step or None, steps=job.steps, loss=job.loss
        ),
    )


def job_json(job: Job | Row[Any], finished: LRU[int, bytes]) -> bytes:
    """job_public(job) as JSON. A finished job's never changes (every write to a job is guarded by its
    being queued or running), so `finished` keeps it and a later read sends it as it is."""
    done = JobStatus(job.status).finished
    body = finished.get(job.id) if done else None
    if body is None:
        body = job_public(job).model_dump_json().encode()
        if done:
            finished.put(job.id, body)
    return body


# The spec fields check_budget reads: a study combines only these to find its costliest trials.
BUDGET_FIELDS = ("hidden_layers", "epochs", "train_limit", "validation_size", "dataset", "batch_size")
# A step's limits name batch_size; where a sweep or study varies only these, the value at fault is theirs.
STEP_FIELDS = ("batch_size", "hidden_layers", "train_limit")


def training_images(spec: TrainSpec) -> int:
    """The images a job of `spec` trains on each epoch: its train_limit, within its dataset's training
    split less the images held out for validation."""
    available = DATASETS[spec.dataset].splits["train"] - spec.validation_size
    return min(spec.train_limit or available, available)


def images_seen(spec: TrainSpec, step: int) -> int:
    """The training images a job of `spec` has seen after `step` steps (500 images at batch 64: 8 steps of
    62 or 63 images, 500 in all, not 512)."""
    per_epoch = training_images(spec)
    epochs, into = divmod(step, epoch_steps(per_epoch, spec.batch_size))
    return epochs * per_epoch + images_into_epoch(per_epoch, spec.batch_size, into)


def loss_points(spec: TrainSpec, points: Iterable[tuple[int, int, float]]) -> list[LossPoint]:
    """(epoch, step, loss) of a job of `spec` as the API shows them, with the images seen at each."""
    return [LossPoint(epoch=e, step=s, samples=images_seen(spec, s), loss=x) for e, s, x in points]


def step_images(spec: TrainSpec) -> int:
    """The images a job's step may take, as its limits read it: its batch_size, or every image it trains
    on if fewer. An upper bound: epoch_batches evens an epoch's steps out below it (55,000 images at
    30,000: two of 27,500), which the limits do not count on, so that a step's cost is the batch asked for."""
    return min(spec.batch_size, training_images(spec))


def check_budget(spec: TrainSpec, settings: Settings, *, stored: bool = False) -> None:
    """Refuse jobs the service should not run, before anything is stored. A `stored` spec (a model's,
    reproduced) was accepted once: only the budgets bind it, not the rules added since."""
    if spec.n_parameters > settings.max_parameters:
        raise invalid(
            "hidden_layers",
            f"this network has {spec.n_parameters:,} parameters; "
            f"the limit is {settings.max_parameters:,} (MLPLAB_MAX_PARAMETERS)",
        )
    available = DATASETS[spec.dataset].splits["train"] - spec.validation_size  # the rest is validated on
    if not stored and spec.train_limit is not None and spec.train_limit > available:
        raise invalid(
            "train_limit",
            f"{echo(spec.train_limit)} images; {spec.dataset}'s training split has {available:,} besides "
            f"the {spec.validation_size:,} held out for validation (validation_size)",
        )
    samples = spec.epochs * training_images(spec)
    if samples > settings.max_sample_epochs:
        raise invalid(
            "epochs",
            f"epochs x training images = {samples:,}; "
            f"the limit is {settings.max_sample_epochs:,} (MLPLAB_MAX_SAMPLE_EPOCHS)",
        )
    check_step(spec, settings)


def check_step(spec: TrainSpec, settings: Settings) -> None:
    """Refuse a job whose one step would take too long (a cancel waits it out) or hold too much memory."""
    images = step_images(spec)
    step = f"a step of {images:,} images"
    if images < spec.batch_size:
        step += f" (batch_size {spec.batch_size:,}; {images:,} training images)"
    cost = images * spec.n_parameters
    if cost > settings.max_batch_parameters:
        raise invalid(
            "batch_size",
            f"{step} x {spec.n_parameters:,} parameters = {cost:,}; the limit is "
            f"{settings.max_batch_parameters:,} (MLPLAB_MAX_BATCH_PARAMETERS): a smaller batch_size or network",
        )
    units = sum(spec.hidden_layers)
    if images * units > settings.max_batch_units:
        raise invalid(
            "batch_size",
            f"{step} x {units:,} hidden units = {images * units:,}; the limit is "
            f"{settings.max_batch_units:,} (MLPLAB_MAX_BATCH_UNITS): a smaller batch_size or narrower layers",
        )


def check_budget_of(spec: TrainSpec, settings: Settings, varied: str, values: Mapping[str, Any]) -> None:
    """check_budget for one of several specs: the problem names `varied`.<field> when the field is one of
    `values` (the combination at fault, quoted), else base.<field>."""
    try:
        check_budget(spec, settings)
    except ProblemError as exc:
        if not exc.invalid_params:
            raise
        field, reason = exc.invalid_params[0]["name"].removeprefix("body."), exc.invalid_params[0]["reason"]
        if field == "batch_size":  # a step's limits: the first of its fields at play that `values` holds
            at_play = STEP_FIELDS if step_images(spec) < spec.batch_size else ("batch_size", "hidden_layers")
            field = next((f for f in at_play if f in values), field)
        where = f"{varied}.{field}" if field in values else f"base.{field}"
        combination = ", ".join(f"{f}={echo(v)}" for f, v in values.items())
        raise invalid(where, f"{reason} (with {combination})") from None


QUEUE_RETRY_SECONDS = 30  # a full queue's Retry-After: about a small job's training


def client_queue_full(settings: Settings, queued: int, adding: int) -> ProblemError:
    """429: `adding` more jobs would put this client past MLPLAB_MAX_QUEUED_PER_CLIENT."""
    return ProblemError(
        429,
        CLIENT_SHARE_FULL,
        f"this client has {counted(queued, 'job')} queued and asks for {adding:,} more; one client may have "
        f"{settings.max_queued_per_client:,} queued (MLPLAB_MAX_QUEUED_PER_CLIENT). Retry once some have run.",
        headers={"Retry-After": str(QUEUE_RETRY_SECONDS)},
    )


def queue_full(settings: Settings, queued: int, adding: int = 1) -> ProblemError:
    """429: `adding` more jobs would put the queue past MLPLAB_MAX_QUEUED."""
    now = (
        f"{queued} jobs are queued"
        if adding == 1
        else f"this request adds {adding} jobs to the {queued} queued"
    )
    return ProblemError(
        429,
        "Queue full",
        f"{now}; the limit is {settings.max_queued} (MLPLAB_MAX_QUEUED). Retry once some have run.",
        headers={"Retry-After": str(QUEUE_RETRY_SECONDS)},
    )


def enqueue(
    session: Session,
    settings: Settings,
    specs: list[TrainSpec],
    sweep_id: str | None = None,
    reproduces: int | None = None,
    field: str = "body",
) -> list[Job]:
    """Queue these jobs, all or none: 429 when the queue has no room for them all (422 naming `field`
    when it could never hold them).

    The count and the inserts are one write transaction, so the limit holds; the caller commits
    before it returns, to release the write lock in its own thread hop (docs/reliability.md).
    """
    client = CLIENT.get()
    check_queue_room(session, settings, len(specs), field, client=client)
    return [
        enqueue_job(session, spec, sweep_id=sweep_id, reproduces=reproduces, client=client) for spec in specs
    ]


def check_queue_room(
    session: Session, settings: Settings, adding: int, field: str, *, client: str | None, ahead: bool = False
) -> None:
    """Take the queue's admission lock (lock_queue) and refuse (429) `adding` more jobs past
    MLPLAB_MAX_QUEUED, or past MLPLAB_MAX_QUEUED_PER_CLIENT of `client`, whose they will be (None: the
    process's own, which have no share); the caller queues them in this transaction, so the limits hold.
    More than either holds is a 422 naming `field` (what asked for them): retrying would never help.
    `ahead`: a look without the lock, ending its read, before costly work that a full queue would waste."""
    if adding == 0:  # an extension whose trials all wait for a place in flight: nothing queued now
        return
    if adding > settings.max_queued:
        raise invalid(
            field,
            f"{adding:,} jobs at once; the queue holds at most {settings.max_queued:,} (MLPLAB_MAX_QUEUED)",
        )
    if client is not None and adding > settings.max_queued_per_client:
        raise invalid(
            field,
            f"{adding:,} jobs at once; one client may have at most {settings.max_queued_per_client:,} queued "
            "(MLPLAB_MAX_QUEUED_PER_CLIENT)",
        )
    if not ahead:
        lock_queue(session)
    queued = count_queued(session)
    mine = None if client is None else count_queued(session, client)
    if ahead:
        session.rollback()  # the write transaction that follows begins afresh (SQLite cannot upgrade a read)
    if mine is not None and mine + adding > settings.max_queued_per_client:
        raise client_queue_full(settings, mine, adding)
    if queued + adding > settings.max_queued:
        raise queue_full(settings, queued, adding)


def require_study(session: Session, study_id: int) -> Study:
    """The study, or a 404."""
    return found(get_study(session, study_id), "study", study_id)


# Beside a study's best once two trials have succeeded, and in the history of a promote of it.
ONE_RUN_A_TRIAL = (
    "one run a trial: it is not shown better than the next trial (no test; a sweep with replicates of "
    "the two would test it)"
)


def one_run_caveat(trained: int) -> str | None:
    """What a study's best cannot show, once it has `trained` models (succeeded trials) to be best among."""
    return ONE_RUN_A_TRIAL if trained > 1 else None


def study_public(session: Session, study: Study, trials_limit: int | None = None) -> StudyPublic:
    """The study with its trials (in trial order; the latest trials_limit of them if given), its best
    trial, and its epochs and trials counted. Curves are read only for the trials it shows."""
    config = study_config(study)
    jobs = study_jobs(session, study.id)
    best_id = best_model_id(session, Job.study_id == study.id)  # GET /models' order, as promote's
    shown = jobs if trials_limit is None else jobs[max(0, len(jobs) - trials_limit) :]
    described = shown + [job for job in jobs if job.id == best_id and job not in shown]
    curves = validation_curves(session, (job.id for job in described))
    epochs = best_epochs(session, (job.id for job in described))
    warnings = {job.id: job_warning(job) for job in described}
    trials = {
        job.id: TrialPublic(
            number=record.number,
            job_id=job.id,
            status=job.status,
            params=dict(record.params),
            epochs=len(curves[job.id]),
            best_epoch=epochs.get(job.id),
            validation_accuracy=job.validation_accuracy,
            test_accuracy=job.test_accuracy,
            validation_curve=[curves[job.id][e] for e in sorted(curves[job.id])],
            near_chance=warnings[job.id] is not None,
            warning=warnings[job.id],
            error=job.error,
        )
        for job, record in zip(described, trial_records(config, described, curves), strict=True)
    }
    counts = dict.fromkeys(JobStatus, 0)
    for job in jobs:
        counts[job.status] += 1
    ended = study.status != StudyStatus.running
    modelled = counts[JobStatus.succeeded] + counts[JobStatus.pruned] if ended else None
    return StudyPublic(
        id=study.id,
        status=study.status,
        config=config,
        created_at=study.created_at,
        finished_at=study.finished_at,
        trials=[trials[job.id] for job in shown],
        best=None if best_id is None else trials.get(best_id),
        epochs_trained=study_epochs(session, study.id),
        counts=counts,
        sampler_note=sampler_note(config, modelled),
        best_note=one_run_caveat(counts[JobStatus.succeeded]),
    )


PNG_DOC: Responses = {200: {"content": {"image/png": {}}, "description": "A PNG image"}}
# A trained model never changes, so neither do its figures (but what an alias names does: params.ALIAS_NAMED).
FIGURE_CACHE = {"Cache-Control": "public, max-age=86400"}


def png_response(content: bytes, headers: dict[str, str] | None = None) -> Response:
    """A figure of trained models, cacheable for a day (unless an alias named one: params.ALIAS_NAMED)."""
    return Response(content, media_type="image/png", headers=FIGURE_CACHE | (headers or {}))


def dataset_public(name: str, settings: Settings) -> DatasetPublic:
    status = dataset_status(name, settings.data_dir, download=settings.download)
    return DatasetPublic(
        name=name,
        present=status["present"],
        damaged=status["damaged"],
        will_download=status["will_download"],
        splits=status["splits"],
        classes=list(status["classes"]),
    )


def dataset_image(data: Dataset, split: SplitName, index: int) -> tuple[np.ndarray, int]:
    """Image `index` of a split and its label; 404 naming the split's range when there is no such image."""
    images, labels = data.split(split)
    if index >= len(images):
        raise ProblemError(
            404,
            "Image not found",
            f"The {split} split of {data.name} has {len(images):,} images "
            f"(index 0 to {len(images) - 1:,}); there is no index {index:,}.",
        )
    return images[index], int(labels[index])


MIN_COMPARED, MAX_COMPARED = 2, 20


IdsQuery = Annotated[
    str,
    Query(
        description=f"{MIN_COMPARED} to {MAX_COMPARED} models, comma-separated ids or aliases: 3,7,champion",
        examples=["1,2,3"],
    ),
]


def parse_ids(ids: str) -> list[str]:
    """The models of `?ids=3,7,champion` (ids or aliases, unresolved), or a 422 naming what is wrong."""
    parts = [part.strip() for part in ids.split(",")] if ids.strip() else []
    if "" in parts:  # "1,,2" or "1,2,": a model left out, not one fewer to compare
        raise invalid(
            "query.ids", f"an empty entry between commas (got {echo(ids)}); give e.g. ids=3,7,champion"
        )
    bad = next((part for part in parts if not (is_id(part) or re.fullmatch(ALIAS_NAME, part))), None)
    if bad is not None:
        raise invalid(
            "query.ids",
            f"{echo(bad)} is neither a model id nor an alias: give comma-separated ids (each {ID_RANGE}) "
            f"or aliases ({ALIAS_WORDS}), e.g. ids=3,7,champion",
        )
    if not MIN_COMPARED <= len(parts) <= MAX_COMPARED:
        given = f"{counted(len(parts), 'model')} given"
        raise invalid("query.ids", f"{given}; compare {MIN_COMPARED} to {MAX_COMPARED} models")
    return parts


def distinct_models(refs: list[str], ids: list[int]) -> list[int]:
    """`ids`, what parse_ids' `refs` resolved to in order; 422 when two of them name the same model."""
    for i, model_id in enumerate(ids):
        if model_id in ids[:i]:
            first = refs[ids.index(model_id)]
            both = f" ({first} and {refs[i]} are both model {model_id})" if first != refs[i] else ""
            raise invalid("query.ids", f"model {model_id} is listed twice{both}")
    return ids


def resolve_alias(session: Session, name: str) -> int:
    """The id of the model an alias names now; 404 when there is no such alias."""
    model_id = alias_target(session, name)
    if model_id is None:
        raise alias_not_found(session, name)
    return model_id


def alias_not_found(session: Session, name: str) -> ProblemError:
    """The 404 for a name that is no alias now; one that was says it was removed, and where its history is."""
    gone = not_found("alias", name)
    if alias_history(session, name, 1, 0)[1]:
        gone.detail = f"There is no alias {name}: it was removed. Its history: /aliases/{name}/history."
    return gone


def require_job(session: Session, job_id: int) -> Job:
    """The job, or 404."""
    return found(get_job(session, job_id), "job", job_id)


def require_trained(session: Session, job_id: int) -> Job:
    """The job if it is a trained model: 404 for an unknown id, 409 for a job that has not succeeded."""
    job = get_job(session, job_id)
    if job is None:
        raise not_found("model", job_id)
    if job.status != JobStatus.succeeded:
        raise not_trained(job.id, job.status)
    return job


def trained_model(session: Session, job_id: int) -> TrainedModel:
    """The stored model of a trained job (require_trained's problems otherwise); `.weights` read on access."""
    model = get_model(session, job_id)
    if model is None:  # say why; a succeeded job has its model (finish_job stores both at once)
        require_trained(session, job_id)
        raise not_found("model", job_id)
    return model


def differing(specs: list[TrainSpec]) -> list[str]:
    """The spec fields that set the models apart, in TrainSpec's order (TrainSpec.as_trained: not
    log_every, nor momentum between optimizers that do not use it)."""
    dumps = [spec.as_trained() for spec in specs]

    def differs(field: str) -> bool:
        values = [d[field] for d in dumps]
        if field == "momentum":  # among those that use it: beside sgd, momentum is the optimizer's difference
            values = [v for v in values if v is not None]
        return any(v != values[0] for v in values[1:])

    return [field for field in dumps[0] if differs(field)]


def _show(field: str, value: Any) -> str:
    """A spec value for a label: an unset limit reads "all", an unset setting (early stopping) "off"."""
    if value is None:
        settings = TrainSpec.model_fields[field].annotation
        return (
            "off"
            if any(isinstance(t, type) and issubclass(t, BaseModel) for t in get_args(settings))
            else "all"
        )
    if isinstance(value, BaseModel):
        return "(" + ", ".join(f"{k}={_show(k, v)}" for k, v in value.model_dump().items()) + ")"
    if isinstance(value, list):
        return "-".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def labels(ids: list[int], specs: list[TrainSpec]) -> list[str]:
    """Legend entries: '#id' and the hyperparameters that set each model apart (its full name when none do),
    the field that tells most of them apart first (a legend cut short still tells twelve seeds apart)."""
    dumps = [spec.as_trained() for spec in specs]
    fields = sorted(differing(specs), key=lambda f: -len({json.dumps(d[f], sort_keys=True) for d in dumps}))
    if not fields:
        return [f"#{job_id} {spec.name}" for job_id, spec in zip(ids, specs, strict=True)]
    return [
        f"#{job_id} " + ", ".join(f"{f}={_show(f, getattr(spec, f))}" for f in fields)
        for job_id, spec in zip(ids, specs, strict=True)
    ]


def aliases_public(session: Session, aliases: Sequence[Alias]) -> list[AliasPublic]:
    """The aliases with their latest changes and their models' warnings, in two queries for them all."""
    models = get_jobs_by_id(session, {alias.model_id for alias in aliases})
    changes = alias_changes(session, aliases)
    return [
        AliasPublic(
            name=alias.name,
            model_id=alias.model_id,
            updated_at=alias.updated_at,
            detail=detail,
            rollback_to=back,
            warning=None if (model := models.get(alias.model_id)) is None else job_warning(model),
        )
        for alias in aliases
        for detail, back in [changes.get(alias.name, (None, None))]
    ]


def alias_public(session: Session, alias: Alias) -> AliasPublic:
    return aliases_public(session, [alias])[0]


def point_alias(
    session: Session,
    name: str,
    model: int | str,
    action: AliasAction = AliasAction.move,
    detail: str | None = None,
) -> tuple[AliasPublic, bool]:
    """Point alias `name` at a trained model (its id, or another alias): one write transaction, which
    the caller commits. Returns the alias and whether it was created; 422 for an unknown model or
    alias, 409 for a job that is not a trained model."""
    begin_write(session)
    model_id = model if isinstance(model, int) else alias_target(session, model)
    job = None if model_id is None else get_job(session, model_id)
    if job is None:
        raise invalid(
            "body.model_id", f"there is no {'model' if isinstance(model, int) else 'alias'} {model}"
        )
    if job.status != JobStatus.succeeded:
        raise not_trained(job.id, job.status)
    alias, created = move_alias(session, name, job.id, action, detail)
    return alias_public(session, alias), created


# A route that may create an alias (PUT, promote): 201 then, with its Location (set_created).
ALIAS_CREATED_DOC: Responses = {201: {"model": AliasPublic, "description": "Created"}}


def set_created(response: Response, alias: str, created: bool) -> None:
    """A change that created the alias answers 201 with its Location, as PUT /aliases/{name} always has."""
    if created:
        response.status_code = 201
        response.headers["Location"] = f"/aliases/{alias}"


def still_running(source: str, pending: str, cancel: str) -> ProblemError:
    """The 409 for promoting `source` (a sweep, a study) while it has `pending` runs ("2 jobs still queued
    or running"): its best is not known until they end, and the alias would stay where the final ranking
    may not."""
    return ProblemError(
        409,
        "Still running",
        f"{source.capitalize()} has {pending}: its best is known once they end. Wait for it, or cancel it "
        f"(POST {cancel}; its running jobs stop at their next write) to promote the best of those that ended.",
    )


def promote_best(
    session: Session, alias: str, source: str, *where: ColumnElement[bool], caveat: str | None = None
) -> tuple[AliasPublic, bool]:
    """Point `alias` at the best trained model among the jobs matching `where` (a sweep's, a study's);
    409 when none has succeeded yet. `source` names them for people: "sweep 3f9c2a1b7d4e"; `caveat`, what
    the history should keep beside it. Returns the alias and whether it was created."""
    begin_write(session)
    best = best_model_id(session, *where)
    if best is None:
        raise ProblemError(409, "Nothing to promote", f"{source.capitalize()} has no trained model yet.")
    detail = f"the best model of {source} by {ranked_by(*count_models(session, *where))}"
    if caveat:
        detail += f"; {caveat}"
    return point_alias(session, alias, best, AliasAction.promote, detail)
