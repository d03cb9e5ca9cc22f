"""`embedlab serve` of an image collection over loopback HTTP (a real uvicorn, urllib): search by an
uploaded image (raw body and base64 JSON), the upload limits and bad-image errors, thumbnails by id
(EXIF honoured, nothing reachable by path), text queries, and the API key on both routes."""

from __future__ import annotations

import base64
import http.client
import io
import json
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("PIL")
pytest.importorskip("transformers")

from embedlab.collection import build
from embedlab.data.images import ImageLimits
from embedlab.serve import ServeConfig, create_app
from tests.image_fixtures import ITEMS, write_tiny_clip
from tests.image_library import write_image_library
from tests.serve_fixtures import call, running

KEY = "k" * 24
MAX_IMAGE = 4096  # bytes: the fixture PNGs are a few hundred bytes


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(collections root, library) of collection ``cat``: the test library's images, bad files included."""
    base = tmp_path_factory.mktemp("image-serve")
    clip = write_tiny_clip(base / "tiny-clip")
    library = write_image_library(base / "catalogue")
    build(library, "cat", model_spec=str(clip), root=base / "col", use_cache=False, images=ImageLimits())
    return base / "col", library


def app(root: Path, **options):
    return create_app(ServeConfig(collection="cat", root=root, max_image_bytes=MAX_IMAGE, **options))


def png(status: int, headers: dict[str, str], body: bytes):
    from PIL import Image

    assert status == 200 and headers["content-type"] == "image/png", body[:200]
    return Image.open(io.BytesIO(body))


def test_upload_raw_and_base64_find_the_same_image(served: tuple[Path, Path]) -> None:
    root, library = served
    image = (library / "shapes" / "i3.png").read_bytes()
    with running(app(root)) as url:
        status, _, body = call(url + "/healthz")
        health = json.loads(body)
        assert health["images"] is True and health["query_modalities"] == ["image", "text"]
        status, _, body = call(url + "/v1/search/image?k=3", image, headers={"Content-Type": "image/png"})
        assert status == 200, body
        raw = json.loads(body)
        assert raw["mode"] == "dense" and raw["k"] == 3 and len(raw["hits"]) == 3
        assert raw["hits"][0]["path"] == "shapes/i3.png" and raw["search_id"]
        encoded = base64.b64encode(image).decode()
        for text in (encoded, "data:image/png;base64," + encoded):  # a FileReader data URL works too
            status, _, body = call(url + "/v1/search/image", {"image": text, "k": 3, "name": "mine.png"})
            assert status == 200, body
            answer = json.loads(body)
            assert [h["chunk_id"] for h in answer["hits"]] == [h["chunk_id"] for h in raw["hits"]]
            assert answer["query"] == "[image] mine.png"
        status, _, body = call(url + "/v1/search/image", {"image": encoded, "filter": "sideways*"})
        assert status == 200 and {h["path"] for h in json.loads(body)["hits"]} == {
            "sideways.png",
            "sideways-no-exif.png",
        }
        # a text query against the image collection, through the ordinary search route
        status, _, body = call(url + "/v1/search", {"query": "red circle", "mode": "dense", "k": len(ITEMS)})
        assert status == 200 and len(json.loads(body)["hits"]) == len(ITEMS)


def test_bad_uploads_get_clear_errors(served: tuple[Path, Path]) -> None:
    root, library = served
    good = (library / "shapes" / "i1.png").read_bytes()
    cases = [
        (b"this is not an image", {"Content-Type": "image/png"}, 400, "not an image"),
        ((library / "broken.png").read_bytes(), {"Content-Type": "image/png"}, 400, "corrupt or truncated"),
        ((library / "bomb.png").read_bytes(), {"Content-Type": "image/png"}, 400, "decompression bomb"),
        (b"", {"Content-Type": "image/png"}, 400, "empty image"),
        (good + b"\0" * MAX_IMAGE, {"Content-Type": "image/png"}, 413, f"limit of {MAX_IMAGE} bytes"),
        (json.dumps({"image": "***"}).encode(), {"Content-Type": "application/json"}, 400, "not valid base64"),
        (
            json.dumps({"image": base64.b64encode(good + b"\0" * MAX_IMAGE).decode()}).encode(),
            {"Content-Type": "application/json"},
            413,
            f"limit of {MAX_IMAGE} bytes",
        ),
        (json.dumps({"image": "", "k": 3}).encode(), {"Content-Type": "application/json"}, 422, "image"),
        (json.dumps({"image": "eA==", "bogus": 1}).encode(), {"Content-Type": "application/json"}, 422, "bogus"),
        (good, {"Content-Type": "text/plain"}, 415, "unsupported content type"),
    ]
    with running(app(root)) as url:
        for data, headers, expected, words in cases:
            status, _, body = call(url + "/v1/search/image", data, headers=headers)
            message = json.loads(body)["error"]
            assert status == expected and words in message and "\n" not in message, (words, status, message)
        # a declared body over the route's limit is refused before a byte of it is read
        parsed = urlparse(url)
        conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=10)
        conn.putrequest("POST", "/v1/search/image")
        conn.putheader("Content-Type", "image/png")
        conn.putheader("Content-Length", str(64 * 1024 * 1024))
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413 and "larger than this server's limit" in json.loads(response.read())["error"]
        conn.close()
        status, _, body = call(url + "/v1/search/image?k=500", good, headers={"Content-Type": "image/png"})
        assert status == 422 and "k" in json.loads(body)["error"]
        status, _, body = call(url + "/v1/search/image?k=two", good, headers={"Content-Type": "image/png"})
        assert status == 422 and json.loads(body)["error"].startswith("k:")


def test_thumbnails_by_id_honour_exif_and_reach_nothing_else(served: tuple[Path, Path]) -> None:
    root, library = served
    with running(app(root)) as url:
        status, _, body = call(url + "/v1/search/image?k=20", (library / "upright.png").read_bytes(),
                               headers={"Content-Type": "image/png"})  # fmt: skip
        ids = {hit["path"]: hit["chunk_id"] for hit in json.loads(body)["hits"]}
        upright = png(*call(url + f"/v1/images/{ids['upright.png']}"))
        sideways = png(*call(url + f"/v1/images/{ids['sideways.png']}"))
        no_exif = png(*call(url + f"/v1/images/{ids['sideways-no-exif.png']}"))
        assert upright.size == sideways.size == (40, 20) and no_exif.size == (20, 40)
        assert sideways.convert("RGB").tobytes() == upright.convert("RGB").tobytes()  # pixel for pixel
        small = png(*call(url + f"/v1/images/{ids['shapes/i1.png']}?size=16"))
        assert small.size == (16, 16)
        for path, expected in [
            ("/v1/images/999999", 404),
            ("/v1/images/-1", 404),
            ("/v1/images/..%2f..%2fetc%2fpasswd", 404),  # not an id: no route
            ("/v1/images/../../etc/passwd", 404),
            (f"/v1/images/{ids['upright.png']}?size=4", 422),
            (f"/v1/images/{ids['upright.png']}?size=99999", 422),
        ]:
            status, _, body = call(url + path)
            assert status == expected and "error" in json.loads(body), (path, status, body)


def test_the_api_key_guards_upload_and_thumbnails(served: tuple[Path, Path]) -> None:
    root, library = served
    image = (library / "shapes" / "i2.png").read_bytes()
    with running(app(root, api_key=KEY)) as url:
        status, _, _ = call(url + "/v1/search/image", image, headers={"Content-Type": "image/png"})
        assert status == 401
        status, _, body = call(url + "/v1/search/image", image, headers={"Content-Type": "image/png", "X-API-Key": KEY})
        assert status == 200
        first = json.loads(body)["hits"][0]["chunk_id"]
        assert call(url + f"/v1/images/{first}")[0] == 401
        assert call(url + f"/v1/images/{first}", headers={"Cookie": f"embedlab_api_key={KEY}"})[0] == 200
