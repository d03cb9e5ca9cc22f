"""One line per collection under a root, for ``embedlab index list`` (no model, no index is loaded).

Only each live generation's ``manifest.json`` is read and the folder sizes summed, so listing
many collections costs milliseconds.  A collection whose manifest cannot be read is listed with
the reason instead of failing the whole listing: the list is where a user goes to find out what
is there, damaged or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from embedlab.collection.layout import CollectionDir, collections_root, folder_size, list_collections
from embedlab.collection.manifest import read_manifest
from embedlab.errors import EmbedlabError


@dataclass(frozen=True)
class CollectionSummary:
    name: str
    path: str
    generation: int | None
    chunks: int | None
    files: int | None
    model: str | None
    size_bytes: int
    problem: str | None = None


def summaries(root: str | Path | None = None) -> list[CollectionSummary]:
    """A summary of every collection with a live generation under ``root`` (default: see ``collections_root``)."""
    folder = collections_root(root)
    rows = []
    for name in list_collections(folder):
        cdir = CollectionDir(name, root=folder)
        path = str(cdir.path.absolute())
        try:
            manifest = read_manifest(cdir.live())
        except EmbedlabError as err:
            rows.append(CollectionSummary(name, path, None, None, None, None, folder_size(cdir.path), err.one_line()))
            continue
        rows.append(
            CollectionSummary(
                name=name,
                path=path,
                generation=manifest.generation,
                chunks=manifest.counts.chunks,
                files=manifest.counts.files,
                model=manifest.model,
                size_bytes=folder_size(cdir.path),
            )
        )
    return rows
