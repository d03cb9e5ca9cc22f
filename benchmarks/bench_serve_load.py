"""Load test of ``embedlab serve``: 50 concurrent clients on loopback, bounded, every status counted.

Starts the real server (``embedlab serve``, uvicorn, one process) on 127.0.0.1, waits for
``/healthz``, then:

1. one client, ``--baseline`` sequential searches (what one user waits for on an idle server);
2. ``--clients`` concurrent clients (threads, one keep-alive connection each), each sending
   ``--requests`` searches back to back: ``clients x requests`` requests in all, each with a
   30 s timeout, so the test always ends.

Latency is measured by the client (request sent -> whole JSON body read).  Any status other
than 200, timeout or connection error counts as an error.  Searches run one at a time in
the server (see ``embedlab.serve.live``), so under 50 clients a request mostly waits in line:
p50/p95 then measure queueing, and throughput is the figure to compare with the baseline.

    python benchmarks/bench_serve_load.py --collection lib --root collections
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def search(conn: http.client.HTTPConnection, query: str, k: int) -> tuple[int, float]:
    body = json.dumps({"query": query, "k": k, "mode": "hybrid"})
    started = time.perf_counter()
    conn.request("POST", "/v1/search", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    elapsed = time.perf_counter() - started
    if response.status == 200:
        json.loads(data)
    return response.status, elapsed


def client(port: int, queries: list[str], k: int, out: list, errors: list) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for query in queries:
        try:
            status, elapsed = search(conn, query, k)
            out.append(elapsed)
            if status != 200:
                errors.append(f"HTTP {status}")
        except (OSError, http.client.HTTPException) as err:
            errors.append(type(err).__name__)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()


def stats(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {q: round(float(np.percentile(ms, int(q[1:]))), 2) for q in ("p50", "p95", "p99")} | {
        "mean": round(float(ms.mean()), 2),
        "max": round(float(ms.max()), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default="lib")
    parser.add_argument("--root", type=Path, default=Path("collections"))
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20, help="per client")
    parser.add_argument("--baseline", type=int, default=100, help="sequential single-client searches")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    from embedlab.collection import info
    from embedlab.eval.measure import hardware, library_versions

    described = info(args.collection, root=args.root)
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("EMBEDLAB_API_KEY", None)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "embedlab.cli.main",
            "serve",
            args.collection,
            "--root",
            str(args.root),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("server did not start") from None
                time.sleep(0.25)
        conn.close()

        base: list[float] = []
        base_errors: list[str] = []
        client(port, [QUERIES[i % len(QUERIES)] for i in range(args.baseline)], args.k, base, base_errors)

        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        threads = []
        started = time.perf_counter()
        for c in range(args.clients):
            mine = [QUERIES[(c * 7 + i) % len(QUERIES)] for i in range(args.requests)]
            local: list[float] = []
            local_errors: list[str] = []

            def run(mine: list[str] = mine, local: list[float] = local, local_errors: list[str] = local_errors) -> None:
                client(port, mine, args.k, local, local_errors)
                with lock:
                    latencies.extend(local)
                    errors.extend(local_errors)

            thread = threading.Thread(target=run)
            threads.append(thread)
            thread.start()
        for thread in threads:
            thread.join(timeout=args.requests * 30 + 60)
        wall = time.perf_counter() - started
        metrics = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        metrics.request("GET", "/metrics")
        server_metrics = metrics.getresponse().read().decode()
    finally:
        server.terminate()
        server.wait(timeout=30)

    total = args.clients * args.requests
    search_lines = [
        line
        for line in server_metrics.splitlines()
        if line.startswith("embedlab_http_requests_total") and "/v1/search" in line
    ]
    result = {
        "benchmark": "serve_load",
        "collection": {k: described[k] for k in ("name", "model", "counts", "chunking", "size_bytes")},
        "mode": "hybrid",
        "k": args.k,
        "server": "embedlab serve (uvicorn, 1 process; searches one at a time)",
        "baseline": {
            "requests": args.baseline,
            "errors": len(base_errors),
            "latency_ms": stats(base),
            "per_second": round(len(base) / sum(base), 2),
        },
        "load": {
            "clients": args.clients,
            "requests": total,
            "completed": len(latencies),
            "errors": len(errors),
            "error_kinds": sorted(set(errors)),
            "wall_seconds": round(wall, 2),
            "per_second": round(len(latencies) / wall, 2),
            "latency_ms": stats(latencies),
        },
        "server_counters": search_lines,
        "hardware": hardware(),
        "libraries": library_versions(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"serve_load_{time.strftime('%Y%m%d-%H%M')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("baseline", "load")}, indent=2))
    print(f"wrote {out}")
    if errors or len(latencies) != total:
        raise SystemExit(f"{len(errors)} errors, {len(latencies)}/{total} completed")


if __name__ == "__main__":
    main()
