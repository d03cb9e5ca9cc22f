"""The HTTP app: search, feedback, health, metrics, source documents and a web page.

Routes (JSON unless said otherwise):

- ``POST /v1/search`` ``{"query", "k", "mode", "filter", "rrf_k", "weights", "rerank"}`` ->
  the search response (hits with file, page, snippet, highlights, scores; latency breakdown).
- ``POST /v1/feedback`` ``{"query", "chunk_id", "kind": click|up|down, "rank", "result_ids",
  "mode", "generation", "session"}`` -> ``{"id": row}``; stored in ``feedback.sqlite``.
- ``GET /v1/documents/{path}``: a file of the library, only if the live generation indexed
  it (the path is looked up, never joined blindly, and must resolve inside the library
  folder), so ``..``, absolute paths and symlinks out of the folder are 404.  PDFs are
  sent inline (the page links to ``#page=N``); HTML and text are sent as plain text so a
  document cannot run script on this origin.
- ``GET /healthz`` (collection, generation, chunks), ``GET /metrics`` (Prometheus text),
  ``GET /`` (the web page) and ``/static/*``.

Limits: request bodies over ``max_body_bytes`` get 413 before they are read; ``k`` above
``max_k`` gets 422; a query over 4,096 characters gets 400.  With an API key configured,
``/v1/*`` needs it (``X-API-Key`` header, ``Authorization: Bearer``, or the
``embedlab_api_key`` cookie the web page sets); ``/healthz``, ``/metrics`` and the page
itself stay open.  Errors are ``{"error": "<one line>"}``.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from embedlab.collection.layout import CollectionDir
from embedlab.collection.search import MAX_K, MAX_QUERY_CHARS
from embedlab.errors import EmbedlabError
from embedlab.serve.feedback import FILE as FEEDBACK_FILE
from embedlab.serve.feedback import FeedbackStore
from embedlab.serve.limits import BodyLimit
from embedlab.serve.live import LiveCollection
from embedlab.serve.metrics import Metrics

if TYPE_CHECKING:
    from fastapi import FastAPI

    from embedlab.collection.collection import Collection
    from embedlab.search.rerank import Reranker

log = logging.getLogger(__name__)

_MEDIA_TYPES = {".pdf": "application/pdf"}
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class ServeConfig:
    collection: str
    root: str | Path | None = None
    model: str | None = None  # default: the collection's own model
    reranker: str | None = None  # a local cross-encoder folder, or "word-overlap"
    api_key: str | None = None
    max_k: int = 100
    max_body_bytes: int = 16_384
    feedback_path: Path | None = None  # default: <collection folder>/feedback.sqlite

    def __post_init__(self) -> None:
        if not 1 <= self.max_k <= MAX_K:
            raise EmbedlabError("invalid max k", found=str(self.max_k), expected=f"1 to {MAX_K}")
        if self.max_body_bytes < 1024:
            raise EmbedlabError("invalid request size limit", found=f"{self.max_body_bytes} bytes",
                                expected="at least 1024 bytes")
        if self.api_key is not None and len(self.api_key) < 16:
            raise EmbedlabError("the API key is too short", found=f"{len(self.api_key)} characters",
                                expected="at least 16 characters (e.g. `python -c 'import secrets; "
                                         "print(secrets.token_urlsafe())'`)")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchRequest(_Body):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    k: int = Field(10, ge=1)
    mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    filter: str | None = Field(None, min_length=1, max_length=512, description="glob on file paths")
    rrf_k: float = Field(60.0, gt=0, le=10_000)
    weights: tuple[float, float] = (1.0, 1.0)
    rerank: bool = True


class FeedbackRequest(_Body):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    chunk_id: int = Field(ge=0)
    kind: Literal["click", "up", "down"]
    rank: int | None = Field(None, ge=1, le=MAX_K)
    result_ids: list[int] = Field(default_factory=list, max_length=MAX_K)
    mode: Literal["dense", "bm25", "hybrid"] | None = None
    generation: int | None = Field(None, ge=1)
    session: str | None = Field(None, max_length=128)


def _static(name: str) -> bytes:
    return resources.files("embedlab.serve").joinpath("static", name).read_bytes()


def create_app(config: ServeConfig) -> FastAPI:
    """The app serving ``config.collection`` (opened now: a missing collection or model fails here)."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import FileResponse, JSONResponse, Response
    except ImportError:
        raise EmbedlabError("serving needs FastAPI and uvicorn", hint='pip install "embedlab[serve]"') from None
    from embedlab.search.rerank import load_reranker

    metrics = Metrics()

    def on_open(collection: Collection, *, reloaded: bool) -> None:
        metrics.chunks.set(len(collection))
        metrics.generation.set(collection.generation)
        if reloaded:
            metrics.reloads.inc()

    reranker: Reranker | None = load_reranker(config.reranker) if config.reranker else None
    live = LiveCollection(config.collection, root=config.root, model_spec=config.model, on_open=on_open)
    feedback = FeedbackStore(config.feedback_path or CollectionDir(config.collection, root=config.root).path
                             / FEEDBACK_FILE)
    page, script = _static("index.html"), _static("app.js")

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        live.close()
        feedback.close()

    app = FastAPI(title="embedlab", docs_url=None, redoc_url=None, openapi_url="/v1/openapi.json",
                  lifespan=lifespan)
    app.state.config = config
    app.state.live = live
    app.state.feedback = feedback
    app.state.metrics = metrics
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)

    @app.middleware("http")
    async def count(request: Request, call_next):  # noqa: ANN001, ANN202
        started = time.perf_counter()
        if config.api_key is not None and request.url.path.startswith("/v1/") and not _authorized(request, config):
            response = JSONResponse({"error": "missing or wrong API key"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        label = getattr(route, "path", None) or "unmatched"
        metrics.requests.labels(route=label, method=request.method, status=str(response.status_code)).inc()
        metrics.request_seconds.labels(route=label).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(EmbedlabError)
    async def user_error(_: Request, err: EmbedlabError) -> JSONResponse:
        return JSONResponse({"error": err.one_line()}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        parts = []
        for item in err.errors():
            where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "body"
            parts.append(f"{where}: {item.get('msg', 'invalid')}")
        return JSONResponse({"error": "; ".join(parts)}, status_code=422)

    @app.post("/v1/search")
    def search(body: SearchRequest) -> JSONResponse:
        if body.k > config.max_k:
            return JSONResponse({"error": f"k: {body.k} is above this server's limit of {config.max_k}"},
                                status_code=422)
        use = reranker if body.rerank else None
        response = live.run(lambda c: c.search(body.query, k=body.k, mode=body.mode, rrf_k=body.rrf_k,
                                               weights=body.weights, path_filter=body.filter, reranker=use))
        metrics.observe_search(response.mode, response.latency_ms)
        return JSONResponse(response.to_dict())

    @app.post("/v1/feedback")
    def give_feedback(body: FeedbackRequest) -> JSONResponse:
        def locate(collection: Collection) -> tuple[int, str | None, int | None]:
            row = collection.store.chunks([body.chunk_id]).get(body.chunk_id)
            return collection.generation, (row.path if row else None), (row.page if row else None)

        generation, path, page = live.run(locate)
        row_id = feedback.add(collection=config.collection, generation=body.generation or generation,
                              query=body.query, mode=body.mode, kind=body.kind, chunk_id=body.chunk_id, path=path,
                              page=page, rank=body.rank, result_ids=body.result_ids, session=body.session)
        metrics.feedback.labels(kind=body.kind).inc()
        return JSONResponse({"id": row_id, "known_chunk": path is not None})

    @app.get("/v1/documents/{path:path}")
    def document(path: str) -> Response:
        file = live.run(lambda c: _library_file(c, path))
        if file is None:
            return JSONResponse({"error": f"no document {path!r} in this collection"}, status_code=404)
        media = _MEDIA_TYPES.get(file.suffix.lower(), "text/plain; charset=utf-8")
        return FileResponse(file, media_type=media, content_disposition_type="inline",
                            headers={"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"})

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        collection, generation, chunks = live.run(lambda c: (c.name, c.generation, len(c)))
        return JSONResponse({"status": "ok", "collection": collection, "generation": generation, "chunks": chunks,
                             "auth": config.api_key is not None, "max_k": config.max_k,
                             "reranker": reranker.name if reranker else None})

    @app.get("/metrics")
    def prometheus() -> Response:
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    @app.get("/")
    def index() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    @app.get("/static/app.js")
    def app_js() -> Response:
        return Response(script, media_type="text/javascript; charset=utf-8", headers=_PAGE_HEADERS)

    return app


def _authorized(request, config: ServeConfig) -> bool:  # noqa: ANN001
    expected = (config.api_key or "").encode()
    given = request.headers.get("x-api-key")
    if given is None:
        auth = request.headers.get("authorization", "")
        given = auth[7:] if auth.lower().startswith("bearer ") else request.cookies.get("embedlab_api_key")
    return given is not None and hmac.compare_digest(given.encode(), expected)


def _library_file(collection: Collection, path: str) -> Path | None:
    """The library file ``path`` names, if this generation indexed it and it resolves inside the library."""
    indexed = {str(row["path"]) for row in collection.store.files()}
    if path not in indexed:
        return None
    library = Path(collection.manifest.source_folder).resolve()
    file = (library / path).resolve()
    if not file.is_relative_to(library) or not file.is_file():
        return None
    return file
