"""A/B arms of a served collection: the arms file, session assignment, and the file re-read on change.

The arms file (TOML, or JSON with a ``.json`` name), given to ``embedlab serve --arms FILE``::

    kind = "interleave"   # "split": each session searches one arm; "interleave": team draft of two arms
    live = "base"         # the control arm: answers searches without a session id (split mode)
    seed = 0              # fixes the session hash and the interleaving coins
    [arms.base]           # an arm: a collection (default: the served one) and optionally a search mode
    share = 1             # relative share of the sessions (split); 0 = staged, gets no traffic
    [arms.tuned]
    collection = "scifact-tuned"
    search_mode = "dense"  # or pipeline = "bm25 + dense | rrf"

Split assignment is a hash, not a draw: ``u = SHA-256(seed, session)`` read as a number in [0, 1)
falls into one arm's slice of the cumulative shares (arms in name order), so a session always sees
the same arm, on every worker and after a restart.  Interleaving uses the two arms with a share
above 0, the ``live`` one as A.  A candidate is staged as an arm with ``share = 0`` and promoted by
rewriting ``live`` (and the shares): the file is re-read when it changes (checked at most once a
second), and writing it atomically (``embedlab.atomic``: temporary file + rename) makes the switch
one step for every request.  A file that fails to load on re-read changes nothing: the server keeps
the arms it has, logs the reason, and ``GET /v1/arms`` shows it.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from embedlab.configfile import invalid_settings, read_settings
from embedlab.errors import EmbedlabError
from embedlab.serve.interleave import impression_rng, team_draft

if TYPE_CHECKING:
    from embedlab.collection.search import Query, SearchResponse
    from embedlab.search.rerank import Reranker
    from embedlab.serve.app import ServeConfig
    from embedlab.serve.batching import MicroBatcher
    from embedlab.serve.collection_routes import SearchRequest
    from embedlab.serve.live import LiveCollection
    from embedlab.serve.metrics import Metrics

log = logging.getLogger(__name__)
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_EXPECTED = 'kind = "split"|"interleave", live = ARM, seed, and [arms.NAME] tables (collection, search_mode, share)'
RECHECK_S = 1.0  # the file's identity is looked at no more often than this
RECENT_SEARCHES = 50_000  # searches whose per-hit collections are kept in memory for /v1/feedback


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    collection: str | None = Field(None, min_length=1, max_length=200)  # None: the served collection
    search_mode: Literal["dense", "bm25", "hybrid"] | None = None
    pipeline: str | None = Field(None, min_length=1, max_length=1024)
    share: float = Field(1.0, ge=0, le=1e6, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_way(self) -> Arm:
        if self.search_mode is not None and self.pipeline is not None:
            raise ValueError("give search_mode or pipeline, not both")
        return self


class ArmsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["split", "interleave"]
    live: str
    seed: int = Field(0, ge=0, le=2**63 - 1)
    arms: dict[str, Arm] = Field(min_length=1, max_length=16)

    @model_validator(mode="after")
    def _consistent(self) -> ArmsFile:
        for name in self.arms:
            if not re.match(_NAME, name):
                raise ValueError(f"arm name {name!r} must be 1-64 letters, digits, '_', '.' or '-'")
        if self.live not in self.arms:
            close = difflib.get_close_matches(self.live, list(self.arms), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown arm {self.live!r} as live.{hint} Arms: {', '.join(sorted(self.arms))}")
        active = self.active()
        if not active:
            raise ValueError("every arm has share 0: at least one must get traffic")
        if self.kind == "interleave" and (len(active) != 2 or self.live not in active):
            raise ValueError(
                f"interleaving needs exactly two arms with a share above 0, one of them the live arm (found {active})"
            )
        return self

    def active(self) -> list[str]:
        return sorted(name for name, arm in self.arms.items() if arm.share > 0)

    def collections(self, served: str) -> dict[str, str]:
        """Arm label -> the collection it searches; a search answered without arms is labelled with the
        served collection itself, so that label maps to it too."""
        return {served: served} | {name: arm.collection or served for name, arm in self.arms.items()}

    def assign(self, session: str | None) -> tuple[str, ...]:
        """The arm(s) answering a search of ``session``: one (split) or (A, B) (interleave)."""
        active = self.active()
        if self.kind == "interleave":
            return (self.live, next(name for name in active if name != self.live))
        if session is None:
            return (self.live,)
        digest = hashlib.sha256(f"{self.seed}\x1f{session}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2.0**64
        total = sum(self.arms[name].share for name in active)
        edge = 0.0
        for name in active:
            edge += self.arms[name].share / total
            if u < edge:
                return (name,)
        return (active[-1],)  # u just below 1 and rounding in the cumulative sum


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """The line of ``loc`` in the TOML text: a key inside ``[arms.NAME]``, that table's header, or a
    top-level key; None when not found (JSON, or a problem of the whole file)."""
    lines = text.splitlines()
    start, end = 0, len(lines)
    if len(loc) >= 2 and loc[0] == "arms":
        header = rf"^\s*\[\s*arms\.\"?{re.escape(str(loc[1]))}\"?\s*\]"
        found = [i for i, line in enumerate(lines) if re.match(header, line)]
        if not found:
            return None
        start = found[0]
        end = next((i for i in range(start + 1, len(lines)) if re.match(r"^\s*\[", lines[i])), len(lines))
        if len(loc) < 3:
            return start + 1
    elif loc:
        end = next((i for i, line in enumerate(lines) if re.match(r"^\s*\[", line)), len(lines))
    key = rf"^\s*{re.escape(str(loc[-1]))}\s*=" if loc else None
    for i in range(start, end):
        if key is not None and re.match(key, lines[i]):
            return i + 1
    return start + 1 if start else None


def load_arms(path: str | Path) -> ArmsFile:
    """The checked arms file; every problem is one :class:`EmbedlabError` with the file (and line)."""
    path = Path(path)
    text, data = read_settings(path, what="arms file", expected=_EXPECTED)
    try:
        return ArmsFile.model_validate(data)
    except ValidationError as err:
        line_of = partial(_line_of, text) if path.suffix.lower() != ".json" else (lambda _: None)
        raise invalid_settings(err, what="arms file", path=path, line_of=line_of, expected=_EXPECTED) from None


def render_arms(config: ArmsFile, *, as_json: bool = False) -> str:
    """The text of an arms file holding ``config`` (TOML, or JSON for a ``.json`` file): what promotion
    writes atomically.  Comments of a hand-written file are not kept."""
    import json

    if as_json:
        return json.dumps(config.model_dump(exclude_none=True), indent=1) + "\n"
    lines = [f"kind = {json.dumps(config.kind)}", f"live = {json.dumps(config.live)}", f"seed = {config.seed}"]
    for name in sorted(config.arms):
        lines += ["", f"[arms.{json.dumps(name)}]"]
        for key, value in config.arms[name].model_dump(exclude_none=True).items():
            lines.append(f"{key} = {json.dumps(value)}")  # a JSON string or number is valid TOML
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Answer:
    """A search answered by the arms: the response shown, the arm label, each hit's arm (interleaving)."""

    response: SearchResponse
    arm: str
    teams: tuple[str, ...] | None
    compute_ms: float
    sources: tuple[str, ...] = ()  # the collection of each hit: its chunk id is that collection's


def clicked_source(sources: Sequence[str], result_ids: Sequence[int], *, rank: int | None, chunk_id: int) -> str | None:
    """The collection of the clicked result: the one at ``rank`` when it shows ``chunk_id`` (an
    interleaved page may show the same id from two collections), else the first that shows it."""
    if len(sources) != len(result_ids):
        return None
    if rank is not None and 1 <= rank <= len(result_ids) and result_ids[rank - 1] == chunk_id:
        return sources[rank - 1]
    return next((sources[i] for i, cid in enumerate(result_ids) if cid == chunk_id), None)


class ArmRouter:
    """Routes searches to arms; ``searcher_of(collection)`` gives (opening on first use) that collection's
    batched searcher, and ``query_of(body, collection_name)`` the request as a query on it."""

    def __init__(
        self,
        path: Path,
        *,
        served: str,
        searcher_of: Callable[[str], MicroBatcher[Any, Any]],
        query_of: Callable[[SearchRequest, str], Query],
    ) -> None:
        self.path = path
        self.served = served
        self._searcher_of = searcher_of
        self._query_of = query_of
        self.config = self._open(load_arms(path))
        self.loaded_at = time.time()
        self.reload_error: str | None = None
        self._identity = self._stat()
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        self.extra_batchers: dict[str, MicroBatcher[Any, Any]] = {}  # set by the app: closed at shutdown
        self.live_of: Callable[[str], LiveCollection] | None = None  # set by make_router
        self._recent: OrderedDict[str, tuple[tuple[str, ...], tuple[int, ...]]] = OrderedDict()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _open(self, config: ArmsFile) -> ArmsFile:
        for arm in config.arms.values():  # every arm's collection opens now (a staged one too)
            self._searcher_of(arm.collection or self.served)
        return config

    def current(self) -> ArmsFile:
        """The arms in force, re-reading the file when it changed (kept as they are when it fails).  A
        re-read that adds a collection opens it here, in the request that noticed the change."""
        now = time.monotonic()
        if now - self._checked < RECHECK_S:
            return self.config
        with self._lock:  # searches (event loop) and GET /v1/arms (thread pool) may both notice
            return self._reread(now)

    def _reread(self, now: float) -> ArmsFile:
        if now - self._checked < RECHECK_S:
            return self.config  # another thread has just looked
        self._checked = now
        identity = self._stat()
        if identity == self._identity:
            return self.config
        self._identity = identity
        try:
            self.config = self._open(load_arms(self.path))
        except EmbedlabError as err:
            self.reload_error = err.one_line()
            log.warning("arms file changed but cannot be used (%s); keeping the arms in force", self.reload_error)
        else:
            self.loaded_at, self.reload_error = time.time(), None
            log.info("arms reloaded from %s: %s, live %s", self.path, self.config.kind, self.config.live)
        return self.config

    def remember(self, search_id: str, answer: Answer) -> None:
        """Keep which collection each hit of this search came from (bounded: the oldest are forgotten)."""
        ids = tuple(hit.chunk_id for hit in answer.response.hits)
        with self._lock:
            self._recent[search_id] = (answer.sources, ids)
            while len(self._recent) > RECENT_SEARCHES:
                self._recent.popitem(last=False)

    def source_of(
        self,
        search_id: str | None,
        *,
        rank: int | None,
        chunk_id: int,
        logged: Callable[[str], tuple[str, tuple[str, ...] | None, tuple[int, ...]] | None],
    ) -> str | None:
        """The collection a clicked chunk id belongs to: from this process's recent searches, else the
        logged search (another worker answered it: ``logged(search_id)`` = arm, teams, ids), read with
        the arms in force; without a search id only when every arm searches the served collection.
        None: unknown (the feedback is stored without path and page, never with another chunk's)."""
        config = self.current()
        if search_id is None:
            return self.served if set(config.collections(self.served).values()) == {self.served} else None
        with self._lock:
            recent = self._recent.get(search_id)
        if recent is not None:
            return clicked_source(recent[0], recent[1], rank=rank, chunk_id=chunk_id)
        row = logged(search_id)
        if row is None:
            return None
        arm, teams, ids = row
        names = config.collections(self.served)
        labels = teams if teams is not None else (arm,) * len(ids)
        sources = tuple(names.get(label, "") for label in labels)
        found = clicked_source(sources, ids, rank=rank, chunk_id=chunk_id)
        return found or None

    def describe(self) -> dict[str, object]:
        config = self.current()
        return {
            "file": str(self.path),
            "kind": config.kind,
            "live": config.live,
            "seed": config.seed,
            "active": config.active(),
            "arms": {
                name: arm.model_dump() | {"collection": arm.collection or self.served}
                for name, arm in config.arms.items()
            },
            "loaded_at": self.loaded_at,
            "reload_error": self.reload_error,
        }

    async def _run(self, config: ArmsFile, name: str, body: SearchRequest) -> tuple[SearchResponse, float]:
        arm = config.arms[name]
        collection = arm.collection or self.served
        if arm.pipeline is not None:
            body = body.model_copy(update={"pipeline": arm.pipeline})
        elif arm.search_mode is not None:
            body = body.model_copy(update={"mode": arm.search_mode, "pipeline": None})
        result, compute_ms = await self._searcher_of(collection).submit(self._query_of(body, collection))
        if isinstance(result, EmbedlabError):
            raise result
        return result, compute_ms

    async def answer(self, body: SearchRequest) -> Answer:
        config = self.current()
        names = config.assign(body.session)
        collection = {name: config.arms[name].collection or self.served for name in names}
        if len(names) == 1:
            result, compute_ms = await self._run(config, names[0], body)
            return Answer(result, names[0], None, compute_ms, (collection[names[0]],) * len(result.hits))
        (a, cost_a), (b, cost_b) = await asyncio.gather(*(self._run(config, name, body) for name in names))
        keyed = [[(hit.path, hit.page, hit.char_start, hit.char_end) for hit in r.hits] for r in (a, b)]
        picks = team_draft(keyed[0], keyed[1], k=body.k, rng=impression_rng(config.seed, body.session, body.query))
        hits = tuple(replace((a, b)[p.team].hits[p.index], rank=n) for n, p in enumerate(picks, start=1))
        total = max(a.latency_ms.get("total", 0.0), b.latency_ms.get("total", 0.0))
        merged = replace(a, hits=hits, latency_ms={**a.latency_ms, "total": total})
        teams = tuple(names[p.team] for p in picks)
        sources = tuple(collection[team] for team in teams)
        return Answer(merged, "|".join(names), teams, cost_a + cost_b, sources)


def add_arms_route(app: Any, router: ArmRouter) -> None:
    """``GET /v1/arms``: the arms in force and the last re-read's error (behind the API key, as ``/v1/*``)."""
    from fastapi.responses import JSONResponse

    @app.get("/v1/arms")
    def arms() -> JSONResponse:
        return JSONResponse(router.describe())


def make_router(
    config: ServeConfig,
    live: LiveCollection,
    searcher: MicroBatcher[Any, Any],
    lives: dict[str, LiveCollection],
    *,
    metrics: Metrics,
    reranker: Reranker | None,
) -> ArmRouter:
    """The router of ``config.arms``: each arm's collection opened once (recorded in ``lives``, closed by
    the app), with its own batched searcher; the served collection's searcher is shared."""
    from embedlab.serve.batching import MicroBatcher
    from embedlab.serve.collection_routes import query_of, run_search_batch
    from embedlab.serve.live import LiveCollection

    if config.arms is None or config.collection is None:
        raise EmbedlabError("no arms file to serve", expected="embedlab serve COLLECTION --arms FILE")
    served = config.collection
    lives[served] = live
    searchers: dict[str, MicroBatcher[Any, Any]] = {served: searcher}
    extra: dict[str, MicroBatcher[Any, Any]] = {}

    def searcher_of(name: str) -> MicroBatcher[Any, Any]:
        if name not in searchers:
            lives[name] = LiveCollection(name, root=config.root)
            searchers[name] = extra[f"search-{name}"] = MicroBatcher(
                partial(run_search_batch, lives[name]),
                name=f"search-{name}",
                on_batch=metrics.batch_size.labels(batcher="search").observe,
                max_batch=config.max_batch,
                max_wait_ms=config.max_wait_ms,
                max_queue=config.max_queue,
            )
        return searchers[name]

    router = ArmRouter(
        config.arms,
        served=served,
        searcher_of=searcher_of,
        query_of=lambda body, name: query_of(body, lives[name].current, reranker, config),
    )
    router.extra_batchers = extra
    router.live_of = lives.__getitem__  # every arm's collection is opened when the arms are (re)loaded
    return router
