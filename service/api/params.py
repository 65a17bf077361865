"""Requests read as their routes declare them: an integer written in digits, each query parameter once and
none the route does not read, no body where it reads none, and no JSON key twice."""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import Path, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from service.api.guard import TICKET_PARAM, sends_body
from service.errors import invalid, invalid_all, read_json
from service.ml.spec import SplitName
from service.store.queries import MAX_INTEGER

# A minus kept, so that -1 hears its own limit ("greater than or equal to 0"); not before a zero.
_WHOLE = re.compile(r"[0-9]+|-0*[1-9][0-9]*")


def _digits(value: Any) -> Any:
    # pydantic's lax int also reads '1.0', '1_0', '+1', ' 1', '١' (any Unicode digit): another id than was meant.
    if isinstance(value, str) and not _WHOLE.fullmatch(value):
        raise PydanticCustomError("int_digits", "Input should be a whole number written in digits")
    return value


# Last in an Annotated, after its Query(..)/Path(..): first, or nested, FastAPI documents ge as "ge".
DIGITS = BeforeValidator(_digits)

# What every route says of an id it cannot hold (a path's, ?ids=, ?a=): ids are the database's integers.
ID_RANGE = f"an integer from 1 to {MAX_INTEGER:,}"


def is_id(text: str) -> bool:
    # ASCII digits only: str.isdigit() also takes '²', which int() refuses.
    return re.fullmatch(r"[0-9]{1,10}", text) is not None and 1 <= int(text) <= MAX_INTEGER


# A job's or a study's id in a path: 1 or more, as a model's is (-1 or 0 is the client's mistake, a 422),
# and one the database can hold (past it a 422 too, where it was a 404 as a job's and a 422 in ?ids=)
Whole = Annotated[int, Path(ge=1, le=MAX_INTEGER), DIGITS]


def _split_file(value: Any) -> Any:
    if value == "validation":  # a split of the API's figures, not of the files: its refusal says where it is
        raise PydanticCustomError(
            "validation_in_train",
            "Input should be 'train' or 'test': the validation images are train images, under their train "
            "indices (a model's: predictions/train?images=validation)",
        )
    return value


# A path's split of a dataset's files: train or test, and validation named as part of train.
FileSplit = Annotated[SplitName, BeforeValidator(_split_file)]


def _takes_list(annotation: Any) -> bool:
    """Whether a query parameter's type takes every value given (list[int]), not the last."""
    kinds = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    return any(get_origin(kind) in (list, set, frozenset, tuple) for kind in kinds)


def _scalar_query(dependant: Dependant) -> list[str]:
    """The query parameters the route (with its dependencies) reads one value of."""
    names = [field.alias for field in dependant.query_params if not _takes_list(field.field_info.annotation)]
    return names + [name for sub in dependant.dependencies for name in _scalar_query(sub)]


def _all_query(dependant: Dependant) -> list[str]:
    """Every query parameter the route (with its dependencies) reads."""
    return [field.alias for field in dependant.query_params] + [
        name for sub in dependant.dependencies for name in _all_query(sub)
    ]


def _query_names(route: APIRoute) -> tuple[tuple[str, ...], frozenset[str]]:
    """The route's query parameters read once (in order), and all it reads with the read ticket."""
    # kept on the route: its parameters never change, so walked once, not per request
    names: tuple[tuple[str, ...], frozenset[str]] | None = getattr(route, "mlplab_query", None)
    if names is None:
        scalars = tuple(dict.fromkeys([*_scalar_query(route.dependant), TICKET_PARAM]))
        names = scalars, frozenset(_all_query(route.dependant)) | {TICKET_PARAM}
        route.mlplab_query = names  # type: ignore[attr-defined]
    return names


def _takes_body(route: APIRoute) -> bool:
    """Whether the route reads a body: a declared one, or its own (predict's, declared in openapi_extra)."""
    return bool(route.dependant.body_params) or "requestBody" in (route.openapi_extra or {})


async def as_declared(request: Request) -> None:
    """422 naming a query parameter given more than once (?limit=1&limit=500: FastAPI reads the last), one
    the route does not read (?splitt=train answered with the test split's matrix), or a body sent to a
    route that reads none (a rollback's {"to_model_id": 5} rolled back one move, not to model 5)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    if not _takes_body(route) and sends_body(request.headers, request.method):
        raise invalid(
            "body", "this route reads no body: send none (its parameters are in the path and query)"
        )
    if not request.scope["query_string"]:
        return
    scalars, known = _query_names(route)
    unknown = [name for name in dict.fromkeys(request.query_params) if name not in known]
    if unknown:
        reads = ", ".join(sorted(known - {TICKET_PARAM})) or "none"
        raise invalid_all(
            (f"query.{name}", f"not a parameter of this route (it reads: {reads})") for name in unknown
        )
    repeated = [(name, len(request.query_params.getlist(name))) for name in scalars]
    if any(count > 1 for _, count in repeated):
        raise invalid_all(
            (f"query.{name}", f"given {n} times; give it once") for name, n in repeated if n > 1
        )


class _UniqueKeysRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = read_json(await self.body())
        return self._json


# Set by deps.resolve_model when a request names a model by alias, in the request's task.
ALIAS_NAMED: ContextVar[bool] = ContextVar("alias_named", default=False)


class DeclaredRoute(APIRoute):
    """A route whose JSON body names each key once: json.loads keeps the last of two, where the client may
    have meant either (errors.unreadable_json words FastAPI's 400 for it); and whose answer about a model
    named by alias no cache keeps, whichever way the route built it: what an alias names may change."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            named = ALIAS_NAMED.set(False)
            try:
                response = await handler(_UniqueKeysRequest(request.scope, request.receive))
                if ALIAS_NAMED.get():
                    response.headers["Cache-Control"] = "no-cache"
                return response
            finally:
                ALIAS_NAMED.reset(named)

        return route_handler
