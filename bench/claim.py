"""How long a worker's claim takes with a long queue: the claim orders the queued jobs by when their
client's last job started (service/store/jobs.py, taking turns between clients), not by id alone.

Not a pass/fail test: it prints a table. For each database (SQLite; PostgreSQL too when --postgres-url or
MLPLAB_TEST_POSTGRES_URL names a role that may create databases), a fresh database of --queued queued jobs
of --clients client addresses, then --claims claims one after the other, each its own transaction, as a
worker makes them: the median and the slowest.

    python bench/claim.py
    python bench/claim.py --queued 1000 --databases sqlite
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `python bench/claim.py` from anywhere: this checkout's service, tests, bench

from bench._table import table  # noqa: E402
from bench.runs import postgres_database  # noqa: E402


def measure(url: str, queued: int, clients: int, claims: int) -> list[float]:
    """Seconds of each of `claims` claims from a queue of `queued` jobs of `clients` addresses."""
    from service.store.db import make_engine, make_sessionmaker, migrate, session_scope
    from service.store.jobs import claim_job, enqueue_job
    from tests.factories import tiny_spec

    engine = make_engine(url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    spec = tiny_spec()
    with session_scope(sessions) as session:
        for i in range(queued):
            enqueue_job(session, spec, client=f"10.0.0.{i % clients}")
    seconds = []
    for k in range(claims):
        started = time.perf_counter()
        with session_scope(sessions) as session:
            assert claim_job(session, f"bench-{k}") is not None
        seconds.append(time.perf_counter() - started)
    engine.dispose()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--claims", type=int, default=50)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=os.environ.get("MLPLAB_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    rows = []
    for kind in args.databases.split(","):
        if kind == "sqlite":
            url = f"sqlite:///{tempfile.mkdtemp(prefix='mlplab-claim-')}/claim.db"
        elif args.postgres_url:
            url = postgres_database(args.postgres_url, "mlplab_bench_claim", fresh=True)
        else:
            print("claim.py: PostgreSQL needs --postgres-url or MLPLAB_TEST_POSTGRES_URL", file=sys.stderr)
            continue
        seconds = measure(url, args.queued, args.clients, args.claims)
        rows.append(
            [
                kind,
                args.queued,
                args.clients,
                args.claims,
                statistics.median(seconds) * 1e3,
                max(seconds) * 1e3,
            ]
        )
    print(table(["database", "queued", "clients", "claims", "median ms", "max ms"], rows))


if __name__ == "__main__":
    main()
