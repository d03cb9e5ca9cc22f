"""Collections: build, info, search (dense, BM25, hybrid, filters, re-ranking) and update, with the hashing encoder."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pypdf import PdfReader, PdfWriter

from embedlab.collection import build, info, open_collection, update
from embedlab.collection.snippet import highlights, make_snippet, mark
from embedlab.data.chunking import chunk_document
from embedlab.data.ingest import read_document
from embedlab.encoders.fake import HashingEncoder
from embedlab.encoders.spec import ModelSpec
from embedlab.errors import EmbedlabError
from embedlab.index.lexical import TermAnalyzer
from embedlab.search.rerank import WordOverlapReranker
from tests.float_tolerance import float32_tolerance
from tests.helpers import make_pdf
from tests.library_fixtures import CHUNK, HASHING, LIBRARY, chunk_rows, live_generation, places, write_library


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "collections"


@pytest.fixture
def library(tmp_path: Path) -> Path:
    return write_library(tmp_path / "library")


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text the hashing encoder is asked to encode."""
    texts: list[str] = []
    original = HashingEncoder.encode_batch

    def counting(self: HashingEncoder, batch: list[str]) -> np.ndarray:
        texts.extend(batch)
        return original(self, batch)

    monkeypatch.setattr(HashingEncoder, "encode_batch", counting)
    return texts


def _build(library: Path, root: Path, name: str = "lib", **kwargs: object):
    options = {"model_spec": HASHING, "root": root, "use_cache": False, **CHUNK, **kwargs}
    return build(library, name, **options)  # type: ignore[arg-type]


def test_build_info_and_search(library: Path, root: Path) -> None:
    report = _build(library, root)
    assert (report.files, report.files_new, report.generation, report.up_to_date) == (4, 4, 1, False)
    assert report.chunks == report.chunks_added == report.encoded > 4  # several chunks per file
    assert (root / "lib" / "CURRENT").read_text().strip() == "gen-000001"
    manifest = json.loads((root / "lib" / "gen-000001" / "manifest.json").read_text())
    assert manifest["encoder"]["model"] == "hashing" and manifest["dim"] == 64 and manifest["metric"] == "cosine"
    assert manifest["index"]["kind"] == "exact" and manifest["chunking"] == {
        **CHUNK,
        "counter": "words",
        "cleaning": "clean-1",
    }

    data = info("lib", root=root)
    assert data["counts"] == {"files": 4, "pages": 4, "chunks": report.chunks, "skipped": 0}
    assert data["model"] == "hashing:dim=64" and data["files_by_kind"] == {"html": 1, "markdown": 1, "text": 2}
    assert data["size_bytes"] > 0 and data["skipped"] == []

    with open_collection("lib", root=root) as collection:
        for mode in ("dense", "bm25", "hybrid"):
            response = collection.search("reset password", k=3, mode=mode)
            assert response.hits, mode
            top = response.hits[0]
            assert top.path == "guide/passwords.md" and top.page == 1, mode
            page = read_document(library / top.path, root=library).pages[0].text
            assert page[top.char_start : top.char_end] == top.text
            assert "**password**" in top.marked_snippet().lower()
            assert all(
                top.text[a:b].lower().startswith("password") or top.text[a:b].lower() == "reset"
                for a, b in top.highlights
            )
            assert set(response.latency_ms) == {"encode", "search", "fuse", "rerank", "fetch", "total"}
            assert response.latency_ms["total"] >= response.latency_ms["search"] > 0
            assert [h.rank for h in response.hits] == list(range(1, len(response.hits) + 1))
        hybrid = collection.search("reset password", k=3, mode="hybrid")
        assert hybrid.latency_ms["fuse"] > 0 and {"dense", "bm25", "rrf"} <= set(hybrid.hits[0].scores)
        assert json.loads(json.dumps(hybrid.to_dict()))["hits"][0]["path"] == "guide/passwords.md"


def test_building_twice_needs_replace(library: Path, root: Path) -> None:
    _build(library, root)
    with pytest.raises(EmbedlabError, match=r"already exists.*index update lib"):
        _build(library, root)
    report = _build(library, root, replace=True, max_tokens=60, overlap=0)
    assert report.generation == 2
    assert sorted(p.name for p in (root / "lib").iterdir()) == [".lock", "CURRENT", "gen-000002"]


def test_update_edits_adds_and_deletes(library: Path, root: Path, tmp_path: Path, encoded: list[str]) -> None:
    first = _build(library, root)
    before = chunk_rows(live_generation(root, "lib"))
    unchanged_ids = {r[0] for r in before if r[1] in ("guide/security.txt", "recipes/bread.html")}
    encoded.clear()

    (library / "guide" / "passwords.md").write_text(LIBRARY["guide/passwords.md"].replace("twelve", "sixteen"))
    (library / "recipes" / "soup.txt").unlink()
    write_library(library, {"notes/new.md": "A brand new note about sourdough starters and flour."})
    report = update("lib", root=root, use_cache=False)
    assert (report.files_new, report.files_changed, report.files_removed, report.files_unchanged) == (1, 1, 1, 2)
    assert report.generation == 2

    # only the edited and the new file were encoded
    expected_texts = []
    for rel in ("guide/passwords.md", "notes/new.md"):
        doc = read_document(library / rel, root=library)
        expected_texts += [c.text for c in chunk_document(doc, **CHUNK)]
    assert sorted(encoded) == sorted(expected_texts)
    assert report.encoded == len(expected_texts) == report.chunks_added

    after = chunk_rows(live_generation(root, "lib"))
    keys = [(r[1], r[2], r[3]) for r in after]
    assert len(keys) == len(set(keys))  # no duplicates
    assert not any(r[1] == "recipes/soup.txt" for r in after)  # no stale chunks of a deleted file
    assert all("twelve" not in r[5] for r in after)  # nor of the old version of an edited file
    assert unchanged_ids <= {r[0] for r in after}  # unchanged chunks keep their ids
    assert min(r[0] for r in after if r[1] == "notes/new.md") > max(r[0] for r in before)  # ids never reused
    assert report.chunks == len(after) == first.chunks - report.chunks_removed + report.chunks_added

    fresh = _build(library, root, name="fresh")
    assert places(after) == places(chunk_rows(live_generation(root, "fresh")))
    assert fresh.chunks == report.chunks
    with open_collection("lib", root=root) as a, open_collection("fresh", root=root) as b:
        by_place_a = {(r[1], r[2], r[3]): np.asarray(a.dense.vectors[i]) for i, r in enumerate(after)}
        rows_b = chunk_rows(live_generation(root, "fresh"))
        for i, r in enumerate(rows_b):
            # the hashing encoder's integer counts, normalised: the same bits whether copied or re-encoded
            np.testing.assert_allclose(by_place_a[(r[1], r[2], r[3])], b.dense.vectors[i], atol=1e-6)
        assert a.search("sixteen characters", k=1, mode="bm25").hits[0].path == "guide/passwords.md"

    encoded.clear()
    again = update("lib", root=root, use_cache=False)
    assert again.up_to_date and again.generation == 2 and again.encoded == 0 and encoded == []


def test_update_with_the_cache_reencodes_nothing_it_has(
    library: Path, root: Path, tmp_path: Path, encoded: list[str]
) -> None:
    cache = tmp_path / "cache"
    _build(library, root, use_cache=True, cache_dir=cache)
    (library / "guide" / "security.txt").write_text(LIBRARY["guide/security.txt"] + "\n\nA new last paragraph.")
    encoded.clear()
    report = update("lib", root=root, cache_dir=cache)
    new_chunks = chunk_document(read_document(library / "guide" / "security.txt", root=library), **CHUNK)
    assert report.files_changed == 1 and report.chunks_added == len(new_chunks)
    assert report.cache_hits > 0 and report.encoded == len(encoded) == len(new_chunks) - report.cache_hits
    assert "new last paragraph" in " ".join(encoded)


def test_another_encoder_is_refused(library: Path, root: Path) -> None:
    _build(library, root)
    with pytest.raises(EmbedlabError) as err:
        open_collection("lib", root=root, model_spec=ModelSpec(model="hashing", dim=64, pooling="mean"))
    message = str(err.value)
    assert "built with a different encoder (differs in pooling)" in message
    assert "pooling='mean'" in message and "pooling='sum'" in message and "model='hashing'" in message
    with pytest.raises(EmbedlabError, match="differs in weights"):
        open_collection("lib", root=root, model_spec="hashing:dim=32")
    with open_collection("lib", root=root, model_spec="hashing:dim=64,batch_size=8"):
        pass  # settings that do not change vectors are fine


def test_damaged_vectors_are_detected(library: Path, root: Path) -> None:
    _build(library, root)
    vectors = live_generation(root, "lib") / "vectors.npy"
    data = bytearray(vectors.read_bytes())
    data[-1] ^= 0xFF
    vectors.write_bytes(bytes(data))
    with pytest.raises(EmbedlabError, match="do not match the checksum"):
        open_collection("lib", root=root)


def test_path_filter(library: Path, root: Path) -> None:
    _build(library, root)
    with open_collection("lib", root=root) as collection:
        for mode in ("dense", "bm25", "hybrid"):
            response = collection.search("bread with salt", k=20, mode=mode, path_filter="recipes/*")
            assert response.hits and all(h.path.startswith("recipes/") for h in response.hits)
            assert response.chunks_searched < len(collection)
        assert collection.search("password", mode="hybrid", path_filter="*.pdf").hits == ()
        assert {h.path for h in collection.search("password", k=50, path_filter="guide/*.md").hits} == {
            "guide/passwords.md"
        }


def test_bad_and_encrypted_pdfs_are_skipped_and_listed(tmp_path: Path, root: Path) -> None:
    library = write_library(
        tmp_path / "library",
        {
            "good.pdf": make_pdf([["Cats sleep most of the day."], ["Volcanoes erupt molten basalt lava."]]),
            "broken.pdf": random.Random(1).randbytes(500),
            "image.png": b"\x89PNG\r\n\x1a\n",
            "notes.txt": "Plain notes about gardening and tomatoes.",
        },
    )
    writer = PdfWriter()
    writer.append(PdfReader(library / "good.pdf"))
    writer.encrypt("secret")
    with (library / "locked.pdf").open("wb") as handle:
        writer.write(handle)
    report = _build(library, root)
    reasons = dict(report.skipped)
    assert set(reasons) == {"broken.pdf", "image.png", "locked.pdf"}
    assert reasons["broken.pdf"].startswith("broken PDF") and "password" in reasons["locked.pdf"]
    assert report.files == 2
    assert [item["path"] for item in info("lib", root=root)["skipped"]] == ["broken.pdf", "image.png", "locked.pdf"]
    with open_collection("lib", root=root) as collection:
        hit = collection.search("volcano lava", k=1, mode="bm25").hits[0]
        assert (hit.path, hit.page) == ("good.pdf", 2)
    again = update("lib", root=root, use_cache=False)
    assert again.up_to_date  # unchanged bad files are not read again
    (library / "broken.pdf").unlink()
    changed = update("lib", root=root, use_cache=False)
    assert not changed.up_to_date and dict(changed.skipped).keys() == {"image.png", "locked.pdf"}
    assert changed.encoded == 0 and changed.chunks == report.chunks  # the vectors were carried over as they were


def test_empty_folder_is_an_error(tmp_path: Path, root: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "blank.txt").write_text("   \n")
    with pytest.raises(EmbedlabError, match=r"nothing to index.*0 readable files with text, 1 skipped"):
        _build(empty, root)
    assert not (root / "lib").exists()  # a failed first build leaves nothing behind


HYBRID_LIBRARY = {
    "hamlet.txt": "To be, or not to be, that is the question: whether tis nobler in the mind to suffer.",
    "horses.txt": "A horse gallops across the meadow while riders watch from the fence.",
    "cat.txt": "The cat, the dog and the bird sat on the mat by the door of the house.",
    "cooking.txt": "Question: what is the best way to cook rice? Rinse it, then simmer it gently.",
    "trains.txt": "Trains leave the station every hour; be there on time or miss the connection.",
}


def _reciprocal_rank(hits, relevant: str) -> float:
    for hit in hits:
        if hit.path == relevant:
            return 1.0 / hit.rank
    return 0.0


def test_hybrid_is_at_least_as_good_as_either_mode(tmp_path: Path, root: Path) -> None:
    library = write_library(tmp_path / "library", HYBRID_LIBRARY)
    build(library, "h", model_spec=ModelSpec(model="hashing", dim=1024), root=root, use_cache=False)
    # "to be or not to be" is all stop words for BM25 (no results); the hashing encoder sees the words.
    # "horses galloping" shares no word with "horse gallops" for the hashing encoder, which prefers the
    # document with the most "the"s; BM25's stemmer matches both words and ignores "the".
    queries = {"to be or not to be": "hamlet.txt", "the horses galloping": "horses.txt"}
    mrr = {}
    with open_collection("h", root=root) as collection:
        for mode in ("dense", "bm25", "hybrid"):
            mrr[mode] = np.mean(
                [_reciprocal_rank(collection.search(q, k=5, mode=mode).hits, rel) for q, rel in queries.items()]
            )
        assert collection.search("to be or not to be", mode="bm25").hits == ()
    assert mrr["hybrid"] >= mrr["dense"] and mrr["hybrid"] >= mrr["bm25"]
    assert mrr["hybrid"] > min(mrr["dense"], mrr["bm25"])
    assert mrr["hybrid"] == 1.0, mrr


def test_weights_and_rrf_constant_reach_the_fusion(library: Path, root: Path) -> None:
    _build(library, root)
    with open_collection("lib", root=root) as collection:
        only_bm25 = collection.search("password email", k=5, mode="hybrid", weights=(0.0, 1.0), rrf_k=10)
        bm25 = collection.search("password email", k=5, mode="bm25")
        assert [h.chunk_id for h in only_bm25.hits] == [h.chunk_id for h in bm25.hits]
        assert only_bm25.hits[0].score == pytest.approx(1 / 11)
        # a query word absent from the corpus still matches by its stem ("resetting" -> "reset")
        assert collection.search("resetting", k=1, mode="bm25").hits[0].path == "guide/passwords.md"
        with pytest.raises(EmbedlabError, match="all fusion weights are 0"):
            collection.search("password", weights=(0, 0))
        with pytest.raises(EmbedlabError, match=r"Unknown search mode 'hybird'\. Did you mean 'hybrid'"):
            collection.search("password", mode="hybird")
        with pytest.raises(EmbedlabError, match="empty query"):
            collection.search("  ")
        with pytest.raises(EmbedlabError, match="invalid k"):
            collection.search("password", k=0)


def test_rerank_stage(library: Path, root: Path) -> None:
    _build(library, root)
    query = "recovery codes phone"
    with open_collection("lib", root=root) as collection:
        first = collection.search(query, k=3, mode="dense")
        reranked = collection.search(query, k=3, mode="dense", reranker=WordOverlapReranker(), rerank_depth=10)
        assert reranked.reranker == "word-overlap" and reranked.latency_ms["rerank"] > 0
        overlap = WordOverlapReranker().score(query, [h.text for h in reranked.hits])
        assert [h.score for h in reranked.hits] == overlap == sorted(overlap, reverse=True)
        assert all(h.scores["rerank"] == h.score and "dense" in h.scores for h in reranked.hits)
        assert reranked.hits[0].score == 1.0 and "Recovery codes" in reranked.hits[0].text
        assert len(first.hits) == 3

        class Broken:
            name = "broken"

            def score(self, query: str, texts: list[str]) -> list[float]:
                return [0.0]

        with pytest.raises(EmbedlabError, match="re-ranker 'broken' returned 1 scores"):
            collection.search(query, k=3, reranker=Broken())


def test_hnsw_above_the_threshold(library: Path, root: Path) -> None:
    report = _build(library, root, ann_threshold=5, max_tokens=12, overlap=2)
    assert report.index["kind"] == "faiss-hnsw" and report.index["recall_queries"] == min(200, report.chunks)
    assert report.index["recall_at_10"] >= 0.95 and report.index["params"]["m"] == 32
    assert (live_generation(root, "lib") / "hnsw.faiss").is_file()
    with open_collection("lib", root=root) as collection:
        exact = np.asarray(collection.dense.vectors) @ collection.encoder.encode(["sourdough flour"], role="query")[0]
        hits = collection.search("sourdough flour", k=3, mode="dense").hits
        # FAISS's HNSW kernel vs numpy's BLAS: one 64-term float32 dot product of unit vectors each
        assert hits[0].score == pytest.approx(float(exact.max()), abs=float32_tolerance(scale=1.0, terms=64))
        filtered = collection.search("sourdough flour", k=50, mode="dense", path_filter="recipes/*").hits
        assert filtered and {h.path for h in filtered} <= {"recipes/bread.html", "recipes/soup.txt"}
        recipe_rows = collection.rows_matching("recipes/*")
        assert len(filtered) == len(recipe_rows)  # the id selector finds every allowed row
    assert info("lib", root=root)["index"]["recall_at_10"] == report.index["recall_at_10"]


def test_snippet_window_and_marks() -> None:
    analyzer = TermAnalyzer()
    text = (
        ("Filler words come first. " * 20)
        + "Then the passwords section says to reset a Password. "
        + ("More filler text follows here. " * 20)
    )
    marks = highlights(text, "password resets", analyzer)
    assert [text[a:b] for a, b in marks] == ["passwords", "reset", "Password"]
    snippet = make_snippet(text, marks, width=120)
    assert snippet.end - snippet.start <= 140 and snippet.highlights == marks
    rendered = mark(text, snippet)
    assert rendered.startswith("…") and rendered.endswith("…")
    assert "**passwords**" in rendered and "**Password**" in rendered and "**reset**" in rendered
    assert make_snippet("short", (), width=120).end == 5


def test_unknown_collection_suggests_a_name(library: Path, root: Path) -> None:
    _build(library, root, name="papers")
    with pytest.raises(EmbedlabError, match=r"Unknown collection 'paper'.*Did you mean 'papers'"):
        open_collection("paper", root=root)
    with pytest.raises(EmbedlabError, match="invalid collection name"):
        info("../etc", root=root)
    assert Counter(p.name.startswith("gen-") for p in (root / "papers").iterdir())[True] == 1
