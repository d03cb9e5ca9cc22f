"""A real uvicorn server on a loopback port, in a thread, for the serve tests (no test client, no mocks)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from embedlab.collection import build
from tests.helpers import make_pdf
from tests.library_fixtures import CHUNK, HASHING, write_library

PDF_PAGES = [
    ["Lighthouse keepers kept the lamp burning", "through every storm on the northern coast."],
    ["The fresnel lens focuses the beam", "so ships see the lighthouse from twenty miles."],
    ["Tide tables tell the keeper when", "the causeway to the mainland is dry."],
]


def make_library(folder: Path) -> Path:
    """The text library of the collection tests plus a three-page PDF (``manuals/lighthouse.pdf``)."""
    write_library(folder)
    (folder / "manuals").mkdir(parents=True, exist_ok=True)
    (folder / "manuals" / "lighthouse.pdf").write_bytes(make_pdf(PDF_PAGES))
    return folder


def build_collection(library: Path, root: Path, name: str = "lib") -> None:
    build(library, name, model_spec=HASHING, root=root, use_cache=False, **CHUNK)  # type: ignore[arg-type]


@contextlib.contextmanager
def running(app, *, http: str = "auto") -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port); yields the base URL.  ``http``: uvicorn's
    HTTP parser ("auto" picks httptools when installed, as `embedlab serve` does; "h11" passes any
    method token through to the app)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", http=http))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def call(
    url: str, body: object | bytes | None = None, *, headers: dict[str, str] | None = None, method: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request (urllib): ``(status, headers, body)``; error statuses are returned, not raised."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def call_json(url: str, body: object | None = None, **kwargs: object) -> tuple[int, dict]:
    status, _, raw = call(url, body, **kwargs)  # type: ignore[arg-type]
    return status, json.loads(raw)
