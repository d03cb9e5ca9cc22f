"""Image collections through the real CLI: `index build --images` (good, corrupt, non-image, over-size,
bomb and EXIF-rotated files), `search --image` and text queries with a two-tower model, `index update`
picking up added and removed images, and the one-line errors (a tiny random CLIP: plumbing, not quality)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from embedlab.cli.main import main
from embedlab.collection import info
from tests.helpers import shared_dataset
from tests.image_fixtures import ITEMS, draw_item, write_tiny_clip
from tests.image_library import SKIPPED, write_image_library

pytest.importorskip("PIL")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.fixture
def library(tmp_path: Path) -> Path:
    return write_image_library(tmp_path / "catalogue")


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def build(capsys, root: Path, library: Path, model: Path, *extra: str) -> tuple[int, str, str]:
    return cli(capsys, "index", "build", "cat", "--images", str(library), "--model", str(model),
               "--root", str(root), "--no-progress", *extra)  # fmt: skip


def search_json(capsys, root: Path, *args: str) -> dict:
    code, out, err = cli(capsys, "search", "cat", *args, "--root", str(root), "--json", "-k", "20")
    assert code == 0, err
    return json.loads(out)


def test_build_indexes_the_images_and_skips_each_bad_file_with_one_line(
    capsys, tmp_path: Path, library: Path, clip_folder: Path
) -> None:
    code, out, err = build(capsys, tmp_path / "col", library, clip_folder)
    assert code == 0, err
    good = len(ITEMS) + 3  # the shapes, upright, sideways, sideways-no-exif
    assert f"{good} files, {good} chunks" in out
    assert f"skipped {len(SKIPPED)} files:" in out
    for name, words in SKIPPED.items():
        lines = [line for line in out.splitlines() if line.startswith(f"  {name}: ")]
        assert len(lines) == 1 and words in lines[0], (name, out)
    described = info("cat", root=tmp_path / "col")
    assert described["files_by_kind"] == {"image": good}
    assert described["images"] is not None and described["images"]["max_pixels"] == 64_000_000
    assert {item["path"] for item in described["skipped"]} == set(SKIPPED)
    code, out, _ = cli(capsys, "index", "info", "cat", "--root", str(tmp_path / "col"))
    assert code == 0 and "images:   one per document" in out and "chunking:" not in out


def test_exif_orientation_is_honoured_when_indexing(capsys, tmp_path: Path, library: Path, clip_folder: Path) -> None:
    assert build(capsys, tmp_path / "col", library, clip_folder)[0] == 0
    hits = search_json(capsys, tmp_path / "col", "--image", str(library / "upright.png"))["hits"]
    score = {hit["path"]: hit["score"] for hit in hits}
    # the same pixels give the same vector: equal up to float32 rounding of a 16-d cosine (~1e-7; 1e-5 leaves room)
    assert score["upright.png"] == pytest.approx(1.0, abs=1e-5)
    assert score["sideways.png"] == pytest.approx(score["upright.png"], abs=1e-5)
    # without the tag the model sees the picture turned: another vector, ten times the rounding room away
    # (a random tiny CLIP puts every picture near cosine 1, so the gap is small but far above rounding)
    assert score["sideways-no-exif.png"] < score["upright.png"] - 1e-4


def test_image_query_finds_the_identical_image_first(capsys, tmp_path: Path, library: Path, clip_folder: Path) -> None:
    assert build(capsys, tmp_path / "col", library, clip_folder)[0] == 0
    query = shutil.copyfile(library / "shapes" / "i3.png", tmp_path / "query.png")  # same bytes, another name
    response = search_json(capsys, tmp_path / "col", "--image", str(query))
    assert response["mode"] == "dense" and response["query"] == f"[image] {query}"
    assert response["hits"][0]["path"] == "shapes/i3.png"
    assert response["hits"][0]["score"] == pytest.approx(1.0, abs=1e-5)  # float32 cosine of a vector with itself
    filtered = search_json(capsys, tmp_path / "col", "--image", str(query), "--filter", "sideways*")
    assert {hit["path"] for hit in filtered["hits"]} == {"sideways.png", "sideways-no-exif.png"}
    code, out, _ = cli(capsys, "search", "cat", "--image", str(query), "--root", str(tmp_path / "col"), "-k", "2")
    assert code == 0 and out.splitlines()[0].startswith(" 1. shapes/i3.png  score 1")


def test_text_query_searches_the_images_densely(capsys, tmp_path: Path, library: Path, clip_folder: Path) -> None:
    assert build(capsys, tmp_path / "col", library, clip_folder)[0] == 0
    response = search_json(capsys, tmp_path / "col", "red circle")
    assert response["mode"] == "dense"  # an image collection's default: its only words are file names
    assert len(response["hits"]) == len(ITEMS) + 3
    scores = [hit["scores"]["dense"] for hit in response["hits"]]
    assert scores == sorted(scores, reverse=True)
    by_name = search_json(capsys, tmp_path / "col", "sideways", "--mode", "bm25")  # BM25 over file names
    assert {hit["path"] for hit in by_name["hits"]} == {"sideways.png", "sideways-no-exif.png"}


def test_pixel_and_size_limits_skip_huge_images(capsys, tmp_path: Path, library: Path, clip_folder: Path) -> None:
    code, out, err = build(capsys, tmp_path / "col", library, clip_folder, "--max-image-pixels", "1000")
    assert code == 0, err
    shapes = [line for line in out.splitlines() if line.startswith("  shapes/")]
    assert len(shapes) == len(ITEMS) and all("too many pixels (40x40)" in line for line in shapes)  # 1,600 > 1,000
    assert "3 files, 3 chunks" in out  # the 40x20 pictures are 800 pixels
    limit = round(0.0002 * 1024 * 1024)  # 210 bytes: some of the small PNGs are over it, some under
    code, out, err = build(capsys, tmp_path / "col2", library, clip_folder, "--max-image-mb", "0.0002")
    assert code == 0, err
    pngs = [p for p in library.rglob("*.png") if p.name not in SKIPPED]
    large = {p.relative_to(library).as_posix() for p in pngs if p.stat().st_size > limit}
    assert large and len(large) < len(pngs)
    too_large = {line.split(": ")[0].strip() for line in out.splitlines() if "image file too large" in line}
    assert too_large == large
    assert f"{len(pngs) - len(large)} files, " in out


def test_update_picks_up_added_and_removed_images(capsys, tmp_path: Path, library: Path, clip_folder: Path) -> None:
    root = tmp_path / "col"
    assert build(capsys, root, library, clip_folder, "--cache-dir", str(tmp_path / "cache"))[0] == 0
    code, out, _ = cli(capsys, "index", "update", "cat", "--root", str(root), "--no-progress")
    assert code == 0 and "up to date" in out
    (library / "shapes" / "i1.png").unlink()
    draw_item(library / "new" / "orange.png", (250, 140, 0), "ellipse")
    code, out, err = cli(capsys, "index", "update", "cat", "--root", str(root), "--no-progress",
                         "--cache-dir", str(tmp_path / "cache"))  # fmt: skip
    assert code == 0, err
    assert "1 new, 0 changed" in out and "1 removed files" in out and "1 encoded" in out
    paths = {hit["path"] for hit in search_json(capsys, root, "--image", str(library / "new" / "orange.png"))["hits"]}
    assert "new/orange.png" in paths and "shapes/i1.png" not in paths


def test_bad_input_is_one_line_and_leaves_nothing(capsys, tmp_path: Path, library: Path, clip_folder: Path) -> None:
    root = tmp_path / "col"
    code, _, err = build(capsys, root, library, Path("hashing"))  # a text-only model
    assert code == 2 and "cannot encode images" in err and len(err.strip().splitlines()) == 1
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    shutil.copyfile(library / "notes.png", only_bad / "notes.png")
    code, _, err = build(capsys, root, only_bad, clip_folder)
    assert code == 2 and "nothing to index" in err and "image files" in err and len(err.strip().splitlines()) == 1
    assert not (root / "cat").exists()  # a failed first build leaves no collection behind
    code, _, err = cli(capsys, "index", "build", "cat", str(library), "--images", str(library), "--model", "hashing")
    assert code == 2 and "one of the three" in err

    assert build(capsys, root, library, clip_folder)[0] == 0
    cases = [
        (["--image", str(library / "notes.png")], "not an image"),
        (["--image", str(library / "bomb.png")], "decompression bomb"),
        (["--image", str(tmp_path / "missing.png")], "cannot read image"),
        (["--image", str(library / "upright.png"), "--mode", "bm25"], "--mode does not apply to an image query"),
        ([], "give a query or --image FILE"),
    ]
    for args, words in cases:
        code, _, err = cli(capsys, "search", "cat", *args, "--root", str(root))
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (args, err)


def test_python_api_builds_and_searches_an_image_collection(tmp_path: Path, library: Path, clip_folder: Path) -> None:
    from embedlab.api.collections import build_collection, open_collection

    report = build_collection(library, "cat", model=str(clip_folder), root=tmp_path / "col", images=True, cache=False)
    assert report.files == len(ITEMS) + 3 and len(report.skipped) == len(SKIPPED)
    query = library / "shapes" / "i5.png"
    with open_collection("cat", root=tmp_path / "col") as lib:
        by_path = lib.search_image(query, k=3)
        by_bytes = lib.search_image(query.read_bytes(), k=3)
    assert by_path.hits[0].path == "shapes/i5.png"
    assert [h.chunk_id for h in by_bytes.hits] == [h.chunk_id for h in by_path.hits]
    assert by_bytes.query == "[image] upload"


@pytest.mark.model
def test_efficientnet_collection_of_emoji_answers_image_queries(capsys, tmp_path: Path) -> None:
    """The real image backbone over a slice of the emoji catalogue: an image query finds its own
    image first; a text query is one line (this model has no text tower)."""
    pytest.importorskip("efficientnet_lite_pytorch")
    catalogue = shared_dataset("emoji") / "images" / "openmoji"
    library = tmp_path / "catalogue"
    library.mkdir()
    for file in sorted(catalogue.glob("*.png"))[:12]:
        shutil.copyfile(file, library / file.name)
    root = tmp_path / "col"
    code, out, err = cli(capsys, "index", "build", "emo", "--images", str(library), "--model", "efficientnet-lite0",
                         "--root", str(root), "--no-progress", "--no-cache")  # fmt: skip
    assert code == 0 and "12 files, 12 chunks" in out, err
    query = sorted(library.iterdir())[5]
    code, out, err = cli(capsys, "search", "emo", "--image", str(query), "--root", str(root), "--json", "-k", "3")
    assert code == 0, err
    first = json.loads(out)["hits"][0]
    assert first["path"] == query.name and first["score"] == pytest.approx(1.0, abs=1e-5)  # float32 self-cosine
    code, _, err = cli(capsys, "search", "emo", "a smiling face", "--root", str(root))
    assert code == 2 and "cannot encode text" in err
