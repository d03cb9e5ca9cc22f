"""Feedback as a click log when A/B arms searched different collections: each result in its arm's collection.

Why: chunk ids belong to one collection.  With ``embedlab serve --arms``, an arm may search another
collection (a candidate built with a new model), and an interleaved page mixes both arms' results,
so the same id on one page can name two different chunks.  The logged search (table ``searches``:
``arm``, and ``teams`` = the arm of each shown result when interleaved) says which arm showed each
result; the arms file says which collection each arm searches.  A click is then read as
``(collection, chunk id)``; a click whose arm is unknown (not in the arms file, or an older client
that sent no ``search_id`` while an arm searches another collection) is left out and counted, never
looked up in the wrong collection.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from embedlab.errors import EmbedlabError
from embedlab.serve.arms import ArmsFile
from embedlab.serve.feedback import Event, FeedbackStore, SkippedRow, click_log

Key = tuple[str, int]  # (collection, chunk id)


def logged_arms(path: Path) -> dict[str, tuple[str, tuple[str, ...] | None]]:
    """search id -> (arm label, each shown result's arm or None), read-only."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.DatabaseError as err:
        raise EmbedlabError(f"cannot open the feedback database ({err})", path=path) from None
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "searches" not in tables:
            return {}
        out: dict[str, tuple[str, tuple[str, ...] | None]] = {}
        for sid, arm, teams in db.execute("SELECT search_id, arm, teams FROM searches"):
            try:
                out[sid] = (arm, None if teams is None else tuple(json.loads(teams)))
            except ValueError:
                continue  # a damaged row: its clicks are left out as unknown
        return out
    except sqlite3.DatabaseError as err:
        raise EmbedlabError(f"cannot read the feedback database ({err})", path=path) from None
    finally:
        db.close()


@dataclass
class ClickSource:
    """Where each result of a feedback event lives; ``keys`` is :func:`click_log`'s ``keys``."""

    served: str
    collections: dict[str, str]
    searches: dict[str, tuple[str, tuple[str, ...] | None]]
    armed: bool = False  # some search was answered by named arms: a click without its search is ambiguous
    unknown_arm: int = 0  # events left out because their arm's collection is unknown
    _seen: set[int] = field(default_factory=set)

    def sources(self, event: Event) -> tuple[str, ...] | None:
        """The collection of each shown result of ``event``, or None when unknown."""
        logged = self.searches.get(event.search_id) if event.search_id else None
        if logged is None:  # no search row: an older client, or the row was dropped
            if set(self.collections.values()) != {self.served} or self.armed:
                return None
            return (self.served,) * len(event.result_ids)
        arm, teams = logged
        labels = teams if teams is not None and len(teams) == len(event.result_ids) else (arm,) * len(event.result_ids)
        found = tuple(self.collections.get(label, "") for label in labels)
        return None if "" in found else found

    def keys(self, event: Event) -> tuple[Hashable, tuple[Hashable, ...]] | None:
        where = self.sources(event)
        if where is None:
            if event.id not in self._seen:
                self._seen.add(event.id)
                self.unknown_arm += 1
            return None
        shown = tuple(zip(where, event.result_ids, strict=True))
        at = event.rank - 1 if event.rank is not None else -1
        if not (0 <= at < len(shown) and shown[at][1] == event.chunk_id):
            at = event.result_ids.index(event.chunk_id) if event.chunk_id in event.result_ids else -1
        clicked: Key = shown[at] if at >= 0 else (self.served, event.chunk_id)
        return clicked, shown


def read_events(path: Path) -> tuple[list[Event], list[SkippedRow]]:
    store = FeedbackStore(path)
    try:
        return store.events()
    finally:
        store.close()


def chunk_texts(keys: set[Key], *, root: str | Path | None) -> dict[Key, str]:
    """The text of each ``(collection, chunk id)``; a collection that is gone contributes nothing."""
    from embedlab.collection import open_collection
    from embedlab.collection.layout import CollectionDir

    texts: dict[Key, str] = {}
    by_collection: dict[str, list[int]] = {}
    for name, cid in keys:
        by_collection.setdefault(name, []).append(cid)
    for name, ids in sorted(by_collection.items()):
        if not CollectionDir(name, root=root).exists():
            continue
        with open_collection(name, root=root, load_model=False) as collection:
            texts.update({(name, cid): row.text for cid, row in collection.store.chunks(sorted(set(ids))).items()})
    return texts


@dataclass(frozen=True)
class ClickExport:
    rows: list[dict[str, object]]
    events: int
    left_out: int  # events about chunks their collection no longer holds
    unknown_arm: int  # events whose arm's collection is unknown
    skipped: list[SkippedRow]

    def summary(self, out: object) -> str:
        return (
            f"{len(self.rows)} result pages with clicks from {self.events} events -> {out}"
            + (f" ({self.left_out} events about chunks no longer in the collection left out)" if self.left_out else "")
            + (f" ({self.unknown_arm} events of arms not in the arms file left out)" if self.unknown_arm else "")
            + (f" ({len(self.skipped)} damaged rows skipped)" if self.skipped else "")
        )


def source_for(collection: str, *, db: Path, arms: ArmsFile | None) -> ClickSource:
    collections = arms.collections(collection) if arms is not None else {collection: collection}
    logged = logged_arms(db)
    armed = arms is None and any(arm != collection for arm, _ in logged.values())  # served with arms, not given
    return ClickSource(collection, collections, logged, armed=armed)


def wanted_keys(events: Sequence[Event], source: ClickSource) -> set[Key]:
    wanted: set[Key] = set()
    for event in events:
        named = source.keys(event)
        if named is not None:
            clicked, shown = named
            wanted.update({clicked, *shown})  # type: ignore[arg-type]  # keys() makes (collection, id) pairs
    return wanted


def export_clicks(
    collection: str, *, db: Path, arms: ArmsFile | None, root: str | Path | None, events: Sequence[Event] | None = None
) -> ClickExport:
    """The click log of ``collection``'s feedback in ``db`` (or of ``events``), each result read from its
    arm's collection."""
    skipped: list[SkippedRow] = []
    if events is None:
        events, skipped = read_events(db)
    source = source_for(collection, db=db, arms=arms)
    texts = chunk_texts(wanted_keys(events, source), root=root)
    rows, left_out = click_log(events, texts, keys=source.keys)
    return ClickExport(rows, len(events), left_out - source.unknown_arm, source.unknown_arm, skipped)
