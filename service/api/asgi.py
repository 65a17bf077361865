"""The base of mlplab's pure ASGI middlewares (pure: a streamed response passes through as it comes)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HttpMiddleware:
    """A middleware of HTTP requests: other scopes (lifespan, websockets) go to the app untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class HeadAsGet(HttpMiddleware):
    """HEAD answers as GET would, without the body (RFC 9110: every GET resource supports HEAD; uptime
    checkers use it). The app sees a GET; the response ends with its first piece of body, after which
    the server tells the app the client has gone (ASGI), so an event stream stops instead of following
    its job."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        answered = False
        as_get = {**scope, "method": "GET"}

        async def head_only(message: Message) -> None:
            nonlocal answered
            if answered:
                return
            if message["type"] == "http.response.start" and "route" in as_get:
                scope["route"] = as_get["route"]  # for the metrics outside: the route GET matched
            if message["type"] == "http.response.body":
                answered = True
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)  # the server, which knows the request was HEAD, sends no body

        await self.app(as_get, receive, head_only)


class NoRanges(HttpMiddleware):
    """Every response whole: a Range header is dropped, as RFC 9110 allows (the files are small; Starlette
    answered a malformed Range on a file with a text/plain 400), and no response offers ranges (Starlette's
    files said Accept-Ranges: bytes: a download manager resuming one started again from byte 0)."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        # In place, not a copy: the middlewares outside read what routing records in this scope.
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k not in (b"range", b"if-range")]

        async def whole(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"accept-ranges"]
                message = {**message, "headers": [*kept, (b"accept-ranges", b"none")]}
            await send(message)

        await self.app(scope, receive, whole)
