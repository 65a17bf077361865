"""A worker's own record: that it is alive (idle or training), what it trains, and how many of its
machine's cores its next job may use, shared with the other live workers on the same machine.

A machine trains at most one job a core at once: its first live workers, one a core in the order they
started, claim jobs; any beyond its cores stand by (and take over when one of those stops). More
workers than cores only made every job slower (docs/performance.md, "Several workers")."""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.settings import Settings
from service.store.db import session_scope
from service.store.queries import live_workers
from service.store.workers import register_worker, unregister_worker, worker_heartbeat

log = logging.getLogger("workers")

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")  # one per running kernel: containers share their host's


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
    """How many cores this process may run on."""
    return len(_cpus())


def share_of_cores(cores: int, workers: int, rank: int) -> int:
    """Threads for worker `rank` (0-based) of `workers` on `cores`: the cores divided, the remainder to the
    first ones; at least one each."""
    base, extra = divmod(cores, max(workers, 1))
    return max(1, base + (1 if rank < extra else 0))


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

    def start_job(self, job_id: int) -> int:
        """Record that this worker trains `job_id`; returns the threads the job may use."""
        self.job_id, self.threads = job_id, self.threads_for_job()
        self.beat()
        return self.threads

    def end_job(self) -> None:
        self.job_id = None
        self.beat()

    def threads_for_job(self) -> int:
        """MLPLAB_WORKER_THREADS, or this worker's share of the host's cores among its training workers."""
        if self.settings.worker_threads:
            return self.settings.worker_threads
        rank, workers, cores = self._place() or (0, 1, host_cores())  # unknown: as if alone
        training = min(workers, cores)
        threads = share_of_cores(cores, training, min(rank, training - 1))
        log.info(
            "%d thread(s): %d cores shared by %d training worker(s) on this host", threads, cores, training
        )
        return threads

    def may_train(self) -> bool:
        """Whether this worker is one of its host's first live workers, one a core; always with
        MLPLAB_WORKER_THREADS set (whoever sets it divides the cores)."""
        if self.settings.worker_threads:
            return True
        place = self._place()
        if place is None:  # the database did not answer: keep the last decision
            return not self.standing_by
        rank, workers, cores = place
        may = rank < cores
        if may == self.standing_by:  # a change: logged, and recorded at once (GET /workers shows it)
            self.standing_by = not may
            if may:
                log.info("training: one of the first %d live workers of this host's %d cores", cores, cores)
            else:
                log.info("standing by: %d live workers on this host's %d cores", workers, cores)
            self.beat()
        return may

    def _place(self) -> tuple[int, int, int] | None:
        """(this worker's rank among its host's live workers by start, how many they are, the host's cores);
        None when the database does not answer."""
        try:
            with session_scope(self.sessions) as session:
                ids = [w.id for w in live_workers(session, self.settings.lease_seconds, self.host_key)]
        except SQLAlchemyError as exc:
            log.warning("could not count the workers on this host: %s", exc)
            return None
        if self.worker_id not in ids:
            ids.append(self.worker_id)
        return ids.index(self.worker_id), len(ids), host_cores()

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
