"""Issue 17's cheaper query side: EfficientNet-Lite0's multi-scale descriptor and its ``image_size``
option, and ``embedlab shrink --variants student`` on an aligned folder (a query tower at a lower
resolution distilled into the teacher's space, documents encoded by the teacher inside it).

The backbone is the real packaged one; the images are tests.test_image_text_finetune's drawn
shapes, so these check the plumbing and the routing (which tower encodes what), not retrieval
quality, which benchmarks/bench_image_two_stage.py measures on emoji."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from embedlab.cli.main import main
from embedlab.encoders.aligned import AlignedEncoder, l2, project, read_aligned_manifest
from embedlab.encoders.registry import load_encoder
from embedlab.encoders.spec import ModelSpec
from tests.test_image_shrink import _pixels, shrink
from tests.test_image_text_finetune import write_styled_tasks

pytest.importorskip("PIL")
pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")
MULTISCALE = "efficientnet-lite0-multiscale"


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_styled_tasks(tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="module")
def aligned(tasks, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("aligned-ms")
    train = ",".join(str(tasks[t]) for t in ("text2image", "image2image"))
    code = main(
        [
            "finetune", "--kind", "image-text", "--base", MULTISCALE, "--text-model", "hashing",
            "--train", train, "--test", str(tasks["image2image"]), "--out", str(root / "aligned"), "--epochs", "3",
            "--batch-size", "16", "--lr", "0.01", "--views", "1", "--latency-queries", "0",
            "--cache-dir", str(root / "cache"), "--no-progress",
        ]
    )  # fmt: skip
    assert code in (0, 1)  # 1: the verdict may say "no gain" on 4 test queries
    return root / "aligned"


def test_the_multiscale_descriptor_is_four_unit_parts_the_same_on_onnx_and_torch(tasks) -> None:
    onnx_tower = load_encoder(ModelSpec(model=MULTISCALE))
    torch_tower = load_encoder(ModelSpec(model=MULTISCALE, backend="torch"))
    assert onnx_tower.dim == 3328
    pixels = _pixels(tasks, "a", onnx_tower)
    a, b = onnx_tower.encode_image_batch(pixels), torch_tower.encode_image_batch(pixels)
    # the same fp32 network: only the order of float32 sums differs (each part has norm 1/2)
    assert np.allclose(a, b, atol=1e-4)
    for start, stop in ((0, 1280), (1280, 1600), (1600, 2048), (2048, 3328)):  # final mean, blocks 7, 10, 15
        assert np.allclose(np.linalg.norm(a[:, start:stop], axis=1), 0.5, rtol=1e-5)  # float32 rounding
    plain = load_encoder(ModelSpec(model="efficientnet-lite0")).encode_image_batch(pixels)
    # the first part is the plain model's feature, normalised
    assert np.allclose(a[:, :1280] * 2, l2(plain), atol=1e-4)


def test_image_size_is_a_model_option_with_its_own_space(tasks) -> None:
    full = load_encoder(ModelSpec(model=MULTISCALE))
    small = load_encoder(ModelSpec(model=MULTISCALE, options={"image_size": 96}))
    assert small.preprocess.size == 96 and small.conditions()["image_size"] == 96
    assert small.fingerprint.preprocess != full.fingerprint.preprocess  # another cache space
    vectors = small.encode_image_batch(_pixels(tasks, "a", small))
    assert vectors.shape[1] == full.dim and np.isfinite(vectors).all()
    assert main(["eval", "-d", str(tasks["image2image"]), "-m", "efficientnet-lite0:image_size=8", "--out", "x"]) == 2


def test_a_student_queries_with_its_cheap_tower_and_indexes_with_its_teacher(
    tasks, aligned: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "shrunk"
    extra = ("--variants", "student", "--student-image-size", "96", "--student-image-epochs", "4")
    code = shrink(str(aligned), tasks["image2image"], out, *extra, "--student-image-views", "2")
    assert code == 0, capsys.readouterr().err
    moved = tmp_path / "elsewhere" / "student"  # the teacher is read relative to the folder
    shutil.copytree(out / "student", moved)
    manifest = read_aligned_manifest(moved)
    assert manifest is not None and manifest.documents == "teacher"
    assert manifest.image_options == {"image_size": 96}
    record = manifest.made_with["distilled"]
    assert record["images"]["held_out"] == 4 and record["images"]["train"] == 24 + 16  # catalogue + train queries
    teacher, student = (load_encoder(ModelSpec(model=str(f))) for f in (aligned, moved))
    assert isinstance(student, AlignedEncoder) and student.preprocess.size == 96
    assert student.documents is not None and student.text_tower is student.documents.text_tower  # loaded once
    documents = sorted((tasks["image2image"].parent / "images" / "a").glob("*.png"))
    # documents: the teacher's vectors, bit for bit
    assert np.array_equal(
        student.encode_images(documents, role="document"), teacher.encode_images(documents, role="document")
    )
    texts = ["red ellipse", "blue bar"]
    assert np.array_equal(student.encode(texts, role="query"), teacher.encode(texts, role="query"))
    # queries: the 96 px tower through the student's own head, closer to the teacher's vectors
    # than the teacher's head on the same 96 px features (what it was trained for)
    queries = sorted((tasks["image2image"].parent / "images" / "b").glob("*.png"))
    mine = student.encode_images(queries, role="query")
    features = student.image_tower.encode_images(queries, role="query")
    # the same float32 head on the same features, one path through the cache: unit vectors of 512
    # entries ~0.04 each, so 1e-6 absolute is ~2e-5 relative, room for another BLAS's summation order
    assert np.allclose(mine, l2(project(features, student.heads, "image")), atol=1e-6)
    target = teacher.encode_images(queries, role="query")
    untrained = l2(project(features, teacher.heads, "image"))
    assert np.sum(mine * target, axis=1).mean() > np.sum(untrained * target, axis=1).mean()
    assert student.fingerprint.weights != teacher.fingerprint.weights
    two_stage = f"{moved}:index=binary,index_rescore=8,index_rescore_with=float"
    assert main(["eval", "-d", str(tasks["image2image"]), "-m", two_stage, "--out", str(tmp_path / "ev")]) == 0
    summary = json.loads((out / "shrink.json").read_text())
    assert summary["variants"]["student"]["family"] == "model"
    # a collection of the catalogue: teacher vectors behind sign bits, a query image through the student
    root = ("--root", str(tmp_path / "collections"))
    folder = tasks["image2image"].parent / "images" / "a"
    index = ("--index", "binary:rescore=8,rescore_with=float")
    assert main(["index", "build", "cat", "--images", str(folder), "--model", str(moved), *index, *root]) == 0
    capsys.readouterr()
    assert main(["search", "cat", "--image", str(queries[0]), "--k", "3", *root]) == 0
    assert capsys.readouterr().out.count(".png") == 3


def test_a_task_with_only_a_test_split_gives_its_catalogue_and_holds_a_seeded_tenth_out(tasks, tmp_path: Path) -> None:
    from embedlab.optimize.image_distill import student_images

    only_test = tmp_path / "image2image"
    shutil.copytree(tasks["image2image"], only_test)
    shutil.copytree(tasks["image2image"].parent / "images", tmp_path / "images")
    for split in ("train", "dev"):
        (only_test / "qrels" / f"{split}.tsv").unlink()
    images = student_images([str(only_test)], seed=0)
    catalogue = sorted((tmp_path / "images" / "a").glob("*.png"))
    assert sorted(images.train + images.held_out) == [p.resolve() for p in catalogue]  # no query image: no train split
    assert len(images.held_out) == round(len(catalogue) * 0.1) and "seeded 10%" in images.source
    assert images == student_images([str(only_test)], seed=0)


def test_image_student_bad_input_is_one_line(tasks, aligned: Path, tmp_path: Path, capsys) -> None:
    capsys.readouterr()
    cases = [
        ((MULTISCALE, "--variants", "student"), "aligned image-text folder"),
        ((str(aligned), "--variants", "student", "--student-image-size", "224"), "not below the teacher's"),
        ((str(aligned), "--variants", "student", "--student-image-views", "0"), "--student-image-views"),
    ]
    for n, ((model, *extra), needle) in enumerate(cases):
        out = tmp_path / f"bad-{n}"
        assert shrink(model, tasks["image2image"], out, *extra) == 2
        err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
        assert len(err) == 1 and needle in err[0], err
        assert not (out / "student").exists()


def test_tune_depth_chooses_the_depth_of_a_two_stage_image_pipeline(tasks, aligned: Path, tmp_path: Path) -> None:
    """Image queries through `tune depth`: the first stage searches by image, the bi: stage re-scores
    images; the reported curve is what `eval` gives for the same pipeline on the same test queries."""
    pipeline = f"efficientnet-lite0 >> bi:{aligned}@20"
    cache = ("--cache-dir", str(tmp_path / "cache"), "--no-progress")
    out, ev = tmp_path / "tune", tmp_path / "eval"
    dataset = str(tasks["image2image"])
    assert main(["tune", "depth", "-m", pipeline, "-d", dataset, "--depths", "10,20", "--latency-queries", "2",
                 "--out", str(out), *cache]) == 0  # fmt: skip
    tuned = json.loads((out / "tune-depth.json").read_text())
    assert tuned["split"]["dev"] == "train split" and len(tuned["split"]["reported_queries"]) == 4
    assert tuned["chosen_depth"] in (10, 20)
    assert all(p["p95_ms"] > 0 for p in tuned["points"])  # image queries were timed, file to top 10
    at10 = next(p for p in tuned["points"] if p["depth"] == 10)
    assert main(["eval", "-d", dataset, "-m", f"efficientnet-lite0 >> bi:{aligned}@10", "--out", str(ev), *cache]) == 0
    (scores,) = json.loads((ev / "summary.json").read_text())["results"][0]["scores"]["test"]
    # the same float64 metric over the same rankings of the same 4 test queries
    assert at10["reported_means"]["ndcg_at_10"] == pytest.approx(scores["ndcg_at_10"], abs=1e-12)
