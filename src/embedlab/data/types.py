"""The two values every evaluation is made of: judgments (``Qrels``) and rankings (``Run``).

Any system's output can be scored once it is a ``Run``: embedlab's own search, a TREC
run file from elsewhere, or a fused run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


def rank_key(item: tuple[str, float]) -> tuple[float, str]:
    """The one tie-break rule: score descending, then document id ascending.

    Note: trec_eval breaks exact score ties by document id *descending*; on runs without
    exact ties (almost every dense run) the two orders agree.
    """
    doc_id, score = item
    return (-score, doc_id)


@dataclass(frozen=True)
class Qrels:
    """Graded relevance judgments: ``judgments[query_id][doc_id] = grade`` (grade > 0 relevant)."""

    judgments: Mapping[str, Mapping[str, int]]

    @property
    def query_ids(self) -> list[str]:
        return sorted(self.judgments)

    def relevant(self, query_id: str) -> dict[str, int]:
        """Documents judged relevant (grade >= 1), the trec_eval convention."""
        return {d: g for d, g in self.judgments.get(query_id, {}).items() if g > 0}

    def __len__(self) -> int:
        return len(self.judgments)

    def pairs(self) -> int:
        return sum(len(v) for v in self.judgments.values())


@dataclass(frozen=True)
class Run:
    """Retrieved documents with scores per query: ``scores[query_id][doc_id] = score``."""

    scores: Mapping[str, Mapping[str, float]]
    name: str = "run"
    _ranked: dict[str, list[tuple[str, float]]] = field(default_factory=dict, repr=False, compare=False)

    def ranking(self, query_id: str) -> list[tuple[str, float]]:
        """The ranked list for one query (score desc, doc id asc), cached."""
        ranked = self._ranked.get(query_id)
        if ranked is None:
            ranked = sorted(self.scores.get(query_id, {}).items(), key=rank_key)
            self._ranked[query_id] = ranked
        return ranked

    @property
    def query_ids(self) -> list[str]:
        return sorted(self.scores)

    def __len__(self) -> int:
        return len(self.scores)
