"""`mlplab api`, `mlplab worker` and `mlplab dev`: the processes of a deployment."""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import logging
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from service import configure_logging
from service.settings import Settings, get_settings

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("mlplab")

SHUTDOWN_GRACE_SECONDS = 5
WORKER_STOP_SECONDS = 15  # a worker's grace after SIGTERM: its current step, then it releases its job
RESTART_FIRST_SECONDS, RESTART_MAX_SECONDS = 1.0, 30.0  # waits before restarting a dead worker, doubling
# The files prometheus_client's multiprocess mode writes: "{counter|histogram|gauge_<mode>|summary}_{pid}.db"
PROMETHEUS_FILE = re.compile(r"(counter|histogram|summary|gauge_[a-z]+)_\d+\.db")
STEADY_SECONDS = 60.0  # a worker that ran this long before it exited is restarted after the first wait


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve_api(host: str | None = None, port: int | None = None, workers: int = 1) -> None:
    """Run the API under uvicorn; host and port default to MLPLAB_HOST and MLPLAB_PORT."""
    import uvicorn  # only the API needs it

    from service.cli.protocol import HttpProtocol
    from service.store.db import shown_url

    settings = get_settings()
    ready_database(settings, "mlplab api")
    host, port = host or settings.host, port or settings.port
    exit_unless_resolvable(host, "mlplab api")
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"  # an IPv6 address in brackets
    if settings.api_token is None:
        who = "any program on this machine" if _is_loopback(host) else "anyone on the network"
        log.warning("MLPLAB_API_TOKEN is not set: %s can submit jobs to %s", who, url)
    log.info("API on %s (docs at /docs), database %s", url, shown_url(settings.database_url))
    # httptools on the stdlib asyncio loop: uvloop is a little faster, with far longer tails (docs/performance.md).
    # Past the grace period, open event streams are cut; their clients reconnect with Last-Event-ID.
    with shared_metrics(settings, workers):
        uvicorn.run(
            "service.main:create_app" if workers <= 1 else "service.cli.serve:process_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="asyncio",
            http=HttpProtocol,
            # no WebSocket routes: a GET asking to upgrade is served as a plain GET (a body after an
            # Upgrade header is left unread, as the parser stops there)
            ws="none",
            timeout_keep_alive=settings.keep_alive_seconds,
            limit_concurrency=settings.max_connections,
            log_level="info",
            access_log=False,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
            # uvicorn trusts X-Forwarded-For from loopback unless told: any local process could name
            # itself any client (per-client limits key on it), so only FORWARDED_ALLOW_IPS's proxies
            proxy_headers="FORWARDED_ALLOW_IPS" in os.environ,
        )


@contextmanager
def shared_metrics(settings: Settings, workers: int) -> Iterator[None]:
    """Several uvicorn processes add up their /metrics counts through files (prometheus_client's
    multiprocess mode): in MLPLAB_METRICS_DIR, emptied first since counts start with the server, or,
    when it is unset, in a temporary folder removed afterwards. One process needs none."""
    if workers <= 1 and settings.metrics_dir is None:
        yield
        return
    folder = settings.metrics_dir or Path(tempfile.mkdtemp(prefix="mlplab-metrics-"))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):  # prometheus_client's files alone: the folder may hold a database too
        if PROMETHEUS_FILE.fullmatch(stale.name):
            stale.unlink()
    # Before anything imports prometheus_client, which reads it once; uvicorn's processes inherit it and
    # Settings.metrics_dir reads it too.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    get_settings.cache_clear()
    try:
        yield
    finally:
        if settings.metrics_dir is None:
            shutil.rmtree(folder, ignore_errors=True)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when the thread that started it dies


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """For Popen's preexec_fn, on Linux: the child gets SIGTERM (and releases its job) if `mlplab dev`
    is killed without stopping it (kill -9), instead of living on and claiming jobs beside the next one."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: no dlopen between fork and exec

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the prctl: nobody would send it
            os._exit(1)

    return in_child


def process_app() -> FastAPI:
    """create_app in one of `mlplab api --workers N`'s processes, which ends with uvicorn's supervisor: a
    kill -9 of `mlplab api` left them serving, and the next start found its port taken."""
    from service.main import create_app

    configure_logging()  # a spawned process: its parent's logging is not its own
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid is not None and (die := _die_with_parent(parent.pid)) is not None:
        die()
    return create_app()


class WorkerSupervisor(threading.Thread):
    """`mlplab dev`'s worker process: started, restarted whenever it exits (after a wait that doubles
    from RESTART_FIRST_SECONDS to RESTART_MAX_SECONDS, and starts over once a worker ran
    STEADY_SECONDS), and stopped with the API."""

    def __init__(self) -> None:
        super().__init__(name="worker-supervisor", daemon=True)
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # no worker starts once stop() has begun

    def run(self) -> None:
        delay = RESTART_FIRST_SECONDS
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return
                # its own process group: a terminal's Ctrl-C stops the API, whose stop() then stops the
                # worker; reaching both, the worker exited and was restarted during the API's shutdown
                process = self.process = subprocess.Popen(
                    [sys.executable, "-m", "workers"],
                    preexec_fn=_die_with_parent(os.getpid()),
                    process_group=0,
                )
            log.info("worker started (pid %d)", process.pid)
            started = time.monotonic()
            status = process.wait()  # also reaps it: a killed worker leaves no zombie
            if self._stopping.is_set():
                return
            ran = time.monotonic() - started
            delay = RESTART_FIRST_SECONDS if ran >= STEADY_SECONDS else delay
            log.error(
                "worker (pid %d) exited with status %d after %.0f s; restarting it in %.0f s",
                process.pid, status, ran, delay,
            )  # fmt: skip
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, RESTART_MAX_SECONDS)

    def stop(self) -> None:
        """SIGTERM to the worker (it puts its job back in the queue), SIGKILL past its grace."""
        with self._lock:
            self._stopping.set()
            process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=WORKER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.join(timeout=5)


def ready_database(settings: Settings, prog: str) -> None:
    """Migrate the database, or exit with one line saying why it cannot be (not a lifespan traceback)."""
    from sqlalchemy.exc import SQLAlchemyError

    from service.store.db import (
        DatabaseFolderMissing,
        MigrationLockHeld,
        UnknownRevision,
        database_error,
        make_engine,
        migrate,
    )

    try:
        engine = make_engine(settings.database_url)
    except DatabaseFolderMissing as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    try:
        migrate(engine)
    except SQLAlchemyError as exc:
        print(f"{prog}: {database_error(settings.database_url, exc)}", file=sys.stderr)
        raise SystemExit(1) from None
    except (UnknownRevision, MigrationLockHeld) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        engine.dispose()


def exit_unless_resolvable(host: str, prog: str) -> None:
    """Exit with one line when the bind address names nothing (uvicorn's words name no setting)."""
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"{prog}: cannot bind to {host!r} (MLPLAB_HOST or --host): {reason}", file=sys.stderr)
        raise SystemExit(1) from None


def serve_dev(host: str | None = None, port: int | None = None) -> int:
    """The API and one worker process, restarted when it dies; stopped together."""
    settings = get_settings()
    ready_database(settings, "mlplab dev")  # bad settings or database stop here, before a worker starts
    exit_unless_resolvable(host or settings.host, "mlplab dev")
    supervisor = WorkerSupervisor()
    supervisor.start()
    # uvicorn re-raises SIGTERM after its shutdown: with the default handler the worker would outlive us.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        serve_api(host, port)
    finally:
        supervisor.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    """Run `api`, `worker` or `dev` as parsed (or check one's health); the exit status."""
    if args.command == "health":
        from service.health import check

        return check(args.worker)
    configure_logging()
    if args.command == "api":
        serve_api(args.host, args.port, args.workers)
        return 0
    if args.command == "worker":
        from workers.worker import main as worker_main  # the worker imports torch; the API must not

        return worker_main(["--once"] if args.once else [], prog="mlplab worker")
    return serve_dev(args.host, args.port)
