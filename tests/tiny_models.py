"""A tiny random BERT saved as a sentence-transformers folder (no download): for tests that need
a real transformer folder to export, quantize or distill, in a second rather than minutes."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from tests.helpers import TINY_CORPUS, TINY_QUERIES

HIDDEN = 32


def tiny_vocabulary() -> list[str]:
    texts = [f"{d.get('title', '')} {d['text']}" for d in TINY_CORPUS + TINY_QUERIES]
    return sorted({w for t in texts for w in re.findall(r"[a-z]+", t.lower())})


def make_tiny_sentence_transformer(
    folder: Path,
    *,
    layers: int = 2,
    seed: int = 0,
    initializer_range: float = 0.02,
    words: Sequence[str] | None = None,
) -> Path:
    """BERT with ``layers`` layers of width 32 over the tiny corpus' words, mean pooling, normalised.
    ``initializer_range``: the weights' standard deviation; BERT's 0.02 makes every layer close to
    the identity (through its residual), a larger one makes the layers differ (distillation tests)."""
    import torch
    import transformers

    words = sorted(set(words)) if words is not None else tiny_vocabulary()  # words: lowercase, no punctuation
    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n")
    # the vocabulary as a mapping: transformers 5 ignores ``vocab_file=`` (every word became [UNK])
    tokenizer = transformers.BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=len(words) + 5,
        hidden_size=HIDDEN,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=2 * HIDDEN,
        max_position_embeddings=64,
        initializer_range=initializer_range,
    )
    transformers.BertModel(config).save_pretrained(str(folder))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    pooling = {"word_embedding_dimension": HIDDEN, "pooling_mode_mean_tokens": True}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    return folder
