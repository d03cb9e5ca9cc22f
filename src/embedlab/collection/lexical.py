"""A generation's BM25 folder (``bm25/``): the common lexical index (:mod:`embedlab.index.lexical`)
built over the chunk texts in chunk-id order (row i = i-th smallest chunk id), with the
``bm25`` model's analysis and defaults, and described in the manifest."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from embedlab.collection.manifest import LexicalInfo
from embedlab.index.lexical import METHOD, STOPWORDS, BM25Index, BM25Options

FOLDER = "bm25"


def build_lexical(batches: Iterable[list[str]], folder: Path) -> LexicalInfo:
    """Index the chunk texts (a batch at a time) and save the index in ``folder/bm25``."""
    options = BM25Options()
    index = BM25Index.build(batches, options=options)
    index.save(folder / FOLDER)
    return LexicalInfo(
        folder=FOLDER if index.rows else None,
        k1=options.k1,
        b=options.b,
        method=METHOD,
        stemmer=options.stemmer,
        stopwords=STOPWORDS,
    )


def open_lexical(info: LexicalInfo, folder: Path, rows: int) -> BM25Index:
    options = BM25Options.model_validate({"k1": info.k1, "b": info.b, "stemmer": info.stemmer})
    return BM25Index.load(folder / info.folder if info.folder else None, options=options, rows=rows)
