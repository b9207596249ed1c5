"""The ASGI middleware in front of every endpoint: request timing, the API key and the body size cap.

It sits outside FastAPI so that a request is timed, and refused, before any route or validation
runs; its errors have the same OpenAI shape as every other endpoint's."""

import hmac
import time

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from tuneforge.serve.metrics import Metrics
from tuneforge.serve.openai_api import error_response


class Guard:
    """ASGI middleware: times every request, checks the API key, and caps the request body's size."""

    def __init__(self, app, *, metrics: Metrics, api_key: str | None, max_body_bytes: int):
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes
        self.expected = f"Bearer {api_key}".encode() if api_key else None
        self.too_large = f"request body is larger than {max_body_bytes} bytes"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        try:
            await self._guarded(scope, receive, send)
        finally:
            self.metrics.observe(time.perf_counter() - start)

    async def _guarded(self, scope, receive, send):
        headers = Headers(scope=scope)
        given = headers.get("authorization", "").encode()
        if self.expected and scope["path"] != "/healthz" and not hmac.compare_digest(given, self.expected):
            response = error_response(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                                      "authentication_error", headers={"WWW-Authenticate": "Bearer"})
            return await response(scope, receive, send)
        length = headers.get("content-length", "")
        if length.isdecimal() and int(length) > self.max_body_bytes:
            return await error_response(413, self.too_large, "request_too_large")(scope, receive, send)
        received = 0

        async def receive_capped():  # Content-Length may be absent (chunked) or lie
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                raise HTTPException(413, self.too_large)  # FastAPI lets it through; our handler answers
            return message

        await self.app(scope, receive_capped, send)
