"""RFC 9457 problem details: every error the API returns is application/problem+json."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.exc import DatabaseError, DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match, Mount

from service.ml.data import unavailable_reason
from service.quoting import cut, did_you_mean, echo, url_quoted
from service.store.db import BUSY_TIMEOUT_MS, is_busy, is_full, transient
from service.turns import QueueFull

T = TypeVar("T")

log = logging.getLogger("mlplab.api")
BUSY_RETRY_SECONDS = 5  # a busy database's Retry-After
FULL_RETRY_SECONDS = 60  # a full one's: space is freed by hand
UNAVAILABLE_RETRY_SECONDS = 10  # an unreachable or unwritable one's, and a server at MLPLAB_MAX_CONNECTIONS
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # the methods that change nothing

PROBLEM_JSON = "application/problem+json"
MAX_INVALID_PARAMS = 100  # the most invalid_params a problem lists (its detail names the first five)
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
Responses = dict[int | str, dict[str, Any]]  # FastAPI's `responses=` (an OpenAPI responses object)


class InvalidParam(BaseModel):
    name: str  # dotted path of the field, e.g. "body.hidden_layers.0"
    reason: str


class Problem(BaseModel):
    """The body of every error response."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    invalid_params: list[InvalidParam] | None = None


class ProblemError(Exception):
    """Raise from anywhere in a request to answer with a problem; nothing has been changed."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        invalid_params: list[dict[str, str]] | None = None,
    ):
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.headers = headers
        self.invalid_params = invalid_params


def not_found(what: str, key: Any) -> ProblemError:
    return ProblemError(404, f"{what.capitalize()} not found", f"There is no {what} {key}.")


def found(value: T | None, what: str, key: Any) -> T:
    """`value`, unless it is None: then the 404 that says there is no such `what`."""
    if value is None:
        raise not_found(what, key)
    return value


def not_trained(job_id: int, status: str) -> ProblemError:
    return ProblemError(
        409, "Model not trained", f"Job {job_id} is {status}: it becomes a model only once it has succeeded."
    )


def dataset_unavailable(name: str, error: Exception) -> ProblemError:
    """503 naming the setting; the error, which names the server's paths, goes to the log only."""
    log.error("dataset %s unavailable: %s", name, error)
    return ProblemError(503, "Dataset unavailable", unavailable_reason(name))


def located(name: str) -> str:
    """A field's name as pydantic's own 422s spell it, where in the request it is: body.seeds, query.ids;
    cut to ECHO_CHARS (a name can hold a client's key)."""
    return cut(
        name if name == "body" or name.startswith(("body.", "query.", "path.", "header.")) else f"body.{name}"
    )


def invalid(field: str, reason: str, status: int = 422) -> ProblemError:
    """`field` (a body field unless located otherwise) is wrong for `reason`."""
    name = located(field)
    return ProblemError(
        status, "Invalid request", f"{name}: {reason}", invalid_params=[{"name": name, "reason": reason}]
    )


def listed_of(total: int) -> str:
    """After a detail whose invalid_params were cut to MAX_INVALID_PARAMS: how many there were."""
    return f"; {total:,} problems in all, the first {MAX_INVALID_PARAMS} listed"


def invalid_all(problems: Iterable[tuple[str, str]]) -> ProblemError:
    """422 naming every (field, reason) at once; the detail quotes the first five."""
    params = [{"name": located(name), "reason": reason} for name, reason in problems]
    detail = "; ".join(f"{p['name']}: {p['reason']}" for p in params[:5])
    return ProblemError(422, "Invalid request", detail, invalid_params=params)


def problem_response(
    request: Request,
    status: int,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    invalid_params: list[dict[str, str]] | None = None,
) -> JSONResponse:
    if invalid_params and len(invalid_params) > MAX_INVALID_PARAMS:
        detail += listed_of(len(invalid_params))
    body = Problem(
        title=title,
        status=status,
        detail=detail,
        instance=url_quoted(request.url.path),
        invalid_params=invalid_params[:MAX_INVALID_PARAMS] if invalid_params else None,
    )
    return ProblemJSONResponse(
        body.model_dump(exclude_none=True), status_code=status, headers=headers, media_type=PROBLEM_JSON
    )


class ProblemJSONResponse(JSONResponse):
    """JSON that quotes a client's input back: a lone surrogate ("\\ud800" in its JSON) is no UTF-8, and
    JSONResponse's strict encoding failed with a 500; it is sent as "?"."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
        return text.encode("utf-8", "replace")


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(cut(str(part)) for part in loc)  # a part may be a client's key


# Regular expressions a client reads in words: a 422 says "should be <words>", not the expression.
_PATTERN_WORDS: dict[str, str] = {}


def worded(pattern: str, words: str) -> str:
    """`pattern`, which a 422 about it will describe as `words`."""
    _PATTERN_WORDS[pattern] = words
    return pattern


def part_reason(error: Mapping[str, Any], value: object) -> str:
    """validation_reason for an error inside `value` (a list's item, an object's field), saying where:
    "[1]: Input should be greater than or equal to 1 (got 0), in [8, 0]"."""
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"][1:]).lstrip(".")
    return f"{where}: {validation_reason(error)}, in {echo(value)}"


def validation_reason(error: Mapping[str, Any]) -> str:
    # pydantic's messages already name the limit ("Input should be less than or equal to 200");
    # add what was given so the client sees both sides.
    # a validator's own sentence, without pydantic's label
    msg = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "json_invalid":  # FastAPI's loc is (body, 0-based offset): the reason counts from 1
        return f"not valid JSON at character {int(error['loc'][-1]) + 1}: {error['ctx']['error']}"
    if error["type"] == "string_pattern_mismatch" and error["ctx"]["pattern"] in _PATTERN_WORDS:
        msg = f"should be {_PATTERN_WORDS[error['ctx']['pattern']]}"
    if (
        "input" in error
        and error["type"] not in ("missing",)
        and not isinstance(error["input"], (dict, list))
    ):
        return f"{msg} (got {echo(error['input'])})"
    return msg


def _model_in(kind: Any) -> type[BaseModel] | None:
    """The pydantic model a body field's type holds (through Annotated, Optional, lists), if one."""
    origin = get_origin(kind)
    if origin is Annotated or origin in (list, tuple, set, frozenset):
        return _model_in(get_args(kind)[0])
    if origin in (Union, UnionType):
        models = {model for arg in get_args(kind) if (model := _model_in(arg)) is not None}
        return models.pop() if len(models) == 1 else None
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def _meant(request: Request, error: Mapping[str, Any]) -> str:
    """For a body key no model there has: the nearest field's name, or the fields (FastAPI's route and
    pydantic's loc lead to the model, as ("body", "early_stopping", "patince"))."""
    loc = error["loc"]
    body = getattr(request.scope.get("route"), "body_field", None)
    if error["type"] != "extra_forbidden" or loc[:1] != ("body",) or body is None:
        return ""
    model = _model_in(body.field_info.annotation)
    for part in loc[1:-1]:
        if isinstance(part, str) and model is not None:
            field = model.model_fields.get(part)
            model = _model_in(field.annotation) if field is not None else None
    if model is None:
        return ""
    return did_you_mean(loc[-1], [field.alias or name for name, field in model.model_fields.items()])


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e["loc"][:1] == ("body",) and isinstance(e.get("input"), bytes) for e in errors):
        # FastAPI parses a body as JSON only under a JSON Content-Type: under another the model got bytes
        sent = request.headers.get("content-type")
        return problem_response(
            request,
            415,
            "Unsupported media type",
            f"Content-Type {echo(sent) if sent else 'missing'}: send the body as JSON, with "
            "Content-Type: application/json",
        )
    if broken := next((e for e in errors if e["type"] == "json_invalid"), None):
        return await _problem_error(request, not_json(validation_reason(broken)))
    # worded for those listed alone: 90,000 unknown keys, each weighed against the fields, held the loop 4 s
    params = [
        {"name": _location(e["loc"]), "reason": validation_reason(e) + _meant(request, e)}
        for e in errors[:MAX_INVALID_PARAMS]
    ]
    detail = "; ".join(f"{p['name']}: {p['reason']}" for p in params[:5])
    if len(errors) > MAX_INVALID_PARAMS:
        detail += listed_of(len(errors))
    return problem_response(request, 422, "Invalid request", detail, invalid_params=params)


async def _problem_error(request: Request, exc: ProblemError) -> JSONResponse:
    return problem_response(
        request, exc.status, exc.title, exc.detail, headers=exc.headers, invalid_params=exc.invalid_params
    )


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (FastAPI's 405 has an empty Allow): each is tried."""
    methods: set[str] = set()
    root_path = request.scope.get("app_root_path", request.scope.get("root_path", ""))  # not a mount's
    for method in HTTP_METHODS:
        probe = {
            "type": "http",
            "path": request.scope["path"],
            "root_path": root_path,
            "method": method,
            "headers": [],
            "query_string": b"",
        }
        for route in request.app.router.routes:
            if route.matches(probe)[0] is Match.FULL:
                if isinstance(route, Mount):  # every mount serves static files
                    return "GET, HEAD"
                methods.add(method)
                break
    if "GET" in methods:
        methods.add("HEAD")  # api/asgi.py's HeadAsGet answers it wherever GET is
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    titles = {
        400: "Bad request",
        404: "Not found",
        405: "Method not allowed",
        401: "Unauthorized",
        403: "Forbidden",
        413: "Content too large",
    }
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    headers = getattr(exc, "headers", None)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"No route matches {request.method} {url_quoted(request.url.path)}."
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        headers = {**(headers or {}), "Allow": allowed}
        detail = f"{request.method} is not allowed here; this path answers {allowed}."
    invalid_params = None
    if exc.status_code == 400 and exc.__cause__ is not None and detail == FASTAPI_BODY_ERROR:
        unreadable = unreadable_body(exc.__cause__)
        detail, invalid_params = unreadable.detail, unreadable.invalid_params
    return problem_response(
        request,
        exc.status_code,
        titles.get(exc.status_code, "Error"),
        detail,
        headers=headers,
        invalid_params=invalid_params,
    )


FASTAPI_BODY_ERROR = "There was an error parsing the body"  # FastAPI's 400 for a body json.loads raised on


class DuplicateKey(ValueError):
    """A JSON object names a key twice: json.loads keeps the last ({"model_id": 2, "model_id": "x"} moved an
    alias to x), where the client may have meant either."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


MAX_OBJECT_KEYS = 1_000  # a body's objects name fields, a spec's a few dozen at most: more is no request here


class TooManyKeys(ValueError):
    """A JSON object of more than MAX_OBJECT_KEYS keys: 90,000 unknown ones were 90,000 problems to word."""

    def __init__(self, keys: int) -> None:
        super().__init__(keys)
        self.keys = keys


class NotUtf8(ValueError):
    """A JSON body in UTF-16 or UTF-32, which json.loads reads from bytes where RFC 8259 (8.1) wants UTF-8:
    accepted as such, where the same bytes declared charset=utf-16 were refused."""

    def __init__(self, encoding: str) -> None:
        super().__init__(encoding)
        self.encoding = encoding


class Underflow(ValueError):
    """A number too small for a double, which json.loads reads as 0: 1e-400 was quoted back as "got 0.0",
    and an l2 of 1e-400 stored as 0."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _double(text: str) -> float:
    """json.loads' parse_float: the number, unless it is not 0 but reads as 0."""
    value = float(text)
    if value == 0 and any(c in "123456789" for c in text.lower().split("e")[0]):
        raise Underflow(text)
    return value


NEGATIVE_EXPONENT = re.compile(rb"[eE]-0*[1-9]\d\d")  # -100 or below: near a double's smallest
BOM = b"\xef\xbb\xbf"


def _may_underflow(raw: bytes) -> bool:
    """Whether a number in `raw` may be too small for a double (substring tests first: a regex over a
    body of pixels cost twice the parse)."""
    exponent = (b"e-" in raw or b"E-" in raw) and NEGATIVE_EXPONENT.search(raw) is not None
    return exponent or b"0" * 300 in raw


def read_json(raw: bytes) -> Any:
    """A request body's JSON: UTF-8 (a byte order mark ignored, as RFC 8259 allows), each key once, at most
    MAX_OBJECT_KEYS keys an object, no number that underflows to 0; raises ValueError (NotUtf8,
    DuplicateKey, Underflow, ...) or RecursionError."""
    encoding = json.detect_encoding(raw)
    if not encoding.startswith("utf-8"):  # utf-8-sig: a byte order mark
        raise NotUtf8(encoding)
    # numbers checked one by one only where one may underflow: a Python hook a float made parsing 4-9x slower
    parse_float = _double if _may_underflow(raw) else float
    mark = len(BOM) if raw.startswith(BOM) else 0
    try:
        text = raw[mark:].decode("utf-8")
    except UnicodeDecodeError as exc:  # its place in the body as sent, the mark counted
        raise UnicodeDecodeError("utf-8", raw, exc.start + mark, exc.end + mark, exc.reason) from None
    return json.loads(text, object_pairs_hook=unique_keys, parse_float=parse_float)


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads' object_pairs_hook: an object, unless it names a key twice (DuplicateKey) or has more
    than MAX_OBJECT_KEYS keys (TooManyKeys)."""
    if len(pairs) > MAX_OBJECT_KEYS:
        raise TooManyKeys(len(pairs))
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKey(key)
        seen[key] = value
    return seen


def unreadable_json(cause: BaseException) -> str:
    """Why json.loads refused a body, in the client's terms (FastAPI says only that it could not)."""
    if isinstance(cause, DuplicateKey):
        return f"the key {echo(cause.key)} is given twice in one object: give it once"
    if isinstance(cause, TooManyKeys):
        return f"an object has {cause.keys:,} keys; none here takes more than {MAX_OBJECT_KEYS:,}"
    if isinstance(cause, Underflow):
        return f"the number {cut(cause.text)} is too small for a double (about 5e-324 at least): it would read as 0"
    if isinstance(cause, NotUtf8):
        return f"it is {cause.encoding.upper()}: JSON is UTF-8 (RFC 8259), send it so"
    if isinstance(cause, UnicodeDecodeError):
        return f"it is not UTF-8 (byte {cause.start + 1}); a compressed body is not read"
    if isinstance(cause, RecursionError):
        return "it is nested too deeply"
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        return f"a number has more than {sys.get_int_max_str_digits():,} digits"
    return cut(f"{type(cause).__name__}: {cause}")


def unreadable_body(cause: BaseException) -> ProblemError:
    """The 400 for a body json.loads refused (FastAPI's own answer on its routes says only that)."""
    return not_json(unreadable_json(cause))


def not_json(reason: str) -> ProblemError:
    """A body that is not JSON at all: a 400 (RFC 9110: the request is malformed), not the 422 of JSON
    that says the wrong thing."""
    return ProblemError(
        400,
        "Bad request",
        f"The body cannot be read as JSON: {reason}.",
        invalid_params=[{"name": "body", "reason": reason}],
    )


async def _client_disconnect(request: Request, exc: ClientDisconnect) -> Response:
    # The client hung up mid-body: nobody is left to answer, and nothing went wrong here.
    log.debug("client disconnected during %s %s", request.method, url_quoted(request.url.path))
    return Response(status_code=499)


def database_unavailable(exc: BaseException) -> bool:
    """A damaged, unreadable or unreachable database; the store's other errors (integrity, data) are bugs."""
    return transient(exc) or type(exc) is DatabaseError


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    if not database_unavailable(exc):
        raise exc
    if isinstance(exc, DBAPIError) and is_busy(exc):  # healthy, but another writer held it past the timeout
        log.warning("database busy on %s %s: %s", request.method, url_quoted(request.url.path), exc)
        return problem_response(
            request,
            503,
            "Database busy",
            f"Another writer held the database past the {BUSY_TIMEOUT_MS / 1000:g} s busy timeout; retry.",
            headers={"Retry-After": str(BUSY_RETRY_SECONDS)},
        )
    if isinstance(exc, DBAPIError) and is_full(exc):  # reads work; writes wait for space
        log.error("database full on %s %s: %s", request.method, url_quoted(request.url.path), exc)
        return problem_response(
            request,
            503,
            "Database full",
            "The database's disk is full: nothing can be written until space is freed (reads still "
            "work); retry.",
            headers={"Retry-After": str(FULL_RETRY_SECONDS)},
        )
    log.error("database unavailable on %s %s: %s", request.method, url_quoted(request.url.path), exc)
    # a write that failed says so: reads may go on (an unwritable file), which /readyz's `writes` tells
    failed = (
        "could not read or write this request's data"
        if request.method in SAFE_METHODS
        else "refused this write"
    )
    return problem_response(
        request,
        503,
        "Database unavailable",
        f"The database (MLPLAB_DATABASE_URL) {failed}; the server's log has the error, /readyz its state.",
        headers={"Retry-After": str(UNAVAILABLE_RETRY_SECONDS)},
    )


async def _queue_full(request: Request, exc: QueueFull) -> JSONResponse:
    """Costly work refused at its queue (service.turns): 503 (429: the client's share), to retry after its
    Retry-After."""
    headers = {"Retry-After": str(exc.retry_after)}
    return problem_response(request, exc.status, exc.title, str(exc), headers=headers)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    # Logged with its traceback for the operator; the client sees no internals.
    log.exception("unhandled error on %s %s", request.method, url_quoted(request.url.path))
    return problem_response(
        request, 500, "Internal server error", "The server failed to answer this request; it has been logged."
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(ProblemError, _problem_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(ClientDisconnect, _client_disconnect)  # type: ignore[arg-type]
    app.add_exception_handler(QueueFull, _queue_full)  # type: ignore[arg-type]
    for error in (DatabaseError, OperationalError, InterfaceError):
        app.add_exception_handler(error, _database_unavailable)
    app.add_exception_handler(Exception, _unhandled)


def problem_doc(description: str) -> dict[str, Any]:
    """A problem response as the OpenAPI document lists it: application/problem+json, the Problem schema."""
    return {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": description}


# The problems routes document (FastAPI's `responses=`). Every route can answer with these (401 and
# 403 once MLPLAB_API_TOKEN is set; not the 400 for a Host outside MLPLAB_ALLOWED_HOSTS, which a client of
# the documented server never sends):
PROBLEM_RESPONSES: Responses = {
    401: problem_doc("No bearer token, or a wrong one (MLPLAB_API_TOKEN is set)"),
    403: problem_doc("A cross-site request without a bearer token, or an invalid read ticket"),
    404: problem_doc("Not found"),
    422: problem_doc("Invalid request"),
    503: problem_doc(
        "Database unavailable: damaged, unreadable or unreachable (see /readyz); or busy, another writer "
        "holding it past the busy timeout (Retry-After: retry)"
    ),
}
# Routes that need a trained model (not_trained).
NOT_TRAINED_DOC: Responses = {409: problem_doc("Not trained yet")}
# Routes that read a JSON body: one FastAPI cannot decode, and one too large (api/guard.py).
JSON_BODY_DOC: Responses = {
    400: problem_doc(
        "Body not readable as JSON: not JSON, not UTF-8, nested too deeply, a number too long, a key twice, "
        f"an object of over {MAX_OBJECT_KEYS:,} keys"
    ),
    413: problem_doc("Body over MLPLAB_MAX_BODY_BYTES"),
    415: problem_doc(
        "Body sent without Content-Type: application/json, with a charset other than UTF-8, or compressed "
        "(Content-Encoding)"
    ),
}
# Routes that queue jobs: those, and a full queue (presenters.queue_full).
SUBMIT_DOCS: Responses = JSON_BODY_DOC | {
    429: problem_doc(
        "Queue full (MLPLAB_MAX_QUEUED), or this client's share of it (MLPLAB_MAX_QUEUED_PER_CLIENT)"
    )
}
# Routes that read a dataset's images or labels: on an API machine without its files, 503.
DATASET_UNAVAILABLE_DOC: Responses = {
    503: problem_doc("Dataset unavailable: its files are not in MLPLAB_DATA_DIR on the API's machine")
}
