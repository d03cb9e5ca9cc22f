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

Clients are threads with one keep-alive connection each, every request with a 30 s timeout, so
the run always ends; latency is client-measured (request sent -> whole JSON body read).  The
clients run on the same machine as the server and take CPU from it: the figures are what this
machine does with both on it.  Any status other than 200, a timeout or a connection error counts
as an error.

    python benchmarks/bench_serve_load.py --collection lib --root /tmp/pdfroot
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
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
Request = Callable[[http.client.HTTPConnection, int], int]  # (connection, n) -> HTTP status


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def post(conn: http.client.HTTPConnection, path: str, body: dict) -> int:
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status == 200:
        json.loads(data)
    return response.status


def search_request(k: int) -> Request:
    return lambda conn, n: post(conn, "/v1/search", {"query": QUERIES[n % len(QUERIES)], "k": k, "mode": "hybrid"})


def embed_request(model: str) -> Request:
    return lambda conn, n: post(conn, "/v1/embeddings", {"model": model, "input": QUERIES[n % len(QUERIES)] + f" {n}"})


def load(port: int, request: Request, *, clients: int, per_client: int) -> dict[str, object]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one_client(c: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        bad: list[str] = []
        for i in range(per_client):
            started = time.perf_counter()
            try:
                status = request(conn, c * 7919 + i)
                mine.append(time.perf_counter() - started)
                if status != 200:
                    bad.append(f"HTTP {status}")
            except (OSError, http.client.HTTPException) as err:
                bad.append(type(err).__name__)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors.extend(bad)

    threads = [threading.Thread(target=one_client, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=per_client * 30 + 60)
    wall = time.perf_counter() - started
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
    parser.add_argument("--requests", type=int, default=20, help="search requests per client")
    parser.add_argument("--baseline", type=int, default=100, help="sequential single-client searches")
    parser.add_argument("--embed-requests", type=int, default=640, help="embedding requests per load level")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    from embedlab.collection import info
    from embedlab.eval.measure import hardware, library_versions

    described = info(args.collection, root=args.root)
    common = [args.collection, "--root", str(args.root)]
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
    for label, server_args in search_runs.items():
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
    for label, extra in {"one at a time (--max-batch 1)": ["--max-batch", "1"], "batched": []}.items():
        server = Server(["--model", args.model, *extra])
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
