"""The application factory: settings, database, routers, error handlers. No endpoints here."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import __version__
from service.api.asgi import HeadAsGet, NoRanges
from service.api.database import Database
from service.api.guard import RequestGuard
from service.api.inference import Inference
from service.api.monitoring import Monitoring, RequestMetrics
from service.api.openapi import add_parameter_examples
from service.api.routes import (
    aliases,
    compare,
    datasets,
    disagreements,
    events,
    health,
    jobs,
    metrics,
    models,
    plots,
    predictions,
    studies,
    sweeps,
    tickets,
    web,
    workers,
)
from service.api.security import SecurityHeaders
from service.api.streams import CutAtShutdown, EventHub
from service.errors import install_error_handlers
from service.settings import Settings, get_settings
from service.store.db import make_engine, make_sessionmaker, migrate

READYZ_CONNECTIONS = 2  # /readyz takes no slot (a health check must not queue behind a burst)

DESCRIPTION = """Train multilayer perceptrons on MNIST with a from-scratch NumPy network or its PyTorch twin,
then compare them and query them: accuracy, confusion matrices and per-image predictions.

Submit a job with `POST /jobs` (or a grid of them with `POST /sweeps`), follow it live with
`GET /jobs/{id}/events`, then read `GET /models`, `GET /compare?ids=...` and the figures (`*.png`).
Name the model you serve with an alias (`PUT /aliases/champion`): wherever a model id goes, an alias
goes too. `GET /metrics` is for Prometheus."""


ROUTERS = (
    jobs,
    events,
    sweeps,
    studies,
    models,
    aliases,
    compare,
    disagreements,
    plots,
    predictions,
    datasets,
    workers,
    health,
    tickets,
    metrics,
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Startup (the database migrated, the event-stream reader, the model cache warmed) and shutdown."""
    settings: Settings = app.state.settings
    engine = make_engine(settings.database_url, max_connections=settings.max_in_flight + READYZ_CONNECTIONS)
    migrate(engine)
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.database = Database(engine, app.state.sessionmaker, app.state.db_slots)
    app.state.inference = Inference(app.state.database, settings)
    app.state.events = EventHub(
        app.state.sessionmaker, app.state.db_slots, settings.max_streams, settings.max_streams_per_client
    )
    reader = asyncio.create_task(app.state.events.run(), name="event-streams")
    CutAtShutdown.install()  # here: uvicorn has configured its logging by now, in each of its processes
    await app.state.inference.warm()  # before the first request, not during the first ones
    # What startup built (modules, routes, warmed models) lives as long as the process: a full collection
    # that walks it stops every request for tens of milliseconds (docs/performance.md, "Serving"). Once
    # a process: a later app's (tests start many) would walk the whole heap to freeze little more.
    if not gc.get_freeze_count():
        gc.collect()
        gc.freeze()
    yield
    reader.cancel()
    await app.state.database.close()
    engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # docs_url=None: /docs is served with local assets by the web router; no ReDoc (it needs a CDN)
    app = FastAPI(
        title="mlplab",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    # A session takes a slot, waited for in the event loop, before a pool connection: a capped pool
    # alone deadlocks threads against requests (docs/reliability.md, "Database slots").
    app.state.db_slots = asyncio.Semaphore(settings.max_in_flight)
    app.state.decodes = predictions.decode_turns()  # one client's burst of small images waits its share
    # a large predict body is read only in its turn (routes/predictions.py)
    app.state.uploads = predictions.upload_turns()
    app.state.monitoring = Monitoring(settings.metrics_dir)
    for module in ROUTERS:
        app.include_router(module.router)
    web.mount(app)
    app.add_middleware(NoRanges)
    app.add_middleware(HeadAsGet)  # inside the guard and the metrics: they see the HEAD
    app.add_middleware(RequestGuard, settings=settings)  # host, origin, token, body limit: before the body
    app.add_middleware(SecurityHeaders, private_cache=settings.protect_reads)  # on refusals too
    app.add_middleware(RequestMetrics, monitoring=app.state.monitoring)  # outermost: it counts refusals too
    add_parameter_examples(app)
    install_error_handlers(app)
    return app
