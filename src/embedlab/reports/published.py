"""Published reference results, to compare a run against, with their sources.

Users can add their own with ``--compare FILE`` (an MTEB results JSON file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from embedlab.errors import EmbedlabError

if TYPE_CHECKING:
    from embedlab.eval.runner import EvalReport, ModelResult


class Published(TypedDict):
    scores: dict[str, float]
    source: str


# (dataset, canonical model) -> scores and where they come from
PUBLISHED: dict[tuple[str, str], Published] = {
    ("scifact", "sentence-transformers/all-minilm-l6-v2"): {
        "scores": {"ndcg_at_10": 0.64508, "mrr_at_10": 0.60472, "recall_at_100": 0.925},
        "source": "MTEB results file, sentence-transformers/all-MiniLM-L6-v2, SciFact test",
    },
    ("scifact", "bm25"): {
        "scores": {"ndcg_at_10": 0.665},
        "source": "BEIR (Thakur et al. 2021), Table 2, BM25 (Elasticsearch)",
    },
}


def published_for(dataset: str, model: str) -> Published | None:
    from embedlab.encoders.resolve import canonical_name

    return PUBLISHED.get((dataset.lower(), canonical_name(model)))


def read_mteb_file(path: str | Path, *, split: str = "test") -> dict[str, float]:
    """Scores from an MTEB results JSON file (``scores[split][0]``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EmbedlabError("file not found", path=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EmbedlabError(f"not a JSON file ({err})", path=path) from None
    try:
        entry = data["scores"][split][0]
    except (KeyError, IndexError, TypeError):
        raise EmbedlabError(
            "not an MTEB results file", path=path, expected=f'{{"scores": {{"{split}": [{{"ndcg_at_10": ...}}]}}}}'
        ) from None
    return {k: float(v) for k, v in entry.items() if isinstance(v, (int, float))}


def compare_line(report: EvalReport, reference: dict[str, float], path: str | Path) -> str:
    """One line per compared file: each model's main scores minus the file's."""
    keys = [k for k in ("ndcg_at_10", "mrr_at_10", "recall_at_100") if k in reference]
    parts = []
    for result in report.results:
        if result.ok:
            diffs = ", ".join(
                f"{k} {result.scores[k]:.5f} ({result.scores[k] - reference[k]:+.5f})"
                for k in keys
                if k in result.scores
            )
            parts.append(f"{result.dataset}/{result.model}: {diffs}")
    ref = ", ".join(f"{k} {reference[k]:.5f}" for k in keys)
    return f"compared with {path} ({ref}): " + "; ".join(parts)


def published_for_result(result: ModelResult) -> Published | None:
    """The published reference of a model's result; none for a collection's search (chunks, fusion:
    not the model's published protocol)."""
    if "collection" in result.spec:
        return None
    return published_for(result.dataset, str(result.spec.get("model", result.model)))
