"""The upload limit of ``indexer serve``: the bytes actually received are counted, whatever the
request's headers claim, and a body over the limit is answered 413 and its connection closed.

A declared ``Content-Length`` over the limit is refused before anything is read. Every other body,
whether it declares a smaller length, none, or is chunked (a request may say ``Content-Length: 100``
and still send a gigabyte with ``Transfer-Encoding: chunked``), is read here up to the limit and
only then handed to the application. So the server never holds more than the limit of one body.
"""

from __future__ import annotations

import json


def too_large_body(max_bytes: int) -> bytes:
    message = f"the request body is over the {max_bytes / 1048576:g} MiB upload limit"
    return json.dumps({"error": {"code": "too_large", "message": message}}).encode()


class BodyLimit:
    """ASGI middleware refusing request bodies over ``max_bytes`` with a JSON 413."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                messages.clear()
                return await self._refuse(send)
            if not message.get("more_body", False):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        return await self.app(scope, replay, send)

    async def _refuse(self, send):
        body = too_large_body(self.max_bytes)
        # connection: close, so the server stops reading what the client still sends
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
