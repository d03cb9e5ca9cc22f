"""Leakage check: a training query that is also a test query makes the verdict meaningless.

Three kinds of overlap between the training queries and the test queries stop a
fine-tune (unless overridden):

- **id**: the same query id in both (only when the training data carries real ids);
- **exact**: the same text after normalisation (lower case, words only, single spaces);
- **near-duplicate**: Jaccard similarity of the word sets >= ``threshold`` (default 0.8),
  J(A, B) = |A ∩ B| / |A ∪ B| (Broder 1997).  Candidate pairs share a word, found through
  an inverted index, so the check is not quadratic in practice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Overlap:
    kind: str  # "id", "exact" or "near-duplicate"
    train_id: str
    test_id: str
    train_text: str
    test_text: str
    similarity: float


@dataclass(frozen=True)
class LeakageReport:
    train_queries: int
    test_queries: int
    threshold: float
    ids_checked: bool
    overlaps: tuple[Overlap, ...] = field(default_factory=tuple)

    @property
    def clean(self) -> bool:
        return not self.overlaps

    def counts(self) -> dict[str, int]:
        out = {"id": 0, "exact": 0, "near-duplicate": 0}
        for o in self.overlaps:
            out[o.kind] += 1
        return out

    def summary(self, *, limit: int = 3) -> str:
        counts = self.counts()
        head = (
            f"{len(self.overlaps)} train/test query overlaps ({counts['id']} same id, {counts['exact']} same text, "
            f"{counts['near-duplicate']} near-duplicates at Jaccard >= {self.threshold})"
        )
        examples = "; ".join(
            f"{o.kind}: train {o.train_id!r} {o.train_text[:50]!r} ~ test {o.test_id!r} {o.test_text[:50]!r}"
            for o in self.overlaps[:limit]
        )
        return f"{head}, e.g. {examples}" if examples else head

    def as_dict(self) -> dict[str, object]:
        return {
            "train_queries": self.train_queries,
            "test_queries": self.test_queries,
            "threshold": self.threshold,
            "ids_checked": self.ids_checked,
            "counts": self.counts(),
            "overlaps": [o.__dict__ for o in self.overlaps],
        }


def normalize(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def check_leakage(
    train: Mapping[str, str], test: Mapping[str, str], *, threshold: float = 0.8, check_ids: bool = True
) -> LeakageReport:
    """Every overlap between train and test queries (``id -> text`` each), one per pair, the
    strongest kind first (id, then exact, then near-duplicate)."""
    overlaps: list[Overlap] = []
    seen: set[tuple[str, str]] = set()

    def add(kind: str, train_id: str, test_id: str, similarity: float) -> None:
        if (train_id, test_id) not in seen:
            seen.add((train_id, test_id))
            overlaps.append(Overlap(kind, train_id, test_id, train[train_id], test[test_id], similarity))

    if check_ids:
        for query_id in sorted(set(train) & set(test)):
            add("id", query_id, query_id, 1.0)
    by_text: dict[str, list[str]] = {}
    for train_id, text in train.items():
        by_text.setdefault(normalize(text), []).append(train_id)
    for test_id in sorted(test):
        for train_id in by_text.get(normalize(test[test_id]), []):
            add("exact", train_id, test_id, 1.0)
    words = {train_id: set(normalize(text).split()) for train_id, text in train.items()}
    postings: dict[str, list[str]] = {}
    for train_id, tokens in words.items():
        for token in tokens:
            postings.setdefault(token, []).append(train_id)
    for test_id in sorted(test):
        tokens = set(normalize(test[test_id]).split())
        candidates = {t for token in tokens for t in postings.get(token, ())}
        for train_id in sorted(candidates):
            other = words[train_id]
            similarity = len(tokens & other) / len(tokens | other)
            if similarity >= threshold:
                add("near-duplicate", train_id, test_id, similarity)
    return LeakageReport(len(train), len(test), threshold, check_ids, tuple(overlaps))
