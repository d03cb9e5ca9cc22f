"""A hostile library folder is contained: links out of it, special files, page-tree bombs, text without
boundaries, undecodable names and charsets.  Each is skipped with one line (or read safely), never
indexed by accident, never a hang, never the end of a build; ``index update`` and the server apply the
same rules.  Runs with the hashing encoder, the CLI in-process."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from embedlab.cli.main import main
from embedlab.data.chunking import MAX_CHARS_PER_TOKEN, chunk_document, count_words
from embedlab.data.ingest import Page, SourceDocument, read_document, read_or_skip
from embedlab.data.library import LibraryRules, Skipped, library_files
from embedlab.data.pdf import count_pages
from embedlab.errors import EmbedlabError
from tests.helpers import make_pdf, pdf_bytes
from tests.library_fixtures import write_library

SECRET = "zanzibarquartz marmalade password"  # words found nowhere in the library
BUILD = [
    "-q",
    "index",
    "build",
    "--collection",
    "lib",
    "--model",
    "hashing:dim=64",
    "--chunk-tokens",
    "40",
    "--overlap",
    "8",
    "--no-progress",
]


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EMBEDLAB_COLLECTIONS", str(tmp_path / "collections"))
    return tmp_path / "collections"


@pytest.fixture
def library(tmp_path: Path) -> Path:
    return write_library(tmp_path / "library")


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside the library, like /etc/passwd."""
    path = tmp_path / "outside" / "secret.txt"
    path.parent.mkdir()
    path.write_text(f"The {SECRET} lives here.\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail instead of hanging: SIGALRM interrupts a blocking open() or an endless read in this (main) thread."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s: the indexer hung")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run(capsys: pytest.CaptureFixture[str], argv: list[str], *, seconds: float = 60) -> str:
    with deadline(seconds):
        status = main(argv)
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return captured.out


def skipped_lines(out: str) -> dict[str, str]:
    """``path -> reason`` from a build/update report (``  path: reason`` lines after ``skipped N files:``)."""
    lines = out.split("skipped ", 1)[1].splitlines()[1:] if "\nskipped " in "\n" + out else []
    return dict(line.strip().split(": ", 1) for line in lines if line.startswith("  "))


def search_paths(capsys: pytest.CaptureFixture[str], query: str) -> list[str]:
    out = run(capsys, ["search", "lib", query, "--json", "--mode", "bm25", "--k", "50"])
    return [hit["path"] for hit in json.loads(out)["hits"]]


def info(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(run(capsys, ["index", "info", "lib", "--json"]))


# ----------------------------------------------------------------------------- links


def test_a_link_to_a_file_outside_is_skipped_and_never_searchable(
    library: Path, secret: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (library / "secret.txt").symlink_to(secret)
    (library / "etc").symlink_to(secret.parent, target_is_directory=True)  # a linked folder, too
    out = run(capsys, [*BUILD, str(library)])
    skipped = skipped_lines(out)
    assert skipped["secret.txt"].startswith("link to outside the library")
    assert skipped["etc"].startswith("link to outside the library") and "--follow-links" in skipped["etc"]
    assert search_paths(capsys, "zanzibarquartz marmalade") == []
    data = info(capsys)
    assert data["library"]["follow_links"] is False and data["counts"]["files"] == 4
    assert {item["path"] for item in data["skipped"]} == {"secret.txt", "etc"}

    pytest.importorskip("fastapi")
    from embedlab.serve import ServeConfig, create_app
    from tests.serve_fixtures import call, call_json, running

    with running(create_app(ServeConfig(collection="lib", root=root))) as url:
        status, data = call_json(url + "/v1/search", {"query": "zanzibarquartz marmalade", "k": 50, "mode": "bm25"})
        assert status == 200 and data["hits"] == []
        status, data = call_json(url + "/v1/search", {"query": "zanzibarquartz marmalade", "k": 50})
        assert status == 200 and all(hit["path"] != "secret.txt" for hit in data["hits"])
        assert all(SECRET not in hit["text"] for hit in data["hits"])
        assert call(url + "/v1/documents/secret.txt")[0] == 404


def test_follow_links_indexes_it_and_updates_keep_the_rule(
    library: Path, secret: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (library / "secret.txt").symlink_to(secret)
    out = run(capsys, [*BUILD, "--follow-links", str(library)])
    assert "secret.txt" not in skipped_lines(out)
    assert search_paths(capsys, "zanzibarquartz marmalade") == ["secret.txt"]
    assert info(capsys)["library"]["follow_links"] is True
    assert "links out of the folder followed" in run(capsys, ["index", "info", "lib"])

    (library / "more.txt").symlink_to(secret)  # the update follows it too: the rule is the collection's
    out = run(capsys, ["-q", "index", "update", "lib", "--no-progress"])
    assert "1 new" in out and "more.txt" not in skipped_lines(out)
    assert sorted(search_paths(capsys, "zanzibarquartz marmalade")) == ["more.txt", "secret.txt"]

    pytest.importorskip("fastapi")
    from embedlab.serve import ServeConfig, create_app
    from tests.serve_fixtures import call, running

    with running(create_app(ServeConfig(collection="lib", root=root))) as url:
        status, _, raw = call(url + "/v1/documents/secret.txt")
        assert status == 200 and SECRET.encode() in raw  # the same rule as indexing


def test_links_inside_the_library_work_and_loops_end(
    library: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (library / "shortcut.txt").symlink_to(library / "recipes" / "soup.txt")  # inside: indexed
    (library / "recipes" / "again").symlink_to(library / "recipes", target_is_directory=True)  # a loop
    (library / "up").symlink_to(library.parent, target_is_directory=True)  # out of the library
    (library / "self.txt").symlink_to(library / "self.txt")  # a link to itself
    (library / "gone.txt").symlink_to(library / "missing.txt")
    out = run(capsys, [*BUILD, str(library)], seconds=30)
    skipped = skipped_lines(out)
    assert "shortcut.txt" not in skipped
    assert skipped["recipes/again"].startswith("link to a folder already read")
    assert skipped["up"].startswith("link to outside the library")
    assert skipped["self.txt"].startswith("link loop")
    assert skipped["gone.txt"].startswith("broken link")
    assert "shortcut.txt" in search_paths(capsys, "tomato soup roast")
    # following links does not make a loop endless either: every folder is read once
    out = run(capsys, [*BUILD, "--replace", "--follow-links", str(library)], seconds=30)
    assert skipped_lines(out)["recipes/again"].startswith("link to a folder already read")


# ----------------------------------------------------------------------------- special files


def test_fifos_devices_and_sockets_are_skipped_without_hanging(
    library: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.mkfifo(library / "pipe.txt")
    (library / "zero.txt").symlink_to("/dev/zero")
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:  # too long a path: no socket
        sock.bind(str(library / "sock.txt"))
    out = run(capsys, [*BUILD, str(library)], seconds=30)
    skipped = skipped_lines(out)
    assert skipped["pipe.txt"].startswith("not a regular file (a FIFO)")
    assert skipped["zero.txt"].startswith("link to outside the library")
    if (library / "sock.txt").exists():
        assert skipped["sock.txt"].startswith("not a regular file (a socket)")
    # with links followed, the device itself is reached: still never opened
    out = run(capsys, [*BUILD, "--replace", "--follow-links", str(library)], seconds=30)
    assert skipped_lines(out)["zero.txt"].startswith("not a regular file (a character device)")
    assert info(capsys)["counts"]["files"] == 4

    # the reader refuses them too, when called on its own
    for name in ("pipe.txt", "zero.txt"):
        with deadline(10), pytest.raises(EmbedlabError, match="not a regular file"):
            read_document(library / name, root=library, rules=LibraryRules(follow_links=True))


# ----------------------------------------------------------------------------- caps


def page_tree_bomb(fanout: int = 315) -> bytes:
    """4.4 KB that name one page ``fanout ** 2`` times: the root lists the same /Pages node ``fanout``
    times, and that node lists the same page ``fanout`` times (99,225 pages for 315)."""
    content = b"BT /F1 12 Tf 72 720 Td (boom) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + b" ".join([b"3 0 R"] * fanout) + b"] /Count %d >>" % fanout**2,
        b"<< /Type /Pages /Parent 2 0 R /Kids [" + b" ".join([b"4 0 R"] * fanout) + b"] /Count %d >>" % fanout,
        b"<< /Type /Page /Parent 3 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 6 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return pdf_bytes(objects)


def test_a_pdf_page_tree_bomb_is_skipped_before_any_text_is_extracted(
    library: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pypdf import PdfReader

    bomb = page_tree_bomb()
    assert len(bomb) < 5000
    assert count_pages(PdfReader(io.BytesIO(bomb)), stop_above=10**9) == 315**2  # counted, not expanded
    (library / "bomb.pdf").write_bytes(bomb)
    started = time.perf_counter()
    with deadline(20):  # expanding it took minutes: fail fast rather than wait for that
        item = read_or_skip(library / "bomb.pdf", root=library)
    assert time.perf_counter() - started < 1.0
    assert isinstance(item, Skipped)
    assert item.reason.startswith("PDF has more than 5000 pages, over the limit of 5000 pages per file")
    assert "--max-pages" in item.reason
    out = run(capsys, [*BUILD, str(library)], seconds=30)
    assert skipped_lines(out)["bomb.pdf"] == item.reason


def test_each_cap_skips_with_one_line_and_its_option_raises_it(
    library: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (library / "manual.pdf").write_bytes(make_pdf([["First page"], ["Second page"], ["Third page"]]))
    words = " ".join(f"word{i % 997}" for i in range(30_000))  # 299 KB of text, many chunks
    (library / "long.txt").write_text(words + "\n", encoding="utf-8")
    (library / "many.txt").write_text(" ".join(words.split()[:600]) + "\n", encoding="utf-8")  # ~20 chunks
    out = run(capsys, [*BUILD, "--max-pages", "2", "--max-text-mb", "0.2", "--max-chunks", "10", str(library)])
    skipped = skipped_lines(out)
    assert skipped["manual.pdf"].startswith("PDF has more than 2 pages, over the limit of 2 pages per file")
    assert skipped["long.txt"].startswith("file of 0.237 MB, over the limit of 0.2 MB of text per file")
    assert skipped["many.txt"].startswith("more than 10 chunks, over the limit of 10 chunks per file")
    for reason, option in [
        (skipped["manual.pdf"], "--max-pages"),
        (skipped["long.txt"], "--max-text-mb"),
        (skipped["many.txt"], "--max-chunks"),
    ]:
        assert option in reason and "\n" not in reason
    assert info(capsys)["library"] == {
        "follow_links": False,
        "max_pages": 2,
        "max_text_bytes": 200_000,
        "max_chunks": 10,
        "exclude": [],
    }

    out = run(capsys, [*BUILD, "--replace", "--max-text-mb", "1", "--max-chunks", "2000", str(library)])
    assert "skipped" not in out
    assert info(capsys)["counts"]["files"] == 7

    # the cap on a PDF's extracted text is checked page by page
    with pytest.raises(EmbedlabError, match=r"PDF text passes 20 bytes by page 2.*--max-text-mb"):
        read_document(library / "manual.pdf", root=library, rules=LibraryRules(max_text_bytes=20))
    with pytest.raises(EmbedlabError, match="invalid --max-pages"):
        LibraryRules(max_pages=0)
    assert main([*BUILD, "--replace", "--max-text-mb", "nan", str(library)]) == 2


def test_text_without_whitespace_is_cut_into_chunks_within_the_budget() -> None:
    text = "".join(chr(0x61 + i % 26) for i in range(2_000_000))
    doc = SourceDocument(path=Path("blob.txt"), relative="blob.txt", sha256="0", kind="text", pages=(Page(1, text),))
    assert count_words(text) == -(-len(text) // MAX_CHARS_PER_TOKEN)  # one word, but not one token
    for counter, max_tokens in [(count_words, 256), (lambda s: len(s) // 4 + 1, 128)]:
        with deadline(60):  # quadratic before: each chunk rescanned the rest of the page
            chunks = chunk_document(doc, max_tokens=max_tokens, overlap=16, count_tokens=counter)
        assert len(chunks) > 1
        assert all(c.tokens <= max_tokens and counter(c.text) == c.tokens for c in chunks)
        assert all(len(c.text) <= max_tokens * MAX_CHARS_PER_TOKEN for c in chunks)
        assert all(c.text == text[c.char_start : c.char_end] for c in chunks)
        assert chunks[0].char_start == 0 and chunks[-1].char_end == len(text)
        assert all(a.char_end == b.char_start for a, b in itertools.pairwise(chunks))  # hard cuts: contiguous
        assert "".join(c.text for c in chunks) == text


# ----------------------------------------------------------------------------- names and charsets


def test_bad_names_charsets_and_bytes_never_abort_the_build(
    library: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = os.fsencode(library)
    with open(raw + b"/bad\xff.txt", "wb") as handle:
        handle.write(b"A file whose name is not UTF-8.\n")
    os.mkdir(raw + b"/dir\xfe")
    with open(raw + b"/dir\xfe/inner.txt", "wb") as handle:
        handle.write(b"Inside a folder whose name is not UTF-8.\n")
    (library / "bogus.html").write_text(
        '<html><head><meta charset="no-such-charset"></head><body><p>Quokka facts, read as UTF-8.</p></body></html>',
        encoding="utf-8",
    )
    (library / "codec.html").write_bytes(b'<meta charset="hex"><p>Wombat notes \xe9</p>')
    (library / "undefined.html").write_bytes(b'<meta charset="undefined"><p>Numbat \xe9t\xe9</p>')
    (library / "latin1.txt").write_bytes(b"caf\xe9 au lait")
    locked = library / "locked.txt"
    locked.write_text("no access")
    locked.chmod(0)
    try:
        out = run(capsys, [*BUILD, str(library)])
    finally:
        locked.chmod(0o644)
    skipped = skipped_lines(out)
    assert skipped["bad\\xff.txt"].startswith("name is not valid UTF-8")
    assert skipped["dir\\xfe"].startswith("name is not valid UTF-8")
    assert skipped["codec.html"].startswith(
        "charset 'hex' declared, which is not a text encoding and the file is not UTF-8 either"
    )
    assert skipped["undefined.html"].startswith("charset 'undefined' declared")
    assert skipped["latin1.txt"].startswith("line 1: text is not valid UTF-8")
    if os.geteuid() != 0:  # root reads it anyway
        assert skipped["locked.txt"].startswith("cannot read file (Permission denied)")
    assert "bogus.html" not in skipped  # an unknown charset: read as UTF-8
    assert search_paths(capsys, "quokka") == ["bogus.html"]

    data = info(capsys)
    assert {"bad\\xff.txt", "dir\\xfe", "codec.html", "undefined.html", "latin1.txt"} <= {
        item["path"] for item in data["skipped"]
    }
    text = run(capsys, ["index", "info", "lib"])
    assert "skipped:  bad\\xff.txt: name is not valid UTF-8" in text
    # an update with nothing changed is up to date, bad names included
    assert "up to date" in run(capsys, ["-q", "index", "update", "lib", "--no-progress"])


# ----------------------------------------------------------------------------- updates


def test_update_applies_the_same_rules(
    library: Path, secret: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, [*BUILD, str(library)])
    (library / "secret.txt").symlink_to(secret)
    os.mkfifo(library / "pipe.txt")
    (library / "bomb.pdf").write_bytes(page_tree_bomb())
    (library / "blob.txt").write_text("x" * 300_000, encoding="utf-8")
    out = run(capsys, ["-q", "index", "update", "lib", "--no-progress"], seconds=30)
    skipped = skipped_lines(out)
    assert skipped["secret.txt"].startswith("link to outside the library")
    assert skipped["pipe.txt"].startswith("not a regular file (a FIFO)")
    assert skipped["bomb.pdf"].startswith("PDF has more than 5000 pages")
    assert "1 new" in out and "blob.txt" not in skipped  # indexed, in bounded chunks
    assert search_paths(capsys, "zanzibarquartz marmalade") == []
    assert "up to date" in run(capsys, ["-q", "index", "update", "lib", "--no-progress"], seconds=30)

    files = library_files(library)
    assert [item.path.name for item in files if isinstance(item, Skipped)] == ["pipe.txt", "secret.txt"]
