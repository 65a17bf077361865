"""The `mlplab` command: api, worker, dev (both on one machine)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import subprocess
import sys

from service.settings import get_settings

log = logging.getLogger("mlplab")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _serve(host: str | None, port: int | None, workers: int = 1) -> None:
    import uvicorn

    # Flags override the environment; the app factory reads the environment (in every uvicorn process).
    if host:
        os.environ["MLPLAB_HOST"] = host
    if port:
        os.environ["MLPLAB_PORT"] = str(port)
    get_settings.cache_clear()
    settings = get_settings()
    if settings.api_token is None and not _is_loopback(settings.host):
        log.warning("serving on %s without MLPLAB_API_TOKEN: anyone on the network can submit jobs", settings.host)
    log.info("API on http://%s:%s (docs at /docs)", settings.host, settings.port)
    # uvloop + httptools: on the plain asyncio loop keep-alive requests pay ~44 ms (uvicorn issue 3149).
    uvicorn.run("service.main:create_app", factory=True, host=settings.host, port=settings.port,
                workers=workers, loop="uvloop", http="httptools", log_level="info", access_log=False)


def _dev(host: str | None, port: int | None) -> int:
    worker = subprocess.Popen([sys.executable, "-m", "workers"])
    log.info("worker started (pid %d)", worker.pid)
    try:
        _serve(host, port)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlplab", description="Train, compare and serve MNIST MLPs.")
    sub = parser.add_subparsers(dest="command", required=True)
    api = sub.add_parser("api", help="run the HTTP API (never trains)")
    api.add_argument("--host", help="bind address (MLPLAB_HOST, default 127.0.0.1)")
    api.add_argument("--port", type=int, help="port (MLPLAB_PORT, default 8000)")
    api.add_argument("--workers", type=int, default=1, help="uvicorn processes")
    worker = sub.add_parser("worker", help="run a training worker")
    worker.add_argument("--once", action="store_true", help="process what is queued, then exit")
    dev = sub.add_parser("dev", help="the API and one worker together, for one machine")
    dev.add_argument("--host", help="bind address (default 127.0.0.1)")
    dev.add_argument("--port", type=int, help="port (default 8000)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "api":
        _serve(args.host, args.port, args.workers)
        return 0
    if args.command == "worker":
        from workers.worker import main as worker_main

        return worker_main(["--once"] if args.once else [])
    return _dev(args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
