"""``embedlab finetune --kind image-text``: a tiny alignment run end to end through the real CLI
(train, reload the folder through the model registry, evaluate through the eval core), the
folder's fingerprint and head checks, and bad input as one line with exit 2.

The towers are the tiny random CLIP's image tower (tests.image_fixtures) and the ``hashing`` test
encoder for text: no real model, so this measures plumbing and learning on the training pairs,
not quality (the emoji figures are benchmarks/bench_image_text_emoji.py's)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from embedlab.cli.main import main
from embedlab.data.images import read_image
from embedlab.encoders.aligned import HEADS, MANIFEST
from embedlab.encoders.registry import load_encoder
from embedlab.encoders.spec import ModelSpec
from tests.helpers import write_beir
from tests.image_fixtures import draw_item, write_tiny_clip

pytest.importorskip("PIL")
pytest.importorskip("torch")

COLOURS = {
    "red": (220, 30, 30),
    "blue": (30, 60, 220),
    "green": (30, 180, 60),
    "yellow": (230, 210, 20),
    "purple": (130, 40, 160),
    "orange": (240, 140, 20),
    "black": (0, 0, 0),
    "grey": (128, 128, 128),
}
SHAPES = ("ellipse", "rectangle", "bar")


def write_styled_tasks(root: Path) -> dict[str, Path]:
    """24 items (colour x shape) in two styles (a: 40 px, b: 56 px, so b is not a's copy), split
    train 16 / dev 4 / test 4, as the emoji tasks: text2image, image2text, image2image."""
    items = [(f"{c}-{s}", f"{c} {s}", rgb, s) for c, rgb in COLOURS.items() for s in SHAPES]
    for item, _, rgb, shape in items:
        draw_item(root / "images" / "a" / f"{item}.png", rgb, shape, size=40)
        draw_item(root / "images" / "b" / f"{item}.png", rgb, shape, size=56)
    ids = [i for i, *_ in items]
    split = {i: "train" if n % 6 < 4 else "dev" if n % 6 == 4 else "test" for n, i in enumerate(ids)}
    images_a = [{"_id": i, "title": "", "text": "", "image": f"../images/a/{i}.png"} for i in ids]
    images_b = [{"_id": f"q-{i}", "text": "", "image": f"../images/b/{i}.png"} for i in ids]
    captions_doc = [{"_id": i, "title": "", "text": c} for i, c, *_ in items]
    captions_query = [{"_id": f"q-{i}", "text": c} for i, c, *_ in items]
    tasks = {
        "text2image": (images_a, captions_query),
        "image2text": (captions_doc, images_b),
        "image2image": (images_a, images_b),
    }
    out = {}
    for name, (corpus, queries) in tasks.items():
        for part in ("train", "dev", "test"):
            qrels = [(f"q-{i}", i, 1) for i in ids if split[i] == part]
            out[name] = write_beir(root / name, corpus, queries, qrels, split=part)
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("aligned")
    return write_tiny_clip(root / "tiny-clip"), write_styled_tasks(root / "shapes")


def finetune(tmp_path: Path, base: str, train: str, test: str, *extra: str) -> tuple[int, Path]:
    out = tmp_path / "aligned"
    code = main(
        [
            "finetune", "--kind", "image-text", "--base", base, "--text-model", "hashing",
            "--train", train, "--test", test, "--out", str(out), "--epochs", "20", "--batch-size", "16", "--lr", "0.01",
            "--views", "2", "--latency-queries", "0", "--cache-dir", str(tmp_path / "cache"), "--no-progress",
            *extra,
        ]
    )  # fmt: skip
    return code, out


def test_a_tiny_alignment_trains_reloads_and_evaluates(setup, tmp_path: Path, capsys) -> None:
    clip, tasks = setup
    train = ",".join(str(tasks[t]) for t in ("text2image", "image2text", "image2image"))
    test = f"{tasks['image2image']},{tasks['text2image']}"
    code, out = finetune(tmp_path, str(clip), train, test, "--patience", "20")
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "Traceback" not in printed.err
    record = json.loads((out / "finetune.json").read_text())
    # 16 training items x 3 tasks; the dev split is the tasks' own (4 queries each)
    assert record["data"]["examples"] == 48
    assert record["dev_queries"] == 12
    curve = record["training"]["curve"]
    losses = [p["train_loss"] for p in curve[1:]]
    # in-batch InfoNCE over 16 pairs starts near ln 16 = 2.77; the heads must fit the training pairs
    assert losses[-1] < 0.8 * losses[0], losses
    verdicts = record["verdicts"]
    assert [v["dataset"] for v in verdicts] == ["image2image", "text2image"]
    assert verdicts[0]["baseline"].startswith("raw ")  # image -> image: the raw backbone
    assert "untrained" in verdicts[1]["baseline"]  # text -> image: the same towers, untrained heads
    assert {m["metric"] for m in verdicts[0]["metrics"]} == {"ndcg_at_10", "recall_at_1", "recall_at_10", "mrr_at_10"}
    card = (out / "README.md").read_text()
    assert card.count("**Verdict:**") == 2 and "## `image2image` split `test` (4 queries)" in card

    # the folder is a two-tower model of the registry: texts and images in one space
    encoder = load_encoder(ModelSpec(model=str(out)))
    assert encoder.modalities == frozenset({"text", "image"})
    picture = tasks["text2image"].parent / "images" / "a" / "red-ellipse.png"
    images = encoder.encode_images([picture], role="document")
    # the cached path (backbone cache, then head) equals the direct one (float32 rounding tolerance)
    direct = encoder.encode_image_batch(encoder.preprocess.pixels([read_image(picture)]))
    assert np.allclose(images, direct / np.linalg.norm(direct), atol=1e-5)
    texts = encoder.encode(["red ellipse"], role="query")
    assert images.shape == texts.shape == (1, encoder.dim)
    # vectors are L2-normalised (tolerance: float32 rounding of a unit vector's norm)
    assert abs(float(np.linalg.norm(images[0])) - 1.0) < 1e-5

    # and `embedlab eval` runs it on the three tasks through the eval core
    for name in ("image2image", "text2image", "image2text"):
        result_dir = tmp_path / f"eval-{name}"
        options = ["--out", str(result_dir), "--cache-dir", str(tmp_path / "cache"), "--latency-queries", "0"]
        assert main(["eval", "-d", str(tasks[name]), "-m", str(out), "--no-progress", *options]) == 0
        scores = json.loads((result_dir / name / "aligned.json").read_text())["scores"]["test"][0]
        assert 0.0 <= scores["ndcg_at_10"] <= 1.0
    capsys.readouterr()

    # the fingerprint covers the heads: other heads, another cache space; a damaged heads file is refused
    heads = dict(np.load(out / HEADS))
    heads["image.w"] = heads["image.w"] * 2
    np.savez(out / HEADS, **heads)
    code = main(["eval", "-d", str(tasks["image2image"]), "-m", str(out), "--out", str(tmp_path / "x")])
    printed = capsys.readouterr()
    assert code in (1, 2) and "sha256" in printed.err


def test_the_fingerprint_changes_with_the_heads(setup, tmp_path: Path) -> None:
    clip, tasks = setup
    code, out = finetune(tmp_path, str(clip), str(tasks["image2image"]), str(tasks["image2image"]), "--epochs", "1")
    assert code == 0
    first = load_encoder(ModelSpec(model=str(out))).fingerprint.weights
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["image_model"] == str(clip.resolve()) and manifest["text_model"] == "hashing"
    heads = dict(np.load(out / HEADS))
    heads["image.b"] = heads["image.b"] + 0.5  # other heads, recorded properly in the manifest
    np.savez(out / HEADS, **heads)
    manifest["heads_sha256"] = hashlib.sha256((out / HEADS).read_bytes()).hexdigest()
    (out / MANIFEST).write_text(json.dumps(manifest))
    assert load_encoder(ModelSpec(model=str(out))).fingerprint.weights != first


def _one_line_exit_2(capsys, code: int) -> str:
    printed = capsys.readouterr()
    assert code == 2, printed
    lines = [line for line in printed.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in printed.err
    return lines[0]


def test_a_text_only_dataset_is_one_line(setup, tmp_path: Path, capsys) -> None:
    clip, _ = setup
    text_only = write_beir(tmp_path / "text")
    code, out = finetune(tmp_path, str(clip), str(text_only), str(text_only), "--train-split", "test")
    line = _one_line_exit_2(capsys, code)
    assert "has no image records" in line and "--kind bi-encoder" in line
    assert not out.exists()


def test_no_image_pairs_is_one_line(setup, tmp_path: Path, capsys) -> None:
    """A corpus with an image, but every judged pair is text -> text: nothing to align."""
    clip, tasks = setup
    image = tasks["image2image"].parent / "images" / "a" / "red-ellipse.png"
    corpus = [{"_id": "x", "title": "", "text": "", "image": str(image)}, {"_id": "y", "title": "", "text": "a note"}]
    mixed = write_beir(tmp_path / "mixed", corpus, [{"_id": "q", "text": "note"}], [("q", "y", 1)], "train")
    code, _ = finetune(tmp_path, str(clip), str(mixed), str(tasks["image2image"]))
    assert "no (image, text) or (image, image) pair" in _one_line_exit_2(capsys, code)


def test_a_missing_image_file_is_one_line_with_its_line(setup, tmp_path: Path, capsys) -> None:
    clip, tasks = setup
    corpus = [{"_id": "x", "title": "", "text": "", "image": "missing.png"}]
    broken = write_beir(tmp_path / "broken", corpus, [{"_id": "q", "text": "a red ellipse"}], [("q", "x", 1)], "train")
    code, _ = finetune(tmp_path, str(clip), str(broken), str(tasks["image2image"]))
    line = _one_line_exit_2(capsys, code)
    assert "image file not found" in line and "missing.png" in line


def test_a_text_model_as_base_is_one_line(setup, tmp_path: Path, capsys) -> None:
    _, tasks = setup
    code, _ = finetune(tmp_path, "hashing", str(tasks["image2image"]), str(tasks["image2image"]))
    assert "cannot encode images" in _one_line_exit_2(capsys, code)
