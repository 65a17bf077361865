"""Workers' own records (service.store.models.Worker): each worker process registers, renews its
heartbeat whether it trains or waits, says which job it trains, and removes itself when it stops.

Whether a worker is live is ``service.store.queries.worker_is_live``: a heartbeat within the lease
after which its job would be re-queued. Each function takes the caller's session and neither commits
nor closes it; the reads are in ``service.store.queries``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from service.store.db import begin_write
from service.store.models import Worker, utcnow
from service.store.queries import worker_is_live


def register_worker(
    session: Session,
    worker_id: str,
    host: str,
    host_key: str,
    pid: int,
    lease_seconds: float,
    now: datetime | None = None,
) -> Worker:
    """(nothing) -> live: the worker's row, and the rows of workers dead for a lease removed."""
    now = now or utcnow()
    begin_write(session)
    session.execute(delete(Worker).where(~worker_is_live(lease_seconds, now)))
    worker = Worker(id=worker_id, host=host, host_key=host_key, pid=pid, started_at=now, heartbeat_at=now)
    session.merge(worker)
    session.flush()
    return worker


def worker_heartbeat(
    session: Session,
    worker_id: str,
    job_id: int | None,
    threads: int,
    standing_by: bool = False,
    now: datetime | None = None,
) -> bool:
    """live -> live: heartbeat_at = now, with the job it trains (None when idle), that job's threads (0
    when idle), and whether it stands by (workers/presence.py).

    False when the worker has no row (removed as dead while it was stopped): it registers again.
    """
    begin_write(session)
    row = session.execute(
        update(Worker)
        .where(Worker.id == worker_id)
        .values(
            heartbeat_at=now or utcnow(),
            job_id=job_id,
            threads=threads if job_id is not None else 0,
            standing_by=standing_by,
        )
        .returning(Worker.id)
    ).first()
    return row is not None


def unregister_worker(session: Session, worker_id: str) -> None:
    """live -> (nothing), as the worker stops: the others on its host take its cores at their next job."""
    begin_write(session)
    session.execute(delete(Worker).where(Worker.id == worker_id))
