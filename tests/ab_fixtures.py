"""A synthetic BEIR dataset on which the hashing encoder ranks well, and collections built from it,
for the simulator and A/B tests: 24 topics, each with its own 8 made-up words, two documents and one
query per topic (the query's relevant documents are its topic's two)."""

from __future__ import annotations

import random
from pathlib import Path

from embedlab.collection import build
from embedlab.collection.corpus import corpus_folder
from embedlab.data.beir import load_dataset
from embedlab.encoders.spec import ModelSpec
from tests.helpers import write_beir

TOPICS = 24
FILLER = ["the", "study", "result", "data", "shows"]


def write_topics(folder: Path, *, prefix: str = "t", seed: int = 15) -> Path:
    rng = random.Random(seed)
    corpus, queries, qrels = [], [], []
    for t in range(TOPICS):
        words = [f"{prefix}{t}w{j}" for j in range(8)]
        for d in range(2):
            text = " ".join(rng.sample(words, 6) + rng.sample(FILLER, 3))
            corpus.append({"_id": f"{prefix}{t}d{d}", "title": "", "text": text})
            qrels.append((f"{prefix}q{t}", f"{prefix}{t}d{d}", 1))
        queries.append({"_id": f"{prefix}q{t}", "text": " ".join(rng.sample(words, 3))})
    return write_beir(folder, corpus=corpus, queries=queries, qrels=qrels)


def build_topic_collection(dataset: Path, root: Path, name: str, *, dim: int = 64) -> None:
    """A collection of the dataset's corpus (one file per document) with the hashing model; ``dim=1``
    makes every score equal up to sign: a ranking that ignores the query (the deliberately bad arm)."""
    folder = corpus_folder(load_dataset(dataset), cache_dir=root.parent / "corpora-cache")
    spec = ModelSpec(model="hashing", dim=dim)
    build(folder, name, model_spec=spec, root=root, use_cache=False, max_tokens=64, overlap=8)
