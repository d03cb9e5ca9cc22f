"""embedlab finetune end to end with the real bundled all-MiniLM-L6-v2 on tiny data (seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedlab.cli.main import main
from tests.float_tolerance import assert_close_float32
from tests.helpers import TRAIN_CORPUS, TRAIN_QRELS, TRAIN_QUERIES, write_beir

pytestmark = pytest.mark.model


def test_finetune_end_to_end(tmp_path: Path, tiny_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = write_beir(tmp_path / "train", corpus=TRAIN_CORPUS, queries=TRAIN_QUERIES, qrels=TRAIN_QRELS, split="train")
    out = tmp_path / "models" / "tiny-ft"
    code = main(
        [
            "finetune",
            "--base",
            "all-MiniLM-L6-v2",
            "--train",
            str(train),
            "--test",
            str(tiny_dataset),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--dev-ratio",
            "0",
            "--mine-ranks",
            "2-6",
            "--latency-queries",
            "3",
            "--drop-leaked",
            "--require-improvement",
            "--no-progress",
        ]
    )
    stdout = capsys.readouterr().out
    # 3 test queries can never be significant (smallest exact p = 2/8): the regression gate exits 1
    assert code == 1
    assert "--require-improvement: fine-tune is not " in stdout and "| NDCG@10 |" in stdout
    for name in (
        "model.safetensors",
        "modules.json",
        "config_sentence_transformers.json",
        "README.md",
        "finetune.json",
        "report.html",
    ):
        assert (out / name).is_file(), name
    result = json.loads((out / "finetune.json").read_text())
    assert result["data"]["queries"] == 6 and result["leakage"]["counts"]["exact"] == 1  # t7 dropped
    assert result["dev_queries"] == 0 and result["training"]["best_epoch"] == 2  # no dev: the last epoch
    assert [p["epoch"] for p in result["training"]["curve"]] == [0, 1, 2]
    assert result["mining"]["candidates"] == result["mining"]["examples"] * 6 - result["mining"]["already_had"] * 6
    assert result["mining"]["kept"] == 6
    assert {m["metric"] for m in result["verdict"]["metrics"]} == {"ndcg_at_10", "mrr_at_10", "recall_at_100"}
    assert result["verdict"]["fine_tuned"]["latency"]["samples"] == 3
    assert result["seconds"]["total"] > 0
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: sentence-transformers") and "## Hard-negative mining" in card
    assert "dropped" in card and "MRR@10" in card and "latency p95 (ms)" in card
    report = (out / "report.html").read_text()
    assert "<svg" in report and "Training curve" in report and "Before / after" in report
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left

    # the folder loads in plain sentence-transformers and in embedlab, with the same vectors
    from sentence_transformers import SentenceTransformer

    from embedlab.encoders.registry import load_encoder
    from embedlab.encoders.spec import ModelSpec

    texts = [d["text"] for d in TRAIN_CORPUS]
    plain = SentenceTransformer(str(out), device="cpu").encode(texts, convert_to_numpy=True)
    ours = load_encoder(ModelSpec(model=str(out))).encode(texts, role="document")
    # torch (sentence-transformers) against our ONNX export: other kernels, other summation order
    assert_close_float32(ours, plain, terms=384, what="fine-tuned model, ONNX vs sentence-transformers")
    base = load_encoder(ModelSpec(model="all-MiniLM-L6-v2")).encode(texts, role="document")
    assert not np.allclose(base, ours, atol=1e-4)  # training changed the weights

    # a second run into the same folder is refused before any work
    assert (
        main(
            [
                "finetune",
                "--base",
                "all-MiniLM-L6-v2",
                "--train",
                str(train),
                "--test",
                str(tiny_dataset),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "already exists" in capsys.readouterr().err


def test_cached_mnrl_gives_the_same_gradients_as_mnrl() -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from embedlab.encoders.resolve import resolve_model
    from embedlab.train.data import TrainExample
    from embedlab.train.loop import TrainConfig, _step

    model = SentenceTransformer(str(resolve_model("all-MiniLM-L6-v2").path), device="cpu")
    model.eval()  # no dropout: the two ways must then agree exactly (train mode replays masks per mini-batch)
    batch = [
        TrainExample(
            f"q{i}", f"question number {i}", f"d{i}", f"an answer about topic {i}", (f"n{i}",), (f"a distractor {i}",)
        )
        for i in range(5)
    ]
    grads = []
    for loss in ("mnrl", "cached-mnrl"):
        model.zero_grad()
        torch.manual_seed(3)
        value = _step(
            model,
            batch,
            TrainConfig(loss=loss, mini_batch_size=2).loss_fn(),
            TrainConfig(loss=loss, mini_batch_size=2),
            "cpu",
        )
        grads.append((value, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (v1, g1), (v2, g2) = grads
    assert v1 == pytest.approx(v2, rel=1e-5)  # one scalar: 1e-5 relative is ~80 float32 eps
    assert g1.keys() == g2.keys() and len(g1) > 50
    # Mini-batches of 2 against one batch of 5: other matrix shapes, so float32 sums are added in another
    # order (which also differs between AVX2/AVX-512 kernels and thread counts).  The noise is set by the
    # largest gradient anywhere (it flows back through every layer), not by each tensor's own size: the
    # attention key biases have a true gradient of 0 (softmax ignores them) and hold only that noise.
    scale = max(float(grad.abs().max()) for grad in g1.values())
    for name, grad in g1.items():
        assert_close_float32(g2[name], grad, terms=384, scale=scale, what=name)


def test_dev_split_keeps_the_best_checkpoint(tmp_path: Path) -> None:
    """The base is perfect on this dev set, so no epoch beats it: the base weights come back."""
    import torch
    from sentence_transformers import SentenceTransformer

    from embedlab.encoders.resolve import resolve_model
    from embedlab.train.data import load_training_set
    from embedlab.train.loop import TrainConfig, train
    from embedlab.train.run import split_dev

    folder = write_beir(
        tmp_path / "train", corpus=TRAIN_CORPUS, queries=TRAIN_QUERIES, qrels=TRAIN_QRELS, split="train"
    )
    examples, dev = split_dev(load_training_set(folder), ratio=0.3, sample=3, seed=0)
    assert dev is not None and len(dev.queries) == 2 and len(examples.queries()) == 5
    assert set(dev.queries).isdisjoint(examples.queries())
    model = SentenceTransformer(str(resolve_model("all-MiniLM-L6-v2").path), device="cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train(model, examples.examples, config=TrainConfig(epochs=1, batch_size=4, learning_rate=1e-4), dev=dev)
    assert [p.epoch for p in result.curve] == [0, 1] and result.curve[0].dev_ndcg_at_10 == 1.0
    assert result.best_epoch == 0 and result.steps == 2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
