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
- With ``--arms FILE`` (:mod:`embedlab.serve.arms`): searches go to A/B arms (a traffic split by
  session, or team-draft interleaving of two arms), the response and the logged search name the arm
  (``arm``; interleaved hits carry their own ``arm``), and ``GET /v1/arms`` shows the arms in force.
- ``POST /v1/search/image``: a query image (raw ``image/*`` body, or JSON ``{"image": base64}``),
  ``GET /v1/images/{id}``: an image collection's image as a thumbnail (:mod:`embedlab.serve.image_routes`).
- ``GET /healthz`` (collection, generation, chunks), ``GET /metrics`` (Prometheus text),
  ``GET /`` (the web page) and ``/static/*``.

Limits: request bodies over ``max_body_bytes`` get 413 before they are read; ``k`` above
``max_k`` gets 422; a query over 4,096 characters gets 422.  With an API key configured,
``/v1/*`` needs it (``X-API-Key`` header, ``Authorization: Bearer``, or the
``embedlab_api_key`` cookie the web page sets), and so does ``GET /dashboard`` (online metrics as
inline-SVG plots, ``?window=1h&hours=24``); ``/healthz``, ``/metrics`` and the page itself stay open.

Every error, whatever produced it, is ``{"error": "<one line>"}`` JSON with the status: 400 for a
body that cannot be read (not UTF-8, JSON nested too deep), 401, 404 (unknown path), 405 (wrong
method), 413, 422 (malformed JSON, a field of the wrong type or range: the message names the
field) and 500 ``{"error": "internal error"}`` for a bug (the traceback goes to the log, never to
the client).  Numbers that end up in SQLite (chunk ids, result ids, generation) must fit its
signed 64-bit integers; text fields must be encodable as UTF-8 (no lone surrogates).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embedlab.cache.store import EmbeddingCache
from embedlab.collection.layout import CollectionDir
from embedlab.collection.search import MAX_K
from embedlab.errors import EmbedlabError
from embedlab.serve.batching import MicroBatcher, QueueFull
from embedlab.serve.collection_routes import add_collection_routes, run_search_batch
from embedlab.serve.embeddings import (
    EmbeddingJob,
    OpenAIError,
    ServedModel,
    model_ids,
    models_body,
    openai_error_body,
    parse_request,
    response_body,
    to_json,
)
from embedlab.serve.feedback import FILE as FEEDBACK_FILE
from embedlab.serve.feedback import FeedbackStore
from embedlab.serve.gate import Gate
from embedlab.serve.limits import BodyLimit
from embedlab.serve.live import LiveCollection
from embedlab.serve.metrics import Metrics
from embedlab.serve.searchlog import SearchLog

if TYPE_CHECKING:
    from fastapi import FastAPI

    from embedlab.collection.collection import Collection
    from embedlab.search.rerank import Reranker

log = logging.getLogger(__name__)
OPENAI_PATHS = frozenset({"/v1/embeddings", "/v1/models"})  # errors there are OpenAI-shaped


@dataclass(frozen=True)
class ServeConfig:
    collection: str | None = None  # None: an embeddings server only
    root: str | Path | None = None
    models: tuple[str, ...] = ()  # model specs served on /v1/embeddings (the collection's own model always is)
    reranker: str | None = None  # a local cross-encoder folder, or "word-overlap"
    api_key: str | None = None
    max_k: int = 100
    max_body_bytes: int = 1_048_576
    feedback_path: Path | None = None  # default: <collection folder>/feedback.sqlite
    max_batch: int = 64  # texts (embeddings) or queries (search) encoded together
    max_wait_ms: float = 0.0  # how long a request that finds the encoder idle waits for company
    max_queue: int = 4096  # texts or queries waiting; beyond it: 503 + Retry-After
    max_inputs: int = 2048  # texts in one /v1/embeddings request
    cache_dir: Path | None = None  # the embedding cache for /v1/embeddings (None: no cache)
    arms: Path | None = None  # A/B arms file (embedlab.serve.arms); None: the collection alone
    max_image_bytes: int = 8 * 1024 * 1024  # an uploaded query image (POST /v1/search/image)

    def __post_init__(self) -> None:
        if self.collection is None and not self.models:
            raise EmbedlabError("nothing to serve", expected="a collection and/or --model NAME")
        if self.arms is not None and self.collection is None:
            raise EmbedlabError("--arms needs a collection to serve", expected="embedlab serve COLLECTION --arms FILE")
        if not 1 <= self.max_k <= MAX_K:
            raise EmbedlabError("invalid max k", found=str(self.max_k), expected=f"1 to {MAX_K}")
        if self.max_body_bytes < 1024:
            raise EmbedlabError(
                "invalid request size limit", found=f"{self.max_body_bytes} bytes", expected="at least 1024 bytes"
            )
        if not 1 <= self.max_batch <= 4096 or not 0 <= self.max_wait_ms <= 1000 or self.max_queue < self.max_batch:
            raise EmbedlabError(
                "invalid batching options",
                found=f"max batch {self.max_batch}, max wait {self.max_wait_ms} ms, queue {self.max_queue}",
                expected="max batch 1-4096, max wait 0-1000 ms, queue >= max batch",
            )
        if not 1024 <= self.max_image_bytes <= 256 * 1024 * 1024:
            raise EmbedlabError(
                "invalid image upload limit", found=f"{self.max_image_bytes} bytes", expected="1 KiB to 256 MiB"
            )
        if not 1 <= self.max_inputs <= 100_000:
            raise EmbedlabError("invalid max inputs", found=str(self.max_inputs), expected="1 to 100000")
        if self.api_key is not None and len(self.api_key) < 16:
            raise EmbedlabError(
                "the API key is too short",
                found=f"{len(self.api_key)} characters",
                expected="at least 16 characters (e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`)",
            )


CONFIG_ENV = "EMBEDLAB_SERVE_CONFIG"  # how `serve --workers N` hands the configuration to each worker


def config_to_env(config: ServeConfig) -> str:
    values = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()}
    return json.dumps(values)


def app_from_environment() -> FastAPI:
    """The app of one worker process under ``embedlab serve --workers N`` (uvicorn's factory)."""
    values = json.loads(os.environ[CONFIG_ENV])
    for key in ("feedback_path", "cache_dir", "arms"):
        if values.get(key) is not None:
            values[key] = Path(values[key])
    values["models"] = tuple(values.get("models") or ())
    return create_app(ServeConfig(**values))


def preflight(config: ServeConfig) -> None:
    """Fail before any worker starts: the collection exists, the models are known, files can be read."""
    from embedlab.encoders.registry import check_model_exists
    from embedlab.encoders.spec import parse_model_spec

    if config.collection is not None:
        CollectionDir(config.collection, root=config.root).live()
    for text in config.models:
        check_model_exists(parse_model_spec(text))
    if config.reranker:
        from embedlab.search.rerank import load_reranker

        load_reranker(config.reranker)
    if config.arms is not None:
        from embedlab.serve.arms import load_arms

        for arm in load_arms(config.arms).arms.values():
            CollectionDir(arm.collection or config.collection or "", root=config.root).live()


def _static(name: str) -> bytes:
    return resources.files("embedlab.serve").joinpath("static", name).read_bytes()


def create_app(config: ServeConfig) -> FastAPI:
    """The app serving ``config.collection`` and ``config.models`` (opened now: a missing collection or
    model fails here, before the server listens)."""
    try:
        from fastapi import Body, FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse, Response
        from starlette.exceptions import HTTPException
    except ImportError:
        raise EmbedlabError("serving needs FastAPI and uvicorn", hint='pip install "embedlab[serve]"') from None
    from embedlab.search.rerank import load_reranker
    from embedlab.serve.image_routes import IMAGE_SEARCH, add_image_routes, image_health, upload_limit

    metrics = Metrics()
    started_at = int(time.time())

    def on_open(collection: Collection, *, reloaded: bool) -> None:
        metrics.chunks.set(len(collection))
        metrics.generation.set(collection.generation)
        if reloaded:
            metrics.reloads.inc()

    reranker: Reranker | None = load_reranker(config.reranker) if config.reranker else None
    live: LiveCollection | None = None
    feedback: FeedbackStore | None = None
    search_log: SearchLog | None = None
    if config.collection is not None:
        live = LiveCollection(
            config.collection, root=config.root, on_open=on_open, on_failed_open=metrics.reload_failures.inc
        )
        feedback = FeedbackStore(
            config.feedback_path or CollectionDir(config.collection, root=config.root).path / FEEDBACK_FILE
        )
        search_log = SearchLog(feedback.path, on_drop=metrics.search_log_dropped.inc)
    models = _served_models(config, live)
    cache = EmbeddingCache(config.cache_dir) if config.cache_dir is not None and models else None
    embedders = {
        name: MicroBatcher(
            partial(_embed_batch, served, cache),
            name=f"embed-{name}",
            on_batch=metrics.batch_size.labels(batcher="embeddings").observe,
            max_batch=config.max_batch,
            max_wait_ms=config.max_wait_ms,
            max_queue=config.max_queue,
        )
        for name, served in models.items()
    }
    searcher = (
        MicroBatcher(
            partial(run_search_batch, live),
            name="search",
            on_batch=metrics.batch_size.labels(batcher="search").observe,
            max_batch=config.max_batch,
            max_wait_ms=config.max_wait_ms,
            max_queue=config.max_queue,
        )
        if live is not None
        else None
    )
    page, script = _static("index.html"), _static("app.js")
    arm_lives: dict[str, LiveCollection] = {}
    router = None
    if config.arms is not None and live is not None and searcher is not None:
        from embedlab.serve.arms import make_router

        router = make_router(config, live, searcher, arm_lives, metrics=metrics, reranker=reranker)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for batcher in {**batchers, **(router.extra_batchers if router is not None else {})}.values():
            batcher.close()
        if live is not None:
            live.close()
        for other in arm_lives.values():
            if other is not live:
                other.close()
        if search_log is not None:
            search_log.close()
        if feedback is not None:
            feedback.close()
        if cache is not None:
            cache.close()

    app = FastAPI(title="embedlab", docs_url=None, redoc_url=None, openapi_url="/v1/openapi.json", lifespan=lifespan)
    app.state.config = config
    app.state.live = live
    app.state.feedback = feedback
    app.state.search_log = search_log
    app.state.metrics = metrics
    batchers: dict[str, MicroBatcher[Any, Any]] = {**embedders, **({"search": searcher} if searcher else {})}
    if router is not None:
        batchers.update(router.extra_batchers)
    app.state.batchers = batchers
    app.add_middleware(
        BodyLimit,
        max_bytes=config.max_body_bytes,
        openai_paths=OPENAI_PATHS,
        per_path={IMAGE_SEARCH: max(config.max_body_bytes, upload_limit(config.max_image_bytes))},
    )

    templates: set[str] = set()  # the route templates, filled once every route is registered (below)

    def error_body(path: str, message: str, code: str | None) -> dict[str, Any]:
        if path in OPENAI_PATHS:
            return openai_error_body(
                message, kind="server_error" if code is None else "invalid_request_error", code=code
            )
        return {"error": message}

    app.add_middleware(
        Gate,
        authorized=(lambda scope: _authorized(Request(scope), config)) if config.api_key is not None else None,
        error_body=error_body,
        metrics=metrics,
        templates=lambda: templates,
    )

    @app.exception_handler(EmbedlabError)
    async def user_error(request: Request, err: EmbedlabError) -> JSONResponse:
        if request.scope["path"] in OPENAI_PATHS:
            return JSONResponse(openai_error_body(err.one_line()), status_code=400)
        return JSONResponse({"error": err.one_line()}, status_code=400)

    @app.exception_handler(OpenAIError)
    async def openai_error(_: Request, err: OpenAIError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(QueueFull)
    async def busy(request: Request, err: QueueFull) -> JSONResponse:
        message = "the server is busy (the batching queue is full); retry shortly"
        body = openai_error_body(message, kind="server_error", code="server_busy")
        headers = {"Retry-After": str(err.retry_after)}
        if request.scope["path"] not in OPENAI_PATHS:
            body = {"error": message}
        return JSONResponse(body, status_code=503, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        message = _http_error_message(request, err)
        body = openai_error_body(message) if request.scope["path"] in OPENAI_PATHS else {"error": message}
        return JSONResponse(body, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        # reached only when the error escapes the middleware above; Starlette logs the traceback
        return _internal_error(request.scope["path"])

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        parts = []
        for item in err.errors()[:10]:
            if item.get("type") == "json_invalid":
                reason = (item.get("ctx") or {}).get("error", "invalid")
                parts.append(f"body: JSON decode error: {reason} at character {item['loc'][-1]}")
                continue
            where = ".".join(_loc_part(p) for p in item.get("loc", ()) if p != "body") or "body"
            parts.append(f"{where}: {item.get('msg', 'invalid')}")
        if request.scope["path"] in OPENAI_PATHS:
            return JSONResponse(openai_error_body("; ".join(parts)), status_code=400)
        return JSONResponse({"error": "; ".join(parts)}, status_code=422)

    if live is not None and searcher is not None and feedback is not None and search_log is not None:
        add_collection_routes(
            app, config, live, searcher, (feedback, search_log), reranker, metrics, page, script, router=router
        )
        if router is not None:
            from embedlab.serve.arms import add_arms_route

            add_arms_route(app, router)
        add_image_routes(app, config, live, metrics, search_log)

    if models:

        @app.post("/v1/embeddings")
        async def embeddings(raw: Any = Body()) -> Response:  # validated by parse_request: OpenAI's errors
            body, served, job = parse_request(raw, models, max_inputs=config.max_inputs)
            t = time.perf_counter()
            vectors = await embedders[served.id].submit(job, size=len(job.texts))
            metrics.observe_embeddings(len(job.texts), (time.perf_counter() - t) * 1000.0)
            return Response(to_json(response_body(body, served, job, vectors)), media_type="application/json")

        @app.get("/v1/models")
        def list_models() -> JSONResponse:
            return JSONResponse(models_body(models, created=started_at))

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        info: dict[str, object] = {"status": "ok", "auth": config.api_key is not None, "models": model_ids(models)}
        if live is not None:  # no lock: health answers while a batch is running
            current = live.current
            info.update(
                collection=current.name,
                generation=current.generation,
                chunks=len(current),
                max_k=config.max_k,
                reranker=reranker.name if reranker else None,
                **image_health(current),
            )
        return JSONResponse(info)

    @app.get("/metrics")
    def prometheus() -> Response:
        if feedback is not None:
            from embedlab.monitor.check import STATE_FILE

            metrics.load_monitor_state(feedback.path.parent / STATE_FILE)
        for name, batcher in batchers.items():
            metrics.queue.labels(batcher=_batcher_label(name)).set(batcher.waiting)
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    templates.update(getattr(route, "path", "") for route in app.routes)
    return app


def _served_models(config: ServeConfig, live: LiveCollection | None) -> dict[str, ServedModel]:
    """``--model`` specs, loaded now, plus the collection's own model (its encoder follows updates)."""
    from embedlab.encoders.registry import load_encoder
    from embedlab.encoders.spec import parse_model_spec

    models: dict[str, ServedModel] = {}
    if live is not None:  # the same fingerprint in every generation (checked when one opens)
        name = live.current.manifest.model
        models[name] = ServedModel(id=name, encoder=live.current.encoder)
    for text in config.models:
        spec = parse_model_spec(text)
        if spec.name in models:
            if live is not None and spec.name == live.current.manifest.model:
                continue  # the collection's own model: served already, with the collection's encoder
            raise EmbedlabError(f"model {spec.name!r} is served twice", hint="give one of them a label=")
        models[spec.name] = ServedModel(id=spec.name, encoder=load_encoder(spec))
    return models


def _embed_batch(served: ServedModel, cache: EmbeddingCache | None, jobs: list[EmbeddingJob]) -> list[np.ndarray]:
    """Every text of every job in one encoder call per role; each job gets its rows back."""
    out: list[np.ndarray] = [np.zeros((0, served.encoder.dim), np.float32)] * len(jobs)
    for role in ("document", "query"):
        mine = [n for n, job in enumerate(jobs) if job.role == role]
        if not mine:
            continue
        vectors = served.encoder.encode([text for n in mine for text in jobs[n].texts], role=role, cache=cache)
        start = 0
        for n in mine:
            out[n] = vectors[start : start + len(jobs[n].texts)]
            start += len(jobs[n].texts)
    return out


def _batcher_label(name: str) -> str:
    return "search" if name == "search" or name.startswith("search-") else "embeddings"


def _loc_part(part: object, *, limit: int = 60) -> str:
    """A field name or index for an error message; names come from the client, so unprintable
    ones (newlines, lone surrogates) are escaped and long ones cut."""
    text = str(part)
    if not text.isprintable():
        text = ascii(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _internal_error(path: str = ""):
    from fastapi.responses import JSONResponse

    if path in OPENAI_PATHS:
        return JSONResponse(openai_error_body("internal error", kind="server_error"), status_code=500)
    return JSONResponse({"error": "internal error"}, status_code=500)


def _http_error_message(request, err) -> str:
    """One line for an HTTP error raised by the framework (routing, body parsing)."""
    cause = err.__cause__
    if isinstance(cause, UnicodeDecodeError):
        return "request body is not valid UTF-8"
    if isinstance(cause, RecursionError):
        return "request body is nested too deeply"
    if err.status_code == 400 and cause is not None:  # e.g. an integer of more than 4,300 digits
        return "request body cannot be parsed as JSON"
    path = _loc_part(request.scope["path"], limit=200)
    if err.status_code == 404:
        return f"no such endpoint: {path}"
    if err.status_code == 405:
        allowed = (err.headers or {}).get("Allow", "")
        return f"method {request.method[:40]} is not allowed on {path}" + (f" (allowed: {allowed})" if allowed else "")
    return str(err.detail).splitlines()[0] if err.detail else "request failed"


def _authorized(request, config: ServeConfig) -> bool:
    expected = (config.api_key or "").encode()
    given = request.headers.get("x-api-key")
    if given is None:
        auth = request.headers.get("authorization", "")
        given = auth[7:] if auth.lower().startswith("bearer ") else request.cookies.get("embedlab_api_key")
    return given is not None and hmac.compare_digest(given.encode(), expected)
