"""Load test of ``embedlab serve`` on loopback, bounded, every status counted, peers in the same run.

Starts the real server (``embedlab serve``, uvicorn) on 127.0.0.1 several times, each time waiting
for ``/healthz``, and compares in one run:

- **search** (hybrid top-``k`` over ``--collection``): one-at-a-time serving (``--max-batch 1``,
  what embedlab did before dynamic batching: every request encoded and searched alone) against
  dynamic batching (one process) and dynamic batching with ``--workers 2``; each with one
  sequential client (``--baseline`` requests: what one user waits for on an idle server) and
  ``--clients`` concurrent clients sending ``--requests`` searches each;
- **embeddings** (``POST /v1/embeddings``, one text per request, ``--model``): one-at-a-time
  against batched, at 1, 8, 32 and 64 concurrent clients (``--embed-requests`` each).

Clients are coroutines on one asyncio loop, one keep-alive connection each, writing pre-encoded
requests and reading responses by Content-Length (a lean client: with Python's http.client in
threads, the load generator itself took so much of the 2 cores that the server sat idle between
requests and batches stayed small); every request has a 30 s timeout, so the run always ends;
latency is client-measured (request written -> whole body read).  The clients still share the
machine with the server: the figures are what this machine does with both on it.
Any status other than 200, a timeout or a connection error counts
as an error.

    python benchmarks/bench_serve_load.py --collection lib --root /tmp/pdfroot
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

QUERIES = [
    "reproducible research with version control",
    "grading notebook assignments automatically",
    "teaching programming to biology students",
    "fitting a model with scipy optimize",
    "bending moment diagram of a beam",
    "multi-layer perceptron implemented in C++",
    "brain visualization in the browser",
    "Bayesian optimization for parameter estimation",
    "climate change impact assessment course",
    "open educational resources presentations",
    "the rabbit hole and the bottle labelled drink me",
    "the Cheshire cat grins",
    "Martians land in a cylinder near London",
    "heat ray destroys the crowd",
    "Sherlock Holmes examines a hat",
    "how to speak to an audience with confidence",
    "subject and verb agreement in grammar",
    "a man without a body experiment",
    "Jupyter notebooks in the classroom",
    "peer review of open source software papers",
    "data carpentry workshop lessons",
    "interactive textbook for bioinformatics",
    "symbolic dynamic system models with linear graphs",
    "Org mode course materials template",
    "atmosphere and ocean science with Python",
    "assessment rubric for student projects",
]
Request = Callable[[int], bytes]  # request number -> the whole HTTP request, bytes on the wire


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def post(path: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    return head.encode() + f"Content-Length: {len(data)}\r\n\r\n".encode() + data


def search_request(k: int) -> Request:
    return lambda n: post("/v1/search", {"query": QUERIES[n % len(QUERIES)], "k": k, "mode": "hybrid"})


def embed_request(model: str) -> Request:
    return lambda n: post("/v1/embeddings", {"model": model, "input": QUERIES[n % len(QUERIES)] + f" {n}"})


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


def load(port: int, request: Request, *, clients: int, per_client: int) -> dict[str, object]:
    """``clients`` keep-alive connections on one asyncio loop (a lean client, so the machine's CPU goes to
    the server rather than to the load generator); every 10th 200 body is parsed as JSON to check it."""
    latencies: list[float] = []
    errors: list[str] = []

    async def one_client(c: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(per_client):
            started = time.perf_counter()
            try:
                status, body = await asyncio.wait_for(_exchange(reader, writer, request(c * 7919 + i)), 30)
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    errors.append(f"HTTP {status}")
                elif i % 10 == 0:
                    json.loads(body)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as err:
                errors.append(type(err).__name__)
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()

    async def everyone() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(one_client(c) for c in range(clients)))
        return time.perf_counter() - started

    wall = asyncio.run(everyone())
    ms = np.asarray(latencies) * 1e3 if latencies else np.zeros(1)
    return {
        "clients": clients,
        "requests": clients * per_client,
        "completed": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "wall_seconds": round(wall, 2),
        "per_second": round(len(latencies) / wall, 1),
        "latency_ms": {q: round(float(np.percentile(ms, int(q[1:]))), 1) for q in ("p50", "p95", "p99")},
    }


class Server:
    def __init__(self, args: list[str]) -> None:
        self.port = free_port()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        env.pop("EMBEDLAB_API_KEY", None)
        command = [sys.executable, "-m", "embedlab.cli.main", "-q", "serve", *args, "--port", str(self.port)]
        self.process = subprocess.Popen(command, env=env, start_new_session=True)
        deadline = time.monotonic() + 180
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start: {' '.join(args)}")
            time.sleep(0.25)

    def batch_sizes(self) -> dict[str, float]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            for kind in ("sum", "count"):
                if line.startswith(f"embedlab_batch_size_{kind}{{"):
                    batcher = line.split('batcher="')[1].split('"')[0]
                    out[f"{batcher}_{kind}"] = out.get(f"{batcher}_{kind}", 0.0) + float(line.split()[-1])
        return out

    def stop(self) -> None:
        os.killpg(self.process.pid, 15)
        self.process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default="lib")
    parser.add_argument("--root", type=Path, default=Path("collections"))
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="model for the embeddings part")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=60, help="search requests per client")
    parser.add_argument("--baseline", type=int, default=100, help="sequential single-client searches")
    parser.add_argument("--embed-requests", type=int, default=1280, help="embedding requests per load level")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--quick", action="store_true", help="batched search at --clients only, no record (tuning)")
    parser.add_argument("--serve-args", default="", help="extra `embedlab serve` options for every server started")
    parser.add_argument("--parts", default="search,embeddings", help="which parts to run (a record needs both)")
    args = parser.parse_args()
    extra = args.serve_args.split()
    if args.quick:
        server = Server([args.collection, "--root", str(args.root), *extra])
        try:
            load(server.port, search_request(args.k), clients=4, per_client=5)
            print(json.dumps(load(server.port, search_request(args.k), clients=args.clients, per_client=args.requests)))
        finally:
            server.stop()
        return

    from embedlab.collection import info
    from embedlab.eval.measure import hardware, library_versions

    described = info(args.collection, root=args.root)
    common = [args.collection, "--root", str(args.root), *extra]
    search_runs = {
        "one at a time (--max-batch 1)": [*common, "--max-batch", "1"],
        "batched": common,
        "batched, 2 workers": [*common, "--workers", "2"],
    }
    result: dict[str, object] = {
        "benchmark": "serve_load",
        "collection": {k: described[k] for k in ("name", "model", "counts", "chunking", "size_bytes")},
        "conditions": f"hybrid top-{args.k}; clients on the same 2-core machine; loopback; keep-alive",
        "search": {},
        "embeddings": {},
    }
    for label, server_args in search_runs.items() if "search" in args.parts else ():
        server = Server(server_args)
        try:
            request = search_request(args.k)
            load(server.port, request, clients=4, per_client=5)  # warm-up: page in the model and index
            single = load(server.port, request, clients=1, per_client=args.baseline)
            many = load(server.port, request, clients=args.clients, per_client=args.requests)
            batches = server.batch_sizes()
        finally:
            server.stop()
        result["search"][label] = {"one client": single, f"{args.clients} clients": many, "batches": batches}  # type: ignore[index]
        print(label, json.dumps({"one": single["per_second"], "many": many["per_second"], "p95": many["latency_ms"]}))
    levels = (1, 8, 32, 64)
    embedding_runs = {"one at a time (--max-batch 1)": ["--max-batch", "1"], "batched": []}
    for label, batching in embedding_runs.items() if "embeddings" in args.parts else ():
        server = Server(["--model", args.model, *batching, *extra])
        try:
            request = embed_request(args.model)
            load(server.port, request, clients=4, per_client=5)
            rows = {}
            for clients in levels:
                rows[f"{clients} clients"] = load(
                    server.port, request, clients=clients, per_client=max(1, args.embed_requests // clients)
                )
                print(
                    label, clients, rows[f"{clients} clients"]["per_second"], rows[f"{clients} clients"]["latency_ms"]
                )
            rows["batches"] = server.batch_sizes()
        finally:
            server.stop()
        result["embeddings"][label] = rows  # type: ignore[index]
    if args.parts != "search,embeddings":
        print(json.dumps(result, indent=1))
        return
    search = result["search"]
    embeddings = result["embeddings"]
    one = search["one at a time (--max-batch 1)"][f"{args.clients} clients"]["per_second"]  # type: ignore[index]
    result["ratios"] = {
        "search, batched / one at a time": round(search["batched"][f"{args.clients} clients"]["per_second"] / one, 2),  # type: ignore[index]
        "search, 2 workers / one at a time": round(
            search["batched, 2 workers"][f"{args.clients} clients"]["per_second"] / one,
            2,  # type: ignore[index]
        ),
        "embeddings at 32 clients, batched / one at a time": round(
            embeddings["batched"]["32 clients"]["per_second"]  # type: ignore[index]
            / embeddings["one at a time (--max-batch 1)"]["32 clients"]["per_second"],  # type: ignore[index]
            2,
        ),
    }
    result["hardware"] = hardware()
    result["libraries"] = library_versions()
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"serve_load_{time.strftime('%Y%m%d-%H%M')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["ratios"], indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
