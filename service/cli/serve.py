"""`mlplab api`, `mlplab worker` and `mlplab dev`: the processes of a deployment."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import subprocess
import sys

from service.settings import get_settings

log = logging.getLogger("mlplab")

SHUTDOWN_GRACE_SECONDS = 5


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve_api(host: str | None = None, port: int | None = None, workers: int = 1) -> None:
    """Run the API under uvicorn; host and port default to MLPLAB_HOST and MLPLAB_PORT."""
    import uvicorn  # only the API needs it

    from service.cli.protocol import HttpProtocol

    settings = get_settings()
    host, port = host or settings.host, port or settings.port
    if settings.api_token is None:
        who = "any program on this machine" if _is_loopback(host) else "anyone on the network"
        log.warning("MLPLAB_API_TOKEN is not set: %s can submit jobs to http://%s:%s", who, host, port)
    log.info("API on http://%s:%s (docs at /docs)", host, port)
    # uvloop + httptools: the plain asyncio loop slows keep-alive requests (docs/performance.md).
    # Past the grace period, open event streams are cut; their clients reconnect with Last-Event-ID.
    uvicorn.run(
        "service.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http=HttpProtocol,
        timeout_keep_alive=settings.keep_alive_seconds,
        limit_concurrency=settings.max_connections,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def serve_dev(host: str | None = None, port: int | None = None) -> int:
    """The API and one worker process, stopped together."""
    get_settings()  # invalid settings stop here, before a worker is started
    worker = subprocess.Popen([sys.executable, "-m", "workers"])
    log.info("worker started (pid %d)", worker.pid)
    # uvicorn re-raises SIGTERM after its shutdown: with the default handler the worker would outlive us.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        serve_api(host, port)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
    return 0


def run(args: argparse.Namespace) -> int:
    """Run `api`, `worker` or `dev` as parsed; the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "api":
        serve_api(args.host, args.port, args.workers)
        return 0
    if args.command == "worker":
        from workers.worker import main as worker_main  # the worker imports torch; the API must not

        return worker_main(["--once"] if args.once else [])
    return serve_dev(args.host, args.port)
