"""Re-rankers: the word-overlap one, and the cross-encoder loader on a tiny random model built here
(no real cross-encoder is available offline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedlab.errors import EmbedlabError
from embedlab.search.rerank import CrossEncoderReranker, Reranker, WordOverlapReranker, load_reranker
from tests.float_tolerance import float32_tolerance

WORDS = [
    "reset",
    "your",
    "password",
    "the",
    "login",
    "page",
    "bread",
    "flour",
    "water",
    "salt",
    "oven",
    "recovery",
    "codes",
    "phone",
]


def test_word_overlap_scores() -> None:
    reranker = WordOverlapReranker()
    assert isinstance(reranker, Reranker)
    scores = reranker.score("resetting passwords", ["Reset the password here.", "Bake bread.", "password"])
    assert scores == [1.0, 0.0, 0.5]
    assert reranker.score("the and of", ["anything"]) == [0.0]  # only stop words


def test_load_reranker_errors(tmp_path: Path) -> None:
    assert isinstance(load_reranker("word-overlap"), WordOverlapReranker)
    with pytest.raises(EmbedlabError, match="unknown re-ranker 'nope'"):
        load_reranker("nope")
    with pytest.raises(EmbedlabError, match="not a cross-encoder folder"):
        load_reranker(str(tmp_path))


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny-cross-encoder")
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(WORDS) + 5,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=1,
    )
    transformers.BertForSequenceClassification(config).save_pretrained(str(folder))
    return folder


@pytest.mark.model
def test_cross_encoder_loads_lazily_and_scores(tiny_cross_encoder: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    reranker = load_reranker(str(tiny_cross_encoder))
    assert isinstance(reranker, CrossEncoderReranker) and reranker._model is None  # nothing loaded yet
    texts = ["reset your password on the login page", "bread flour water salt", "recovery codes phone"] * 7
    scores = reranker.score("reset password", texts)
    assert len(scores) == len(texts) and reranker._model is not None
    assert scores == reranker.score("reset password", texts)  # deterministic, batches of 16 and 5
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_cross_encoder))
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_cross_encoder)).eval()
    with torch.inference_mode():
        inputs = tokenizer(["reset password"] * 3, texts[:3], padding=True, return_tensors="pt")
        direct = model(**inputs).logits[:, 0].tolist()
    # batches of 16 vs 3 pad to other lengths, so the kernels add in another order: float32 noise of
    # the model's longest sums (intermediate size 32) over LayerNorm'd hidden states of magnitude ~1
    # (the logits themselves are near 0, so their own size is no scale for the noise)
    assert scores[:3] == pytest.approx(direct, abs=float32_tolerance(scale=1.0, terms=32))
