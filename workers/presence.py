"""A worker's own record: that it is alive (idle or training), what it trains, and how many of its
machine's cores its job trains on, so that the live workers on one machine share its cores as
docs/deployment.md ("Several workers on one machine") says: at most one job a core, each on its share
of the cores among the jobs running there and those about to be claimed."""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.settings import Settings
from service.store.db import begin_write, session_scope
from service.store.jobs import claim_job, requeue_stalled
from service.store.models import Job, Worker
from service.store.queries import count_queued, live_workers
from service.store.workers import register_worker, unregister_worker, worker_heartbeat

log = logging.getLogger("workers")

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")  # one per running kernel: containers share their host's
CGROUP = Path("/proc/self/cgroup")  # "<id>:<controllers>:<path>" lines; "0::<path>" on cgroup v2
CGROUPS = Path("/sys/fs/cgroup")  # v2: <path>/cpu.max; v1: <controllers>/<path>/cpu.cfs_quota_us


def host_key() -> str:
    """The same for every process that runs on the same cores of this machine, containers included: the
    kernel's boot id (else the hostname) and the CPUs this process may use. Containers pinned to
    different CPUs of one machine share nothing to divide."""
    try:
        machine = BOOT_ID.read_text().strip() or socket.gethostname()
    except OSError:
        machine = socket.gethostname()
    return f"{machine}/cpus:{','.join(map(str, _cpus()))}"


def _cpus() -> list[int]:
    """The CPUs this process may run on (its CPU affinity, which a container's cpuset narrows)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def host_cores() -> int:
    """How many cores this process may run on (and its host's workers share)."""
    return len(_cpus())


def cpu_quota() -> int | None:
    """The whole CPUs that CPU quotas on this process's control group and its ancestors allow (docker's
    --cpus, compose's `cpus:`, systemd's CPUQuota=), at least one; None without a quota. Rounded down:
    a thread beyond the quota would be throttled in the middle of a product the others wait for."""
    allowed = [cpus for folder in _cpu_controllers() if (cpus := _quota_in(folder)) is not None]
    return min(allowed, default=None)


def _cpu_controllers() -> Iterator[Path]:
    """The folders of this process's cgroup and its ancestors that may hold a CPU quota (inside a
    container, whose cgroup folder is mounted as the root, the paths /proc names do not exist)."""
    try:
        lines = CGROUP.read_text().splitlines()
    except OSError:
        return
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers and "cpu" not in controllers.split(","):
            continue
        root = CGROUPS / controllers if controllers else CGROUPS  # v1 mounts each hierarchy by its name
        folder = root / path.lstrip("/")
        while True:
            yield folder
            if folder == root:
                break
            folder = folder.parent


def _quota_in(folder: Path) -> int | None:
    try:
        if (folder / "cpu.max").exists():  # v2: "<quota> <period>", or "max <period>"
            quota, period = (folder / "cpu.max").read_text().split()
            return None if quota == "max" else max(1, int(quota) // int(period))
        quota = (folder / "cpu.cfs_quota_us").read_text().strip()  # v1: -1 for none
        period = (folder / "cpu.cfs_period_us").read_text().strip()
        return None if int(quota) < 0 else max(1, int(quota) // int(period))
    except (OSError, ValueError, ZeroDivisionError):
        return None


def fair_share(cores: int, jobs: int, rank: int) -> int:
    """Threads of job `rank` (0-based) of `jobs` sharing `cores`: the cores divided, the remainder one
    each to the first; at least one."""
    base, extra = divmod(cores, max(1, jobs))
    return max(1, base + (1 if rank < extra else 0))


class Reach:
    """Whether this worker may judge others' leases stalled: not while the database fails it, nor for two
    heartbeats after it answers again following a failure of a heartbeat or longer (nor, for a worker
    that keeps running, after it starts): the others could not renew their leases meanwhile, and each
    renews within a heartbeat of the database's return. Shorter failures hold nothing back: no lease
    lapses in them."""

    def __init__(self, heartbeat: float, *, starting: bool = True) -> None:
        self.heartbeat = heartbeat
        self._lock = threading.Lock()
        self._failing_since: float | None = None
        self._hold_until = time.monotonic() + 2 * heartbeat if starting else -math.inf

    def failed(self) -> None:
        with self._lock:
            if self._failing_since is None:
                self._failing_since = time.monotonic()

    def answered(self) -> None:
        with self._lock:
            now = time.monotonic()
            if self._failing_since is not None and now - self._failing_since >= self.heartbeat:
                self._hold_until = max(self._hold_until, now + 2 * self.heartbeat)
            self._failing_since = None

    def may_judge_others(self) -> bool:
        with self._lock:
            return self._failing_since is None and time.monotonic() >= self._hold_until


class Presence(threading.Thread):
    """Registers the worker, renews its heartbeat every `settings.heartbeat_seconds` whatever it is doing
    (and with it, while a job runs, the job's share of the cores), records the job it trains, and
    removes its record when stopped."""

    def __init__(
        self, sessions: sessionmaker[Session], worker_id: str, settings: Settings, *, once: bool = False
    ) -> None:
        super().__init__(name="presence", daemon=True)
        self.sessions, self.worker_id, self.settings = sessions, worker_id, settings
        self.reach = Reach(settings.heartbeat_seconds, starting=not once)  # --once trains what it finds
        self.host, self.host_key = socket.gethostname(), host_key()
        self.job_id: int | None = None
        self.threads = 0  # the running job's share of the cores: the training thread applies it (worker.py)
        self.standing_by = False
        # dataset -> until when (monotonic) this worker claims none of its jobs: its machine lacks the files
        self.lacking: dict[str, float] = {}
        self._room_seen = False  # the last rebalance found cores to grow into
        self._done = threading.Event()
        self._beating = threading.Lock()  # one beat at a time: a stale one never lands after a fresh one

    def start(self) -> None:
        with session_scope(self.sessions) as session:
            self._register(session)
        super().start()

    def run(self) -> None:
        judged = time.monotonic()
        while not self._done.wait(self.settings.heartbeat_seconds):
            if self.job_id is not None and not self.settings.worker_threads:
                self.rebalance()
            else:
                self.beat()
            # a busy worker judges too, or a dead one's job waits 'running' until some worker is idle
            if self.job_id is not None and time.monotonic() - judged >= self.settings.lease_seconds / 2:
                judged = time.monotonic()
                try:
                    self.judge_others()
                except SQLAlchemyError as exc:
                    log.warning("could not re-queue stalled jobs: %s", exc)

    def judge_others(self) -> None:
        """Re-queue (or end) the jobs whose worker's lease lapsed: it died or hung. Not while this worker's
        own reach of the database is in doubt: the others may not have been able to renew either."""
        if self.reach.may_judge_others():
            with session_scope(self.sessions) as session:
                requeue_stalled(session, None, self.settings.lease_seconds, self.settings.max_attempts)

    def beat(self) -> None:
        try:
            with self._beating, session_scope(self.sessions) as session:
                self._record(session, self.job_id, self.threads, self.standing_by)
        except SQLAlchemyError as exc:  # transient: the next beat tries again, within the lease
            self.reach.failed()
            log.warning("worker heartbeat failed: %s", exc)
        else:
            self.reach.answered()

    def claim(self, once: bool = False) -> Job | None:
        """The oldest queued job, claimed with its share of the host's cores (`self.threads`) and recorded
        as this worker's in the same transaction, so that the next claim on this host counts them. None
        when the queue is empty, when this worker stands by, or while the running jobs hold every core
        (they give up their extra ones at their next heartbeat); with `once` (train what it finds, as
        asked) or MLPLAB_WORKER_THREADS it neither stands by nor waits."""
        with self._beating:  # no heartbeat with the old state lands after this one
            with session_scope(self.sessions) as session:
                begin_write(session)
                standing_by, threads = self._decide(session, once)
                now = time.monotonic()
                skip = [dataset for dataset, until in self.lacking.items() if until > now]
                job = claim_job(session, self.worker_id, skip=skip) if threads else None
                if job is not None or standing_by != self.standing_by:  # GET /workers shows it at once
                    job_id, recorded = (None, self.threads) if job is None else (job.id, threads)
                    self._record(session, job_id, recorded, standing_by)
            if standing_by != self.standing_by:
                self.standing_by = standing_by
                log.info(
                    "standing by, beyond this host's cores" if standing_by else "within this host's cores"
                )
            if job is not None:
                self.job_id, self.threads = job.id, threads
                log.info("job %d: %d thread(s) of this host's %d cores", job.id, threads, host_cores())
        return job

    def end_job(self) -> None:
        self.job_id, self.threads = None, 0
        self.beat()

    def rebalance(self) -> None:
        """The running job's share of the cores, recorded with the heartbeat: fewer threads as soon as jobs
        wait for idle workers here (which claim the cores given up); more, into free cores, once two
        beats in a row found room (a job queued for another host's workers shrinks it for a beat)."""
        try:
            with self._beating:
                with session_scope(self.sessions) as session:
                    begin_write(session)
                    workers, _ = self._host(session)
                    share, free = self._share(session, workers, claiming=False)
                    threads = share
                    if share > self.threads:
                        grow = self._room_seen and free > 0
                        self._room_seen = free > 0
                        threads = min(share, self.threads + free) if grow else self.threads
                    else:
                        self._room_seen = False
                    self._record(session, self.job_id, threads, self.standing_by)
                if threads != self.threads:
                    log.info("job %s: %d thread(s) now, was %d", self.job_id, threads, self.threads)
                    self.threads = threads
        except SQLAlchemyError as exc:
            self.reach.failed()
            log.warning("worker heartbeat failed: %s", exc)
        else:
            self.reach.answered()

    def _decide(self, session: Session, once: bool) -> tuple[bool, int]:
        """(whether this worker stands by, the threads its next job may take, 0 for none)."""
        if self.settings.worker_threads:
            return False, self.settings.worker_threads
        workers, rank = self._host(session)
        if rank >= host_cores() and not once:  # the host's first live workers, one a core, train
            return True, 0
        share, free = self._share(session, workers, claiming=True)
        self._room_seen = False
        return False, max(min(share, free), 1 if once else 0)

    def _host(self, session: Session) -> tuple[list[Worker], int]:
        """The live workers of this host by start, their rows locked until the transaction ends (SQLite's
        write transaction already excludes), and this worker's rank among them."""
        workers = live_workers(session, self.settings.lease_seconds, self.host_key, lock=True)
        rank = next((i for i, w in enumerate(workers) if w.id == self.worker_id), len(workers))
        return workers, rank

    def _share(self, session: Session, workers: list[Worker], claiming: bool) -> tuple[int, int]:
        """(this worker's share of the cores, the cores free beyond its current threads): the cores
        divided among the jobs running on this host, this worker's (running, or about to be claimed),
        and those the idle workers here are about to claim; the remainder one each to the first of them
        by start, so that every core trains. Under a CPU quota, within that of this worker's container
        (its workers share the hostname) too."""
        others = [w for w in workers if w.id != self.worker_id]
        queued = count_queued(session) - (1 if claiming else 0)  # this worker's claim takes one
        idle = [w for w in others if w.job_id is None and not w.standing_by][: max(queued, 0)]
        taking = {w.id for w in others if w.job_id is not None} | {w.id for w in idle} | {self.worker_id}
        order = [w for w in workers if w.id in taking] + ([] if len(others) < len(workers) else [None])
        cores = host_cores()
        share = _part(cores, order, self.worker_id)
        held = _held(w for w in others if w.job_id is not None)
        free = cores - held - (0 if claiming else self.threads)
        quota = cpu_quota()
        if quota is not None:
            here = [w for w in order if w is None or w.host == self.host]
            share = min(share, _part(quota, here, self.worker_id))
            used = _held(w for w in others if w.job_id is not None and w.host == self.host)
            free = min(free, quota - used - (0 if claiming else self.threads))
        return share, free

    def _record(self, session: Session, job_id: int | None, threads: int, standing_by: bool) -> None:
        """This worker's row: its heartbeat and state; registered again first if it was removed as dead
        while this process was stopped (SIGSTOP, a suspended VM)."""
        if not worker_heartbeat(session, self.worker_id, job_id, threads, standing_by):
            self._register(session)
            worker_heartbeat(session, self.worker_id, job_id, threads, standing_by)

    def stop(self) -> None:
        self._done.set()
        if self.is_alive():
            self.join()
        try:
            with session_scope(self.sessions) as session:
                unregister_worker(session, self.worker_id)
        except SQLAlchemyError as exc:  # its heartbeat ages out instead
            log.warning("could not remove this worker's record: %s", exc)

    def _register(self, session: Session) -> None:
        register_worker(
            session, self.worker_id, self.host, self.host_key, os.getpid(), self.settings.lease_seconds
        )


def _held(workers: Iterable[Worker]) -> int:
    """The threads these workers' jobs hold."""
    return sum(w.threads for w in workers)


def _part(cores: int, order: list[Worker | None], worker_id: str) -> int:
    """fair_share for `worker_id` among `order` (None: this worker, when its row is missing)."""
    rank = next((i for i, w in enumerate(order) if w is None or w.id == worker_id), len(order))
    return fair_share(cores, len(order), rank)
