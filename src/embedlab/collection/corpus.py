"""A BEIR corpus as a library folder, so a collection can be built from a dataset and scored on its qrels.

Each document becomes one text file, ``<percent-encoded id>.txt`` holding the title, a
blank line and the text (the chunker keeps the title as its own paragraph).  Ids too long
for a file name get a hash name; ``.ids.json`` (hidden, so never indexed) maps every file
name back to its document id.  The folder is written once per corpus checksum under the
cache folder (``corpora/<dataset>-<sha12>``), atomically, and reused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import quote

from embedlab import settings
from embedlab.atomic import atomic_dir
from embedlab.data.beir import Dataset
from embedlab.errors import EmbedlabError

ID_MAP = ".ids.json"


def file_name(doc_id: str) -> str:
    """The library file holding document ``doc_id`` (how a hit's path names its document)."""
    name = quote(doc_id, safe="") + ".txt"
    if len(name.encode()) > 200 or name.startswith("."):
        name = "id-" + hashlib.sha256(doc_id.encode()).hexdigest()[:32] + ".txt"
    return name


def corpus_folder(dataset: Dataset, *, cache_dir: str | Path | None = None) -> Path:
    """The library folder of ``dataset``'s corpus (written on first use)."""
    base = Path(cache_dir).expanduser() if cache_dir is not None else settings.cache_dir()
    target = base / "corpora" / f"{dataset.name}-{dataset.checksum[:12]}"
    if (target / ID_MAP).is_file():
        return target
    with atomic_dir(target) as work:
        names: dict[str, str] = {}
        for doc in dataset.iter_documents():
            name = file_name(doc.id)
            if name in names:
                raise EmbedlabError(
                    f"two document ids map to the file name {name!r}",
                    path=dataset.corpus_path,
                    found=f"{names[name]!r} and {doc.id!r}",
                )
            names[name] = doc.id
            body = f"{doc.title.strip()}\n\n{doc.text.strip()}" if doc.title.strip() else doc.text.strip()
            (work / name).write_text(body + "\n", encoding="utf-8")
        (work / ID_MAP).write_text(json.dumps(names, ensure_ascii=False), encoding="utf-8")
    return target


def document_ids(folder: str | Path) -> dict[str, str]:
    """File path (relative, as a collection stores it) -> document id, for a folder made by :func:`corpus_folder`."""
    path = Path(folder) / ID_MAP
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise EmbedlabError(
            "this collection was not built from a dataset, so it cannot be scored on qrels",
            path=path,
            hint="build it with `embedlab index build --dataset NAME --collection ...`",
        ) from None
