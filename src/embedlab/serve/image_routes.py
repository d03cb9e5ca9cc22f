"""Image routes of a served collection: search with an uploaded image, and thumbnails of image results.

- ``POST /v1/search/image``: the query image as the raw body (``Content-Type: image/png``,
  ``image/jpeg``, ``image/webp`` or ``application/octet-stream``; ``?k=10&filter=GLOB&session=S``)
  or as JSON ``{"image": "<base64>", "k", "filter", "session", "name"}``.  The answer is the
  search response of ``/v1/search`` (dense only: see :mod:`embedlab.collection.image_search`).
  Why both: a raw body is what a browser's file input sends with no multipart parser (and no
  extra dependency); base64 JSON is what API clients that only speak JSON can send.
- ``GET /v1/images/{id}?size=256``: the image of row ``id`` of an image collection as a PNG
  thumbnail (longest side ``size``, 16-1024).  The id is looked up in the live generation, and
  the file must be one the generation indexed and resolve inside the library folder (the rule
  of ``/v1/documents``), so no request names a path at all: nothing to traverse.

Limits and errors (``{"error": one line}``): an upload over ``max_image_bytes`` is 413 (the
body limit of this route is raised to fit a base64 upload of that size, and checked again on
the decoded bytes); bad base64, an empty body or a file that is not a decodable image (corrupt,
truncated, a decompression bomb: :mod:`embedlab.data.images`) is 400; an unknown content type
is 415; fields out of range are 422.  The API key guards both routes like every ``/v1`` route
(the page's thumbnails send it as the ``embedlab_api_key`` cookie).  With A/B arms, image
searches are answered by the served collection itself (arms route text queries).  Imported by
``create_app`` once FastAPI is known to be installed (the ``serve`` extra).
"""

from __future__ import annotations

import base64
import binascii
import io
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request  # FastAPI reads the handler's annotation: a real import (serve extra)

from embedlab.collection.image_search import search_image
from embedlab.collection.images import image_limits
from embedlab.collection.search import MAX_K
from embedlab.data.images import ImageLimits, read_image
from embedlab.errors import EmbedlabError
from embedlab.serve.searchlog import SearchRow

if TYPE_CHECKING:
    from embedlab.collection.collection import Collection
    from embedlab.serve.app import ServeConfig
    from embedlab.serve.live import LiveCollection
    from embedlab.serve.metrics import Metrics
    from embedlab.serve.searchlog import SearchLog

IMAGE_SEARCH = "/v1/search/image"
RAW_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "application/octet-stream"})
THUMBNAIL = 256  # default longest side, pixels


def upload_limit(max_image_bytes: int) -> int:
    """The body limit of the upload route: a base64 upload of ``max_image_bytes`` (4 characters per
    3 bytes) plus room for the JSON fields around it."""
    return -(-max_image_bytes // 3) * 4 + 64 * 1024


class ImageSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(min_length=1, description="the image file's bytes, base64")
    k: int = Field(10, ge=1, le=MAX_K)
    filter: str | None = Field(None, min_length=1, max_length=512, description="glob on file paths")
    session: str | None = Field(None, max_length=128)
    name: str = Field("upload", min_length=1, max_length=200, description="names the image in errors")


def image_health(collection: Collection) -> dict[str, object]:
    """``/healthz`` fields the page needs: an image collection (thumbnails) and what queries it takes."""
    modalities = sorted(collection.encoder.modalities)  # a served collection's model is loaded at open
    return {"images": collection.manifest.images is not None, "query_modalities": modalities}


def _parse(content_type: str, raw: bytes, params: Any, max_bytes: int) -> ImageSearchRequest | tuple[int, str]:
    """The request, or ``(status, message)``."""
    if content_type == "application/json":
        try:
            body = ImageSearchRequest.model_validate_json(raw)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return 422, f"{where}: {first['msg']}"
        return body
    if content_type not in RAW_TYPES:
        return 415, (
            f"unsupported content type {content_type[:80]!r}: send the image as the body "
            '(image/png, image/jpeg, image/webp) or JSON {"image": base64}'
        )
    if len(raw) > max_bytes:
        return 413, f"image is larger than this server's limit of {max_bytes} bytes"
    try:
        return ImageSearchRequest(
            image="-",  # the bytes travel apart (below): never base64-encoded here
            k=params.get("k", 10),
            filter=params.get("filter"),
            session=params.get("session"),
            name=params.get("name", "upload"),
        )
    except ValidationError as err:
        first = err.errors()[0]
        return 422, f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


def _decode_base64(text: str, max_bytes: int) -> bytes | tuple[int, str]:
    if len(text) > upload_limit(max_bytes):
        return 413, f"image is larger than this server's limit of {max_bytes} bytes"
    if text.startswith("data:") and "," in text[:200]:  # a data: URL, as a browser's FileReader gives
        text = text.split(",", 1)[1]
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return 400, "image: not valid base64"
    if len(data) > max_bytes:
        return 413, f"image is larger than this server's limit of {max_bytes} bytes"
    return data


def image_file(collection: Collection, chunk_id: int) -> tuple[Path, ImageLimits] | None:
    """Row ``chunk_id``'s image file (only one this generation indexed, inside the library) and the
    collection's decoding limits; None when there is no such image."""
    from embedlab.serve.collection_routes import _library_file

    limits = image_limits(collection.manifest)
    row = collection.store.chunks([chunk_id]).get(chunk_id) if limits is not None else None
    file = _library_file(collection, row.path) if row is not None else None
    return (file, limits) if file is not None and limits is not None else None


def thumbnail_png(file: Path, limits: ImageLimits, size: int) -> bytes:
    """The image as a PNG of at most ``size`` x ``size`` (decoded with the collection's limits)."""
    image = read_image(file, limits=limits)
    image.thumbnail((size, size))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def add_image_routes(app, config: ServeConfig, live: LiveCollection, metrics: Metrics, search_log: SearchLog) -> None:
    """Register the upload search and the thumbnail routes (module docstring)."""
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    @app.post(IMAGE_SEARCH)
    async def search_by_image(request: Request) -> JSONResponse:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        raw = await request.body()
        parsed = _parse(content_type, raw, request.query_params, config.max_image_bytes)
        if isinstance(parsed, tuple):
            return JSONResponse({"error": parsed[1]}, status_code=parsed[0])
        if content_type == "application/json":
            data = _decode_base64(parsed.image, config.max_image_bytes)
            if isinstance(data, tuple):
                return JSONResponse({"error": data[1]}, status_code=data[0])
        else:
            data = raw
        if not data:
            return JSONResponse({"error": "empty image: send the image file's bytes"}, status_code=400)
        if parsed.k > config.max_k:
            return JSONResponse(
                {"error": f"k: {parsed.k} is above this server's limit of {config.max_k}"}, status_code=422
            )
        started = time.perf_counter()
        result = await run_in_threadpool(
            live.run, lambda c: search_image(c, data, name=parsed.name, k=parsed.k, path_filter=parsed.filter)
        )  # an EmbedlabError (not an image, a bomb, no image tower) becomes 400 in the app's handler
        compute_ms = (time.perf_counter() - started) * 1000.0
        metrics.observe_search(result.mode, result.latency_ms)
        search_id = uuid.uuid4().hex
        search_log.record(
            SearchRow(
                search_id=search_id,
                ts=time.time(),
                collection=config.collection or result.collection,
                generation=result.generation,
                arm=result.collection,
                session=parsed.session,
                query=result.query,
                mode=result.mode,
                k=parsed.k,
                result_ids=[hit.chunk_id for hit in result.hits],
                top_score=result.hits[0].score if result.hits else None,
                latency_ms=compute_ms,
                compute_ms=compute_ms,
            )
        )
        return JSONResponse({**result.to_dict(), "search_id": search_id, "arm": result.collection})

    @app.get("/v1/images/{chunk_id}")
    async def image(chunk_id: int, size: int = THUMBNAIL) -> Response:
        if not 16 <= size <= 1024:
            return JSONResponse({"error": "size: must be from 16 to 1024"}, status_code=422)
        if not 0 <= chunk_id < 2**63:
            return JSONResponse({"error": f"no image {chunk_id} in this collection"}, status_code=404)
        found = await run_in_threadpool(live.run, lambda c: image_file(c, chunk_id))
        if found is None:
            return JSONResponse({"error": f"no image {chunk_id} in this collection"}, status_code=404)
        try:  # decoded outside the collection's lock: searches do not wait for a thumbnail
            png = await run_in_threadpool(thumbnail_png, found[0], found[1], size)
        except EmbedlabError:  # changed on disk since it was indexed; the message would name a server path
            return JSONResponse({"error": f"image {chunk_id} can no longer be read"}, status_code=404)
        headers = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}
        return Response(png, media_type="image/png", headers=headers)
