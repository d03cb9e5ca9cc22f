"""A synthetic BEIR dataset written in made-up lowercase words that a tiny transformer's vocabulary
holds (:func:`tests.tiny_models.make_tiny_sentence_transformer` with ``words=``), for the retrain
loop.  Every text is mostly filler words shared by the whole corpus, which is what misleads the
untrained model (mean pooling weighs them like the topic words); fine-tuning on clicks of some
queries learns to discount them, which helps held-out queries of other topics too: a gain the
retrain gate can measure on a held-out slice of the sessions."""

from __future__ import annotations

import random
from pathlib import Path

from tests.helpers import write_beir

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"
FILLER = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma", "theta", "zeta", "iota"]


def pseudo_words(count: int, rng: random.Random) -> list[str]:
    out: set[str] = set()
    while len(out) < count:
        out.add("".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(3)))
    return sorted(out)


def write_loop_dataset(
    folder: Path, *, topics: int = 80, queries_per_topic: int = 2, seed: int = 15
) -> tuple[Path, list[str]]:
    """(dataset folder, its vocabulary): per topic 6 words and one document (4 of them, 6 fillers);
    ``queries_per_topic`` queries of 2 of the document's topic words and 3 fillers, no two alike."""
    rng = random.Random(seed)
    vocabulary = pseudo_words(topics * 6, rng)
    rng.shuffle(vocabulary)
    corpus, queries, qrels = [], [], []
    for t in range(topics):
        words = rng.sample(vocabulary[t * 6 : (t + 1) * 6], 4)
        corpus.append({"_id": f"t{t}", "title": "", "text": " ".join(rng.sample(words + rng.sample(FILLER, 6), 10))})
        pairs = rng.sample([(a, b) for i, a in enumerate(words) for b in words[i + 1 :]], queries_per_topic)
        for q, pair in enumerate(pairs):
            qid = f"q{t}x{q}"
            queries.append({"_id": qid, "text": " ".join(rng.sample([*pair, *rng.sample(FILLER, 3)], 5))})
            qrels.append((qid, f"t{t}", 1))
    return write_beir(folder, corpus=corpus, queries=queries, qrels=qrels), [*vocabulary, *FILLER]
