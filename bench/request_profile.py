#!/usr/bin/env python
"""Where one request's time goes: cProfile over N requests to one endpoint, in this process.

    python bench/request_profile.py                                   # POST /models/1/predict, one blank image
    python bench/request_profile.py --method GET --path /jobs/1 --requests 5000
    python bench/request_profile.py --sort tottime --top 30

The app (service.main.create_app) runs on a temporary SQLite database holding a few finished jobs
(tests.factories.finished_jobs: real weights), driven through httpx's ASGI transport after a
warm-up, so the profile holds the app's work (routing, dependencies, the endpoint, the response)
and the client's, without sockets or a second process. Not a load test (bench/serve.py is): it
answers "what does one request cost, function by function". Prints pstats' table; nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable from a checkout even where the package is not installed

import httpx  # noqa: E402

from service.main import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.store.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from tests.factories import finished_jobs  # noqa: E402


async def profile(args: argparse.Namespace, url: str) -> pstats.Stats:
    app = create_app(Settings(database_url=url, data_dir=Path(args.data_dir), download=False))
    body = args.body.encode() if args.body else None
    headers = {"content-type": "application/json"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:

            async def call() -> httpx.Response:
                return await client.request(args.method, args.path, content=body, headers=headers)

            for _ in range(args.warmup):
                first = await call()
            if first.status_code >= 400:
                sys.exit(
                    f"profile.py: {args.method} {args.path} answered {first.status_code}: {first.text[:300]}"
                )
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.requests):
                await call()
            profiler.disable()
    return pstats.Stats(profiler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="POST")
    parser.add_argument("--path", default="/models/1/predict")
    parser.add_argument("--body", default=json.dumps({"pixels": [0] * 784}), help="JSON ('' for none)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--sort", default="cumulative", help="pstats' order: cumulative, tottime, ...")
    parser.add_argument("--top", type=int, default=40, help="rows of the table")
    parser.add_argument(
        "--data-dir", default=os.environ.get("MLPLAB_DATA_DIR") or str(REPO.parent / "shared" / "data")
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/profile.db"
        engine = make_engine(url)
        migrate(engine)
        finished_jobs(make_sessionmaker(engine), 4)  # jobs 1-3 are trained models, 4 failed
        engine.dispose()
        stats = asyncio.run(profile(args, url))
    print(f"{args.requests} x {args.method} {args.path}")
    stats.sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
