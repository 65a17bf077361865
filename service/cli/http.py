"""A small HTTP client for the mlplab API (what the `mlplab` command uses): JSON calls, problems, live events."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx


class ApiError(Exception):
    """The API answered with a problem (RFC 9457), or could not be reached (status 0)."""

    def __init__(
        self, status: int, title: str, detail: str, invalid_params: list[dict[str, str]] | None = None
    ):
        super().__init__(f"{status} {title}: {detail}" if status else f"{title}: {detail}")
        self.status, self.title, self.detail = status, title, detail
        self.invalid_params = invalid_params or []

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "title" in body:
            return cls(
                response.status_code,
                str(body["title"]),
                str(body.get("detail", "")),
                body.get("invalid_params"),
            )
        return cls(response.status_code, response.reason_phrase or "Error", response.text[:500])


@dataclass
class Event:
    """One Server-Sent Event, its data parsed as JSON."""

    event: str
    data: Any
    id: str | None = None


def parse_sse(lines: Iterable[str]) -> Iterator[Event]:
    """Events from the lines of a text/event-stream (comments and `retry:` are skipped)."""
    event, event_id = "message", None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield Event(event, json.loads("\n".join(data)), event_id)
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


@dataclass
class ApiClient:
    """The API at `url`, with the bearer token when one is given."""

    url: str
    token: str | None = None
    timeout: float = 30.0
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(base_url=self.url.rstrip("/"), headers=headers, timeout=self.timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The response's JSON; ApiError for a problem or when the API can't be reached."""
        return self.response(method, path, **kwargs).json()

    def response(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The response itself (its headers too); ApiError as request() raises them."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise ApiError.from_response(response)
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def _unreachable(self, exc: Exception) -> ApiError:
        return ApiError(
            0,
            f"cannot reach the API at {self.url}",
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
                    if response.status_code >= 400:
                        response.read()
                        raise ApiError.from_response(response)
                    for event in parse_sse(response.iter_lines()):
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
