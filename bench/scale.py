#!/usr/bin/env python
"""Queue throughput against the number of workers: jobs per minute with 1, 2, 4 ... worker processes.

    python bench/scale.py                                   # $MLPLAB_TEST_POSTGRES_URL's server, else SQLite
    python bench/scale.py --db-url postgresql+psycopg://mlplab:mlplab@127.0.0.1:5432/mlplab_test
    python bench/scale.py --workers 1,2,4,8 --jobs 80 --spec '{"epochs": 3}'

For each worker count: a scratch database (a new PostgreSQL database beside the one in --db-url,
which is never touched, dropped afterwards; or a temporary SQLite file), that many `python -m
workers` processes started and idle, then --jobs jobs of one spec enqueued at once; the clock runs
from the enqueue to the last job's end. Worker start-up is not counted. Columns: seconds, jobs per
minute, speed-up over the first count, s/job (claim to finish, as a worker saw it: grows when
workers wait for a core), cpu/job (the workers' CPU seconds per job: flat when they do not get in
each other's way). --repeat N runs N rounds and reports each count's best. The table goes to
stdout, every run with the machine's description and load to bench/results/scale.json (--json PATH).
Not a test: nothing passes or fails. Run on a quiet machine.
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

from service.ml.spec import TrainSpec  # noqa: E402
from service.store.db import make_engine, make_sessionmaker, migrate, session_scope  # noqa: E402
from service.store.jobs import enqueue_job  # noqa: E402
from service.store.models import FINISHED, Job  # noqa: E402

# A small job: about a third of a second of one core here (20,000 training images twice, the 10,000
# test images evaluated after each epoch): long enough that the queue's own costs are not all that is
# measured, short enough that forty of them make a run of seconds.
SPEC = {"backend": "numpy", "hidden_layers": [128], "train_limit": 20000, "epochs": 2}


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
    threads = str(args.threads_per_worker)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPLAB_")} | {
        "MLPLAB_DATABASE_URL": url,
        "MLPLAB_DATA_DIR": str(args.data_dir),
        "MLPLAB_DOWNLOAD": "false",
        "MLPLAB_WORKER_POLL_SECONDS": str(args.poll),
        "MLPLAB_TORCH_THREADS": threads,
        "OMP_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
    }
    logs = [folder / f"worker-{workers}-{i}.log" for i in range(workers)]
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

        cpu_before = [cpu_seconds(p.pid) for p in procs]
        with session_scope(sessions) as s:
            for i in range(n_jobs):
                enqueue_job(s, spec.model_copy(update={"seed": i}))
        start = time.perf_counter()
        while True:
            with session_scope(sessions) as s:
                done = s.scalar(select(func.count()).select_from(Job).where(Job.status.in_(FINISHED)))
            if done == n_jobs:
                break
            time.sleep(0.05)
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
        rows = s.execute(select(Job.status, Job.started_at, Job.finished_at, Job.worker_id)).all()
    engine.dispose()
    busy = [(r.finished_at - r.started_at).total_seconds() for r in rows if r.started_at and r.finished_at]
    known = None not in cpu_before + cpu_after
    cpu = sum(after - before for before, after in zip(cpu_before, cpu_after, strict=True)) if known else None
    return {
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
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_url = os.environ.get("MLPLAB_TEST_POSTGRES_URL") or "sqlite:///<temporary folder>"
    parser.add_argument(
        "--db-url",
        default=default_url,
        help="SQLAlchemy URL; on PostgreSQL a role that may CREATE DATABASE (default: %(default)s)",
    )
    parser.add_argument(
        "--workers", default="1,2,4", help="worker counts, comma-separated (default: %(default)s)"
    )
    parser.add_argument("--jobs", type=int, default=40, help="jobs per measurement (default: %(default)s)")
    parser.add_argument("--spec", default="{}", help=f"JSON overriding the job spec {json.dumps(SPEC)}")
    parser.add_argument(
        "--threads-per-worker", type=int, default=1, help="BLAS/torch threads each (default: 1)"
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

    spec = TrainSpec.model_validate(SPEC | json.loads(args.spec))
    counts = [int(n) for n in args.workers.split(",")]
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="mlplab-scale-") as tmp:
        url = args.db_url if not args.db_url.startswith("sqlite:///<") else f"sqlite:///{tmp}/unused.db"
        shown = make_url(url).render_as_string(hide_password=True)
        load = os.getloadavg()[0]  # other work on the machine shares its cores: say how much
        print(
            f"{shown}: {args.jobs} jobs of {spec.name} on {os.cpu_count()} cores (load {load:.1f})",
            flush=True,
        )
        for round_ in range(args.repeat):  # rounds interleave the counts, so a busy spell hits them all
            for workers in counts:
                with scratch_database(url, Path(tmp)) as scratch:
                    runs.append(
                        measure(scratch, workers, args.jobs, spec, args, Path(tmp)) | {"round": round_ + 1}
                    )
                print(
                    f"round {round_ + 1}: {workers} worker(s): {runs[-1]['jobs_per_minute']} jobs/min",
                    file=sys.stderr,
                    flush=True,
                )

    # The best round of each count: the one least disturbed by whatever else the machine was doing.
    results = [
        max((r for r in runs if r["workers"] == n), key=lambda r: r["jobs_per_minute"]) for n in counts
    ]
    print(
        f"{'workers':>7} {'seconds':>8} {'jobs/min':>9} {'speed-up':>9} {'s/job':>6} {'cpu/job':>8} {'ok':>4}"
    )
    for row in results:
        row["speed_up"] = round(row["jobs_per_minute"] / results[0]["jobs_per_minute"], 2)
        cpu = row["worker_cpu_seconds_per_job"]
        print(
            f"{row['workers']:>7} {row['seconds']:>8.1f} {row['jobs_per_minute']:>9.1f} {row['speed_up']:>8.2f}x "
            f"{row['mean_job_seconds']:>6.2f} {'-' if cpu is None else f'{cpu:.2f}':>8} {row['succeeded']:>4}"
        )

    report = {
        "database": make_url(url).get_backend_name(),
        "url": shown,
        "spec": spec.model_dump(mode="json"),
        "threads_per_worker": args.threads_per_worker,
        "machine": {
            "cpus": os.cpu_count(),
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


if __name__ == "__main__":
    sys.exit(main())
