#!/usr/bin/env python
"""Several workers on one host, with default settings: jobs per minute and epoch times at N workers.

    python bench/scale.py                                   # both backends, N = 1, 2, 4 ($MLPLAB_TEST_POSTGRES_URL, else SQLite)
    python bench/scale.py --backends torch --workers 1,2,3,4 --jobs 12
    python bench/scale.py --threads-per-worker 2            # every worker on 2 threads (the old default here)
    python bench/scale.py --db-url postgresql+psycopg://mlplab:mlplab@127.0.0.1:5432/mlplab_test

For each backend and worker count N: a scratch database (a temporary SQLite file, or a new PostgreSQL
database beside the one in --db-url, which is never touched, dropped afterwards), N `python -m workers`
processes started and idle, with no thread setting (a job takes its part of the host's free cores,
as deployed); one job alone in the queue; one queued behind a long job; then --jobs jobs of one spec
enqueued at once, the burst, whose clock runs from the enqueue to its last job's end. Worker start-up
is not counted.

Columns: jobs per minute and its ratio to one worker's (target: >= 0.9 at every N); s/job (claim to
finish); the median and the worst epoch of every job (training time, evaluation excluded) and the
worst over one worker's median epoch (`slowdown`), beside the bound max(1, N/C) x 1.3 on C cores
(target: slowdown <= bound); `lone`, the lone job's median epoch over one worker's lone job's; `late
wait`, the seconds a job queued while a long one (LONG_EPOCHS) trains alone waits to be claimed.
--repeat N runs N rounds and keeps each count's best by jobs per minute. The table goes to stdout,
every run with the machine's description and load to bench/results/scale.json (--json PATH). Not a
test: nothing passes or fails. Run on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable from a checkout even where the package is not installed

from sqlalchemy import create_engine, func, make_url, select  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from bench._table import table  # noqa: E402
from service.ml.spec import TrainSpec  # noqa: E402
from service.store.db import make_engine, make_sessionmaker, migrate, session_scope  # noqa: E402
from service.store.jobs import enqueue_job  # noqa: E402
from service.store.models import FINISHED, EpochMetric, Job  # noqa: E402
from workers.presence import host_cores  # noqa: E402

# The small job of issue 17: the default network, relu, plain SGD, 20,000 training images, 3 epochs:
# a few seconds each, so that several workers overlap on every epoch.
SPEC = {"activation": "relu", "optimizer": "sgd", "train_limit": 20000, "epochs": 3}
LONG_EPOCHS = 30  # the job a late one is queued behind: longer than a heartbeat (MLPLAB_HEARTBEAT_SECONDS)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None where that can't be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


@contextmanager
def scratch_database(url: str, folder: Path) -> Iterator[str]:
    """A new, empty database for one measurement: on PostgreSQL made beside `url`'s and dropped after."""
    sa_url = make_url(url)
    if sa_url.get_backend_name() == "sqlite":
        yield f"sqlite:///{folder / f'scale-{secrets.token_hex(4)}.db'}"
        return
    name = f"{sa_url.database or 'mlplab'}_scale_{secrets.token_hex(4)}"
    admin = create_engine(sa_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')  # needs a role with CREATEDB
        try:
            yield sa_url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def measure(
    url: str, workers: int, n_jobs: int, spec: TrainSpec, args: argparse.Namespace, folder: Path
) -> dict:
    """Start `workers` idle workers on `url`, enqueue `n_jobs` copies of `spec`, time them all."""
    engine = make_engine(url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    threads = {"MLPLAB_WORKER_THREADS": str(args.threads_per_worker)} if args.threads_per_worker else {}
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLPLAB_", "OMP_", "OPENBLAS_", "MKL_"))
    } | {
        "MLPLAB_DATABASE_URL": url,
        "MLPLAB_DATA_DIR": str(args.data_dir),
        "MLPLAB_DOWNLOAD": "false",
        "MLPLAB_WORKER_POLL_SECONDS": str(args.poll),
        **threads,
    }
    logs = [folder / f"worker-{spec.backend}-{workers}-{i}.log" for i in range(workers)]
    procs = []
    for log in logs:
        with open(log, "w") as out:
            procs.append(subprocess.Popen([sys.executable, "-m", "workers"], cwd=REPO, env=env,
                                          stdout=out, stderr=subprocess.STDOUT))  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not all("started on" in log.read_text() for log in logs):  # migrated and polling
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise SystemExit("a worker did not start:\n" + "\n".join(log.read_text() for log in logs))
            time.sleep(0.1)

        lone = run_jobs(sessions, [spec.model_copy(update={"seed": n_jobs})])[0]  # alone in the queue
        with session_scope(sessions) as s:
            lone_epochs = sorted(s.scalars(select(EpochMetric.seconds).where(EpochMetric.job_id == lone)))
        late_wait = wait_behind_a_long_job(sessions, spec.model_copy(update={"seed": n_jobs + 1}))
        cpu_before = [cpu_seconds(p.pid) for p in procs]
        start = time.perf_counter()
        burst = run_jobs(sessions, [spec.model_copy(update={"seed": i}) for i in range(n_jobs)])
        seconds = time.perf_counter() - start
        cpu_after = [cpu_seconds(p.pid) for p in procs]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()

    with session_scope(sessions) as s:
        rows = s.execute(
            select(Job.status, Job.started_at, Job.finished_at, Job.worker_id).where(Job.id.in_(burst))
        ).all()
        epochs = sorted(s.scalars(select(EpochMetric.seconds).where(EpochMetric.job_id.in_(burst))))
    engine.dispose()
    busy = [(r.finished_at - r.started_at).total_seconds() for r in rows if r.started_at and r.finished_at]
    known = None not in cpu_before + cpu_after
    cpu = sum(after - before for before, after in zip(cpu_before, cpu_after, strict=True)) if known else None
    return {
        "backend": spec.backend,
        "workers": workers,
        "jobs": n_jobs,
        "succeeded": sum(r.status == "succeeded" for r in rows),
        "seconds": round(seconds, 3),
        "jobs_per_minute": round(n_jobs / seconds * 60, 1),
        "mean_job_seconds": round(sum(busy) / len(busy), 3),  # claim to finish, as the worker saw it
        "workers_used": len({r.worker_id for r in rows}),
        "worker_cpu_seconds_per_job": None
        if cpu is None
        else round(cpu / n_jobs, 3),  # the workers' CPU only
        "epoch_median_seconds": median(epochs),
        "epoch_worst_seconds": round(epochs[-1], 3) if epochs else None,
        "lone_epoch_seconds": median(lone_epochs),
        "late_wait_seconds": round(late_wait, 2),
    }


def wait_behind_a_long_job(sessions: sessionmaker[Session], spec: TrainSpec) -> float:
    """Seconds a job queued while a long one trains alone waits to be claimed."""
    with session_scope(sessions) as s:
        long_id = enqueue_job(s, spec.model_copy(update={"epochs": LONG_EPOCHS})).id
    while True:  # one epoch done: it holds the cores
        with session_scope(sessions) as s:
            if (s.get(Job, long_id).epoch or 0) >= 1:
                break
        time.sleep(0.05)
    (late,) = run_jobs(sessions, [spec.model_copy(update={"seed": spec.seed + 1})])
    while True:  # and the long one, before the burst
        with session_scope(sessions) as s:
            if s.get(Job, long_id).status in FINISHED:
                job = s.get(Job, late)
                return (job.started_at - job.created_at).total_seconds()
        time.sleep(0.05)


def median(sorted_seconds: list[float]) -> float | None:
    """The middle of sorted epoch times (the upper one of an even count), rounded to the ms; None for none."""
    return round(sorted_seconds[len(sorted_seconds) // 2], 3) if sorted_seconds else None


def run_jobs(sessions: sessionmaker[Session], specs: list[TrainSpec]) -> list[int]:
    """Enqueue `specs` at once and wait until every one has finished; their ids."""
    with session_scope(sessions) as s:
        ids = [enqueue_job(s, spec).id for spec in specs]
    while True:
        with session_scope(sessions) as s:
            done = s.scalar(
                select(func.count()).select_from(Job).where(Job.id.in_(ids), Job.status.in_(FINISHED))
            )
        if done == len(ids):
            return ids
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_url = os.environ.get("MLPLAB_TEST_POSTGRES_URL") or "sqlite:///<temporary folder>"
    parser.add_argument(
        "--db-url",
        default=default_url,
        help="SQLAlchemy URL; on PostgreSQL a role that may CREATE DATABASE (default: %(default)s)",
    )
    parser.add_argument("--backends", default="numpy,torch", help="comma-separated (default: %(default)s)")
    parser.add_argument(
        "--workers", default="1,2,4", help="worker counts, comma-separated (default: %(default)s)"
    )
    parser.add_argument("--jobs", type=int, default=8, help="jobs per measurement (default: %(default)s)")
    parser.add_argument("--spec", default="{}", help=f"JSON overriding the job spec {json.dumps(SPEC)}")
    parser.add_argument(
        "--threads-per-worker",
        type=int,
        default=0,
        help="MLPLAB_WORKER_THREADS for every worker (default: unset, the workers divide the cores)",
    )
    parser.add_argument(
        "--poll", type=float, default=0.2, help="MLPLAB_WORKER_POLL_SECONDS (default: %(default)s)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("MLPLAB_DATA_DIR") or REPO.parent / "shared" / "data"),
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds over the worker counts; the best round of each count is reported (default: 1)",
    )
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "scale.json")
    args = parser.parse_args(argv)

    specs = [
        TrainSpec.model_validate({"backend": backend} | SPEC | json.loads(args.spec))
        for backend in args.backends.split(",")
    ]
    counts = [int(n) for n in args.workers.split(",")]
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="mlplab-scale-") as tmp:
        url = args.db_url if not args.db_url.startswith("sqlite:///<") else f"sqlite:///{tmp}/unused.db"
        shown = make_url(url).render_as_string(hide_password=True)
        load = os.getloadavg()[0]  # other work on the machine shares its cores: say how much
        print(f"{shown}: {args.jobs} jobs on {host_cores()} cores (load {load:.1f})", flush=True)
        for round_ in range(args.repeat):  # rounds interleave the counts, so a busy spell hits them all
            for spec in specs:
                for workers in counts:
                    with scratch_database(url, Path(tmp)) as scratch:
                        run = measure(scratch, workers, args.jobs, spec, args, Path(tmp))
                    runs.append(run | {"round": round_ + 1})
                    print(
                        f"round {round_ + 1}: {spec.backend}, {workers} worker(s): {run['jobs_per_minute']} "
                        f"jobs/min, epochs {run['epoch_median_seconds']}-{run['epoch_worst_seconds']} s",
                        file=sys.stderr,
                        flush=True,
                    )

    results = print_table(runs, specs, counts)
    report = {
        "database": make_url(url).get_backend_name(),
        "url": shown,
        "specs": [spec.model_dump(mode="json") for spec in specs],
        "threads_per_worker": args.threads_per_worker or "default",
        "machine": {
            "cpus": host_cores(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_before": round(load, 2),
            "load_after": round(os.getloadavg()[0], 2),
        },
        "results": results,
        "runs": runs,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.json}")
    return 0


def print_table(runs: list[dict], specs: list[TrainSpec], counts: list[int]) -> list[dict]:
    """The best round of each (backend, count), the one least disturbed by the machine's other work."""
    cores = host_cores()
    results = []
    for spec in specs:
        mine = [r for r in runs if r["backend"] == spec.backend]
        best = [
            max((r for r in mine if r["workers"] == n), key=lambda r: r["jobs_per_minute"]) for n in counts
        ]
        alone = best[0]
        for row in best:
            row["ratio"] = round(row["jobs_per_minute"] / alone["jobs_per_minute"], 2)
            row["slowdown"] = round(row["epoch_worst_seconds"] / alone["epoch_median_seconds"], 2)
            row["bound"] = round(max(1.0, row["workers"] / cores) * 1.3, 2)
            row["lone"] = round(row["lone_epoch_seconds"] / alone["lone_epoch_seconds"], 2)
        results += best
    headers = [
        "backend",
        "workers",
        "seconds",
        "jobs/min",
        "ratio",
        "s/job",
        "epoch",
        "worst",
        "slowdown",
        "bound",
        "lone",
        "late wait",
        "ok",
    ]
    rows = [
        [
            r["backend"], r["workers"], f"{r['seconds']:.1f}", f"{r['jobs_per_minute']:.1f}", f"{r['ratio']:.2f}x",
            f"{r['mean_job_seconds']:.2f}", f"{r['epoch_median_seconds']:.2f}", f"{r['epoch_worst_seconds']:.2f}",
            f"{r['slowdown']:.2f}x", f"{r['bound']:.2f}x", f"{r['lone']:.2f}x", f"{r['late_wait_seconds']:.1f}", r["succeeded"],
        ]
        for r in results
    ]  # fmt: skip
    print(table(headers, rows, right=set(range(1, len(headers)))))
    return results


if __name__ == "__main__":
    sys.exit(main())
