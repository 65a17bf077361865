"""The tables. Timestamps are timezone-aware UTC and end in ``_at``; rows are kept, never recycled."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    false,
    func,
    literal_column,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from service.selection import UNVALIDATED


class JobStatus(StrEnum):
    """Where a job is in its life (service.store.jobs has the transitions between them)."""

    queued = "queued"  # waiting for a worker
    running = "running"  # claimed by a worker that renews its lease
    succeeded = "succeeded"  # trained; its model row exists
    failed = "failed"  # gave up; `error` says why
    cancelled = "cancelled"  # stopped on request; no model
    pruned = "pruned"  # a study's trial its pruner stopped early; its curves are kept, no model

    @property
    def finished(self) -> bool:
        """No transition leaves this state."""
        return self in FINISHED


FINISHED = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled, JobStatus.pruned})


class StudyStatus(StrEnum):
    """Where a study is (service.store.studies): it asks for trials only while running."""

    running = "running"  # trials in flight or still to ask for
    finished = "finished"  # every trial asked for has ended; extending it runs it again
    cancelled = "cancelled"  # stopped on request; asks for nothing more


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime: TIMESTAMPTZ on PostgreSQL, naive UTC text on SQLite, aware in Python."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware one (datetime.now(UTC))")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _short_enum(enum: type[StrEnum]) -> Enum:
    """A StrEnum stored as VARCHAR(16) (its CHECK is the table's), read back as its members."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda e: [m.value for m in e],
    )


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), bytes: LargeBinary()}


class Study(Base):
    """An adaptive search (service.search): its trials are the jobs that name it."""

    __tablename__ = "studies"
    __table_args__ = (CheckConstraint(f"status IN {tuple(s.value for s in StudyStatus)!r}", name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    config: Mapped[dict[str, Any]]  # service.search.StudyCreate.model_dump(mode="json"), as submitted
    status: Mapped[StudyStatus] = mapped_column(_short_enum(StudyStatus))
    trials: Mapped[int]  # trials asked for in all: config's, plus every extension
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]  # finished or cancelled; None again once extended
    # who asked for it: its trials count against its share
    client: Mapped[str | None] = mapped_column(String(64))

    def __repr__(self) -> str:
        return f"<Study {self.id} {self.status} {self.trials} trials>"


class Job(Base):
    """One training run: its spec, where it is in its life, and its progress."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(f"status IN {tuple(s.value for s in JobStatus)!r}", name="status"),
        Index(None, "status", "id"),
        Index(None, "study_id", "trial_number", unique=True),  # a trial is never queued twice
        Index(None, "sweep_id", "id"),
        Index(None, "validation_accuracy", "id"),
        Index(None, "test_accuracy", "id"),
        Index(None, "created_at", "id"),
        Index(None, "started_at", "finished_at"),
        Index(None, "status", "client"),  # a client's queued jobs, against its share of the queue
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String)  # TrainSpec.name, for display
    spec: Mapped[dict[str, Any]]  # TrainSpec.model_dump(mode="json")
    backend: Mapped[str] = mapped_column(String(16))  # spec["backend"], denormalised for filtering
    status: Mapped[JobStatus] = mapped_column(_short_enum(JobStatus))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]  # first claim; kept across retries
    finished_at: Mapped[datetime | None]  # succeeded, failed or cancelled
    # when a worker gave it back to the queue (stopped, or lost), which its wait counts from; None: created_at
    requeued_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]  # last lease renewal while running
    # claims, less graceful releases
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    worker_id: Mapped[str | None] = mapped_column(String)  # "host:pid:rand" while running
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    error: Mapped[str | None] = mapped_column(Text)  # why it failed, for people
    # epoch of the latest recorded step, and the latest recorded step (global, 1-based)
    epoch: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    step: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    steps: Mapped[int | None]  # total steps of the job, known once training starts
    loss: Mapped[float | None] = mapped_column(Float)  # latest recorded loss
    sweep_id: Mapped[str | None] = mapped_column(String)
    train_accuracy: Mapped[float | None] = mapped_column(Float)  # set when it succeeds
    test_accuracy: Mapped[float | None] = mapped_column(Float)
    # what trained it (service.ml.provenance.Provenance), written by its worker when training starts
    provenance: Mapped[dict[str, Any] | None]
    reproduces: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))  # the model it trains again
    reproduction: Mapped[dict[str, Any] | None]  # how close it came (provenance.Reproduction), once trained
    validation_accuracy: Mapped[float | None] = mapped_column(Float)  # and stays None with validation_size 0
    # steps between recorded losses: spec.log_every, or wider to keep MLPLAB_MAX_LOSS_POINTS (train.loss_interval)
    loss_every: Mapped[int | None]
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"), index=True)
    trial_number: Mapped[int | None]  # 0, 1, 2, ... within its study
    # the address that asked for it (a study's trials: the study's); None: the process's own, or older
    client: Mapped[str | None] = mapped_column(String(64))

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.status} {self.name!r}>"


class Loss(Base):
    """The training loss every spec.log_every steps."""

    __tablename__ = "losses"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int]
    step: Mapped[int] = mapped_column(primary_key=True)  # global, 1-based
    loss: Mapped[float] = mapped_column(Float)


class EpochMetric(Base):
    """Mean loss, accuracies and duration of one finished epoch (service.ml.train.EpochEnd)."""

    __tablename__ = "epoch_metrics"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(primary_key=True)
    loss: Mapped[float] = mapped_column(Float)
    train_accuracy: Mapped[float] = mapped_column(Float)
    test_accuracy: Mapped[float] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)
    validation_loss: Mapped[float | None] = mapped_column(Float)  # None without a validation split
    validation_accuracy: Mapped[float | None] = mapped_column(Float)
    # train and test accuracies on samples (every epoch but the last trained); None: from before 0012
    sampled: Mapped[bool | None] = mapped_column(Boolean)


class RewoundEpoch(Base):
    """A finished epoch of a job given back to the queue past its checkpoint, which the job trains again
    (jobs._rewind): its time is kept so that the epochs trained, a Prometheus counter, never go down."""

    __tablename__ = "rewound_epochs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    seconds: Mapped[float] = mapped_column(Float)


class TrainedModel(Base):
    """The trained network of a succeeded job (table ``models``)."""

    __tablename__ = "models"
    __table_args__ = (
        Index(None, "test_accuracy", "job_id"),
        Index(None, "created_at", "job_id"),
    )

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    weights: Mapped[bytes]  # the .npz bytes of service.ml.weights
    train_accuracy: Mapped[float] = mapped_column(Float)
    test_accuracy: Mapped[float] = mapped_column(Float)
    confusion_train: Mapped[list[list[int]]] = mapped_column(JSON)  # 10x10, [true][predicted]
    confusion_test: Mapped[list[list[int]]] = mapped_column(JSON)
    seconds: Mapped[float] = mapped_column(Float)  # training time
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    validation_accuracy: Mapped[float | None] = mapped_column(Float)  # None with validation_size 0
    best_epoch: Mapped[int]  # the epoch whose weights these are (early stopping: the lowest validation loss)
    stopped_epoch: Mapped[int]  # the last epoch trained
    # Each image's predicted class and its probability (service.ml.evaluation.encode_predictions), so
    # that the API never recomputes a split; None for models stored before they were kept.
    predictions_train: Mapped[bytes | None]
    predictions_test: Mapped[bytes | None]

    job: Mapped[Job] = relationship(lazy="raise")


# What ranks models (queries.BEST_FIRST, selection.rank_key): validation accuracy, else test accuracy less
# UNVALIDATED. A literal, not a bound parameter: the planner uses the index only for the same expression.
RANK_SCORE = func.coalesce(
    TrainedModel.validation_accuracy, TrainedModel.test_accuracy - literal_column(repr(UNVALIDATED))
)
Index("ix_models_rank_score_job_id", RANK_SCORE, TrainedModel.job_id)


class JobCheckpoint(Base):
    """The latest end-of-epoch training state of a running job, to resume it after a crash."""

    __tablename__ = "checkpoints"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int]  # epochs completed
    state: Mapped[bytes]  # opaque bytes from service.ml.train.Checkpoint
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AliasAction(StrEnum):
    """What an alias event did (each is one transaction of service.store.aliases)."""

    move = "move"  # PUT /aliases/{name}: created, or pointed at another model
    promote = "promote"  # pointed at the best model of a sweep (or a study)
    rollback = "rollback"  # back to the model it named before its current one
    delete = "delete"  # removed; the name may be given again, with a history of its own from there


MAX_ALIAS_CHARS = 63  # an alias's name, at most (migration 0004 made the columns this wide)


class Alias(Base):
    """A name for a trained model (champion, staging) that moves from model to model."""

    __tablename__ = "aliases"

    name: Mapped[str] = mapped_column(String(MAX_ALIAS_CHARS), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.job_id"))
    event_id: Mapped[int] = mapped_column(ForeignKey("alias_events.id"))  # the event that set it
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AliasEvent(Base):
    """One change of an alias, kept for its history. Rollbacks walk `rollback_to_id` back."""

    __tablename__ = "alias_events"
    __table_args__ = (
        CheckConstraint(f"action IN {tuple(a.value for a in AliasAction)!r}", name="action"),
        Index(None, "alias", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alias: Mapped[str] = mapped_column(
        String(MAX_ALIAS_CHARS)
    )  # no foreign key: a deleted alias keeps its history
    action: Mapped[AliasAction] = mapped_column(_short_enum(AliasAction))
    from_model_id: Mapped[int | None] = mapped_column(ForeignKey("models.job_id"))
    to_model_id: Mapped[int | None] = mapped_column(ForeignKey("models.job_id"))  # None: deleted
    # The event whose model a rollback from this state restores; None when there is nothing before.
    rollback_to_id: Mapped[int | None] = mapped_column(ForeignKey("alias_events.id"))
    detail: Mapped[str | None] = mapped_column(Text)  # why, for promotions: "best of sweep ..."
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Worker(Base):
    """A worker process as it last reported itself (service.store.workers has its verbs)."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String, primary_key=True)  # "host:pid:rand", as in jobs.worker_id
    host: Mapped[str] = mapped_column(String)  # its hostname, for people
    # the same for every process on the same cores of one machine, containers included (workers/presence.py)
    host_key: Mapped[str] = mapped_column(String, index=True)
    pid: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(
        default=utcnow
    )  # alive while recent (MLPLAB_LEASE_SECONDS)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))  # training now
    threads: Mapped[int] = mapped_column(default=0, server_default=text("0"))  # its job's; 0 when idle
    # beyond its host's cores: it claims nothing until one of the host's first workers stops
    standing_by: Mapped[bool] = mapped_column(default=False, server_default=false())
