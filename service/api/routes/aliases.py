"""Aliases: names for trained models (champion, staging) that move, move back, and keep their history.

Wherever a model id is accepted, an alias is too (deps.ModelRef); a request resolves it once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Path, Response
from sqlalchemy.orm import Session

from service.api.deps import InferenceDep, SessionDep, WriterDep, reader_router
from service.api.paging import PageLimit, PageOffset
from service.api.presenters import alias_public, aliases_public, point_alias
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
    Responses,
    found,
    not_found,
    problem_doc,
)
from service.quoting import echo
from service.store.aliases import AliasNotFound, NothingToRollBack, delete_alias, lock_alias, rollback_alias
from service.store.models import Alias
from service.store.queries import alias_history, get_alias, list_aliases

router = reader_router("aliases", "/aliases")

AliasPath = Annotated[
    str,
    Path(
        pattern=ALIAS_PATTERN,
        description=f"{ALIAS_WORDS.capitalize()}.",
    ),
]

# RFC 9110 13.1: a change made only if the alias is as the client last read it (If-Match: its ETag) or
# only if it does not exist yet (If-None-Match: *); two clients moving one alias then cannot lose a change.
IfMatch = Annotated[
    list[str] | None,
    Header(
        description="Change the alias only if its ETag is one of these (or, with *, if it exists); else 412."
    ),
]
IfNoneMatch = Annotated[
    list[str] | None,
    Header(
        description="Change the alias only if its ETag is none of these (with *: only if it does not exist, "
        "to create it and never move another's); else 412. On GET, 304 when it still matches."
    ),
]
PRECONDITION_DOC: Responses = {
    412: problem_doc("If-Match or If-None-Match does not hold for the alias as it now is")
}


def etag(alias: Alias) -> str:
    """The alias's entity tag: the id of the change that set it, new with every move, rollback or creation."""
    return f'"{alias.event_id}"'


def _tags(values: list[str], weak: bool) -> set[str]:
    """The entity tags of If-Match or If-None-Match header lines; `weak`: W/"x" counts as "x"."""
    tags = {tag.strip() for value in values for tag in value.split(",") if tag.strip()}
    return {tag.removeprefix("W/") for tag in tags} if weak else tags


def _holds(current: Alias | None, if_match: list[str] | None, if_none_match: list[str] | None) -> str | None:
    """Why the preconditions fail for the alias as it is (None: they hold)."""
    tag = None if current is None else etag(current)
    if if_match is not None:
        tags = _tags(if_match, weak=False)  # strong comparison
        if tag is None or not ("*" in tags or tag in tags):
            return f"If-Match {echo(', '.join(if_match))} does not match"
    if if_none_match is not None:
        tags = _tags(if_none_match, weak=True)
        if tag is not None and ("*" in tags or tag in tags):
            return f"If-None-Match {echo(', '.join(if_none_match))} matches"
    return None


def check_preconditions(
    session: Session, name: str, if_match: list[str] | None, if_none_match: list[str] | None
) -> None:
    """412 unless the alias, read under its write lock, is as the request's conditions require."""
    if if_match is None and if_none_match is None:
        return
    current = lock_alias(session, name)
    why = _holds(current, if_match, if_none_match)
    if why is not None:
        now = "does not exist" if current is None else f"names model {current.model_id}, ETag {etag(current)}"
        raise ProblemError(
            412,
            "Precondition failed",
            f"Alias {name} {now}: {why}. Nothing was changed; read it again (GET /aliases/{name}) and decide.",
        )


def _tagged(session: Session, name: str, response: Response) -> None:
    if (alias := session.get(Alias, name)) is not None:
        response.headers["ETag"] = etag(alias)


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


@router.get("/{alias}", response_model=AliasHistoryPublic, responses={304: {"description": "Not Modified"}})
def read_alias(
    alias: AliasPath,
    session: SessionDep,
    response: Response,
    if_none_match: IfNoneMatch = None,
    limit: PageLimit = 100,
) -> AliasHistoryPublic | Response:
    """An alias, the model it names, and its latest changes (moves, rollbacks, deletions), newest first;
    its ETag to make a change conditional on (If-Match)."""
    row = found(get_alias(session, alias), "alias", alias)
    response.headers["ETag"] = etag(row)
    if _holds(row, None, if_none_match) is not None:  # the client's copy is current
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
    responses=NOT_TRAINED_DOC
    | JSON_BODY_DOC
    | PRECONDITION_DOC
    | {201: {"model": AliasPublic, "description": "Created"}},
)
def put_alias(
    alias: AliasPath,
    body: AliasUpdate,
    session: SessionDep,
    inference: InferenceDep,
    response: Response,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> AliasPublic:
    """Point the alias at a trained model, creating it (201) or moving it; every API process sees the move
    within MLPLAB_ALIAS_CACHE_SECONDS. If-None-Match: * only creates; If-Match: its ETag only moves it
    from where the client last read it."""
    check_preconditions(session, alias, if_match, if_none_match)
    public, created = point_alias(session, alias, body.model_id)
    _tagged(session, alias, response)
    session.commit()  # release the write lock in this thread hop
    inference.forget(alias)
    if created:
        response.status_code = 201
        response.headers["Location"] = f"/aliases/{alias}"
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
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> AliasPublic:
    """Point the alias back at the model it named before (again to go further back)."""
    check_preconditions(session, alias, if_match, if_none_match)
    try:
        public = alias_public(session, rollback_alias(session, alias))
    except AliasNotFound:
        raise not_found("alias", alias) from None
    except NothingToRollBack:
        raise ProblemError(
            409,
            "Nothing to roll back to",
            f"Alias {alias} names the first model it named: nothing earlier to roll back to.",
        ) from None
    _tagged(session, alias, response)
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
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Remove the alias; its history stays. Requests that name it get 404 from then on."""
    check_preconditions(session, alias, if_match, if_none_match)
    try:
        delete_alias(session, alias)
    except AliasNotFound:
        raise not_found("alias", alias) from None
    session.commit()
    inference.forget(alias)
    return Response(status_code=204)
