"""The routes of a served collection: search (batched), feedback, source documents, the web page.

Request bodies are validated here (pydantic, ``extra="forbid"``); every number that ends up in
SQLite must fit its signed 64-bit integers and text must be encodable as UTF-8.  The app
(:mod:`embedlab.serve.app`) wires these routes only when a collection is served.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from embedlab.collection.search import MAX_K, MAX_QUERY_CHARS, Query, pipeline_options, search_batch
from embedlab.errors import EmbedlabError
from embedlab.search.pipeline import parse_pipeline
from embedlab.serve.feedback import INT64_MAX
from embedlab.serve.live import LiveCollection
from embedlab.serve.searchlog import SearchRow

if TYPE_CHECKING:
    from embedlab.collection.collection import Collection
    from embedlab.collection.search import SearchResponse
    from embedlab.search.rerank import Reranker
    from embedlab.serve.app import ServeConfig

_MEDIA_TYPES = {".pdf": "application/pdf"}
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _utf8(text: str) -> str:
    """JSON may carry lone surrogates (``"\\ud800"``); they cannot be stored, encoded or sent back."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode (a lone surrogate)") from None
    return text


Text = Annotated[str, AfterValidator(_utf8)]
ChunkId = Annotated[int, Field(ge=0, le=INT64_MAX)]
Weight = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]  # bounded: fused scores stay finite


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchRequest(_Body):
    query: Text = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    k: int = Field(10, ge=1)
    mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    filter: Text | None = Field(None, min_length=1, max_length=512, description="glob on file paths")
    rrf_k: float = Field(60.0, gt=0, le=10_000, allow_inf_nan=False)
    weights: tuple[Weight, Weight] = (1.0, 1.0)
    rerank: bool = True
    # the whole pipeline instead of mode/rrf_k/weights/rerank, e.g. "bm25 + dense | rrf:k=30 >> word-overlap@50";
    # a re-rank stage must name this server's own re-ranker (a request never loads a model)
    pipeline: Text | None = Field(None, min_length=1, max_length=1024)
    session: Text | None = Field(None, max_length=128)  # stored with the search (re-formulations, A/B)


class FeedbackRequest(_Body):
    query: Text = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    chunk_id: ChunkId
    kind: Literal["click", "up", "down"]
    rank: int | None = Field(None, ge=1, le=MAX_K)
    result_ids: list[ChunkId] = Field(default_factory=list, max_length=MAX_K)
    mode: Literal["dense", "bm25", "hybrid"] | None = None
    generation: int | None = Field(None, ge=1, le=INT64_MAX)
    session: Text | None = Field(None, max_length=128)
    search_id: str | None = Field(None, pattern=r"^[0-9a-f]{32}$")  # from the /v1/search response


def add_collection_routes(app, config, live, searcher, stores, reranker, metrics, page, script, router=None) -> None:
    """Search, feedback, documents and the web page: the routes of a served collection.  With an A/B
    ``router`` (:mod:`embedlab.serve.arms`) searches go to its arms and name the arm that answered."""
    from fastapi.responses import FileResponse, JSONResponse, Response

    feedback, search_log = stores

    @app.post("/v1/search")
    async def search(body: SearchRequest) -> JSONResponse:
        if body.k > config.max_k:
            return JSONResponse(
                {"error": f"k: {body.k} is above this server's limit of {config.max_k}"}, status_code=422
            )
        started = time.perf_counter()
        teams: tuple[str, ...] | None = None
        if router is not None:
            answer = await router.answer(body)
            result, compute_ms, arm, teams = answer.response, answer.compute_ms, answer.arm, answer.teams
        else:
            result, compute_ms = await searcher.submit(query_of(body, live.current, reranker, config))
            if isinstance(result, EmbedlabError):
                raise result
            arm = result.collection
        metrics.observe_search(result.mode, result.latency_ms)
        search_id = uuid.uuid4().hex
        if router is not None:
            router.remember(search_id, answer)
        search_log.record(
            SearchRow(
                search_id=search_id,
                ts=time.time(),
                collection=config.collection,  # the served one, whichever arm answered
                generation=result.generation,
                arm=arm,
                session=body.session,
                query=body.query,
                mode=result.mode,
                k=body.k,
                result_ids=[hit.chunk_id for hit in result.hits],
                top_score=result.hits[0].score if result.hits else None,
                latency_ms=(time.perf_counter() - started) * 1000.0,
                compute_ms=compute_ms,
                teams=teams,
            )
        )
        answer_body: dict[str, Any] = {**result.to_dict(), "search_id": search_id, "arm": arm}
        if teams is not None:  # interleaving: the arm each shown result came from
            for hit, team in zip(answer_body["hits"], teams, strict=True):
                hit["arm"] = team
        return JSONResponse(answer_body)

    @app.post("/v1/feedback")
    def give_feedback(body: FeedbackRequest) -> JSONResponse:
        def locate(collection: Collection) -> tuple[int, str | None, int | None]:
            row = collection.store.chunks([body.chunk_id]).get(body.chunk_id)
            return collection.generation, (row.path if row else None), (row.page if row else None)

        source = config.collection
        if router is not None:  # the chunk id is the collection's of the arm that showed it
            source = router.source_of(
                body.search_id, rank=body.rank, chunk_id=body.chunk_id, logged=feedback.logged_search
            )
        if source is None:  # unknown: stored without path and page rather than with another chunk's
            generation, path, page_number = body.generation, None, None
        else:
            owner = router.live_of(source) if router is not None and router.live_of is not None else live
            generation, path, page_number = owner.run(locate)
        row_id = feedback.add(
            collection=config.collection,
            generation=body.generation or generation,
            query=body.query,
            mode=body.mode,
            kind=body.kind,
            chunk_id=body.chunk_id,
            path=path,
            page=page_number,
            rank=body.rank,
            result_ids=body.result_ids,
            session=body.session,
            search_id=body.search_id,
        )
        metrics.feedback.labels(kind=body.kind).inc()
        return JSONResponse({"id": row_id, "known_chunk": path is not None})

    @app.get("/v1/documents/{path:path}")
    def document(path: str) -> Response:
        file = live.run(lambda c: _library_file(c, path))
        if file is None:
            return JSONResponse({"error": f"no document {path!r} in this collection"}, status_code=404)
        media = _MEDIA_TYPES.get(file.suffix.lower(), "text/plain; charset=utf-8")
        return FileResponse(
            file,
            media_type=media,
            content_disposition_type="inline",
            headers={"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"},
        )

    @app.get("/dashboard")
    def dashboard(window: str = "1h", hours: float = 24.0) -> Response:
        """Online metrics of the last ``hours`` per ``window`` (the page `embedlab monitor report`
        writes); it shows what users searched for in aggregate, so the gate asks for the API key."""
        from embedlab.monitor.events import load_searches
        from embedlab.monitor.online import Options, parse_duration
        from embedlab.monitor.report import build_report, render_dashboard

        if not 0 < hours <= 24 * 90:
            return JSONResponse({"error": "hours: must be above 0 and at most 2160"}, status_code=422)
        try:
            window_s = parse_duration(window[:20], option="window")
        except EmbedlabError as err:
            return JSONResponse({"error": err.one_line()}, status_code=422)
        if hours * 3600 / window_s > 2000:
            return JSONResponse({"error": "window: too many windows (at most 2000)"}, status_code=422)
        searches = load_searches(feedback.path, collection=config.collection, since=time.time() - hours * 3600)
        report = build_report(searches, collection=config.collection, window_s=window_s, options=Options())
        return Response(render_dashboard(report), media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    @app.get("/")
    def index() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    @app.get("/static/app.js")
    def app_js() -> Response:
        return Response(script, media_type="text/javascript; charset=utf-8", headers=_PAGE_HEADERS)


def query_of(body: SearchRequest, collection: Collection, reranker: Reranker | None, config: ServeConfig) -> Query:
    """The request as a :class:`Query`; a pipeline maps onto the collection (its re-rank stage must be
    this server's own re-ranker: a request never loads a model)."""
    if body.pipeline is None:
        return Query(
            query=body.query,
            k=body.k,
            mode=body.mode,
            rrf_k=body.rrf_k,
            weights=body.weights,
            path_filter=body.filter,
            reranker=reranker if body.rerank else None,
        )
    chosen = pipeline_options(parse_pipeline(body.pipeline), dense_model=collection.dense_model)
    if chosen.reranker is not None and (reranker is None or chosen.reranker != config.reranker):
        raise EmbedlabError(
            f"re-ranker {chosen.reranker!r} is not this server's",
            expected=repr(config.reranker) if config.reranker else "no re-rank stage",
        )
    return Query(
        query=body.query,
        k=body.k,
        mode=chosen.mode,
        rrf_k=chosen.rrf_k,
        weights=chosen.weights,
        path_filter=body.filter,
        reranker=reranker if chosen.reranker else None,
        rerank_depth=chosen.rerank_depth,
        candidates=chosen.candidates,
        fusion=chosen.fusion,
        rerank_fuse=chosen.rerank_fuse,
    )


def run_search_batch(live: LiveCollection, queries: list[Query]) -> list[tuple[SearchResponse | EmbedlabError, float]]:
    """Each query's answer and its share of the batch's compute (ms): the cost of one query."""
    started = time.perf_counter()
    answers = live.run(lambda c: search_batch(c, queries))
    share = (time.perf_counter() - started) * 1000.0 / max(1, len(queries))
    return [(answer, share) for answer in answers]


def _library_file(collection: Collection, path: str) -> Path | None:
    """The library file ``path`` names, if this generation indexed it and it resolves inside the library
    (or the collection was built with ``--follow-links``: the same rule as indexing); a regular file only."""
    indexed = {str(row["path"]) for row in collection.store.files()}
    if path not in indexed:
        return None
    library = Path(collection.manifest.source_folder).resolve()
    file = (library / path).resolve()
    inside = file.is_relative_to(library) or collection.manifest.library.follow_links
    if not inside or not file.is_file():  # is_file: a regular file (never a FIFO or a device)
        return None
    return file
