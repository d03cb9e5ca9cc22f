"""Simulated users for a served collection: replay a BEIR dataset's queries over loopback HTTP, click.

Why: online metrics, drift alerts and A/B verdicts need traffic to be tested end to end, and real
users are not at hand.  The simulator is an ordinary client of ``embedlab serve``: it searches
(``/v1/search`` with a session id) and posts clicks through ``/v1/feedback``, so its events land in
``feedback.sqlite`` exactly like real users' and go through the same arms, logging and monitoring.

Stream: ``--stream scifact:1000,npl:500`` = 1,000 queries of SciFact, then 500 of NPL (a scheduled
change of the query distribution, to create drift).  Each segment draws its queries from the
dataset's judged queries in a seeded random order (cycled when the segment is longer).  Queries are
grouped into sessions of 1..``max_session_queries`` consecutive queries (uniform), never across
segments, with ids ``<prefix><number>`` (prefix ``sim<seed>-`` unless given); sessions run
``concurrency`` at a time, the queries of one session in order.

Click models (the parameters are the attractiveness of a result and the examination of a rank):

- ``pbm``, the position-based model (Richardson et al. 2007; Chuklin, Markov & de Rijke 2015,
  "Click Models for Web Search", ch. 3): a result at rank r is clicked with probability
  ``exam(r) * attr``, ``exam(r) = 1 / r^eta`` and each rank decided independently;
- ``cascade`` (Craswell et al. 2008, WSDM): the user reads top-down and clicks the first result
  that attracts them (probability ``attr``), then stops.

``attr`` is ``p_relevant`` (default 0.9) for a result whose document the qrels judge relevant
(grade > 0) to the query, else ``p_other`` (default 0.05).  Relevance is known only for queries of
the dataset the collection was built from (``corpus``, default the first stream segment): the
collection's files are named after document ids (``embedlab.collection.corpus``), and queries of
another dataset have nothing relevant in it.

Reproducible: session n's clicks come from ``random.Random(SHA-256(seed, n))``, so the same seed and
the same rankings give the same clicks whatever the concurrency.  Loopback only: simulated clicks
written into a production server's feedback would poison its monitoring and its fine-tuning data.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import logging
import random
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from embedlab.collection.corpus import file_name
from embedlab.data.beir import Dataset, load_dataset
from embedlab.errors import EmbedlabError

log = logging.getLogger(__name__)
MAX_QUERIES = 1_000_000


@dataclass(frozen=True)
class ClickModel:
    kind: Literal["pbm", "cascade"] = "pbm"
    eta: float = 1.0  # examination decay of the position-based model: exam(r) = 1 / r^eta
    p_relevant: float = 0.9
    p_other: float = 0.05

    def __post_init__(self) -> None:
        if self.kind not in ("pbm", "cascade"):
            raise EmbedlabError("invalid click model", found=repr(self.kind), expected="pbm or cascade")
        if not (0 <= self.p_other <= 1 and 0 <= self.p_relevant <= 1 and 0 <= self.eta <= 10):
            raise EmbedlabError(
                "invalid click model parameters",
                found=f"p_relevant {self.p_relevant}, p_other {self.p_other}, eta {self.eta}",
                expected="probabilities in [0, 1], eta in [0, 10]",
            )

    def clicks(self, relevant: Sequence[bool], rng: random.Random) -> list[int]:
        """The 1-based ranks clicked on a page whose results are ``relevant`` or not, top first."""
        out = []
        for rank, good in enumerate(relevant, start=1):
            attr = self.p_relevant if good else self.p_other
            if self.kind == "cascade":
                if rng.random() < attr:
                    return [rank]
                continue
            if rng.random() < attr / rank**self.eta:
                out.append(rank)
        return out


@dataclass(frozen=True)
class Segment:
    dataset: str
    queries: int


def parse_stream(text: str) -> list[Segment]:
    """``"scifact:1000,npl:500"`` -> segments; a bare name means 100 queries."""
    segments = []
    for part in (text or "").split(","):
        name, _, count = part.strip().rpartition(":") if ":" in part else (part.strip(), "", "")
        try:
            n = int(count) if count else 100
        except ValueError:
            n = -1
        if not name or not 1 <= n <= MAX_QUERIES:
            raise EmbedlabError(
                "invalid --stream",
                found=repr(text),
                expected=f"DATASET:QUERIES[,DATASET:QUERIES...], 1 to {MAX_QUERIES}",
            )
        segments.append(Segment(name, n))
    return segments


@dataclass
class SessionPlan:
    number: int
    session: str
    queries: list[tuple[str, str, str]]  # (dataset, query id, text)


@dataclass
class SearchRecord:
    session: str
    dataset: str
    query_id: str
    search_id: str
    arm: str | None
    shown: list[str]  # file paths, rank order
    teams: list[str] | None
    relevant: list[bool]
    clicks: list[int]


@dataclass
class SimulationResult:
    url: str
    collection: str | None
    seed: int
    sessions: int = 0
    searches: int = 0
    clicks: int = 0
    relevant_shown: int = 0  # searches that showed at least one relevant result
    per_dataset: dict[str, dict[str, int]] = field(default_factory=dict)
    records: list[SearchRecord] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        out = asdict(self)
        out.pop("records")
        return out


def plan(
    segments: Sequence[Segment],
    datasets: dict[str, Dataset],
    *,
    seed: int,
    max_session_queries: int,
    sessions: int | None,
    prefix: str | None = None,
) -> list[SessionPlan]:
    """The sessions to run, in stream order (see the module docstring)."""
    rng = random.Random(f"{seed}-plan")
    prefix = f"sim{seed}-" if prefix is None else prefix
    out: list[SessionPlan] = []
    for segment in segments:
        ids = sorted(datasets[segment.dataset].queries)
        rng.shuffle(ids)
        stream = [ids[i % len(ids)] for i in range(segment.queries)]
        at = 0
        while at < len(stream):
            size = rng.randint(1, max_session_queries)
            chosen = stream[at : at + size]
            at += size
            number = len(out)
            texts = datasets[segment.dataset].queries
            out.append(SessionPlan(number, f"{prefix}{number:07d}", [(segment.dataset, q, texts[q]) for q in chosen]))
            if sessions is not None and len(out) >= sessions:
                return out
    return out


class _Client:
    """One keep-alive HTTP connection per thread to a loopback server."""

    def __init__(self, url: str, api_key: str | None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise EmbedlabError("invalid server URL", found=repr(url), expected="http://127.0.0.1:PORT")
        host = parts.hostname
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise EmbedlabError(
                "the simulator only talks to a server on this machine",
                found=host,
                expected="127.0.0.1 or localhost (simulated clicks would pollute a real server's feedback)",
            )
        self.url, self.host, self.port = url, host, parts.port or 80
        self.headers = {"Content-Type": "application/json"} | ({"X-API-Key": api_key} if api_key else {})
        self._local = threading.local()

    def call(self, method: str, path: str, body: object | None = None) -> dict[str, Any]:
        for attempt in (0, 1):  # one retry on a connection the server closed while idle
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                conn.request(method, path, None if body is None else json.dumps(body), self.headers)
                response = conn.getresponse()
                raw = response.read()
                break
            except (ConnectionError, http.client.HTTPException, OSError) as err:
                conn.close()
                self._local.conn = None
                if attempt:
                    raise EmbedlabError(f"cannot reach the server at {self.url} ({err})") from None
        try:
            data = json.loads(raw)
        except ValueError:
            data = {"error": raw[:200].decode("utf-8", "replace")}
        if response.status == 401:
            raise EmbedlabError("the server wants an API key", hint="set it in the variable named by --api-key-env")
        if response.status != 200:
            raise EmbedlabError(f"the server answered {method} {path} with {response.status}: {data.get('error')}")
        return data


def _session_rng(seed: int, number: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x1fsession\x1f{number}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def simulate(
    url: str,
    segments: Sequence[Segment],
    *,
    corpus: str | None = None,
    split: str = "test",
    sessions: int | None = None,
    max_session_queries: int = 3,
    concurrency: int = 4,
    seed: int = 0,
    k: int = 10,
    mode: str = "dense",
    model: ClickModel | None = None,
    api_key: str | None = None,
    session_prefix: str | None = None,
) -> SimulationResult:
    """Run the stream against the server at ``url``; returns what was searched, shown and clicked."""
    if not segments:
        raise EmbedlabError("no stream to replay", expected="--stream DATASET:QUERIES")
    if not (1 <= concurrency <= 64 and 1 <= max_session_queries <= 100 and 1 <= k <= 100):
        raise EmbedlabError("invalid options", expected="--concurrency 1-64, --max-session-queries 1-100, --k 1-100")
    if sessions is not None and sessions < 1:
        raise EmbedlabError("invalid --sessions", found=str(sessions), expected="at least 1")
    model = model or ClickModel()
    client = _Client(url, api_key)  # the URL is checked before any dataset is read
    datasets = {s.dataset: load_dataset(s.dataset, split=split) for s in segments}
    corpus = corpus or segments[0].dataset
    relevant: dict[tuple[str, str], set[str]] = {}
    for name, dataset in datasets.items():
        if dataset.name != corpus and name != corpus:
            continue
        for query_id, docs in dataset.qrels.judgments.items():
            relevant[(name, query_id)] = {file_name(d) for d, grade in docs.items() if grade > 0}
    health = client.call("GET", "/healthz")
    result = SimulationResult(url=url, collection=health.get("collection"), seed=seed)
    if session_prefix is not None and not re.fullmatch(r"[\w.:-]{0,40}", session_prefix):
        raise EmbedlabError(
            "invalid session prefix", found=repr(session_prefix), expected="up to 40 of [A-Za-z0-9_.:-]"
        )
    plans = plan(
        segments,
        datasets,
        seed=seed,
        max_session_queries=max_session_queries,
        sessions=sessions,
        prefix=session_prefix,
    )

    def run(p: SessionPlan) -> list[SearchRecord]:
        rng = _session_rng(seed, p.number)
        records = []
        for dataset, query_id, text in p.queries:
            answer = client.call("POST", "/v1/search", {"query": text, "k": k, "mode": mode, "session": p.session})
            hits = answer.get("hits", [])
            good = relevant.get((dataset, query_id), set())
            flags = [hit["path"] in good for hit in hits]
            clicks = model.clicks(flags, rng)
            shown_ids = [hit["chunk_id"] for hit in hits]
            for rank in clicks:
                body = {"query": text, "chunk_id": shown_ids[rank - 1], "kind": "click", "rank": rank,
                        "result_ids": shown_ids, "session": p.session, "search_id": answer["search_id"]}  # fmt: skip
                client.call("POST", "/v1/feedback", body)
            teams = [hit["arm"] for hit in hits] if hits and "arm" in hits[0] else None
            shown = [hit["path"] for hit in hits]
            records.append(
                SearchRecord(
                    p.session, dataset, query_id, answer["search_id"], answer.get("arm"), shown, teams, flags, clicks
                )
            )
        return records

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="simulate") as pool:
        for records in pool.map(run, plans):
            result.records.extend(records)
    result.sessions = len(plans)
    result.searches = len(result.records)
    result.clicks = sum(len(r.clicks) for r in result.records)
    result.relevant_shown = sum(any(r.relevant) for r in result.records)
    if relevant and not result.relevant_shown:
        log.warning(
            "no search showed a document the qrels of %s judge relevant: was the collection built from it "
            "(`embedlab index build --dataset %s`)? Clicks came from p_other only",
            corpus,
            corpus,
        )
    for name in dict.fromkeys(s.dataset for s in segments):
        mine = [r for r in result.records if r.dataset == name]
        result.per_dataset[name] = {"searches": len(mine), "clicks": sum(len(r.clicks) for r in mine)}
    return result
