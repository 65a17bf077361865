"""A worker's own record: that it is alive (idle or training), what it trains, and how many of its
machine's cores its job holds, so that the live workers on one machine share its cores.

A machine trains at most one job a core at once: its first live workers, one a core in the order they
started, may claim jobs; any beyond its cores stand by (and take over when one of those stops). More
workers than cores only made every job slower (docs/performance.md, "Several workers"). A job holds
its threads until it ends: a claim takes the cores that running jobs leave free, divided among as many
idle workers as there are queued jobs for them, so a job alone gets them all and a burst shares them;
with none free the worker waits."""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.settings import Settings
from service.store.db import begin_write, session_scope
from service.store.jobs import claim_job
from service.store.models import Job
from service.store.queries import count_queued, live_workers
from service.store.workers import register_worker, unregister_worker, worker_heartbeat

log = logging.getLogger("workers")

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")  # one per running kernel: containers share their host's
CGROUP = Path("/proc/self/cgroup")  # "0::/its/path" on cgroup v2
CGROUPS = Path("/sys/fs/cgroup")  # v2: <path>/cpu.max; v1: cpu/cpu.cfs_quota_us and cpu.cfs_period_us


def host_key() -> str:
    """The same for every process that runs on the same cores of this machine, containers included: the
    kernel's boot id (else the hostname) and the CPUs this process may use. Containers pinned to
    different CPUs of one machine share nothing to divide; nor do containers with CPU quotas of their
    own (told apart by hostname, a container's own)."""
    try:
        machine = BOOT_ID.read_text().strip() or socket.gethostname()
    except OSError:
        machine = socket.gethostname()
    quota = "" if cpu_quota() is None else f"/quota:{socket.gethostname()}"
    return f"{machine}/cpus:{','.join(map(str, _cpus()))}{quota}"


def _cpus() -> list[int]:
    """The CPUs this process may run on (its CPU affinity, which a container's cpuset narrows)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def cpu_quota() -> int | None:
    """The whole CPUs that a CPU quota on this process's control group allows (docker's --cpus, compose's
    `cpus:`, systemd's CPUQuota=), at least one; None without a quota. Rounded down: a thread beyond
    the quota would be throttled in the middle of a product the other threads wait for."""
    try:
        path = next(line[3:] for line in CGROUP.read_text().splitlines() if line.startswith("0::"))
        quota, period = (CGROUPS / path.lstrip("/") / "cpu.max").read_text().split()
        if quota == "max":
            return None
    except (OSError, StopIteration, ValueError):  # not cgroup v2
        try:
            quota = (CGROUPS / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (CGROUPS / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        allowed = int(quota) // int(period)
    except (ValueError, ZeroDivisionError):
        return None
    return None if int(quota) < 0 else max(1, allowed)  # v1 writes -1 for none


def host_cores() -> int:
    """How many cores this process may run on: its CPUs, or fewer under a CPU quota."""
    cpus, quota = len(_cpus()), cpu_quota()
    return cpus if quota is None else min(cpus, quota)


def threads_for_claim(cores: int, held: int, idle: int, queued: int) -> int:
    """Threads for the next job of one of `idle` idle workers on a host of `cores`, of which running jobs
    hold `held`, with `queued` jobs waiting: its part of the free cores divided among as many idle
    workers as there are jobs for (rounded down: a later claim takes the rest); 0 when none is free."""
    free = cores - held
    if free <= 0:
        return 0
    return free // max(1, min(idle, queued, free))


class Presence(threading.Thread):
    """Registers the worker, renews its heartbeat every `settings.heartbeat_seconds` whatever it is doing,
    records the job it trains, and removes its record when stopped."""

    def __init__(self, sessions: sessionmaker[Session], worker_id: str, settings: Settings) -> None:
        super().__init__(name="presence", daemon=True)
        self.sessions, self.worker_id, self.settings = sessions, worker_id, settings
        self.host_key = host_key()
        self.job_id: int | None = None
        self.threads = 0
        self.standing_by = False
        self._done = threading.Event()
        self._beating = threading.Lock()  # one beat at a time: a stale one never lands after a fresh one

    def start(self) -> None:
        self._register()
        super().start()

    def run(self) -> None:
        while not self._done.wait(self.settings.heartbeat_seconds):
            self.beat()

    def beat(self) -> None:
        try:
            with self._beating:
                with session_scope(self.sessions) as session:
                    alive = worker_heartbeat(
                        session, self.worker_id, self.job_id, self.threads, self.standing_by
                    )
                if not alive:  # removed as dead while this process was stopped (SIGSTOP, a suspended VM)
                    self._register()
        except SQLAlchemyError as exc:  # transient: the next beat tries again, within the lease
            log.warning("worker heartbeat failed: %s", exc)

    def claim(self, once: bool = False) -> Job | None:
        """The oldest queued job, claimed with the threads it may use (`self.threads`) and recorded as this
        worker's in the same transaction, so that the next claim on this host counts them. None when the
        queue is empty, when this worker stands by, or when every core of its host is held; with `once`
        (train what it finds, as asked) or MLPLAB_WORKER_THREADS it neither stands by nor waits."""
        with self._beating:  # no heartbeat with the old state lands after this one
            with session_scope(self.sessions) as session:
                begin_write(session)
                standing_by, threads = self._decide(session, once)
                job = claim_job(session, self.worker_id) if threads else None
                if job is not None or standing_by != self.standing_by:  # GET /workers shows it at once
                    job_id, recorded = (None, self.threads) if job is None else (job.id, threads)
                    worker_heartbeat(session, self.worker_id, job_id, recorded, standing_by)
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
        self.job_id = None
        self.beat()

    def _decide(self, session: Session, once: bool) -> tuple[bool, int]:
        """(whether this worker stands by, the threads its next job may take, 0 for none), from its host's
        live workers, locked until the claim commits (SQLite's write transaction already excludes)."""
        if self.settings.worker_threads:
            return False, self.settings.worker_threads
        workers = live_workers(session, self.settings.lease_seconds, self.host_key, lock=True)
        others = [w for w in workers if w.id != self.worker_id]
        rank = next((i for i, w in enumerate(workers) if w.id == self.worker_id), len(workers))
        cores = host_cores()
        if rank >= cores and not once:  # the host's first live workers, one a core, train
            return True, 0
        held = sum(w.threads for w in others if w.job_id is not None)
        idle = 1 + sum(w.job_id is None and not w.standing_by for w in others)
        threads = threads_for_claim(cores, held, idle, count_queued(session))
        return False, max(threads, 1) if once else threads

    def stop(self) -> None:
        self._done.set()
        if self.is_alive():
            self.join()
        try:
            with session_scope(self.sessions) as session:
                unregister_worker(session, self.worker_id)
        except SQLAlchemyError as exc:  # its heartbeat ages out instead
            log.warning("could not remove this worker's record: %s", exc)

    def _register(self) -> None:
        with session_scope(self.sessions) as session:
            register_worker(
                session,
                self.worker_id,
                socket.gethostname(),
                self.host_key,
                os.getpid(),
                self.settings.lease_seconds,
            )
