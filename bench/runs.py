"""10,000 runs: do the lists, the comparison and the dashboard stay fast?

Not a pass/fail test: it prints a table (figures beside their targets) and writes bench/results/runs.json.
For each database (SQLite, then PostgreSQL when --postgres-url or MLPLAB_TEST_POSTGRES_URL names a
role that may create databases):

1. a database of --jobs finished jobs (default 10,000), written by tests.factories.finished_jobs
   through the store's own verbs: MNIST-sized runs (a loss every 100 steps, an epoch row each epoch)
   on small networks, one sweep of 500 jobs, sweeps of 8, 85 % succeeded. It is kept for the next run
   (var/bench/runs-N.db, or the PostgreSQL database mlplab_bench_runs_N); --fresh writes it again;
2. the query plans of the reads behind the endpoints, captured from the store's own query functions
   (EXPLAIN QUERY PLAN on SQLite, EXPLAIN ANALYZE on PostgreSQL);
3. the API as its own process (`python -m service.cli api`); each endpoint requested --requests times
   one after the other (after a warm-up), with varying pages, sorts and models: p50, p95 and max;
4. the jobs page (`/`) in Chromium, --page-loads fresh loads: when it first painted, and when the
   jobs table was drawn (median and max).

    python bench/runs.py                        # 10,000 jobs, SQLite and PostgreSQL
    python bench/runs.py --databases sqlite --requests 100
    python bench/runs.py --jobs 2000 --fresh
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `python bench/runs.py` from anywhere: this checkout's service, tests, bench

from bench.serve import _git_rev, free_port, start_api, stop_all  # noqa: E402

DEFAULT_OUTPUT = REPO / "bench" / "results" / "runs.json"
TARGET_MS = 150  # p95 of each API endpoint
PAGE_TARGET_S = 1.5  # the jobs page drawn in Chromium
SWEEP = 500  # jobs of the big sweep

# Recorded before any page script: when the jobs table first holds a row.
MARK_JOBS_TABLE = """
new MutationObserver((_, observer) => {
  if (document.querySelector("table.jobs tbody tr")) { window.__jobsTable = performance.now(); observer.disconnect(); }
}).observe(document, { childList: true, subtree: true });
"""


# ----------------------------------------------------------------------------------------- the database


def postgres_database(admin_url: str, name: str, fresh: bool) -> str:
    """The URL of database `name` on admin_url's server, created when missing (dropped first if fresh)."""
    from sqlalchemy import create_engine, make_url

    url = make_url(admin_url)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        if fresh:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        exists = connection.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %(n)s", {"n": name})
        if exists.first() is None:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def ensure_jobs(url: str, n: int) -> dict[str, Any]:
    """The database at `url` with n finished jobs: written now if it holds none, reused if it holds n."""
    from sqlalchemy import func, select

    from service.store.db import make_engine, make_sessionmaker, migrate, session_scope
    from service.store.models import Job
    from tests.factories import finished_jobs

    engine = make_engine(url)
    migrate(engine)
    factory = make_sessionmaker(engine)
    with session_scope(factory) as s:
        held = s.scalar(select(func.count()).select_from(Job)) or 0
    written = None
    if held == 0:
        print(f"  writing {n:,} finished jobs through the store's verbs ...", flush=True)
        started = time.perf_counter()
        finished_jobs(factory, n, sweep=SWEEP)
        written = round(time.perf_counter() - started, 1)
        print(f"  wrote them in {written:.0f} s", flush=True)
    elif held != n:
        sys.exit(f"runs.py: {url} holds {held:,} jobs, not {n:,}: pass --fresh to write it again")
    ids = _ids(factory)
    engine.dispose()
    return ids | {"written_s": written}


def _ids(factory) -> dict[str, Any]:
    from sqlalchemy import func, select

    from service.store.db import session_scope
    from service.store.models import Job, TrainedModel

    with session_scope(factory) as s:
        sweep = s.scalar(
            select(Job.sweep_id)
            .where(Job.sweep_id.is_not(None))
            .group_by(Job.sweep_id)
            .order_by(func.count().desc())
            .limit(1)
        )
        return {
            "jobs": list(s.scalars(select(Job.id))),
            "models": list(s.scalars(select(TrainedModel.job_id))),
            "sweep": sweep,
            "sweep_size": s.scalar(select(func.count()).select_from(Job).where(Job.sweep_id == sweep)),
        }


# ----------------------------------------------------------------------------------------- query plans


def query_plans(url: str, ids: dict[str, Any]) -> list[dict[str, Any]]:
    """What the database does for each read behind the endpoints, run through the store's own functions."""
    from sqlalchemy import event

    from service.store import queries
    from service.store.db import make_engine, make_sessionmaker, session_scope

    engine = make_engine(url)
    captured: list[tuple[str, str, Any]] = []
    what = ""

    @event.listens_for(engine, "before_cursor_execute")
    def _capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((what, statement, parameters))

    reads = [
        ("GET /jobs", lambda s: queries.list_jobs(s, limit=50)),
        ("GET /jobs?offset=5000", lambda s: queries.list_jobs(s, limit=50, offset=5000)),
        ("GET /jobs?sort=-test_accuracy", lambda s: queries.list_jobs(s, limit=50, sort="-test_accuracy")),
        ("GET /jobs?sort=-duration", lambda s: queries.list_jobs(s, limit=50, sort="-duration")),
        ("GET /jobs?status=running", lambda s: queries.list_jobs(s, limit=50, status="running")),
        ("GET /models?sort=test_accuracy", lambda s: queries.list_models(s, limit=100)),
        ("GET /sweeps", lambda s: queries.list_sweep_ids(s)),
        ("GET /sweeps/{id}", lambda s: queries.list_jobs(s, sweep_id=ids["sweep"], limit=100_000)),
        ("GET /compare: losses", lambda s: queries.get_losses(s, ids["models"][0])),
        ("GET /compare: epochs", lambda s: queries.get_epochs(s, ids["models"][0])),
        ("GET /jobs/{id}", lambda s: queries.get_job_row(s, ids["jobs"][0])),
    ]
    factory = make_sessionmaker(engine)
    for name, read in reads:
        what = name
        with session_scope(factory) as s:
            read(s)
    plans = []
    seen = set()
    with engine.connect() as connection:
        for name, statement, parameters in captured:
            if (name, statement) in seen:
                continue
            seen.add((name, statement))
            plans.append(
                {
                    "read": name,
                    "sql": " ".join(statement.split()),
                    "plan": _explain(connection, statement, parameters),
                }
            )
    engine.dispose()
    return plans


def _explain(connection, statement: str, parameters) -> list[str]:
    if connection.dialect.name == "sqlite":
        rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        return [row[3] for row in rows]
    rows = connection.exec_driver_sql("EXPLAIN (ANALYZE, COSTS OFF) " + statement, parameters).all()
    return [row[0] for row in rows]


# ----------------------------------------------------------------------------------------- the API


def endpoints(ids: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Each endpoint measured, and a function giving the path of its next request."""
    n, models = len(ids["jobs"]), ids["models"]
    offset = lambda page: rng.randrange(0, max(1, n - page))  # noqa: E731

    return {
        "GET /jobs (a page of 50)": lambda: f"/jobs?offset={offset(50)}",
        "GET /jobs?sort=-test_accuracy": lambda: f"/jobs?sort=-test_accuracy&offset={offset(50)}",
        "GET /jobs?sort=-duration": lambda: f"/jobs?sort=-duration&offset={offset(50)}",
        "GET /models?sort=test_accuracy": lambda: (
            f"/models?sort=test_accuracy&offset={rng.randrange(len(models))}"
        ),
        f"GET /sweeps/{{id}} ({ids['sweep_size']} jobs)": lambda: f"/sweeps/{ids['sweep']}",
        "GET /sweeps": lambda: "/sweeps",
        "GET /compare (10 models)": lambda: "/compare?ids=" + ",".join(map(str, rng.sample(models, 10))),
        "GET /jobs/{id}": lambda: f"/jobs/{rng.choice(ids['jobs'])}",
    }


def measure(client: httpx.Client, path, requests: int) -> dict[str, Any]:
    for _ in range(max(3, requests // 20)):  # warm-up: connections, caches, compiled statements
        client.get(path()).raise_for_status()
    times, sizes = [], []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path())
        times.append((time.perf_counter() - started) * 1e3)
        response.raise_for_status()
        sizes.append(len(response.content))
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
        "max_ms": round(times[-1], 2),
        "bytes": round(statistics.median(sizes)),
    }


def page_loads(url: str, loads: int) -> dict[str, Any]:
    """The jobs page in Chromium, each load in a fresh context (nothing cached): first paint, table drawn."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.browser import CHROMIUM

    paints, tables = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        for _ in range(loads + 1):  # the first warms the API's caches (the OpenAPI document) and is dropped
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.add_init_script(MARK_JOBS_TABLE)
            page = context.new_page()
            page.goto(url + "/")
            page.wait_for_selector("table.jobs tbody tr", timeout=30_000)
            paint = page.evaluate(
                "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null"
            )
            paints.append(paint)
            tables.append(page.evaluate("window.__jobsTable"))
            context.close()
        browser.close()
    paints, tables = paints[1:], tables[1:]
    return {
        "first_paint_ms": {"median": round(statistics.median(paints)), "max": round(max(paints))},
        "jobs_table_ms": {"median": round(statistics.median(tables)), "max": round(max(tables))},
    }


def run_database(kind: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    print(f"\n== {kind}", flush=True)
    ids = ensure_jobs(url, args.jobs)
    plans = query_plans(url, ids)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPLAB_")} | {
        "MLPLAB_DATABASE_URL": url,
        "MLPLAB_DATA_DIR": str(args.data_dir),
        "MLPLAB_DOWNLOAD": "false",
        "PYTHONUNBUFFERED": "1",
    }
    root = REPO / "var" / "bench"
    port = free_port()
    api, base = start_api(root, env, port, 1)
    rng = random.Random(0)
    results = {}
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            for name, path in endpoints(ids, rng).items():
                print(f"  {name}: {args.requests} requests ...", flush=True)
                results[name] = measure(client, path, args.requests)
        page = page_loads(base, args.page_loads) if args.page_loads else None
    finally:
        stop_all()
    return {"endpoints": results, "page": page, "plans": plans, "written_s": ids["written_s"]}


# ----------------------------------------------------------------------------------------- the report


def print_report(report: dict[str, Any]) -> None:
    for kind, result in report["databases"].items():
        print(f"\n{kind}: query plans")
        for plan in result["plans"]:
            print(f"  {plan['read']}: {plan['sql'][:150]}{'...' if len(plan['sql']) > 150 else ''}")
            for line in plan["plan"]:
                print(f"      {line}")
    kinds = list(report["databases"])
    names = list(next(iter(report["databases"].values()))["endpoints"])
    header = ["endpoint"] + [f"{k} p50 / p95 / max ms" for k in kinds] + [f"target p95 ≤ {TARGET_MS} ms"]
    rows = []
    for name in names:
        cells = [name]
        ok = True
        for kind in kinds:
            r = report["databases"][kind]["endpoints"][name]
            cells.append(f"{r['p50_ms']:.1f} / {r['p95_ms']:.1f} / {r['max_ms']:.1f}")
            ok &= r["p95_ms"] <= TARGET_MS
        cells.append("ok" if ok else "ABOVE")
        rows.append(cells)
    pages = [report["databases"][k]["page"] for k in kinds]
    if all(pages):
        cells = ["jobs page in Chromium: first paint / table drawn (median, max)"]
        ok = True
        for page in pages:
            fp, table = page["first_paint_ms"], page["jobs_table_ms"]
            cells.append(f"{fp['median']} / {table['median']} ms (max {table['max']})")
            ok &= table["max"] <= PAGE_TARGET_S * 1e3
        cells.append(f"table ≤ {PAGE_TARGET_S:g} s: {'ok' if ok else 'ABOVE'}")
        rows.append(cells)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    machine = report["machine"]
    print(
        f"\n{report['jobs']:,} finished jobs; {report['requests']} sequential requests per endpoint; "
        f"{machine['cpus']} CPUs, load average {machine['loadavg_start'][0]:.1f} at the start, "
        f"{machine['loadavg_end'][0]:.1f} at the end"
    )
    for i, row in enumerate([header, *rows]):
        print(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--jobs", type=int, default=10_000, help="finished jobs in the database (default 10,000)"
    )
    parser.add_argument("--requests", type=int, default=200, help="requests per endpoint (default 200)")
    parser.add_argument(
        "--page-loads", type=int, default=5, help="loads of the jobs page in Chromium (0: none)"
    )
    parser.add_argument("--databases", default="sqlite,postgresql", help="sqlite, postgresql or both")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("MLPLAB_TEST_POSTGRES_URL"),
        help="a role that may create databases (default $MLPLAB_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--fresh", action="store_true", help="write the databases again")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("MLPLAB_DATA_DIR") or REPO.parent / "shared" / "data"),
        help="MNIST folder, for /readyz (default MLPLAB_DATA_DIR or ../shared/data)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results")
    args = parser.parse_args(argv)

    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
    if "postgresql" in kinds and not args.postgres_url:
        sys.exit(
            "runs.py: PostgreSQL needs --postgres-url or MLPLAB_TEST_POSTGRES_URL (or --databases sqlite)"
        )
    report: dict[str, Any] = {
        "benchmark": "runs",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git": _git_rev(),
        "jobs": args.jobs,
        "requests": args.requests,
        "targets": {"api_p95_ms": TARGET_MS, "jobs_page_s": PAGE_TARGET_S},
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_start": os.getloadavg(),
        },
        "databases": {},
    }
    try:
        for kind in kinds:
            if kind == "sqlite":
                path = REPO / "var" / "bench" / f"runs-{args.jobs}.db"
                if args.fresh:
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{path}{suffix}").unlink(missing_ok=True)
                url = f"sqlite:///{path}"
            else:
                url = postgres_database(args.postgres_url, f"mlplab_bench_runs_{args.jobs}", args.fresh)
            report["databases"][kind] = run_database(kind, url, args)
    finally:
        stop_all()
    report["machine"]["loadavg_end"] = os.getloadavg()
    print_report(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
