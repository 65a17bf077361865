"""Four worker processes on one PostgreSQL database, one of them killed with SIGKILL midway.

Forty small jobs: every one succeeds, none is trained by two workers at once, and the killed
worker's job goes back to the queue once its 3 s lease is stale and is finished by another worker.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections import Counter

import pytest
from sqlalchemy import func, select

from service.store import jobs, queries
from service.store.db import make_engine, make_sessionmaker, migrate, session_scope
from service.store.models import Job
from tests.conftest import POSTGRES_ONLY
from tests.factories import tiny_spec
from tests.support import REPO, environment_without_settings, real_data_dir, wait_for

pytestmark = pytest.mark.slow  # four worker processes, forty jobs

WORKERS = 4
JOBS = 40
STEPS = 2 * 8  # ceil(500 / 64) steps an epoch


def statuses(sessions) -> Counter:
    with session_scope(sessions) as s:
        return Counter(dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all()))


@POSTGRES_ONLY
def test_four_workers_run_every_job_once_and_survive_a_kill_9(db_url, tmp_path):
    engine = make_engine(db_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    env = environment_without_settings() | {
        "MLPLAB_DATABASE_URL": db_url,
        "MLPLAB_DATA_DIR": str(real_data_dir()),
        "MLPLAB_DOWNLOAD": "false",
        "MLPLAB_LEASE_SECONDS": "3",
        "MLPLAB_HEARTBEAT_SECONDS": "0.5",
        "MLPLAB_WORKER_POLL_SECONDS": "0.2",
        "MLPLAB_WORKER_THREADS": "1",
        "OMP_NUM_THREADS": "1",  # four workers on two cores: one BLAS thread each
    }
    logs = [tmp_path / f"worker-{i}.log" for i in range(WORKERS)]
    workers = []
    for log in logs:
        with open(log, "w") as out:
            workers.append(subprocess.Popen([sys.executable, "-m", "workers"], cwd=REPO, env=env,
                                            stdout=out, stderr=subprocess.STDOUT))  # fmt: skip
    try:
        with session_scope(sessions) as s:
            ids = [jobs.enqueue_job(s, tiny_spec(epochs=2, log_every=1, seed=i)).id for i in range(JOBS)]

        def running_on(proc: subprocess.Popen) -> int | None:
            with session_scope(sessions) as s:
                return s.scalar(
                    select(Job.id).where(Job.status == "running", Job.worker_id.like(f"%:{proc.pid}:%"))
                )

        # Midway, SIGKILL a worker that holds a job: no release, its lease just goes stale.
        wait_for(
            lambda: statuses(sessions)["succeeded"] >= JOBS // 4, 120, "a quarter of the jobs to succeed"
        )
        orphan = victim = None
        for candidate in list(workers):
            if running_on(candidate) is None:
                continue
            candidate.send_signal(signal.SIGKILL)
            candidate.wait(5)
            orphan = running_on(candidate)  # what the dead worker left running (it may have moved on)
            if orphan is not None:
                victim = candidate
                break
            workers.remove(candidate)  # it died between two jobs: holds nothing; try another
        assert orphan is not None, "no worker was holding a job when killed"

        def all_finished() -> bool:
            counts = statuses(sessions)
            assert counts["failed"] == counts["cancelled"] == 0, counts
            return counts["succeeded"] == JOBS

        wait_for(all_finished, 120, "every job to succeed", interval=0.25)
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in workers:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    output = {log.name: log.read_text() for log in logs}

    with session_scope(sessions) as s:
        rows = {job.id: job for job in queries.list_jobs(s, limit=JOBS)[0]}
        steps = {i: [loss.step for loss in queries.get_losses(s, i)] for i in ids}
        epochs = {i: [e.epoch for e in queries.get_epochs(s, i)] for i in ids}
        models = s.scalar(select(func.count()).select_from(jobs.TrainedModel))
    engine.dispose()
    assert sorted(rows) == ids and models == JOBS
    assert all(steps[i] == list(range(1, STEPS + 1)) for i in ids), steps  # each step recorded once
    assert all(epochs[i] == [1, 2] for i in ids)
    assert {i: rows[i].attempts for i in ids if rows[i].attempts != 1} == {orphan: 2}, (
        "only the orphan ran twice"
    )
    assert rows[orphan].worker_id.split(":")[1] != str(victim.pid)  # finished by another worker

    # Each claim was made by exactly one worker, and each job succeeded in exactly one log.
    text = "\n".join(output.values())
    claims = Counter(re.findall(r"claimed job (\d+) \(attempt (\d+)\)", text))
    assert claims == Counter({(str(i), "1"): 1 for i in ids} | {(str(orphan), "2"): 1}), claims
    successes = Counter(re.findall(r"job (\d+) succeeded", text))
    assert successes == Counter({str(i): 1 for i in ids}), successes
    assert "stopped renewing its lease" in text and f"job {orphan}: worker" in text
    assert sum(1 for body in output.values() if "started on postgresql" in body) == WORKERS
