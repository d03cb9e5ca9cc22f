"""TREC formats: qrels (``qid 0 docid grade``) and 6-column runs (``qid Q0 docid rank score tag``)."""

from __future__ import annotations

import math
from pathlib import Path

from embedlab.atomic import atomic_open
from embedlab.data.judgments import parse_grade, record_judgment
from embedlab.data.lines import iter_lines
from embedlab.data.types import Qrels, Run
from embedlab.errors import EmbedlabError, shorten


def read_trec_qrels(path: str | Path) -> Qrels:
    """``qid iteration docid grade``; a pair judged twice with different grades is an error naming both lines."""
    path = Path(path)
    judgments: dict[str, dict[str, int]] = {}
    lines: dict[tuple[str, str], int] = {}
    for line, text in iter_lines(path):
        cells = text.split()
        if not cells:
            continue
        if len(cells) != 4:
            raise EmbedlabError(
                f"wrong number of columns ({len(cells)})",
                path=path,
                line=line,
                found=shorten(text),
                expected="4 columns: query-id iteration doc-id relevance",
            )
        grade = parse_grade(cells[3], path=path, line=line)
        record_judgment(judgments, lines, cells[0], cells[2], grade, path=path, line=line)
    if not judgments:
        raise EmbedlabError("no judgments", path=path, expected="at least one qrels line")
    return Qrels(judgments)


def write_trec_qrels(qrels: Qrels, path: str | Path) -> None:
    with atomic_open(path) as handle:
        for query_id in qrels.query_ids:
            for doc_id, grade in sorted(qrels.judgments[query_id].items()):
                handle.write(f"{query_id} 0 {doc_id} {grade}\n")


def read_trec_run(path: str | Path) -> Run:
    """``qid Q0 docid rank score tag``; scores must be finite, a document at most once per query."""
    path = Path(path)
    scores: dict[str, dict[str, float]] = {}
    tag = "run"
    for line, text in iter_lines(path):
        cells = text.split()
        if not cells:
            continue
        if len(cells) != 6:
            raise EmbedlabError(
                f"wrong number of columns ({len(cells)})",
                path=path,
                line=line,
                found=shorten(text),
                expected="6 columns: query-id Q0 doc-id rank score tag",
            )
        try:
            score = float(cells[4])
        except ValueError:
            raise EmbedlabError(
                "score is not a number",
                path=path,
                line=line,
                found=shorten(cells[4]),
                expected="a float",
            ) from None
        if not math.isfinite(score):  # nan/inf (or 1e400) cannot be ranked
            raise EmbedlabError(
                "score is not a finite number",
                path=path,
                line=line,
                found=shorten(cells[4]),
                expected="a float within +-1.8e308",
            )
        docs = scores.setdefault(cells[0], {})
        if cells[2] in docs:
            raise EmbedlabError(
                f"document {cells[2]!r} appears twice for query {cells[0]!r}",
                path=path,
                line=line,
                expected="each document at most once per query",
            )
        docs[cells[2]] = score
        tag = cells[5]
    if not scores:
        raise EmbedlabError("empty run", path=path, expected="at least one result line")
    return Run(scores, name=tag)


def write_trec_run(run: Run, path: str | Path, *, tag: str | None = None) -> None:
    """Ranks follow embedlab's tie-break (score desc, doc id asc), starting at 1."""
    label = (tag or run.name).replace(" ", "_")
    with atomic_open(path) as handle:
        for query_id in run.query_ids:
            for rank, (doc_id, score) in enumerate(run.ranking(query_id), start=1):
                handle.write(f"{query_id} Q0 {doc_id} {rank} {float(score):.9g} {label}\n")
