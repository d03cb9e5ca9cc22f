"""Training examples and their four input formats.

- a BEIR dataset folder (or a name in ``$EMBEDLAB_DATA``): every relevant (query, document)
  pair of ``qrels/<split>.tsv`` (split ``train`` by default);
- pairs JSONL: ``{"query": ..., "positive": ...}``;
- triplets JSONL: ``{"query": ..., "positive": ..., "negative": ...}`` (``negative`` may be a
  list of texts);
- click logs JSONL: ``{"query": ..., "clicked": ..., "shown": [...]}`` (``clicked`` may be a
  list).  Each click becomes a pair; the shown results ranked *above* the last click and not
  clicked become its negatives ("skip-above": the user read past them, Joachims 2002).
  Results below the last click were possibly never read and are not used.

JSONL rows may carry ``query_id`` (used by the leakage check).  Passages from JSONL files get
ids from their text (``t:`` + sha256 prefix), so the same text is one passage everywhere.
Every malformed row is an ``EmbedlabError`` with file and line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from embedlab.data.beir import Dataset, load_dataset
from embedlab.data.lines import iter_json_objects, string_field
from embedlab.errors import EmbedlabError, shorten

Format = Literal["beir", "pairs", "triplets", "clicks"]
FORMATS: tuple[Format, ...] = ("beir", "pairs", "triplets", "clicks")


@dataclass(frozen=True)
class TrainExample:
    """One (query, positive) pair with its negatives; ``source`` says where it came from."""

    query_id: str
    query: str
    positive_id: str
    positive: str
    negative_ids: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()
    source: str = ""

    def texts(self) -> tuple[str, ...]:
        return (self.query, self.positive, *self.negatives)

    def with_negatives(self, ids: tuple[str, ...], texts: tuple[str, ...]) -> TrainExample:
        return TrainExample(
            self.query_id,
            self.query,
            self.positive_id,
            self.positive,
            self.negative_ids + ids,
            self.negatives + texts,
            self.source,
        )


@dataclass(frozen=True)
class TrainingSet:
    """Examples plus the passage pool hard negatives are mined from (a BEIR corpus, or every
    passage a JSONL file names)."""

    examples: tuple[TrainExample, ...]
    format: Format
    source: str
    passages: Mapping[str, str] = field(default_factory=dict)
    dataset: Dataset | None = None
    given_ids: bool = False  # query ids came from the data (not made up from the text)

    def iter_corpus(self) -> Iterator[tuple[str, str]]:
        if self.dataset is not None:
            for doc in self.dataset.iter_documents():
                yield doc.id, doc.content
        else:
            yield from self.passages.items()

    def queries(self) -> dict[str, str]:
        return {e.query_id: e.query for e in self.examples}

    def positives(self) -> dict[str, set[str]]:
        """query id -> every known positive passage id (never mined as a negative)."""
        out: dict[str, set[str]] = {}
        for e in self.examples:
            out.setdefault(e.query_id, set()).add(e.positive_id)
        return out

    def manifest(self) -> dict[str, object]:
        info: dict[str, object] = {
            "format": self.format,
            "source": self.source,
            "examples": len(self.examples),
            "queries": len(self.queries()),
        }
        if self.dataset is not None:
            info["dataset"] = self.dataset.manifest()
        else:
            info["passages"] = len(self.passages)
        return info

    def subset(self, query_ids: set[str]) -> TrainingSet:
        kept = tuple(e for e in self.examples if e.query_id in query_ids)
        return TrainingSet(kept, self.format, self.source, self.passages, self.dataset, self.given_ids)


def text_id(text: str, prefix: str = "t:") -> str:
    return prefix + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def load_training_set(source: str | Path, *, format: str = "auto", split: str = "train") -> TrainingSet:
    """Read training data in any of the four formats (``auto``: a folder is BEIR, a JSONL file is
    recognised by the fields of its first row)."""
    path = Path(source).expanduser()
    if format not in ("auto", *FORMATS):
        raise EmbedlabError(f"unknown training data format {format!r}", expected=f"auto or one of {', '.join(FORMATS)}")
    if format == "beir" or (format == "auto" and not path.is_file()):
        return _from_beir(source, split)
    if not path.is_file():
        raise EmbedlabError("training data file not found", path=path, expected="a JSONL file or a BEIR folder")
    kind = _detect(path) if format == "auto" else next(f for f in FORMATS if f == format)  # checked above
    return _from_jsonl(path, kind)


def _from_beir(source: str | Path, split: str) -> TrainingSet:
    dataset = load_dataset(source, split=split)
    wanted = {d for q in dataset.qrels.query_ids for d in dataset.qrels.relevant(q)}
    texts = {doc.id: doc.content for doc in dataset.iter_documents() if doc.id in wanted}
    examples = []
    for query_id in dataset.qrels.query_ids:
        for doc_id in sorted(dataset.qrels.relevant(query_id)):
            examples.append(
                TrainExample(
                    query_id,
                    dataset.queries[query_id],
                    doc_id,
                    texts[doc_id],
                    source=f"{dataset.path}/qrels/{split}.tsv",
                )
            )
    if not examples:
        raise EmbedlabError(
            "no relevant judgments to train on",
            path=dataset.path / "qrels" / f"{split}.tsv",
            expected="rows with a grade of 1 or more",
        )
    return TrainingSet(tuple(examples), "beir", str(dataset.path), dataset=dataset, given_ids=True)


def _detect(path: Path) -> Format:
    for line, obj in iter_json_objects(path):
        if "clicked" in obj or "shown" in obj:
            return "clicks"
        if "negative" in obj:
            return "triplets"
        if "positive" in obj:
            return "pairs"
        raise EmbedlabError(
            "cannot tell the training data format from the first row",
            path=path,
            line=line,
            found=f"fields {sorted(obj)}",
            expected="query+positive (pairs), +negative (triplets) or query+clicked+shown (clicks)",
        )
    raise EmbedlabError("empty training data file", path=path, expected="one JSON object per line")


_FIELDS: dict[str, tuple[str, ...]] = {
    "pairs": ("query", "positive"),
    "triplets": ("query", "positive", "negative"),
    "clicks": ("query", "clicked", "shown"),
}


def _from_jsonl(path: Path, kind: Format) -> TrainingSet:
    examples: list[TrainExample] = []
    passages: dict[str, str] = {}
    given_ids = False
    allowed = {*_FIELDS[kind], "query_id"}
    for line, obj in iter_json_objects(path):
        extra = sorted(set(obj) - allowed)
        if extra:
            raise EmbedlabError(
                f"unexpected field {extra[0]!r} in a {kind} row",
                path=path,
                line=line,
                expected=f"fields {', '.join(_FIELDS[kind])} (and optionally query_id)",
            )
        query = _text(obj, "query", path, line)
        query_id = string_field(obj, "query_id", path=path, line=line, required=False)
        given_ids = given_ids or bool(query_id)
        query_id = query_id or text_id(query, "q:")
        where = f"{path}:{line}"
        if kind == "clicks":
            pairs = _clicks(obj, path, line)
        else:
            negatives = tuple(_texts(obj, "negative", path, line)) if kind == "triplets" else ()
            pairs = [(_text(obj, "positive", path, line), negatives)]
        for positive, negatives in pairs:
            for text in (positive, *negatives):
                passages[text_id(text)] = text
            examples.append(
                TrainExample(
                    query_id, query, text_id(positive), positive, tuple(text_id(n) for n in negatives), negatives, where
                )
            )
    if not examples:
        raise EmbedlabError("no training examples", path=path, expected="at least one row")
    return TrainingSet(tuple(examples), kind, str(path), passages=passages, given_ids=given_ids)


def _clicks(obj: dict[str, Any], path: Path, line: int) -> list[tuple[str, tuple[str, ...]]]:
    clicked = _texts(obj, "clicked", path, line)
    shown = _texts(obj, "shown", path, line)
    missing = [c for c in clicked if c not in shown]
    if missing:
        raise EmbedlabError(
            "a clicked result is not in 'shown'",
            path=path,
            line=line,
            found=shorten(missing[0]),
            expected="every clicked text to be one of the shown results",
        )
    last = max(shown.index(c) for c in clicked)
    skipped = tuple(s for s in shown[:last] if s not in clicked)
    return [(c, skipped) for c in clicked]


def _text(obj: dict[str, Any], key: str, path: Path, line: int) -> str:
    value = string_field(obj, key, path=path, line=line, required=True)
    if not value.strip():
        raise EmbedlabError(f"empty {key!r}", path=path, line=line, expected="a non-empty text")
    return value


def _texts(obj: dict[str, Any], key: str, path: Path, line: int) -> list[str]:
    """A text or a non-empty list of texts."""
    value = obj.get(key)
    if isinstance(value, list):
        if not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise EmbedlabError(
                f"field {key!r} must list non-empty texts",
                path=path,
                line=line,
                found=shorten(repr(value)),
                expected="a text or a list of texts",
            )
        return list(value)
    return [_text(obj, key, path, line)]
