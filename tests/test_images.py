"""Images as model input: decoding rules and limits, the image cache key, the CLIP/SigLIP two-tower
path end to end through ``embedlab eval`` (a tiny random CLIP), and the modality checks."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from embedlab.cache.store import EmbeddingCache
from embedlab.cli.main import main
from embedlab.data.beir import load_dataset
from embedlab.data.images import ImageLimits, read_image
from embedlab.encoders.base import EncodeStats
from embedlab.encoders.registry import load_encoder
from embedlab.encoders.spec import ModelSpec
from embedlab.errors import EmbedlabError
from tests.image_fixtures import ITEMS, draw_item, write_image_tasks, write_tiny_clip

pytest.importorskip("PIL")


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.fixture
def tasks(tmp_path: Path) -> dict[str, Path]:
    return write_image_tasks(tmp_path / "shapes")


def one_line_error(call, *args, **kwargs) -> str:
    with pytest.raises(EmbedlabError) as caught:
        call(*args, **kwargs)
    line = caught.value.one_line()
    assert "\n" not in line
    return line


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares width x height pixels and holds none: the shape of a decompression bomb
    (a real one compresses gigabytes of zeros into kilobytes); only the header is ever read."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


# ----------------------------------------------------------------------------- decoding and limits


def test_transparency_becomes_white_not_black(tmp_path: Path) -> None:
    path = draw_item(tmp_path / "ring.png", (0, 0, 0), "ring")  # black line art on transparent black
    image = read_image(path)
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255)  # the transparent corner
    assert image.getpixel((20, 8)) == (0, 0, 0)  # the ring itself stays black


def test_exif_orientation_is_honoured(tmp_path: Path) -> None:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "sideways.jpg"
    Image.new("RGB", (40, 20), (200, 10, 10)).save(path, exif=exif)
    assert read_image(path).size == (20, 40)


def test_bad_images_are_one_line_naming_the_file(tmp_path: Path) -> None:
    good = draw_item(tmp_path / "good.png", (10, 200, 10), "ellipse")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    bomb = _png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    cases = [
        (truncated, ImageLimits(), "corrupt or truncated image"),
        (text, ImageLimits(), "not an image"),
        (bomb, ImageLimits(), "decompression bomb"),
        (good, ImageLimits(max_pixels=100), "too many pixels"),
        (good, ImageLimits(max_bytes=50), "image file too large"),
        (tmp_path / "missing.png", ImageLimits(), "cannot read image"),
    ]
    for path, limits, needle in cases:
        line = one_line_error(read_image, path, limits=limits)
        assert str(path) in line and needle in line, line


# ----------------------------------------------------------------------------- data layer


def test_image_records_load_with_paths_relative_to_the_task(tasks: dict[str, Path]) -> None:
    dataset = load_dataset(tasks["image2image"])
    assert dataset.corpus_images == len(ITEMS)
    assert dataset.query_images["q-i1"] == tasks["image2image"].parent / "images" / "b" / "i1.png"
    assert dataset.modalities() == {"documents": {"image"}, "queries": {"image"}}
    first = next(dataset.iter_documents())
    assert first.image is not None and first.image.is_file()
    assert load_dataset(tasks["text2image"]).modalities() == {"documents": {"image"}, "queries": {"text"}}


def test_image_bytes_are_part_of_the_dataset_checksum(tasks: dict[str, Path]) -> None:
    before = load_dataset(tasks["image2image"]).checksum
    draw_item(tasks["image2image"].parent / "images" / "a" / "i1.png", (1, 2, 3), "bar")
    assert load_dataset(tasks["image2image"]).checksum != before


def test_a_missing_image_file_stops_the_load_with_its_line(tasks: dict[str, Path]) -> None:
    (tasks["image2image"].parent / "images" / "a" / "i3.png").unlink()
    line = one_line_error(load_dataset, tasks["image2image"])
    assert "corpus.jsonl:3" in line and "image file not found" in line and "i3.png" in line


# ----------------------------------------------------------------------------- two-tower model and cache


def test_clip_folder_encodes_texts_and_images_into_one_space(clip_folder: Path, tasks: dict[str, Path]) -> None:
    encoder = load_encoder(ModelSpec(model=str(clip_folder)))
    assert encoder.modalities == {"text", "image"}
    assert encoder.dim == 16
    texts = encoder.encode(["red circle", "blue square"], role="query")
    images = encoder.encode_images([tasks["image2image"].parent / "images" / "a" / "i1.png"], role="document")
    assert texts.shape == (2, 16) and images.shape == (1, 16)
    np.testing.assert_allclose(np.linalg.norm(np.vstack([texts, images]), axis=1), 1.0, rtol=1e-5)  # float32 eps
    assert not np.allclose(texts[0], texts[1])  # the text tower reads the words
    assert "centre crop 32" in str(encoder.fingerprint.as_dict()["preprocess"])


def test_image_cache_key_is_the_content_and_the_preprocessing(
    clip_folder: Path, tmp_path: Path, tasks: dict[str, Path]
) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    folder = shutil.copytree(clip_folder, tmp_path / "tiny-clip")  # its preprocessing is changed below
    encoder = load_encoder(ModelSpec(model=str(folder)))
    original = tasks["image2image"].parent / "images" / "a" / "i2.png"

    def encode(model, path: Path) -> EncodeStats:
        stats = EncodeStats()
        model.encode_images([path], role="document", cache=cache, stats=stats)
        return stats

    assert encode(encoder, original).encoded == 1
    assert encode(encoder, original).cache_hits == 1
    renamed = shutil.copyfile(original, tmp_path / "another-name.png")
    assert encode(encoder, renamed).cache_hits == 1  # same bytes, same vector
    draw_item(renamed, (31, 60, 220), "rectangle")  # one colour value changed
    assert encode(encoder, renamed).encoded == 1

    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.4, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "size": {"shortest_edge": 32}})
    )
    changed = load_encoder(ModelSpec(model=str(folder)))
    before, after = encoder.fingerprint.as_dict(), changed.fingerprint.as_dict()
    assert [k for k in before if before[k] != after[k]] == ["preprocess"]  # only the preprocessing differs ...
    assert encode(changed, original).encoded == 1  # ... and the cached vector is not reused
    cache.close()


# ----------------------------------------------------------------------------- end to end through eval


def _eval(dataset: Path, model: str, tmp_path: Path) -> tuple[int, str]:
    out = tmp_path / "out"
    options = ["--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--latency-queries", "2", "--no-progress"]
    code = main(["eval", "-d", str(dataset), "-m", model, *options])
    return code, str(out)


def test_clip_runs_all_three_image_tasks_through_eval(
    clip_folder: Path, tasks: dict[str, Path], tmp_path: Path, capsys
) -> None:
    for name, dataset in tasks.items():
        code, out = _eval(dataset, str(clip_folder), tmp_path / name)
        assert code == 0, capsys.readouterr()
        result = json.loads((Path(out) / name / "tiny-clip.json").read_text())
        scores = result["scores"]["test"][0]
        assert 0.0 <= scores["ndcg_at_10"] <= 1.0
        per_query = json.loads((Path(out) / name / "tiny-clip.per_query.json").read_text())
        assert set(per_query["ndcg_at_10"]) == {f"q-{i}" for i in ITEMS}
        if name == "image2image":
            # each query image is byte-identical to its target: equal vectors, so rank 1 for every query;
            # an image query encoded as its empty text would give every query the same ranking instead
            assert scores["ndcg_at_1"] == 1.0  # one relevant document per query: nDCG@1 = Recall@1
    capsys.readouterr()


def test_a_model_without_the_needed_tower_is_one_line(tasks: dict[str, Path], tmp_path: Path, capsys) -> None:
    code, _ = _eval(tasks["image2image"], "hashing", tmp_path)
    printed = capsys.readouterr()
    assert code == 1
    assert "model 'hashing' cannot encode images, and image2image has image documents" in printed.err
    assert "Traceback" not in printed.out + printed.err


def test_a_corrupt_image_in_the_corpus_is_one_line_naming_it(
    clip_folder: Path, tasks: dict[str, Path], tmp_path: Path, capsys
) -> None:
    broken = tasks["image2image"].parent / "images" / "a" / "i4.png"
    broken.write_bytes(b"GIF89a but not really")
    code, _ = _eval(tasks["image2image"], str(clip_folder), tmp_path)
    printed = capsys.readouterr()
    assert code == 1
    assert f"{broken}: corrupt or truncated image" in printed.err or f"{broken}: not an image" in printed.err
    assert "Traceback" not in printed.out + printed.err


# ----------------------------------------------------------------------------- packaged backbones


def _emoji_pairs(count: int) -> tuple[list[Path], list[Path]]:
    from tests.helpers import shared_dataset

    root = shared_dataset("emoji")
    ids = sorted(p.stem for p in (root / "images" / "google").glob("*.png"))[:: 1862 // count][:count]
    google = [root / "images" / "google" / f"{i}.png" for i in ids]
    return google, [root / "images" / "openmoji" / f"{i}.png" for i in ids]


@pytest.mark.model
@pytest.mark.parametrize(("name", "dim"), [("efficientnet-lite0", 1280), ("vit-s14-focus", 384)])
def test_packaged_image_backbones_match_emoji_across_styles(name: str, dim: int) -> None:
    """Same emoji in two artistic styles must be closer on average than different emoji (a weak
    property: raw ImageNet features reach about 40% top-1 across styles, MODELS.md)."""
    encoder = load_encoder(ModelSpec(model=name))
    assert encoder.modalities == {"image"} and encoder.dim == dim
    google, openmoji = _emoji_pairs(20)
    a = encoder.encode_images(google, role="query")
    b = encoder.encode_images(openmoji, role="document")
    assert a.shape == (20, dim)
    similarity = a @ b.T
    same = float(np.mean(np.diag(similarity)))
    different = float(np.mean(similarity[~np.eye(20, dtype=bool)]))
    assert same > different + 0.02, (same, different)
    line = one_line_error(encoder.encode, ["a grinning face"], role="query")
    assert f"model {name!r} cannot encode text" in line


def test_a_backbone_whose_weights_differ_is_refused() -> None:
    import dataclasses

    from embedlab.encoders.image_models import EFFICIENTNET_LITE0, ImageBackboneEncoder

    if EFFICIENTNET_LITE0.file.locate() is None:
        pytest.skip(f"{EFFICIENTNET_LITE0.file.pin} not installed")
    tampered = dataclasses.replace(EFFICIENTNET_LITE0, sha256="0" * 64)

    class Probe(ImageBackboneEncoder):
        backend = "torch"

    line = one_line_error(Probe, tampered, ModelSpec(model="efficientnet-lite0"))
    assert "fail verification" in line and "efficientnet-lite0-57934424.pth" in line
