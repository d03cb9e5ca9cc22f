"""BEIR-format datasets: ``corpus.jsonl[.gz]``, ``queries.jsonl``, ``qrels/<split>.tsv``.

Loading validates everything once (ids, duplicates, qrels against corpus and queries)
and keeps only ids, queries and judgments in memory; the corpus text is streamed again
by :meth:`Dataset.iter_documents` when a model needs it, so a corpus of millions of
lines is never held as several copies.  Only judged queries are evaluated (BEIR
convention).

Image records (multi-modal tasks such as ``emoji/image2image``) carry an ``"image"`` path
relative to the task folder, and may leave ``"text"`` empty; the file must exist at load time
(its bytes are checked when a model decodes it, :mod:`embedlab.data.images`).
"""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from embedlab import settings
from embedlab.data.judgments import parse_grade, record_judgment
from embedlab.data.lines import iter_json_objects, iter_lines, string_field
from embedlab.data.types import Qrels
from embedlab.errors import EmbedlabError, shorten
from embedlab.payloads import DatasetManifest


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str
    image: Path | None = None  # an image document (its file; the ``"image"`` field, see image_field)

    @property
    def content(self) -> str:
        """What a model reads: ``title + " " + text``, stripped (the MTEB/BEIR convention)."""
        return f"{self.title} {self.text}".strip() if self.title else self.text.strip()


@dataclass(frozen=True)
class Dataset:
    name: str
    path: Path
    corpus_path: Path
    split: str
    queries: dict[str, str]
    qrels: Qrels
    doc_count: int
    checksum: str
    corpus_images: int = 0  # documents that are images
    query_images: dict[str, Path] = field(default_factory=dict)  # judged image queries: id -> file

    def modalities(self) -> dict[str, set[str]]:
        """What a model must encode here: ``{"documents": {...}, "queries": {...}}`` ("text", "image")."""
        documents = ({"image"} if self.corpus_images else set()) | (
            {"text"} if self.corpus_images < self.doc_count else set()
        )
        queries = ({"image"} if self.query_images else set()) | (
            {"text"} if len(self.query_images) < len(self.queries) else set()
        )
        return {"documents": documents, "queries": queries}

    def iter_documents(self) -> Iterator[Document]:
        """Stream the corpus (already validated at load time)."""
        for line, obj in iter_json_objects(self.corpus_path):
            yield _document(obj, path=self.corpus_path, line=line)

    def manifest(self) -> DatasetManifest:
        return {
            "name": self.name,
            "path": str(self.path),
            "split": self.split,
            "documents": self.doc_count,
            "queries": len(self.queries),
            "qrels_pairs": self.qrels.pairs(),
            "sha256": self.checksum,
        }


def _document(obj: dict, *, path: Path, line: int) -> Document:
    doc_id = string_field(obj, "_id", path=path, line=line, required=True)
    image = image_field(obj, path=path, line=line)
    title = string_field(obj, "title", path=path, line=line, required=False)
    text = string_field(obj, "text", path=path, line=line, required="title" not in obj and image is None)
    if not doc_id.strip():
        raise EmbedlabError("empty '_id'", path=path, line=line, expected="a non-empty document id")
    return Document(doc_id, title, text, image)


def image_field(obj: dict, *, path: Path, line: int) -> Path | None:
    """An optional ``"image"`` field: a file path relative to the folder of the file that names it
    (the task folder), which must exist (checked at load, so a typo stops the run before any model
    loads; the file's content is checked when it is decoded)."""
    value = string_field(obj, "image", path=path, line=line, required=False)
    if not value:
        return None
    image = Path(os.path.normpath(path.parent / value))  # "task/../images/x.png" -> "images/x.png" in messages
    if not image.is_file():
        raise EmbedlabError(
            "image file not found",
            path=path,
            line=line,
            found=str(image),
            expected="an image path relative to the task folder",
        )
    return image


def chunks(documents: Iterable[Document], size: int) -> Iterator[list[Document]]:
    chunk: list[Document] = []
    for doc in documents:
        chunk.append(doc)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def resolve_dataset(name_or_path: str | Path) -> Path:
    """A dataset folder from a path, or from a name inside ``$EMBEDLAB_DATA``."""
    candidate = Path(name_or_path).expanduser()
    if candidate.is_dir():
        return candidate
    root = settings.data_dir()
    if root is not None and (root / str(name_or_path)).is_dir():
        return root / str(name_or_path)
    available = sorted(p.name for p in root.iterdir() if p.is_dir()) if root and root.is_dir() else []
    close = difflib.get_close_matches(str(name_or_path), available, n=1)
    hint = f"Did you mean {close[0]!r}? " if close else ""
    where = f"$EMBEDLAB_DATA={root}" if root else "$EMBEDLAB_DATA (not set)"
    listing = f"Available there: {', '.join(available)}" if available else "Set EMBEDLAB_DATA to your datasets folder"
    raise EmbedlabError(
        f"dataset {str(name_or_path)!r} not found: not a folder, and not a dataset name in {where}. {hint}{listing}"
    )


def _corpus_file(folder: Path) -> Path:
    """``corpus.jsonl`` or ``corpus.jsonl.gz``; both at once is refused, since nothing says which one
    the user means (one may be a stale copy of the other) and the numbers would depend on a guess."""
    found = [folder / name for name in ("corpus.jsonl", "corpus.jsonl.gz") if (folder / name).is_file()]
    if len(found) == 2:
        raise EmbedlabError(
            "two corpus files, cannot tell which one to read",
            path=folder,
            found=f"{found[0]} and {found[1]}",
            expected="exactly one of corpus.jsonl or corpus.jsonl.gz",
            hint="remove or rename the one that should not be used",
        )
    if found:
        return found[0]
    raise EmbedlabError(
        "corpus file missing", path=folder, expected="corpus.jsonl or corpus.jsonl.gz in the dataset folder"
    )


def _sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def scan_corpus_ids(path: Path) -> list[str]:
    """Validate every corpus record and return the ids in file order."""
    return list(scan_corpus(path))


def scan_corpus(path: Path) -> dict[str, Path | None]:
    """Validate every corpus record; its ids in file order, each with its image file (or None)."""
    images: dict[str, Path | None] = {}

    def ids() -> Iterator[tuple[int, str]]:
        for line, obj in iter_json_objects(path):
            doc = _document(obj, path=path, line=line)
            images.setdefault(doc.id, doc.image)
            yield line, doc.id

    check_unique_ids(ids(), path=path)
    return images


def check_unique_ids(
    ids: Iterable[tuple[int, str]], *, path: Path, where: str = "line", expected: str = "unique '_id' values"
) -> None:
    """Refuse a repeated document id (naming the first place it appeared: ``where`` is "line" or
    "row") and an empty corpus; ``ids`` are (line or row, id) pairs in file order."""
    seen: dict[str, int] = {}
    for line, doc_id in ids:
        if doc_id in seen:
            raise EmbedlabError(
                f"duplicate document id {doc_id!r} (first at {where} {seen[doc_id]})",
                path=path,
                line=line,
                expected=expected,
            )
        seen[doc_id] = line
    if not seen:
        raise EmbedlabError("empty corpus", path=path, expected="at least one document")


def read_queries(path: Path) -> dict[str, str]:
    return read_queries_and_images(path)[0]


def read_queries_and_images(path: Path) -> tuple[dict[str, str], dict[str, Path]]:
    """Query texts by id (``""`` for an image query without text) and the image queries' files."""
    queries: dict[str, str] = {}
    images: dict[str, Path] = {}
    lines: dict[str, int] = {}
    for line, obj in iter_json_objects(path):
        query_id = string_field(obj, "_id", path=path, line=line, required=True)
        image = image_field(obj, path=path, line=line)
        text = string_field(obj, "text", path=path, line=line, required=image is None)
        if not query_id.strip():
            raise EmbedlabError("empty '_id'", path=path, line=line, expected="a non-empty query id")
        if query_id in lines:
            raise EmbedlabError(
                f"duplicate query id {query_id!r} (first at line {lines[query_id]})",
                path=path,
                line=line,
                expected="unique '_id' values",
            )
        lines[query_id] = line
        queries[query_id] = text
        if image is not None:
            images[query_id] = image
    if not queries:
        raise EmbedlabError("no queries", path=path, expected="at least one query")
    return queries, images


def read_beir_qrels(
    path: Path, *, query_ids: Container[str] | None = None, doc_ids: Container[str] | None = None
) -> Qrels:
    """``query-id<TAB>corpus-id<TAB>score`` with an optional header; integer grades; a pair judged
    twice with different grades is an error naming both lines.

    With ``query_ids`` / ``doc_ids`` every row must name a known query and document.
    """
    judgments: dict[str, dict[str, int]] = {}
    lines: dict[tuple[str, str], int] = {}
    for line, text in iter_lines(path):
        if not text.strip():
            continue
        cells = text.split("\t")
        if line == 1 and cells[0].strip().lower() in {"query-id", "query_id", "qid"}:
            continue
        if len(cells) != 3:
            raise EmbedlabError(
                f"wrong number of columns ({len(cells)})",
                path=path,
                line=line,
                found=shorten(text),
                expected="3 tab-separated columns: query-id, corpus-id, score",
            )
        query_id, doc_id, grade = (c.strip() for c in cells)
        value = parse_grade(grade, path=path, line=line)
        if not query_id or not doc_id:
            raise EmbedlabError("empty id", path=path, line=line, found=shorten(text), expected="non-empty ids")
        if query_ids is not None and query_id not in query_ids:
            raise EmbedlabError(
                f"qrels name query {query_id!r}, which is not in queries.jsonl",
                path=path,
                line=line,
                expected="every judged query to exist",
            )
        if doc_ids is not None and doc_id not in doc_ids:
            raise EmbedlabError(
                f"qrels name document {doc_id!r} (query {query_id!r}), which is not in the corpus",
                path=path,
                line=line,
                expected="every judged document to exist",
            )
        record_judgment(judgments, lines, query_id, doc_id, value, path=path, line=line)
    if not judgments:
        raise EmbedlabError("no judgments", path=path, expected="at least one qrels row")
    return Qrels(judgments)


def load_dataset(name_or_path: str | Path, *, split: str = "test") -> Dataset:
    folder = resolve_dataset(name_or_path)
    corpus_path = _corpus_file(folder)
    queries_path = folder / "queries.jsonl"
    qrels_path = folder / "qrels" / f"{split}.tsv"
    for required in (queries_path, qrels_path):
        if not required.is_file():
            splits = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
            extra = f" (splits found: {', '.join(splits)})" if splits and required == qrels_path else ""
            raise EmbedlabError(f"missing file{extra}", path=required, expected="a BEIR dataset folder")
    corpus = scan_corpus(corpus_path)
    queries, query_images = read_queries_and_images(queries_path)
    qrels = read_beir_qrels(qrels_path, query_ids=queries, doc_ids=corpus)
    judged = {q: queries[q] for q in qrels.judgments}
    judged_images = {q: query_images[q] for q in judged if q in query_images}
    images = sorted({p for p in corpus.values() if p is not None} | set(judged_images.values()))
    return Dataset(
        name=folder.name,
        path=folder,
        corpus_path=corpus_path,
        split=split,
        queries=judged,
        qrels=qrels,
        doc_count=len(corpus),
        # image bytes count too: the same records with other pictures are another dataset
        checksum=_sha256([corpus_path, queries_path, qrels_path, *images]),
        corpus_images=sum(p is not None for p in corpus.values()),
        query_images=judged_images,
    )
