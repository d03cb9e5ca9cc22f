"""Seeded fuzzing of ``POST /v1/search`` and ``POST /v1/feedback`` on a real uvicorn server.

Each case is a generated malformed request: random bytes, truncated JSON, fields of the wrong
type, numbers far outside any range or at the edges together, deeply nested values, Unicode edge cases (lone surrogates,
NUL, BOM, bidi controls), wrong or odd content types and junk query parameters.  Every answer
must be a 2xx, or a 4xx whose body is the documented ``{"error": "<one line>"}``; never a 5xx,
never a hang (each request has a client timeout).  The seed is fixed, so a failure names a
case that can be replayed: ``FUZZ_SEED``/``FUZZ_CASES`` in the environment change them.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import time
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest

pytest.importorskip("fastapi")

from embedlab.serve import ServeConfig, create_app
from tests.serve_fixtures import build_collection, make_library, running

SEED = int(os.environ.get("FUZZ_SEED", "20240917"))
CASES = int(os.environ.get("FUZZ_CASES", "300"))
CLIENT_TIMEOUT_S = 15.0  # a request that takes longer counts as a hang

VALID = {
    "/v1/search": {
        "query": "sourdough bread oven",
        "k": 5,
        "mode": "hybrid",
        "filter": "recipes/*",
        "rrf_k": 60,
        "weights": [1, 1],
        "rerank": False,
    },
    "/v1/feedback": {
        "query": "bread",
        "chunk_id": 1,
        "kind": "click",
        "rank": 1,
        "result_ids": [1, 2],
        "mode": "bm25",
        "generation": 1,
        "session": "s1",
    },
}
STRINGS = [
    "",
    " ",
    "\x00",
    "\ud800",
    "\udfff\ud800",
    "a\x00b",
    "\ufeff",
    "\u202ebread\u202c",
    "\uffff",
    "e\u0301",
    "💥" * 300,
    "x" * 5000,
    "*" * 600,
    "[",
    "[]]",
    "[!a-",
    "\\",
    "**/../../etc/passwd",
    "%00",
    "\r\n",
    "'\"",
    "click",
    "hybrid",
    "NaN",
    "9223372036854775808",
]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "application/vnd.api+json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/octet-stream",
    "",
    "application/json;;;;=",
    "*/*",
    "application/json\x7f",
]


def _number(rng: random.Random) -> object:
    return rng.choice(
        [
            0,
            -1,
            1,
            2**31,
            2**63 - 1,
            2**63,
            -(2**63) - 1,
            2**64,
            10 ** rng.randint(19, 600),
            -(10 ** rng.randint(19, 600)),
            0.5,
            -0.0,
            1e308,
            5e-324,
            float("nan"),
            float("inf"),
            float("-inf"),
            1e15 + 0.5,
        ]
    )


def _nested(rng: random.Random, depth: int) -> object:
    value: object = rng.choice([1, "x", None, []])
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"a": value}
    return value


def _value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(8)
    if kind == 0:
        return _number(rng)
    if kind == 1:
        return rng.choice(STRINGS)
    if kind == 2:
        return "".join(
            chr(
                rng.choice(
                    [
                        rng.randint(1, 0x7F),
                        rng.randint(0x80, 0xD7FF),
                        rng.randint(0xD800, 0xDFFF),
                        rng.randint(0xE000, 0x10FFFF),
                    ]
                )
            )
            for _ in range(rng.randint(1, 40))
        )
    if kind == 3:
        return rng.choice([True, False, None])
    if kind == 4 and depth < 3:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == 5 and depth < 3:
        return {rng.choice([*STRINGS, "query", "k"]): _value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if kind == 6:
        return _nested(rng, rng.choice([5, 50, 400, 990, 1500, 5000]))
    return [_number(rng) for _ in range(rng.randint(0, 120))]


def _dumps(value: object) -> bytes:
    """JSON as Python writes it (NaN/Infinity included); lone surrogates are escaped, not encoded."""
    try:
        return json.dumps(value).encode()
    except (RecursionError, ValueError):
        return b"[" * 3000


def _mutated(rng: random.Random, route: str) -> bytes:
    body = dict(VALID[route])
    for _ in range(rng.randint(1, 3)):
        action = rng.randrange(4)
        field = rng.choice(list(body) or ["query"])
        if action == 0:
            body.pop(field, None)
        elif action == 1:
            body[rng.choice([*STRINGS, "extra", "Query", "k "])] = _value(rng)
        else:
            body[field] = _value(rng)
    return _dumps(body)


def _extreme_numbers(rng: random.Random, route: str) -> bytes:
    """Every numeric field at once at an edge: finite inputs whose combination overflows."""
    floats, ints = [1e308, 1.7976931348623157e308, 5e-324], [2**63 - 1, 2**63, 0, -1, 1]

    def edge(key: str) -> object:
        return rng.choice(floats if key in ("rrf_k", "weights") else ints)

    body = {
        key: ([edge(key) for _ in value] if isinstance(value, list) else edge(key))
        if key in ("k", "rrf_k", "weights", "chunk_id", "rank", "result_ids", "generation")
        else value
        for key, value in VALID[route].items()
    }
    return _dumps(body)


def _body(rng: random.Random, route: str) -> bytes:
    strategy = rng.randrange(8)
    if strategy == 6:
        return _extreme_numbers(rng, route)
    if strategy == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
    if strategy == 1:
        text = _dumps(VALID[route])
        return text[: rng.randint(0, len(text) - 1)]
    if strategy == 2:
        return _dumps(_nested(rng, rng.choice([10, 900, 2000, 8000])))
    if strategy == 3:
        return rng.choice([b"\xef\xbb\xbf", b"\xff\xfe", b""]) + _dumps(VALID[route])
    if strategy == 4:
        return _dumps(VALID[route]).replace(b'"', rng.choice([b"'", b'\\"', b"\xff", b'"\x00']), rng.randint(1, 3))
    return _mutated(rng, route)


def _query_string(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return ""
    parts = [
        rng.choice(
            [
                "k=abc",
                "k=-1",
                "k=99999999999999999999",
                "query=",
                "mode=%ff",
                "a=%zz",
                "%00=%00",
                "&&",
                "=",
                "filter=" + quote("\U0001f4a5" * 20),
                "x=" + "y" * 2000,
            ]
        )
        for _ in range(rng.randint(1, 4))
    ]
    return "?" + "&".join(parts)


def _send(url: str, route: str, body: bytes, content_type: str) -> tuple[int, str, bytes]:
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=CLIENT_TIMEOUT_S)
    try:
        conn.putrequest("POST", route, skip_accept_encoding=True)
        if content_type:
            conn.putheader("Content-Type", content_type)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.getheader("content-type") or "", response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_malformed_requests_get_2xx_or_a_json_4xx(tmp_path: Path, http: str) -> None:
    """Under h11 every request reaches the app, which must answer 2xx or a JSON 4xx; httptools (what
    `embedlab serve` uses when installed) refuses some malformed requests itself (a control character
    in a header) with a plain-text 400 before the app runs: that is the only other answer allowed."""
    if http == "httptools":
        pytest.importorskip("httptools")
    root = tmp_path / "collections"
    build_collection(make_library(tmp_path / "library"), root)
    rng = random.Random(SEED)
    seen: dict[int, int] = {}
    started = time.monotonic()
    with running(create_app(ServeConfig(collection="lib", root=root, max_k=50)), http=http) as url:
        for case in range(CASES):
            route = rng.choice(sorted(VALID))
            body = _body(rng, route)
            content_type = rng.choice(CONTENT_TYPES) if rng.random() < 0.3 else "application/json"
            target = route + _query_string(rng)
            where = f"case {case} (FUZZ_SEED={SEED}): POST {target[:80]} {content_type!r} {body[:120]!r}"
            status, media, raw = _send(url, target, body, content_type)
            seen[status] = seen.get(status, 0) + 1
            assert 200 <= status < 300 or 400 <= status < 500, f"{where} -> {status} {raw[:200]!r}"
            if http == "httptools" and (status, raw) == (400, b"Invalid HTTP request received."):
                continue  # refused by the HTTP parser, before the app
            assert media.startswith("application/json"), f"{where} -> {status} {media}"
            data = json.loads(raw)
            if status >= 400:
                assert isinstance(data, dict) and set(data) == {"error"} and isinstance(data["error"], str), (
                    f"{where} -> {status} {raw[:200]!r}"
                )
                assert data["error"] and "\n" not in data["error"], f"{where} -> {data}"
        # the server is still healthy after all of it
        assert _send(url, "/v1/search", _dumps(VALID["/v1/search"]), "application/json")[0] == 200
    assert time.monotonic() - started < 120  # bounded: a few hundred small requests
    # the generator reaches both sides: accepted requests and several kinds of refusal
    assert seen.get(200, 0) > 0 and seen.get(400, 0) > 0 and seen.get(422, 0) > 0, seen
