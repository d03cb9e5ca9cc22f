"""Request body size limit as plain ASGI middleware: a body over the limit gets 413 and is not read.

A declared ``Content-Length`` over the limit is refused before the app runs; a body sent
without one (chunked) is counted as it arrives and refused when it passes the limit.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _refuse(send: Send, max_bytes: int, *, openai: bool) -> None:
    message = f"request body is larger than this server's limit of {max_bytes} bytes"
    shaped = {"message": message, "type": "invalid_request_error", "param": None, "code": "request_too_large"}
    body = json.dumps({"error": shaped if openai else message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        openai_paths: frozenset[str] = frozenset(),
        per_path: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.openai_paths = openai_paths  # answered in OpenAI's error shape
        self.per_path = dict(per_path or {})  # routes with their own limit (an image upload)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope.get("path", ""), self.max_bytes)
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = limit + 1
                if declared > limit:
                    await _refuse(send, limit, openai=scope.get("path") in self.openai_paths)
                    return
        seen = 0
        state = {"started": False, "refused": False}

        async def counted() -> Message:
            nonlocal seen
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit and not state["started"]:
                    # answer now; the app sees a client that went away, and its own answer is dropped
                    state["refused"] = True
                    await _refuse(send, limit, openai=scope.get("path") in self.openai_paths)
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            if state["refused"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except Exception:
            if not state["refused"]:
                raise
