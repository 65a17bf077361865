"""Aliases: names for trained models (champion, staging) that move, move back, and keep their history.

Wherever a model id is accepted, an alias is too (deps.ModelRef); a request resolves it once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Response
from sqlalchemy.orm import Session

from service.api.conditions import (
    PRECONDITION_DOC,
    ConditionsDep,
    IfMatchRead,
    IfNoneMatchRead,
    check_preconditions,
    etag,
    holds,
    tagged,
)
from service.api.deps import InferenceDep, MonitoringDep, SessionDep, WriterDep, reader_router
from service.api.paging import PageLimit, PageOffset
from service.api.presenters import (
    ALIAS_CREATED_DOC,
    alias_not_found,
    alias_public,
    aliases_public,
    point_alias,
    set_created,
)
from service.api.schemas import (
    ALIAS_PATTERN,
    ALIAS_WORDS,
    AliasesPublic,
    AliasEventPublic,
    AliasHistoryPage,
    AliasHistoryPublic,
    AliasPublic,
    AliasUpdate,
)
from service.errors import (
    JSON_BODY_DOC,
    NOT_TRAINED_DOC,
    ProblemError,
    not_found,
    problem_doc,
)
from service.store.aliases import AliasNotFound, NothingToRollBack, delete_alias, rollback_alias
from service.store.db import begin_snapshot
from service.store.queries import alias_history, get_alias, list_aliases

router = reader_router("aliases", "/aliases")

AliasPath = Annotated[
    str,
    Path(
        pattern=ALIAS_PATTERN,
        description=f"{ALIAS_WORDS.capitalize()}.",
    ),
]


@router.get("", response_model=AliasesPublic)
def read_aliases(session: SessionDep, limit: PageLimit = 100, offset: PageOffset = 0) -> AliasesPublic:
    """The aliases and the models they name, by name; `count` has them all."""
    aliases, count = list_aliases(session, limit, offset)
    return AliasesPublic(data=aliases_public(session, aliases), count=count)


def _history(session: Session, alias: str, limit: int, offset: int) -> AliasHistoryPage:
    events, count = alias_history(session, alias, limit, offset)
    data = [
        AliasEventPublic(
            action=e.action,
            from_model_id=e.from_model_id,
            to_model_id=e.to_model_id,
            detail=e.detail,
            at=e.created_at,
        )
        for e in events
    ]
    return AliasHistoryPage(data=data, count=count)


@router.get(
    "/{alias}",
    response_model=AliasHistoryPublic,
    responses={
        304: {"description": "Not Modified"},
        412: problem_doc("If-Match does not hold for the alias"),
    },
)
def read_alias(
    alias: AliasPath,
    session: SessionDep,
    response: Response,
    if_match: IfMatchRead = None,
    if_none_match: IfNoneMatchRead = None,
    limit: PageLimit = 100,
) -> AliasHistoryPublic | Response:
    """An alias, the model it names, and its latest changes (moves, rollbacks, deletions), newest first;
    its ETag to make a change conditional on (If-Match)."""
    begin_snapshot(session)  # the alias and its history as of one moment: its ETag says that moment
    row = get_alias(session, alias)
    if row is None:
        raise alias_not_found(session, alias)
    response.headers["ETag"] = etag(row)
    if (why := holds(row, if_match, None)) is not None:  # RFC 9110 13.2.2: If-Match first, on any method
        raise ProblemError(412, "Precondition failed", f"Alias {alias}: {why} its ETag {etag(row)}.")
    if holds(row, None, if_none_match) is not None:  # the client's copy is current
        return Response(status_code=304, headers={"ETag": etag(row)})
    page = _history(session, alias, limit, 0)
    return AliasHistoryPublic(
        **alias_public(session, row).model_dump(), history=page.data, history_count=page.count
    )


@router.get("/{alias}/history", response_model=AliasHistoryPage)
def read_alias_history(
    alias: AliasPath, session: SessionDep, limit: PageLimit = 100, offset: PageOffset = 0
) -> AliasHistoryPage:
    """Every change of the name, newest first, a page at a time; still there after the alias is deleted."""
    page = _history(session, alias, limit, offset)
    if not page.count:
        raise not_found("alias", alias)
    return page


@router.put(
    "/{alias}",
    response_model=AliasPublic,
    dependencies=[WriterDep],
    responses=NOT_TRAINED_DOC | JSON_BODY_DOC | PRECONDITION_DOC | ALIAS_CREATED_DOC,
)
def put_alias(
    alias: AliasPath,
    body: AliasUpdate,
    session: SessionDep,
    inference: InferenceDep,
    response: Response,
    conditions: ConditionsDep,
) -> AliasPublic:
    """Point the alias at a trained model, creating it (201) or moving it; every API process sees the move
    within MLPLAB_ALIAS_CACHE_SECONDS. If-None-Match: * only creates; If-Match: its ETag only moves it
    from where the client last read it."""
    check_preconditions(session, alias, conditions)
    public, created = point_alias(session, alias, body.model_id)
    tagged(session, alias, response)
    session.commit()  # release the write lock in this thread hop
    inference.forget(alias)
    set_created(response, alias, created)
    return public


@router.post(
    "/{alias}/rollback",
    response_model=AliasPublic,
    dependencies=[WriterDep],
    responses=PRECONDITION_DOC | {409: problem_doc("Nothing to roll back to")},
)
def rollback(
    alias: AliasPath,
    session: SessionDep,
    inference: InferenceDep,
    response: Response,
    conditions: ConditionsDep,
) -> AliasPublic:
    """Point the alias back at the model it named before (again to go further back)."""
    check_preconditions(session, alias, conditions)
    try:
        public = alias_public(session, rollback_alias(session, alias))
    except AliasNotFound:
        raise alias_not_found(session, alias) from None
    except NothingToRollBack:
        raise ProblemError(
            409,
            "Nothing to roll back to",
            f"Alias {alias} names the first model it has named since it was created (a deletion ends "
            f"what a rollback reaches; GET /aliases/{alias}/history keeps the rest): nothing earlier to "
            "roll back to.",
        ) from None
    tagged(session, alias, response)
    session.commit()
    inference.forget(alias)
    return public


@router.delete(
    "/{alias}", status_code=204, response_class=Response, dependencies=[WriterDep], responses=PRECONDITION_DOC
)
def remove_alias(
    alias: AliasPath,
    session: SessionDep,
    inference: InferenceDep,
    monitoring: MonitoringDep,
    conditions: ConditionsDep,
) -> Response:
    """Remove the alias; its history stays. Requests that name it get 404 from then on."""
    check_preconditions(session, alias, conditions)
    try:
        delete_alias(session, alias)
    except AliasNotFound:
        raise alias_not_found(session, alias) from None
    session.commit()
    inference.forget(alias)
    monitoring.forget_alias(alias)
    return Response(status_code=204)
