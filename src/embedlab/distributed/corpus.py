"""The corpus an ``embedlab encode`` run reads: ids and texts in file order, validated once.

Accepted: a BEIR ``corpus.jsonl``/``corpus.jsonl.gz`` file, a dataset folder holding one, a dataset
name inside ``$EMBEDLAB_DATA`` (resolved as ``eval`` does), or a Parquet file with ``id`` and
``text`` columns (``title`` optional, joined as BEIR does).  The text a model reads is
:attr:`embedlab.data.beir.Document.content` in both cases, so the vectors of a Parquet copy of a
BEIR corpus equal those of the JSONL original.  Ids must be unique and non-empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from embedlab.checksum import file_sha256
from embedlab.data.beir import Document, _corpus_file, _document, check_unique_ids, resolve_dataset
from embedlab.data.lines import iter_json_objects
from embedlab.errors import EmbedlabError

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class Corpus:
    path: Path
    sha256: str  # of the corpus file: a changed corpus is another run, never resumed into
    ids: list[str]
    texts: list[str]

    def __len__(self) -> int:
        return len(self.ids)


def resolve_corpus(name_or_path: str) -> Path:
    """A corpus file from a file path, a dataset folder, or a dataset name in ``$EMBEDLAB_DATA``."""
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        return candidate
    if candidate.name.endswith(JSONL_SUFFIXES + PARQUET_SUFFIXES):
        raise EmbedlabError(
            "corpus file not found",
            path=candidate,
            expected="a BEIR corpus.jsonl[.gz], a Parquet file with id and text columns, or a dataset name",
        )
    return _corpus_file(resolve_dataset(name_or_path))


def read_corpus(path: Path) -> Corpus:
    """All ids and texts of ``path`` (JSONL or Parquet by its name), duplicates refused."""
    if path.name.endswith(PARQUET_SUFFIXES):
        documents = _parquet_documents(path)
    else:
        documents = [(line, _document(obj, path=path, line=line)) for line, obj in iter_json_objects(path)]
    check_unique_ids(
        ((line, doc.id) for line, doc in documents), path=path, where="row", expected="unique document ids"
    )
    return Corpus(
        path=path,
        sha256=file_sha256(path),
        ids=[doc.id for _, doc in documents],
        texts=[doc.content for _, doc in documents],
    )


def _parquet_documents(path: Path) -> list[tuple[int, Document]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
        missing = [c for c in ("id", "text") if c not in schema.names]
        if missing:
            raise EmbedlabError(
                f"Parquet corpus without column {missing[0]!r}",
                path=path,
                found=", ".join(schema.names),
                expected="columns id and text (title optional)",
            )
        columns = ["id", "text"] + (["title"] if "title" in schema.names else [])
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as err:
        raise EmbedlabError(f"cannot read the Parquet corpus ({err})", path=path) from None
    values = {c: table.column(c).to_pylist() for c in columns}
    out: list[tuple[int, Document]] = []
    for row, doc_id in enumerate(values["id"], start=1):
        if doc_id is None or not str(doc_id).strip():
            raise EmbedlabError("empty id", path=path, line=row, expected="a non-empty document id")
        title = values.get("title", [None] * len(values["id"]))[row - 1] or ""
        out.append((row, Document(str(doc_id), str(title), str(values["text"][row - 1] or ""))))
    return out
