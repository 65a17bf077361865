"""What a request must show before the app reads its body: a Host this server answers to (against DNS
rebinding), no other site's origin on a state-changing request (against cross-site requests) nor on a
read but a person's following a link (a foreign page's images loads kept every user's figures from
being drawn), the
bearer token on a state-changing request when MLPLAB_API_TOKEN is set, a body not compressed (no
Content-Encoding but identity, no Transfer-Encoding but chunked), and a body within its limit.

A pure ASGI middleware, like security.py's. Its refusals are problem+json, sent before the app runs
and before a byte of the body is read. The body limit wraps `receive`: FastAPI's JSON parsing, the
form parser and predict's upload all stop with a 413 once the body passes it, whether or not it
declared a Content-Length (chunked bodies included)."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.asgi import HttpMiddleware
from service.api.monitoring import REFUSED, ROUTE_LABEL
from service.errors import SAFE_METHODS, ProblemError, problem_response
from service.quoting import echo
from service.settings import Settings
from service.turns import CLIENT, client_key

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
BODY_LIMIT = "mlplab.body_limit"  # scope key: this request's BodyLimit, which its route may raise
# RFC 3986's host (an IP literal or a reg-name) and optional port: anything else is no host at all.
# Headers read as one value: given twice, which one counts (two tokens, two bodies' types) is a guess.
ONE_VALUE_HEADERS = ("authorization", "content-type", "origin")
HOST_SYNTAX = re.compile(
    r"(\[[0-9a-f:.]+(%25[a-z0-9\-._~%]+)?\]|\[v[0-9a-f]+\.[a-z0-9\-._~!$&'()*+,;=:]+\]"  # IPv6 (zone), IPvFuture
    r"|[a-z0-9\-._~!$&'()*+,;=%]*)(:[0-9]*)?",
    re.IGNORECASE,
)


@dataclass
class BodyLimit:
    bytes: int
    setting: str  # the variable that sets it, named in the 413


def allow_body(scope: Scope, limit: int, setting: str) -> None:
    """Let this request's body reach `limit` bytes: for a route that reads its own body, before reading it."""
    body_limit: BodyLimit = scope[BODY_LIMIT]
    body_limit.bytes, body_limit.setting = limit, setting


class BodyTooLarge(HTTPException):
    """Raised from `receive`: an HTTPException, so FastAPI's body parsing lets it through to the 413 handler."""

    def __init__(self, size: int, limit: BodyLimit, at_least: bool) -> None:
        super().__init__(
            413,
            f"The body is {'at least ' if at_least else ''}{size:,} bytes; the limit is {limit.bytes:,} bytes "
            f"({limit.bytes / 1e6:g} MB, {limit.setting}).",
        )


TICKET_SECONDS = 3600  # how long a read ticket stands in for the token on a link
TICKET_PARAM = "ticket"  # the query parameter that carries it, on any GET
TICKET_SYNTAX = re.compile(r"([0-9]{1,12})\.([0-9a-f]{64})")  # expiry (Unix seconds) . HMAC-SHA256


def _ticket_mac(expires: int, token: str) -> str:
    return hmac.new(token.encode(), f"mlplab read ticket {expires}".encode(), "sha256").hexdigest()


def read_ticket(settings: Settings, now: float) -> tuple[str, int]:
    """A ticket that lets GET requests read for TICKET_SECONDS without the header, and when it expires:
    what a browser fetches by itself (an image, an event stream, a download) cannot send a header. Signed
    with the token, it stops working when the token changes."""
    assert settings.api_token is not None
    expires = int(now) + TICKET_SECONDS
    return f"{expires}.{_ticket_mac(expires, settings.api_token.get_secret_value())}", expires


def check_ticket(ticket: str, settings: Settings, now: float) -> None:
    """403 unless `ticket` is one read_ticket made with this token and it has not expired."""
    match = TICKET_SYNTAX.fullmatch(ticket)
    token = settings.api_token
    if (
        match is None
        or token is None
        or not hmac.compare_digest(match[2], _ticket_mac(int(match[1]), token.get_secret_value()))
    ):
        raise ProblemError(403, "Forbidden", "The read ticket is not valid: GET /read-ticket gives one.")
    if int(match[1]) <= now:
        raise ProblemError(403, "Forbidden", "The read ticket has expired: GET /read-ticket gives another.")


def check_token(headers: Headers, settings: Settings) -> None:
    """401 without a bearer token or with a wrong one (RFC 6750 3.1: the latter's challenge says
    invalid_token); nothing when MLPLAB_API_TOKEN is unset."""
    if settings.api_token is None:
        return
    scheme, _, given = headers.get("authorization", "").strip().partition(" ")
    given = given.strip()  # "Bearer  <token> " as a shell variable may leave it
    if scheme.lower() != "bearer" or not given:
        raise ProblemError(
            401,
            "Unauthorized",
            "This request needs 'Authorization: Bearer <token>' (MLPLAB_API_TOKEN).",
            headers={"WWW-Authenticate": 'Bearer realm="mlplab"'},
        )
    expected = settings.api_token.get_secret_value()
    if not hmac.compare_digest(given.encode(), expected.encode()):  # constant time
        raise ProblemError(
            401,
            "Unauthorized",
            "The bearer token is not valid: send MLPLAB_API_TOKEN's value.",
            headers={"WWW-Authenticate": 'Bearer realm="mlplab", error="invalid_token"'},
        )


def _host_name(netloc: str) -> str:
    """'Example.com:8000' -> 'example.com'; '[::1]:8000' -> '::1'; 'example.com.' (fully qualified) ->
    'example.com'."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")] if "]" in netloc else netloc
    return (netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc).removesuffix(".")


def _host_allowed(host: str, patterns: list[str], arrived_on: str | None) -> bool:
    if "*" in patterns or host == arrived_on:
        return True
    return any(
        host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:]))
        for pattern in map(_host_name, patterns)
    )


def _origin(netloc: str, scheme: str) -> tuple[str, int | None] | None:
    """(host, the port it names, or None); None for what does not parse."""
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        return (parts.hostname or "", parts.port)
    except ValueError:  # "[x]", "http://[": no origin a browser sends
        return None


def _same_origin(page: tuple[str, int | None], ours: tuple[str, int | None], scheme: str) -> bool:
    """The same host and port, a port left unnamed being the page's `scheme`'s default. The scheme is
    not compared otherwise: behind a TLS proxy the page's 'https://name' arrives as 'Host: name'."""
    default = DEFAULT_PORTS.get(scheme)
    (host, port), (our_host, our_port) = page, ours
    return host == our_host and (port or default) == (our_port or default)


def _cross_site(scope: Scope, headers: Headers) -> bool:
    """Whether the browser says this request comes from another site or origin (never true for curl).
    An Origin that does not parse is another site's: no browser sends one for this server."""
    if headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        return True
    origin = headers.get("origin")
    if origin is None:
        return False
    try:
        sent = urlsplit(origin)
    except ValueError:
        return True
    if not sent.netloc:  # "null" (a sandboxed page, a file), matched an empty Host
        return True
    page = _origin(sent.netloc, sent.scheme)
    ours = _origin(headers.get("host", ""), scope.get("scheme", "http"))
    return page is None or ours is None or not _same_origin(page, ours, sent.scheme)


def _foreign_load(headers: Headers) -> bool:
    """Whether the browser says this read is another site's page loading what this server serves (an
    <img>, a fetch), not a person following a link to it (Fetch Metadata's resource isolation policy).
    Programs send no Sec-Fetch-* headers, so this is never true of them."""
    if headers.get("sec-fetch-site") not in ("cross-site", "same-site"):
        return False
    return headers.get("sec-fetch-mode") != "navigate" or headers.get("sec-fetch-dest") not in (
        "document",
        None,
    )


def _codings(headers: Headers, name: str) -> list[str]:
    """The codings a Content-Encoding or Transfer-Encoding lists, over all its lines."""
    return [c.strip() for value in headers.getlist(name) for c in value.split(",") if c.strip()]


def sends_body(headers: Headers, method: str) -> bool:
    """Whether the request sends a body, by its headers: nothing is read. A GET's chunked encoding is a
    proxy's habit, not a body."""
    length = headers.get("content-length")
    if length is not None:
        return not (length.strip().isdigit() and int(length) == 0)
    return "transfer-encoding" in headers and method not in ("GET", "HEAD")


UTF8_CHARSETS = ("utf-8", "utf8", "us-ascii", "ascii")  # ASCII is a part of UTF-8


def _json_charset(content_type: str) -> str | None:
    """The charset a JSON Content-Type (application/json or any +json, which FastAPI reads as JSON too)
    declares, lower case, when one other than UTF-8: RFC 8259 JSON is UTF-8, and such a body was refused
    as 'not UTF-8' without naming why. An empty charset= declares none."""
    media, *params = content_type.split(";")
    media = media.strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        return None
    for param in params:
        name, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset and charset not in UTF8_CHARSETS:
            return charset
    return None


class RequestGuard(HttpMiddleware):
    """Refuses, before the app runs, what the module docstring lists; bounds every body as it streams in."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        super().__init__(app)
        self.settings = settings

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            self.check(scope)
        except ProblemError as exc:
            scope[ROUTE_LABEL] = REFUSED  # its path is not looked up: not "unmatched" in the metrics
            request = Request(scope)
            response = problem_response(request, exc.status, exc.title, exc.detail, headers=exc.headers)
            await response(scope, receive, send)
            return
        client = scope.get("client")
        CLIENT.set(client_key(str(client[0])) if client else "")  # whose share of a queue its work takes
        # (turns.py); "": no address (a Unix socket), one client for all such
        await self.app(scope, self.limited(scope, receive), send)

    def check(self, scope: Scope) -> None:
        headers = Headers(scope=scope)
        hosts = headers.getlist("host")
        host = hosts[0] if hosts else ""
        # RFC 9112 3.2: HTTP/1.1 needs one (HTTP/1.0 had none: a probe of that age may leave it out)
        missing = not hosts and scope.get("http_version") != "1.0"
        if missing or len(hosts) > 1 or not HOST_SYNTAX.fullmatch(host):
            raise ProblemError(
                400,
                "Bad Host",
                f"The request needs one Host header naming a host[:port] (got {echo(hosts)}).",
            )
        for name in ONE_VALUE_HEADERS:
            if len(given := headers.getlist(name)) > 1:
                raise ProblemError(
                    400, "Repeated header", f"The request carries {name} {len(given)} times: send it once."
                )
        # The address the connection arrived on (the bind address, or with 0.0.0.0 the interface's) is
        # always allowed: rebinding needs a host name, and the app is not told its bind address.
        server = scope.get("server")
        allowed = _host_allowed(_host_name(host), self.settings.allowed_hosts, server[0] if server else None)
        if host and not allowed:  # no Host at all is no browser (an HTTP/1.0 probe): nothing to rebind
            raise ProblemError(
                400,
                "Host not allowed",
                f"This server does not answer to the host {echo(host)}; "
                "its names are in MLPLAB_ALLOWED_HOSTS.",
            )
        if scope["method"] in SAFE_METHODS:
            if _foreign_load(headers):
                raise ProblemError(
                    403,
                    "Cross-site request",
                    "A page on another site may link to this server's pages but not load what it serves "
                    "(an image, a fetch): a foreign page's loads kept the figure queue full for every user.",
                )
            return
        if _cross_site(scope, headers):
            self.check_cross_site(headers)
        check_token(headers, self.settings)
        codings = _codings(headers, "content-encoding")
        if any(c.lower() != "identity" for c in codings):  # RFC 9110 15.5.16
            raise ProblemError(
                415,
                "Unsupported media type",
                f"A body in Content-Encoding {echo(', '.join(codings))} is not read: send it uncompressed.",
                headers={"Accept-Encoding": "identity"},
            )
        charset = _json_charset(headers.get("content-type", ""))
        if charset is not None and sends_body(headers, scope["method"]):
            raise ProblemError(
                415,
                "Unsupported media type",
                f"Content-Type's charset={echo(charset)}: JSON is read as UTF-8 (RFC 8259); send the body "
                "in UTF-8, with no charset or charset=utf-8.",
                headers={"Accept": "application/json"},
            )
        transfer = _codings(headers, "transfer-encoding")
        if any(c.lower() != "chunked" for c in transfer):  # RFC 9112 6.1: a coding not understood
            raise ProblemError(
                501,
                "Not implemented",
                f"A body in Transfer-Encoding {echo(', '.join(transfer))} is not read: send it uncompressed, "
                "chunked or with a Content-Length.",
            )

    def check_cross_site(self, headers: Headers) -> None:
        """A page on another site may not change anything; a program holding the token may."""
        if self.settings.api_token is not None and headers.get("authorization"):
            return
        raise ProblemError(
            403,
            "Cross-site request",
            f"A page on {echo(headers.get('origin', 'another site'))} may not change anything here; "
            "programs send 'Authorization: Bearer <token>' (MLPLAB_API_TOKEN).",
        )

    def limited(self, scope: Scope, receive: Receive) -> Receive:
        """`receive`, raising BodyTooLarge once the body passes its limit: MLPLAB_MAX_BODY_BYTES, or what
        its route allowed (allow_body) before reading it. The limit is an object in the scope, shared by
        the copies of the scope that routing makes."""
        limit = scope[BODY_LIMIT] = BodyLimit(self.settings.max_body_bytes, "MLPLAB_MAX_BODY_BYTES")
        declared = Headers(scope=scope).get("content-length", "")
        size = int(declared) if declared.isascii() and declared.isdigit() and len(declared) < 20 else None
        received = 0
        complete = False

        async def receive_within_limit() -> Message:
            nonlocal received, complete
            if complete:  # the body has been read: later calls only wait for a disconnect
                return await receive()
            if size is not None and size > limit.bytes:
                raise BodyTooLarge(size, limit, at_least=False)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.bytes:
                    raise BodyTooLarge(received, limit, at_least=True)
                complete = not message.get("more_body", False)
            return message

        return receive_within_limit
