"""The outermost layer of the app, as plain ASGI: the API key, the request metrics, the last-resort 500.

Plain ASGI rather than Starlette's ``@app.middleware("http")`` (``BaseHTTPMiddleware``), which
runs every request through an extra task and response stream: under 50 concurrent clients that
overhead alone was a measurable share of a search's CPU time on 2 cores.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection
from typing import Any

from embedlab.serve.limits import ASGIApp, Message, Receive, Scope, Send
from embedlab.serve.metrics import Metrics, route_label

log = logging.getLogger(__name__)


class Gate:
    def __init__(
        self,
        app: ASGIApp,
        *,
        authorized: Callable[[Scope], bool] | None,
        error_body: Callable[[str, str, str | None], dict[str, Any]],
        metrics: Metrics,
        templates: Callable[[], Collection[str]],
    ) -> None:
        self.app = app
        self.authorized = authorized  # None: no API key configured
        self.error_body = error_body  # (path, message, code) -> the JSON error body for that route
        self.metrics = metrics
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope["path"]
        state = {"status": 500, "started": False}

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
            await send(message)

        if self.authorized is not None and _protected(path) and not self.authorized(scope):
            await _answer(
                tracked,
                401,
                self.error_body(path, "missing or wrong API key", "invalid_api_key"),
                [(b"www-authenticate", b"Bearer")],
            )
        else:
            try:
                await self.app(scope, receive, tracked)
            except Exception:  # a bug: logged with its traceback, counted, answered in JSON
                log.exception("internal error answering %s %.200r", str(scope.get("method", ""))[:40], path)
                if not state["started"]:
                    await _answer(tracked, 500, self.error_body(path, "internal error", None), [])
        route = route_label(getattr(scope.get("route"), "path", None), self.templates())
        self.metrics.observe_request(
            route=route,
            method=str(scope.get("method", "")),
            status=int(state["status"]),
            seconds=time.perf_counter() - started,
        )


async def _answer(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": data})


def _protected(path: str) -> bool:
    """``/v1/*`` and ``/dashboard`` (aggregates of what users searched) need the key when one is set."""
    return path.startswith("/v1/") or path == "/dashboard"
