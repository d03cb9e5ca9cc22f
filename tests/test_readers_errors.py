"""Each reader's errors name the file, the line, what was found and what was expected.

Readers are called directly (BEIR, TREC, training JSONL, candidates files), and the collection
and cache files through the real CLI, since their damage is found at different depths.  Also:
files written by embedlab get the user's umask.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pytest

from embedlab.atomic import atomic_dir, atomic_write_text, current_umask
from embedlab.cache.store import EmbeddingCache
from embedlab.cli.main import main
from embedlab.data.beir import load_dataset, read_beir_qrels, read_queries, scan_corpus_ids
from embedlab.data.trec import read_trec_qrels, read_trec_run
from embedlab.errors import EmbedlabError
from embedlab.select.candidates import load_candidates
from embedlab.train.data import load_training_set
from tests.helpers import TINY_CORPUS, write_beir
from tests.library_fixtures import write_library

BOM = b"\xef\xbb\xbf"


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(EmbedlabError) as caught:
        call(*args, **kwargs)
    line = caught.value.one_line()
    assert "\n" not in line
    return line


def assert_all(line: str, *needles: str) -> None:
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"


# --------------------------------------------------------------------------- BOM, null, ambiguity


@pytest.mark.parametrize("reader", ["beir-qrels", "trec-qrels", "trec-run", "corpus", "queries"])
def test_a_bom_is_unexpected_in_every_line_file(reader: str, tmp_path: Path) -> None:
    """A qrels file with a BOM used to fail as "relevance score is not an integer; found 'score'"."""
    body = {
        "beir-qrels": (read_beir_qrels, b"query-id\tcorpus-id\tscore\nq1\td1\t1\n"),
        "trec-qrels": (read_trec_qrels, b"q1 0 d1 1\n"),
        "trec-run": (read_trec_run, b"q1 Q0 d1 1 0.5 run\n"),
        "corpus": (scan_corpus_ids, b'{"_id": "d1", "text": "x"}\n'),
        "queries": (read_queries, b'{"_id": "q1", "text": "x"}\n'),
    }
    call, data = body[reader]
    path = tmp_path / "file.txt"
    path.write_bytes(BOM + data)
    line = error_of(call, path)
    assert_all(line, f"{path}:1:", "unexpected BOM", "found bytes EF BB BF", "expected UTF-8 text without a BOM")
    path.write_bytes(data)
    call(path)  # the same file without the BOM reads


def test_null_text_says_null(tmp_path: Path) -> None:
    path = tmp_path / "queries.jsonl"
    path.write_text('{"_id": "q1", "text": "fine"}\n{"_id": "q2", "text": null}\n')
    assert_all(error_of(read_queries, path), f"{path}:2:", "field 'text' is null", "found null", "expected a string")


def test_null_title_is_an_empty_title(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"_id": "d1", "title": null, "text": "body"}\n')
    assert scan_corpus_ids(path) == ["d1"]


def test_corpus_jsonl_and_gz_together_are_refused(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "ds")
    (folder / "corpus.jsonl.gz").write_bytes(gzip.compress((folder / "corpus.jsonl").read_bytes()))
    line = error_of(load_dataset, folder)
    assert_all(
        line,
        "two corpus files",
        str(folder / "corpus.jsonl"),
        str(folder / "corpus.jsonl.gz"),
        "expected exactly one of corpus.jsonl or corpus.jsonl.gz",
    )
    (folder / "corpus.jsonl").unlink()
    assert load_dataset(folder).corpus_path.name == "corpus.jsonl.gz"


# --------------------------------------------------------------------------- duplicate judgments


@pytest.mark.parametrize("kind", ["beir", "trec"])
def test_conflicting_duplicate_judgments_name_both_lines(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "qrels.txt"
    if kind == "beir":
        path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t1\nq1\td1\t0\n")
        reader, (first, second) = read_beir_qrels, (2, 4)
    else:
        path.write_text("q1 0 d1 2\nq1 0 d2 1\nq1 0 d1 0\n")
        reader, (first, second) = read_trec_qrels, (1, 3)
    line = error_of(reader, path)
    assert_all(
        line,
        f"{path}:{second}:",
        "conflicting judgments",
        "'q1'",
        "'d1'",
        f"lines {first} and {second}",
        f"grade 2 at line {first}, grade 0 at line {second}",
    )


@pytest.mark.parametrize("kind", ["beir", "trec"])
def test_identical_duplicate_judgments_are_accepted(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "qrels.txt"
    if kind == "beir":
        path.write_text("q1\td1\t2\nq1\td1\t2\nq1\td2\t1\n")
        qrels = read_beir_qrels(path)
    else:
        path.write_text("q1 0 d1 2\nq1 0 d1 2\nq1 0 d2 1\n")
        qrels = read_trec_qrels(path)
    assert qrels.judgments == {"q1": {"d1": 2, "d2": 1}}


# --------------------------------------------------------------------------- numbers that do not fit


@pytest.mark.parametrize("kind", ["beir", "trec"])
def test_a_grade_that_does_not_fit_is_out_of_range(kind: str, tmp_path: Path) -> None:
    """A 400-digit grade used to end in 'OverflowError: int too large to convert to float' in nDCG."""
    huge = "9" * 400
    path = tmp_path / "qrels.txt"
    path.write_text(f"q1\td1\t{huge}\n" if kind == "beir" else f"q1 0 d1 {huge}\n")
    line = error_of(read_beir_qrels if kind == "beir" else read_trec_qrels, path)
    assert_all(line, f"{path}:1:", "relevance score out of range", "expected an integer grade between")


@pytest.mark.parametrize("score", ["1e400", "-1e400", "nan", "inf"])
def test_a_run_score_must_be_finite(score: str, tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    path.write_text(f"q1 Q0 d1 1 0.5 r\nq1 Q0 d2 2 {score} r\n")
    assert_all(error_of(read_trec_run, path), f"{path}:2:", "score is not a finite number", f"found '{score}'")


def test_an_integer_id_too_long_for_python_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps(TINY_CORPUS[0]) + "\n" + '{"_id": ' + "7" * 5000 + ', "text": "x"}\n')
    line = error_of(scan_corpus_ids, path)
    assert_all(line, f"{path}:2:", "JSON value out of range", "4300 digits", "expected numbers of ordinary size")
    assert "sys.set_int_max_str_digits" not in line


def test_infinite_number_as_id_says_so(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"_id": 1e400, "text": "x"}\n')
    assert_all(
        error_of(scan_corpus_ids, path),
        f"{path}:1:",
        "field '_id' has the wrong type",
        "found a number out of range (infinite)",
    )


# --------------------------------------------------------------------------- pathological JSON and text


def test_deep_nesting_is_one_line_not_a_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"_id": "d1", "text": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    assert_all(error_of(scan_corpus_ids, path), f"{path}:1:", "JSON nested too deeply")


def test_a_lone_surrogate_is_one_line(tmp_path: Path) -> None:
    """Valid JSON, invalid Unicode: it used to pass the reader and fail as UnicodeEncodeError in the cache key."""
    path = tmp_path / "queries.jsonl"
    path.write_text('{"_id": "q1", "text": "ok"}\n{"_id": "q2", "text": "broken \\ud800 text"}\n')
    assert_all(error_of(read_queries, path), f"{path}:2:", "unpaired surrogate", "found \\ud800")


def test_a_surrogate_pair_is_a_character(tmp_path: Path) -> None:
    path = tmp_path / "queries.jsonl"
    path.write_text('{"_id": "q1", "text": "smile \\ud83d\\ude00"}\n')
    assert read_queries(path) == {"q1": "smile \U0001f600"}


def test_corrupt_gzip_data_is_one_line(tmp_path: Path) -> None:
    """A flipped byte inside the deflate stream raises zlib.error (not an OSError) from gzip."""
    data = bytearray(gzip.compress(("".join(json.dumps(d) + "\n" for d in TINY_CORPUS) * 50).encode()))
    data[20] ^= 0xFF
    path = tmp_path / "corpus.jsonl.gz"
    path.write_bytes(bytes(data))
    assert_all(error_of(scan_corpus_ids, path), f"{path}:", "cannot read file", "expected a complete gzip file")


# --------------------------------------------------------------------------- training JSONL


@pytest.mark.parametrize(
    ("row", "needles"),
    [
        ('{"query": null, "positive": "p"}', ["field 'query' is null"]),
        ('{"query": "q", "clicked": null, "shown": ["a"]}', ["field 'clicked' is null"]),
        ('{"query": "q \\udfff", "positive": "p"}', ["unpaired surrogate"]),
        ('{"query": "q", "positive": ' + "[" * 50_000 + "]" * 50_000 + "}", ["JSON nested too deeply"]),
        ('{"query": "q", "positive": "p", "query_id": ' + "1" * 4400 + "}", ["JSON value out of range"]),
    ],
    ids=["null-query", "null-clicked", "surrogate", "deep", "huge-int"],
)
def test_training_rows(row: str, needles: list[str], tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    first = (
        '{"query": "fine", "clicked": "a", "shown": ["a", "b"]}'
        if "clicked" in row
        else '{"query": "fine", "positive": "p"}'
    )
    path.write_text(first + "\n" + row + "\n")
    assert_all(error_of(load_training_set, path), f"{path}:2:", *needles)


# --------------------------------------------------------------------------- candidates files


@pytest.mark.parametrize(
    ("name", "content", "needles"),
    [
        ("c.toml", "[[candidate]]\nmodel = 'bm25'\nlabel = \n", [":3:", "invalid TOML (Invalid value)"]),
        ("c.toml", "[[candidate]]\nmodel = 'bm25'\nx = " + "[" * 5000 + "]" * 5000 + "\n", ["nested too deeply"]),
        (
            "c.toml",
            "[[candidate]]\nmodel = 'bm25'\nbatch_size = " + "9" * 5000 + "\n",
            ["invalid TOML (Exceeds the limit (4300 digits)"],
        ),
        ("c.yaml", "candidate:\n  - model: bm25\n    label: 2024-13-45\n", ["invalid YAML value", "month"]),
        ("c.yaml", "candidate:\n  - model: " + "[" * 5000 + "]" * 5000 + "\n", ["nested too deeply"]),
        ("c.yaml", "candidate:\n  - model: [bm25\n", ["invalid YAML"]),
        ("c.toml", "\ufeff[[candidate]]\nmodel = 'bm25'\n", [":1:", "unexpected BOM"]),
        ("c.yaml", "candidate:\n  - {1: 2}\n", ["invalid candidates file at 'candidate.0.1.[key]'", "found '1'"]),
    ],
    ids=["toml-line", "toml-deep", "toml-huge-int", "yaml-bad-date", "yaml-deep", "yaml-syntax", "bom", "yaml-int-key"],
)
def test_candidates_files(name: str, content: str, needles: list[str], tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    line = error_of(load_candidates, path)
    assert_all(line, str(path), *needles)


# --------------------------------------------------------------------------- collection files (via the CLI)


@pytest.fixture(scope="module")
def built_collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("collection")
    library = write_library(base / "library")
    code = main(
        [
            "-q",
            "index",
            "build",
            str(library),
            "-c",
            "lib",
            "-m",
            "hashing:dim=64",
            "--root",
            str(base / "pristine"),
            "--no-cache",
            "--no-progress",
            "--chunk-tokens",
            "40",
            "--overlap",
            "8",
        ]
    )
    assert code == 0
    return base / "pristine"


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: min(len(data) // 2, 100)])
    elif how == "garbage":
        path.write_bytes(bytes((i * 131 + 7) % 256 for i in range(len(data))))
    elif how == "remove":
        path.unlink()


DAMAGE = [
    ("manifest.json", "truncate", ["cannot read the collection manifest", "--replace"]),
    ("manifest.json", "garbage", ["cannot read the collection manifest"]),
    ("chunks.sqlite", "garbage", ["cannot read the chunk database", "--replace"]),
    ("chunks.sqlite", "truncate", ["cannot read the chunk database"]),
    ("bm25/vocab.index.json", "truncate", ["cannot load the BM25 index"]),
    ("bm25/params.index.json", "garbage", ["cannot load the BM25 index"]),
    ("bm25/data.csc.index.npy", "garbage", ["cannot load the BM25 index"]),
    ("bm25/indptr.csc.index.npy", "remove", ["cannot load the BM25 index"]),
    ("../CURRENT", "garbage", ["cannot read the collection pointer"]),
]
DAMAGE_CASES = [
    (command, *case)
    for case in DAMAGE
    for command in ("search", "info")
    if not (command == "info" and case[0].startswith("bm25/"))
]  # info never loads BM25


@pytest.mark.parametrize(
    ("command", "target", "how", "needles"), DAMAGE_CASES, ids=[f"{c}-{t}-{h}" for c, t, h, _ in DAMAGE_CASES]
)
def test_damaged_collection_file_is_one_line(
    command: str, target: str, how: str, needles: list[str], built_collection: Path, tmp_path: Path, capsys
) -> None:
    root = tmp_path / "collections"
    shutil.copytree(built_collection, root)
    generation = root / "lib" / "gen-000001"
    _damage(generation / target, how)
    args = ["search", "lib", "password"] if command == "search" else ["index", "info", "lib"]
    code = main([*args, "--root", str(root)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("embedlab: error: "), err
    assert "Traceback" not in err
    damaged = (generation / target).resolve()
    shown = damaged.parent if target.startswith("bm25/") else damaged
    assert_all(err, str(shown) if target != "../CURRENT" else str(root / "lib" / "CURRENT"), *needles)


def test_damaged_chunk_database_page_found_after_open(built_collection: Path, tmp_path: Path, capsys) -> None:
    """Opening reads one page; a damaged page found by a later query must still name the file."""
    root = tmp_path / "collections"
    shutil.copytree(built_collection, root)
    db = root / "lib" / "gen-000001" / "chunks.sqlite"
    data = bytearray(db.read_bytes())
    for offset in range(4096 * 2, len(data), 53):  # pages after the schema page
        data[offset] ^= 0x5A
    db.write_bytes(bytes(data))
    code = main(["search", "lib", "password", "--root", str(root)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert_all(err, "chunks.sqlite:", "cannot read the chunk database", "--replace")


def test_damaged_vectors_without_checksum_check_is_one_line(built_collection: Path, tmp_path: Path) -> None:
    from embedlab.collection import open_collection

    root = tmp_path / "collections"
    shutil.copytree(built_collection, root)
    vectors = root / "lib" / "gen-000001" / "vectors.npy"
    vectors.write_bytes(b"\x93NUMPY garbage header")
    line = error_of(open_collection, "lib", root=root, verify=False)
    assert_all(line, str(vectors), "cannot read the vector file", "--replace")


# --------------------------------------------------------------------------- the embedding cache


def _used_cache(folder: Path) -> Path:
    cache = EmbeddingCache(folder)
    space = cache.space({"model": "m"}, 4)
    keys = [i.to_bytes(32, "big") for i in range(3000)]
    import numpy as np

    cache.put(space, keys, np.ones((len(keys), 4), dtype=np.float32))
    cache._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cache.close()
    return folder / "embeddings.sqlite"


@pytest.mark.parametrize("how", ["garbage", "truncate", "flip-pages"])
def test_damaged_cache_names_the_file_and_the_fix(how: str, tmp_path: Path) -> None:
    db = _used_cache(tmp_path / "cache")
    data = bytearray(db.read_bytes())
    if how == "garbage":
        data = bytearray(os.urandom(len(data)))
    elif how == "truncate":
        data = data[: len(data) // 2]
    else:
        for offset in range(4096, len(data), 61):
            data[offset] ^= 0x5A
    db.write_bytes(bytes(data))

    def use() -> None:
        cache = EmbeddingCache(tmp_path / "cache")
        space = cache.space({"model": "m"}, 4)
        cache.get(space, [i.to_bytes(32, "big") for i in range(3000)], 4)
        cache.count()

    line = error_of(use)
    assert_all(line, str(db), "the embedding cache is damaged", f"delete {db}", "--no-cache")


# --------------------------------------------------------------------------- umask


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_writes_follow_the_umask(mask: int, tmp_path: Path) -> None:
    """mkstemp/mkdtemp used to leave every written file 0600 and folder 0700 whatever the umask."""
    old = os.umask(mask)
    try:
        assert current_umask() == mask
        atomic_write_text(tmp_path / "result.json", "{}")
        with atomic_dir(tmp_path / "folder") as work:
            (work / "inside.txt").write_text("x")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what open() gives, for comparison
    finally:
        os.umask(old)
    assert (tmp_path / "result.json").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "result.json").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o777 & ~mask


def test_umask_fallback_reads_and_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where /proc is missing the umask is read by setting it; it must come back unchanged."""
    from embedlab import atomic

    old = os.umask(0o027)
    try:
        atomic._umask_once.cache_clear()
        real_open = open

        def no_proc(file, *args, **kwargs):
            if str(file) == "/proc/self/status":
                raise FileNotFoundError(file)
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr("builtins.open", no_proc)
        assert atomic.current_umask() == 0o027
        monkeypatch.undo()
        assert os.umask(0o027) == 0o027  # unchanged by the read
    finally:
        os.umask(old)
        atomic._umask_once.cache_clear()
