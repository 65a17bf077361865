"""Path and query parameters read strictly: an integer written in digits, each query parameter once."""

from __future__ import annotations

import re
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from service.errors import invalid_all

# A minus kept, so that -1 hears its own limit ("greater than or equal to 0").
_WHOLE = re.compile(r"-?[0-9]+")


def _digits(value: Any) -> Any:
    # pydantic's lax int also reads '1.0', '1_0', '+1', ' 1', '١' (any Unicode digit): another id than was meant.
    if isinstance(value, str) and not _WHOLE.fullmatch(value):
        raise PydanticCustomError("int_digits", "Input should be a whole number written in digits")
    return value


# Last in an Annotated, after its Query(..)/Path(..): first, or nested, FastAPI documents ge as "ge".
DIGITS = BeforeValidator(_digits)
Whole = Annotated[int, DIGITS]  # an integer path or query parameter with no other constraint


def _takes_list(annotation: Any) -> bool:
    """Whether a query parameter's type takes every value given (list[int]), not the last."""
    kinds = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    return any(get_origin(kind) in (list, set, frozenset, tuple) for kind in kinds)


def _scalar_query(dependant: Dependant) -> list[str]:
    """The query parameters the route (with its dependencies) reads one value of."""
    names = [field.alias for field in dependant.query_params if not _takes_list(field.field_info.annotation)]
    return names + [name for sub in dependant.dependencies for name in _scalar_query(sub)]


def _scalar_names(route: APIRoute) -> tuple[str, ...]:
    # kept on the route: its parameters never change, so walked once, not per request
    names: tuple[str, ...] | None = getattr(route, "mlplab_scalar_query", None)
    if names is None:
        names = tuple(dict.fromkeys(_scalar_query(route.dependant)))
        route.mlplab_scalar_query = names  # type: ignore[attr-defined]
    return names


async def once_each(request: Request) -> None:
    """422 naming a query parameter given more than once (?limit=1&limit=500): FastAPI reads the last."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    if not request.scope["query_string"]:
        return
    repeated = [(name, len(request.query_params.getlist(name))) for name in _scalar_names(route)]
    if any(count > 1 for _, count in repeated):
        raise invalid_all(
            (f"query.{name}", f"given {n} times; give it once") for name, n in repeated if n > 1
        )
