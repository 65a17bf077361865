"""Every change of an alias (service.store.models.Alias): move, roll back, delete.

Each function takes the caller's session and neither commits nor closes it; each is one
transaction that begins with the write lock (BEGIN IMMEDIATE on SQLite; on PostgreSQL an advisory
lock on the alias's name, so two moves of one alias queue rather than race) and writes one
AliasEvent, the alias's history. A rollback goes back one move at a time: every event records in
`rollback_to_id` the event whose model a rollback from it restores.

    (none) --move_alias--> champion=12 --move_alias--> champion=15 --rollback_alias--> champion=12
                                                                                 `--delete_alias--> (none)
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.store.db import begin_write
from service.store.models import Alias, AliasAction, AliasEvent, utcnow

_PG_ALIAS_LOCK = 0x616C6961  # "alia": the first key of pg_advisory_xact_lock(key, hashtext(name))


class AliasNotFound(LookupError):
    """No alias has this name."""


class NothingToRollBack(Exception):
    """The alias names the first model it ever named (since it was last created)."""


def move_alias(
    session: Session,
    name: str,
    model_id: int,
    action: AliasAction = AliasAction.move,
    detail: str | None = None,
    now: datetime | None = None,
) -> tuple[Alias, bool]:
    """(none) or another model -> model_id. Returns the alias and whether it was created.

    The caller checks that model_id is a trained model. Moving an alias to the model it already
    names changes nothing and writes no history.
    """
    alias = _lock(session, name)
    if alias is not None and alias.model_id == model_id:
        return alias, False
    created = alias is None
    event = _record(
        session,
        name,
        action,
        from_model_id=alias.model_id if alias else None,
        to_model_id=model_id,
        rollback_to_id=alias.event_id if alias else None,
        detail=detail,
        now=now,
    )
    if alias is None:
        alias = Alias(name=name, model_id=model_id, event_id=event.id, updated_at=event.created_at)
        session.add(alias)
    else:
        alias.model_id, alias.event_id, alias.updated_at = model_id, event.id, event.created_at
    session.flush()
    return alias, created


def rollback_alias(session: Session, name: str, now: datetime | None = None) -> Alias:
    """model -> the model the alias named before it (one step back through its moves).

    Raises AliasNotFound, or NothingToRollBack when it names the first model it named (rolled back to it,
    or never moved).
    """
    alias = _lock(session, name)
    if alias is None:
        raise AliasNotFound(name)
    current = session.get(AliasEvent, alias.event_id)
    if current is None or current.rollback_to_id is None:
        raise NothingToRollBack(name)
    target = session.get(AliasEvent, current.rollback_to_id)
    assert target is not None and target.to_model_id is not None  # a foreign key, and never a delete
    event = _record(
        session,
        name,
        AliasAction.rollback,
        from_model_id=alias.model_id,
        to_model_id=target.to_model_id,
        rollback_to_id=target.rollback_to_id,
        now=now,
    )
    alias.model_id, alias.event_id, alias.updated_at = target.to_model_id, event.id, event.created_at
    session.flush()
    return alias


def delete_alias(session: Session, name: str, now: datetime | None = None) -> None:
    """model -> (none); its history is kept. Raises AliasNotFound."""
    alias = _lock(session, name)
    if alias is None:
        raise AliasNotFound(name)
    model_id = alias.model_id
    session.delete(alias)
    _record(session, name, AliasAction.delete, from_model_id=model_id, to_model_id=None, now=now)


def lock_alias(session: Session, name: str) -> Alias | None:
    """The alias as it stands under its write lock (the transaction's until it ends), or None."""
    return _lock(session, name)


def _lock(session: Session, name: str) -> Alias | None:
    """Begin the write transaction, serialise changes of this alias, and read it."""
    begin_write(session)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(_PG_ALIAS_LOCK, func.hashtext(name))))
    return session.get(Alias, name, populate_existing=True)


def _record(
    session: Session,
    name: str,
    action: AliasAction,
    *,
    from_model_id: int | None,
    to_model_id: int | None,
    rollback_to_id: int | None = None,
    detail: str | None = None,
    now: datetime | None = None,
) -> AliasEvent:
    event = AliasEvent(
        alias=name,
        action=action,
        from_model_id=from_model_id,
        to_model_id=to_model_id,
        rollback_to_id=rollback_to_id,
        detail=detail,
        created_at=now or utcnow(),
    )
    session.add(event)
    session.flush()
    return event
