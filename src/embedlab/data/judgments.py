"""Qrels rows shared by the BEIR and TREC readers: grade parsing and duplicate judgments."""

from __future__ import annotations

from pathlib import Path

from embedlab.errors import EmbedlabError, shorten

GRADE_LIMIT = 2**31 - 1  # trec_eval reads grades as C ints; larger ones only overflow the gain sums


def parse_grade(cell: str, *, path: Path, line: int) -> int:
    """An integer relevance grade within +-(2**31 - 1)."""
    try:
        value = int(cell)
    except ValueError:
        raise EmbedlabError(
            "relevance score is not an integer",
            path=path,
            line=line,
            found=shorten(cell),
            expected="an integer grade such as 0, 1 or 2",
        ) from None
    if abs(value) > GRADE_LIMIT:
        raise EmbedlabError(
            "relevance score out of range",
            path=path,
            line=line,
            found=shorten(cell),
            expected=f"an integer grade between -{GRADE_LIMIT} and {GRADE_LIMIT}",
        )
    return value


def record_judgment(
    judgments: dict[str, dict[str, int]],
    lines: dict[tuple[str, str], int],
    query_id: str,
    doc_id: str,
    grade: int,
    *,
    path: Path,
    line: int,
) -> None:
    """Add one qrels row.  A repeated (query, document) pair with the same grade is harmless and
    accepted; with another grade the file contradicts itself, and which row wins would be a guess."""
    known = judgments.setdefault(query_id, {})
    if doc_id in known and known[doc_id] != grade:
        first = lines[(query_id, doc_id)]
        raise EmbedlabError(
            f"conflicting judgments for query {query_id!r} and document {doc_id!r} (lines {first} and {line})",
            path=path,
            line=line,
            found=f"grade {known[doc_id]} at line {first}, grade {grade} at line {line}",
            expected="one grade per query and document",
            hint="remove one of the two rows",
        )
    if doc_id not in known:
        known[doc_id] = grade
        lines[(query_id, doc_id)] = line
