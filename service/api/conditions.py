"""Conditional changes of an alias (RFC 9110 13.1), on every route that moves one: PUT, rollback and
DELETE under /aliases, and a sweep's or a study's promote. Its ETag is the id of the change that set it:
a client moves it only if it is as the client last read it (If-Match), or creates it only if it does not
exist yet (If-None-Match: *), so that two clients moving one alias cannot lose a change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Response
from sqlalchemy.orm import Session

from service.errors import ProblemError, Responses, problem_doc
from service.quoting import echo
from service.store.aliases import lock_alias
from service.store.models import Alias

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
        "to create it and never move another's); else 412."
    ),
]
IfMatchRead = Annotated[
    list[str] | None,
    Header(description="412 unless the alias's ETag is one of these (with *: unless it exists)."),
]
IfNoneMatchRead = Annotated[
    list[str] | None,
    Header(description="304, no body, when the alias's ETag is one of these (with *: when it exists)."),
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


def holds(current: Alias | None, if_match: list[str] | None, if_none_match: list[str] | None) -> str | None:
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


@dataclass(frozen=True)
class Conditions:
    """A change's If-Match and If-None-Match, as sent (None: not sent)."""

    if_match: list[str] | None
    if_none_match: list[str] | None


def _conditions(if_match: IfMatch = None, if_none_match: IfNoneMatch = None) -> Conditions:
    return Conditions(if_match, if_none_match)


ConditionsDep = Annotated[Conditions, Depends(_conditions)]


def check_preconditions(session: Session, name: str, conditions: Conditions) -> None:
    """412 unless the alias, read under its write lock, is as the request's conditions require."""
    if conditions.if_match is None and conditions.if_none_match is None:
        return
    current = lock_alias(session, name)
    why = holds(current, conditions.if_match, conditions.if_none_match)
    if why is not None:
        now = "does not exist" if current is None else f"names model {current.model_id}, ETag {etag(current)}"
        raise ProblemError(
            412,
            "Precondition failed",
            f"Alias {name} {now}: {why}. Nothing was changed; read it again (GET /aliases/{name}) and decide.",
        )


def tagged(session: Session, name: str, response: Response) -> None:
    if (alias := session.get(Alias, name)) is not None:
        response.headers["ETag"] = etag(alias)
