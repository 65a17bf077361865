"""Response headers that tell the browser to refuse what mlplab's pages never do: inline or foreign
script, plugins, being framed by another site, guessing content types, sending our URLs elsewhere.

A pure ASGI middleware: it adds headers to the response's start message and passes every body chunk
through as it comes, so streamed responses (the event stream) are never buffered."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.asgi import HttpMiddleware

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        # plotly.js appends one empty <style> (this hash is sha256 of "") and fills it through CSSOM, which
        # CSP does not check; no other inline stylesheet may load.
        "style-src 'self' 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",
        "img-src 'self' data:",  # Swagger UI's icons are data: URLs in its stylesheet
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


class SecurityHeaders(HttpMiddleware):
    """Adds SECURITY_HEADERS to every HTTP response that does not already set them. With `private_cache`
    (MLPLAB_PROTECT_READS), a response the app marks `Cache-Control: public` (figures, images) is marked
    private instead: a shared cache must not serve to anyone what needs the token."""

    def __init__(self, app: ASGIApp, private_cache: bool = False) -> None:
        super().__init__(app)
        self.private_cache = private_cache

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                cache = headers.get("cache-control", "")
                if self.private_cache and "public" in cache:
                    headers["cache-control"] = cache.replace("public", "private")
            await send(message)

        await self.app(scope, receive, send_with_headers)
