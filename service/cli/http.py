"""A small HTTP client for the mlplab API (what the `mlplab` command uses): JSON calls, problems, live events."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from service.store.db import BUSY_TIMEOUT_MS


class ApiError(Exception):
    """The API answered with a problem (RFC 9457), or could not be reached or answered unlike mlplab's
    API (status 0)."""

    def __init__(
        self, status: int, title: str, detail: str, invalid_params: list[dict[str, str]] | None = None
    ):
        super().__init__(f"{status} {title}: {detail}" if status else f"{title}: {detail}")
        self.status, self.title, self.detail = status, title, detail
        self.invalid_params = invalid_params or []

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            body = _loads(response, response.content)
        except ValueError:
            body = None
        if isinstance(body, dict) and "title" in body:
            return cls(
                response.status_code,
                str(body["title"]),
                str(body.get("detail", "")),
                body.get("invalid_params"),
            )
        # no problem+json: a proxy before the API, or a server that is not mlplab's (its 404 said nothing)
        shown = f"{_kind(response)}: {response.text[:60]!r}" if response.content else "empty"
        reason = f" {response.reason_phrase}" if response.reason_phrase else ""
        return cls(
            response.status_code,
            f"{shown_url(str(response.url))} answered {response.status_code}{reason} but not with mlplab's problem JSON",
            f"is it an mlplab API (--url, MLPLAB_URL), or a proxy before it that failed? (its body is {shown})",
        )


def not_mlplab(response: httpx.Response, what: str) -> ApiError:
    """A 2xx answer that mlplab's API would not give: what was wrong, and where it came from."""
    return ApiError(
        0,
        f"{shown_url(str(response.url))} answered {response.status_code} but not with mlplab's JSON",
        f"is it an mlplab API (--url, MLPLAB_URL)? ({what})",
    )


class Answer(dict[str, Any]):
    """A JSON object the API sent; a key it lacks marks a server that is not mlplab's API."""

    def __init__(self, fields: dict[str, Any], response: httpx.Response):
        super().__init__(fields)
        self.response = response

    def __missing__(self, key: str) -> Any:
        raise not_mlplab(self.response, f"no {key!r} in its JSON")


def _kind(response: httpx.Response) -> str:
    """Its media type, without parameters ('text/html')."""
    return str(response.headers.get("content-type", "untyped")).partition(";")[0].strip().lower()


# C0 and C1 control characters but tab and newline, written as \x1b: a server's text (a title, an error,
# a name) printed as it came could move the cursor, clear the screen or retitle the terminal
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if c not in (0x09, 0x0A)}


def shown(value: Any) -> Any:
    """A JSON value with its strings' control characters escaped (lists' too; objects are hooked)."""
    if isinstance(value, str):
        return value.translate(_CONTROLS)
    if isinstance(value, list):
        return [shown(v) for v in value]
    return value


def _loads(response: httpx.Response, text: str | bytes) -> Any:
    def fields(pairs: dict[str, Any]) -> Answer:
        return Answer({shown(k): shown(v) for k, v in pairs.items()}, response)

    return shown(json.loads(text, object_hook=fields))


def answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON object a 2xx response holds (its objects Answers); ApiError when it holds anything else."""
    try:
        body = _loads(response, response.content)
    except ValueError:
        shown = f"{_kind(response)}: {response.text[:60]!r}" if response.content else "empty"
        raise not_mlplab(response, f"its body is {shown}") from None
    if not isinstance(body, Answer):
        raise not_mlplab(response, f"its JSON is {json.dumps(body)[:60]}, not an object")
    return body


def _event_data(response: httpx.Response) -> Callable[[str], Any]:
    """How the events of a stream are read: JSON, with an ApiError for data that is not."""

    def decode(text: str) -> Any:
        try:
            return _loads(response, text)
        except ValueError:
            raise not_mlplab(response, f"an event's data is not JSON: {text[:60]!r}") from None

    return decode


@dataclass
class Event:
    """One Server-Sent Event, its data parsed as JSON."""

    event: str
    data: Any
    id: str | None = None


# The most the CLI reads of one answer, and of one line of an event stream: the API's largest JSON answer
# is a few MB; a server that sends without end (not mlplab's, or broken) stops here, not at the memory's end.
MAX_ANSWER_BYTES = 64 * 2**20
MAX_EVENT_LINE = 8 * 2**20
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # an event stream's: any of the three


def read_capped(response: httpx.Response) -> httpx.Response:
    """A streamed response read whole, as read() does, or ApiError past MAX_ANSWER_BYTES."""
    most, body = MAX_ANSWER_BYTES, bytearray()
    for piece in response.iter_bytes():
        body += piece
        if len(body) > most:
            raise not_mlplab(response, f"its answer went past {most:,} bytes")
    response._content = bytes(body)  # where read() keeps it: .content, .json() and .text read it
    return response


def lines_of(response: httpx.Response) -> Iterator[str]:
    """An event stream's lines (iter_lines holds a line without end in memory), each at most MAX_EVENT_LINE."""
    most = MAX_EVENT_LINE
    try:
        yield from split_lines(response.iter_text(), most)
    except OverflowError:
        raise not_mlplab(response, f"an event stream's line went past {most:,} characters") from None


def split_lines(texts: Iterable[str], most: int) -> Iterator[str]:
    """The lines of text that comes in pieces, split at \r\n, \r or \n (even one split between two
    pieces); OverflowError once a line passes `most` characters."""
    line, after_cr = "", False
    for text in texts:
        if after_cr and text.startswith("\n"):  # the second half of a \r\n
            text = text[1:]
        if text:
            after_cr = text.endswith("\r")
        *whole, line_end = _LINE_BREAK.split(text)
        if whole:
            yield line + whole[0]
            yield from whole[1:]
            line = line_end
        else:
            line += line_end
        if len(line) > most:
            raise OverflowError(most)
    if line:
        yield line


def parse_sse(lines: Iterable[str], decode: Callable[[str], Any] = json.loads) -> Iterator[Event]:
    """Events from the lines of a text/event-stream (comments and `retry:` are skipped), their data
    read by `decode`."""
    event, event_id = "message", None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield Event(event, decode("\n".join(data)), event_id)
            event, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value


# [scheme://]user:password@, to the last @ before the path (a malformed URL's too, which urlsplit refuses)
_PASSWORD = re.compile(r"^((?:[A-Za-z][\w+.-]*://)?[^/@:]*:)[^/]*@")


def shown_url(url: str) -> str:
    """A URL for a message: its password, if it holds one, as ***."""
    return _PASSWORD.sub(r"\1***@", url)


@dataclass
class ApiClient:
    """The API at `url`, with the bearer token when one is given."""

    url: str
    token: str | None = None
    # past the API's own wait for a locked database (then a 503 saying so), so the CLI hears that answer
    timeout: float = BUSY_TIMEOUT_MS / 1000 + 30
    http: httpx.Client = field(init=False)
    answered: bool = field(default=False, init=False)  # whether any answer has come (run() tells its faults)

    @property
    def shown(self) -> str:
        """Its URL for messages: without a password it holds."""
        return shown_url(self.url)

    def __post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        timeout = httpx.Timeout(self.timeout, connect=10.0)  # an address nobody answers: said in seconds
        self.http = httpx.Client(base_url=self.url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """The response's JSON object; ApiError for a problem, an answer that is not mlplab's, or when
        the API can't be reached."""
        return answer(self.response(method, path, **kwargs))

    def response(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The response itself (its headers too); ApiError as request() raises them."""
        try:
            with self.http.stream(method, path, **kwargs) as response:
                self.answered = True
                read_capped(response)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise ApiError.from_response(response)
        return response

    @contextmanager
    def streamed(self, path: str) -> Iterator[httpx.Response]:
        """GET `path` with its body still to read (iter_bytes); ApiError as request() raises them."""
        try:
            with self.http.stream("GET", path) as response:
                self.answered = True
                if response.status_code >= 400:
                    raise ApiError.from_response(read_capped(response))
                yield response
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return self.request("POST", path, **kwargs)

    def _unreachable(self, exc: Exception) -> ApiError:
        if isinstance(exc, httpx.ReadTimeout):  # connected and sent: the API may have acted on it
            return ApiError(
                0,
                f"the API at {self.shown} did not answer within {self.timeout:g} s",
                "it may be held up (a database locked that long?), and a change asked for may still have "
                "been made: look (mlplab jobs) before sending it again",
            )
        return ApiError(
            0,
            f"cannot reach the API at {self.shown}",
            f"{exc or type(exc).__name__} (start it with `mlplab dev`; set --url or MLPLAB_URL)",
        )

    def events(self, job_id: int, retries: int = 5) -> Iterator[Event]:
        """A job's events until its `end` event (the last one yielded); reconnects where it left off."""
        last_id: str | None = None
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"} | ({"Last-Event-ID": last_id} if last_id else {})
            try:
                with self.http.stream(
                    "GET",
                    f"/jobs/{job_id}/events",
                    headers=headers,
                    timeout=httpx.Timeout(self.timeout, read=60.0),
                ) as response:
                    self.answered = True
                    if response.status_code >= 400:
                        raise ApiError.from_response(read_capped(response))
                    if _kind(response) != "text/event-stream":
                        raise not_mlplab(response, f"its body is {_kind(response)}, not an event stream")
                    for event in parse_sse(lines_of(response), _event_data(response)):
                        failures = 0
                        last_id = event.id or last_id
                        yield event
                        if event.event == "end":
                            return
                error: Exception = ConnectionError("the event stream closed before the job ended")
            except httpx.TransportError as exc:  # a restarted API, a dropped connection: try again
                error = exc
            failures += 1
            if failures > retries:
                raise self._unreachable(error) from None
            time.sleep(min(0.5 * 2**failures, 10.0))
