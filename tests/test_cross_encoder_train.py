"""Cross-encoder training (``embedlab finetune --kind cross-encoder``) on tiny data with a tiny random
BERT built here: losses against hand-computed values, the end-to-end run (mining by BM25, dev split,
verdict as a pipeline, card), reload parity with sentence-transformers' ``CrossEncoder``, and the
one-line errors for a folder of the wrong kind."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from embedlab.cli.main import main
from embedlab.errors import EmbedlabError
from tests.float_tolerance import assert_close_float32
from tests.helpers import TINY_CORPUS, TINY_QUERIES, TRAIN_CORPUS, TRAIN_QRELS, TRAIN_QUERIES, write_beir

HIDDEN = 16
INTERMEDIATE = 32


def _words() -> list[str]:
    texts = [d["title"] + " " + d["text"] for d in TRAIN_CORPUS + TINY_CORPUS] + [
        q["text"] for q in TRAIN_QUERIES + TINY_QUERIES
    ]
    return sorted({w for t in texts for w in re.findall(r"\w+", t.lower())})


def _tiny_bert(folder: Path, *, head: bool) -> Path:
    """A 1-layer random BERT: a bare encoder (``head=False``, what an embedding model's weights are)
    or a 1-label sequence classifier (a cross-encoder)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder.mkdir(parents=True)
    words = _words()
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(
        str(folder)
    )
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(words) + 5,
        hidden_size=HIDDEN,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=INTERMEDIATE,
        max_position_embeddings=128,
        num_labels=1,
    )
    model = transformers.BertForSequenceClassification(config) if head else transformers.BertModel(config)
    model.save_pretrained(str(folder))
    return folder


def test_losses_match_hand_computed_values() -> None:
    torch = pytest.importorskip("torch")
    from embedlab.train.cross import CROSS_LOSSES

    logits = torch.tensor([2.0, 0.5, -1.0, 1.0, 3.0])  # example A: pos 2.0, negs 0.5, -1.0; example B: pos 1.0, neg 3.0
    sizes = [3, 2]

    def softplus(x: float) -> float:
        return math.log1p(math.exp(x))

    # BCE with logits: -log sigmoid(s) = softplus(-s) for label 1, softplus(s) for label 0; mean of 5 pairs
    bce = (softplus(-2.0) + softplus(0.5) + softplus(-1.0) + softplus(-1.0) + softplus(3.0)) / 5
    a = math.log(math.exp(2.0) + math.exp(0.5) + math.exp(-1.0)) - 2.0
    b = math.log(math.exp(1.0) + math.exp(3.0)) - 1.0
    # float32 arithmetic on values of magnitude <= ~3: a few ulps of the largest term
    # float32 losses of a handful of O(1) logits against float64 hand values: a few float32 eps, relative
    assert float(CROSS_LOSSES.get("bce")(logits, sizes)) == pytest.approx(bce, rel=1e-6)
    assert float(CROSS_LOSSES.get("listwise")(logits, sizes)) == pytest.approx((a + b) / 2, rel=1e-6)
    # an example without negatives adds nothing to the listwise loss, and a batch of such still has a graph
    alone = torch.tensor([5.0], requires_grad=True)
    zero = CROSS_LOSSES.get("listwise")(alone, [1])
    zero.backward()
    assert float(zero.detach()) == 0.0 and alone.grad is not None
    with pytest.raises(EmbedlabError, match="Did you mean 'bce'"):
        CROSS_LOSSES.get("bc")


def test_finetune_cross_encoder_end_to_end_and_reload_parity(
    tmp_path: Path, tiny_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("sentence_transformers")
    base = _tiny_bert(tmp_path / "tiny-bert", head=False)
    train = write_beir(tmp_path / "train", corpus=TRAIN_CORPUS, queries=TRAIN_QUERIES, qrels=TRAIN_QRELS, split="train")
    out = tmp_path / "models" / "tiny-ce"
    code = main(
        [
            "finetune",
            "--kind",
            "cross-encoder",
            "--base",
            str(base),
            "--first",
            "bm25",
            "--rerank-depth",
            "10",
            "--train",
            str(train),
            "--test",
            str(tiny_dataset),
            "--out",
            str(out),
            "--loss",
            "listwise",
            "--epochs",
            "2",
            "--batch-size",
            "2",
            "--lr",
            "1e-3",
            "--dev-ratio",
            "0.34",
            "--hard-negatives",
            "2",
            "--mine-ranks",
            "1-8",
            "--mine-margin",
            "1.5",
            "--latency-queries",
            "2",
            "--drop-leaked",
            "--no-cache",
            "--no-progress",
        ]
    )
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert "| NDCG@10 |" in stdout
    for name in ("model.safetensors", "config.json", "README.md", "finetune.json", "report.html"):
        assert (out / name).is_file(), name
    result = json.loads((out / "finetune.json").read_text())
    assert result["spec"]["kind"] == "cross-encoder" and result["spec"]["first"] == "bm25"
    assert result["dev_queries"] == 2  # round(6 queries after dropping the leaked one x 0.34)
    assert result["mining"]["kept"] > 0
    curve = result["training"]["curve"]
    assert curve[0]["epoch"] == 0 and all(p["dev_ndcg_at_10"] is not None for p in curve)
    assert result["verdict"]["fine_tuned"]["label"] == "bm25 >> tiny-ce@10"
    assert result["verdict"]["queries"] == 3
    card = (out / "README.md").read_text()
    assert "pipeline_tag: text-ranking" in card and "CrossEncoder(" in card and "bm25 >> " in card

    # reload parity: sentence-transformers' CrossEncoder and embedlab's re-ranker give the same scores
    from sentence_transformers import CrossEncoder

    from embedlab.search.rerank import CrossEncoderReranker, load_reranker

    reranker = load_reranker(str(out))
    assert isinstance(reranker, CrossEncoderReranker)
    query = "forgot my password"
    texts = [d["title"] + " " + d["text"] for d in TRAIN_CORPUS]
    ours = reranker.score(query, texts)
    theirs = CrossEncoder(str(out)).predict([(query, t) for t in texts], batch_size=3)
    # different batching pads to other lengths: float32 summation-order noise of the longest sums
    # (intermediate size) over LayerNorm'd hidden states of magnitude ~1, carried to the logits
    assert_close_float32(ours, theirs, terms=INTERMEDIATE, scale=max(1.0, max(abs(s) for s in ours)))
    assert max(ours) - min(ours) > 0  # a trained head, not a constant

    # and the folder works as a pipeline stage in eval
    code = main(["eval", "-m", f"bm25 >> {out}@5", "-d", str(tiny_dataset), "--no-cache", "--latency-queries", "0"])
    assert code == 0, capsys.readouterr()


def test_wrong_kind_of_folder_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from embedlab.search.rerank import load_reranker

    bi = _tiny_bert(tmp_path / "bi", head=False)
    ce = _tiny_bert(tmp_path / "ce", head=True)
    with pytest.raises(EmbedlabError, match="re-ranker folder is a bi-encoder"):
        load_reranker(str(bi))
    dataset = write_beir(tmp_path / "tiny")
    assert main(["eval", "-m", f"bm25 >> {bi}@5", "-d", str(dataset), "--no-cache"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a bi-encoder (embedding model), not a cross-encoder" in err[0]
    assert main(["eval", "-m", str(ce), "-d", str(dataset), "--no-cache"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a cross-encoder" in err[0] and "re-rank stage" in err[0]


def test_rerank_depth_below_k_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = write_beir(tmp_path / "train", corpus=TRAIN_CORPUS, queries=TRAIN_QUERIES, qrels=TRAIN_QRELS, split="train")
    args = ["finetune", "--kind", "cross-encoder", "--base", "all-MiniLM-L6-v2", "--train", str(train)]
    code = main([*args, "--test", str(write_beir(tmp_path / "t")), "--out", str(tmp_path / "o"), "--rerank-depth", "5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--rerank-depth 5 is outside 10..1000" in err[0]
