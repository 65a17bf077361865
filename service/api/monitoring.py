"""Prometheus metrics for GET /metrics (docs/deployment.md, "Metrics", lists them and how to scrape).

Two kinds. What this API process served (requests, their latency, predictions) is counted where it
happens: in this process, or, when `mlplab api` runs several uvicorn processes, in files under
MLPLAB_METRICS_DIR that whichever process answers a scrape adds up (prometheus_client's
multiprocess mode). What the service holds (jobs, the queue, live workers, epochs trained) is read
from the database at each scrape (workers are counted from their own records), so it is the same on
every replica and workers need no port of their own.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.asgi import HttpMiddleware
from service.errors import HTTP_METHODS
from service.ml.spec import Backend
from service.quoting import url_quoted
from service.store.models import JobStatus, utcnow
from service.store.queries import (
    EpochTimes,
    WorkerCounts,
    count_live_workers,
    epoch_times,
    job_counts,
    oldest_queued_at,
)

log = logging.getLogger("mlplab.api")
# answered well, not logged: the polls would drown the rest
QUIET_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SHED = frozenset({429, 503})  # refusals of load, logged at DEBUG: a burst's thousands are /metrics' to count
# Seconds. A request is timed to its response's headers: an event stream's life is not its latency.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
EPOCH_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
UNMATCHED = "unmatched"  # the route label of a request no route matched (any path: a bounded label)
REFUSED = "refused"  # the route label of a request the guard refused before routing (Host, Origin, token)
ROUTE_LABEL = "mlplab.route_label"  # a scope key: the route label set before routing, REFUSED
# Alias names cost a PUT each: past this many in one process, a prediction by a new name counts as OTHER_ALIAS.
MAX_ALIAS_LABELS = 50
OTHER_ALIAS = "(other)"
OTHER_METHOD = "other"  # the method label of any method outside HTTP_METHODS (PROPFIND, PURGE...: bounded)

# No *_created series: one process's would show, several processes' (multiprocess mode) would not.
disable_created_metrics()  # type: ignore[no-untyped-call]


def mounted(scope: Scope) -> str | None:
    """The template of the mounted app (the dashboard's files: /static/{path}) that took the request, or
    None: a Mount names no route, but sets the root path its app serves under."""
    if "app_root_path" not in scope:  # only a Mount sets it: an app served under a root path has one too
        return None
    root = scope.get("root_path", "")[len(scope["app_root_path"]) :]
    return f"{root}/{{path}}" if root else None


class Monitoring:
    """This process's counters, and the text a scrape answers with."""

    def __init__(self, metrics_dir: Path | None) -> None:
        self.metrics_dir = metrics_dir  # set: several processes share their counts through its files
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "mlplab_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mlplab_http_request_duration_seconds",
            "Time from a request's arrival to its response's headers, by method, route template and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "mlplab_predictions",
            "Images predicted, by model id and the alias the request named it by ('' for an id; "
            f"'{OTHER_ALIAS}' while this process already counts {MAX_ALIAS_LABELS} live aliases).",
            ["model", "alias"],
            registry=self.registry,
        )
        self.aliases: dict[str, set[str]] = {}  # the alias labels this process records, and their models

    def served(self, scope: Scope, status: int, seconds: float) -> None:
        route = (
            getattr(scope.get("route"), "path", None) or mounted(scope) or scope.get(ROUTE_LABEL, UNMATCHED)
        )
        method = scope["method"] if scope["method"] in HTTP_METHODS else OTHER_METHOD
        # each label bounded whatever a client sends: a route template, a fixed method set, the app's statuses
        labels = (method, route, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)
        # every change and every refusal; a prediction (a POST that changes nothing) as a read
        changes = scope["method"] not in QUIET_METHODS and not route.endswith("/predict")
        if status >= 400 or changes:
            client = scope.get("client")
            log.log(
                logging.DEBUG if status in SHED else logging.INFO,
                "%s %s %d %.1f ms (%s)",
                method,
                url_quoted(scope["path"]),  # not the query, which may carry a read ticket
                status,
                seconds * 1000,
                client[0] if client else "-",
            )

    def predicted(self, model_id: int, alias: str | None, images: int) -> None:
        if alias and alias not in self.aliases:
            if len(self.aliases) < MAX_ALIAS_LABELS:
                self.aliases[alias] = set()
            else:
                alias = OTHER_ALIAS
        if alias in self.aliases:
            self.aliases[alias].add(str(model_id))
        self.predictions.labels(str(model_id), alias or "").inc(images)

    def forget_alias(self, alias: str) -> None:
        """An alias deleted: its label's slot is free again, and (one process, whose series are its own)
        its series go; throwaway aliases would otherwise fill the slots for good."""
        for model in self.aliases.pop(alias, set()):
            if self.metrics_dir is None:
                self.predictions.remove(model, alias)

    def exposition(self, state: ServiceState | None) -> bytes:
        """The Prometheus text of every process's counters and of the service's state (None: unreadable)."""
        registry = CollectorRegistry()
        if self.metrics_dir is not None:
            MultiProcessCollector(registry, path=str(self.metrics_dir))  # type: ignore[no-untyped-call]
        else:
            registry.register(self.registry)
        registry.register(state if state is not None else DatabaseDown())
        return generate_latest(registry)


def _database_up(up: bool) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "mlplab_database_up", "1 when this scrape could read the database, else 0.", int(up)
    )


class DatabaseDown:
    """The scrape's collector when the database cannot be read: this replica's counters still count."""

    def collect(self) -> list[Metric]:
        return [_database_up(False)]


class RequestMetrics(HttpMiddleware):
    """ASGI middleware: counts and times every HTTP request when its response starts."""

    def __init__(self, app: ASGIApp, monitoring: Monitoring) -> None:
        super().__init__(app)
        self.monitoring = monitoring

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        counted = False

        async def send_counted(message: Message) -> None:
            nonlocal counted
            if message["type"] == "http.response.start" and not counted:
                counted = True
                self.monitoring.served(scope, message["status"], time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        except Exception:
            if not counted:  # the server answers 500 after this middleware has let go
                self.monitoring.served(scope, 500, time.perf_counter() - started)
            raise


@dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, as a registry keeps its collectors
class ServiceState:
    """The database's view of the service at one scrape, as a prometheus_client collector."""

    jobs: dict[JobStatus, int]
    oldest_queued_at: datetime | None
    workers: WorkerCounts
    epochs: dict[str, EpochTimes]
    at: datetime

    def collect(self) -> list[Metric]:
        jobs = GaugeMetricFamily("mlplab_jobs", "Jobs in each state.", labels=["status"])
        for status, count in self.jobs.items():
            jobs.add_metric([status.value], count)
        waited = (self.at - self.oldest_queued_at).total_seconds() if self.oldest_queued_at else 0.0
        return [
            _database_up(True),
            jobs,
            GaugeMetricFamily(
                "mlplab_queue_depth", "Jobs waiting for a worker.", self.jobs[JobStatus.queued]
            ),
            GaugeMetricFamily(
                "mlplab_queue_oldest_age_seconds",
                "How long the oldest queued job has waited (0 when the queue is empty).",
                max(waited, 0.0),
            ),
            GaugeMetricFamily(
                "mlplab_workers_live",
                "Workers whose heartbeat is fresh, idle or training.",
                self.workers.live,
            ),
            GaugeMetricFamily(
                "mlplab_workers_training", "Live workers training a job.", self.workers.training
            ),
            GaugeMetricFamily(
                "mlplab_workers_standing_by",
                "Live workers beyond their host's cores, claiming no job until one of the first stops.",
                self.workers.standing_by,
            ),
            *self._epochs(),
        ]

    def _epochs(self) -> list[Metric]:
        trained = CounterMetricFamily(
            "mlplab_epochs_trained",
            "Finished training epochs, those a job given back to the queue trains again included.",
            labels=["backend"],
        )
        seconds = HistogramMetricFamily(
            "mlplab_epoch_seconds",
            "Training time of each finished epoch, evaluation and progress writes excluded.",
            labels=["backend"],
        )
        for backend in get_args(Backend):
            times = self.epochs.get(backend, EpochTimes(0, 0.0, [0] * len(EPOCH_BUCKETS)))
            trained.add_metric([backend], times.count)
            buckets = [(floatToGoString(b), n) for b, n in zip(EPOCH_BUCKETS, times.at_most, strict=True)]  # type: ignore[no-untyped-call]
            seconds.add_metric([backend], [*buckets, ("+Inf", times.count)], sum_value=times.seconds)
        return [trained, seconds]


def read_state(session: Session, lease_seconds: float) -> ServiceState:
    """The service's state for one scrape: four aggregate queries."""
    now = utcnow()
    return ServiceState(
        jobs=job_counts(session),
        oldest_queued_at=oldest_queued_at(session),
        workers=count_live_workers(session, lease_seconds, now),
        epochs=epoch_times(session, EPOCH_BUCKETS),
        at=now,
    )
