"""Test data and helpers shared by several test modules (test modules never import each other)."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(os.environ.get("EMBEDLAB_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))

TINY_CORPUS = [
    {"_id": "d1", "title": "Password reset", "text": "How to reset your password from the login page."},
    {"_id": "d2", "title": "Banana bread", "text": "A recipe with ripe bananas, flour and sugar."},
    {"_id": "d3", "title": "Account security", "text": "Enable two factor authentication to protect your account."},
    {"_id": "d4", "title": "", "text": "Forgot password? Use the reset link sent by email."},
    {"_id": "d5", "title": "Sourdough", "text": "Bake sourdough bread with a starter, flour and water."},
]
TINY_QUERIES = [
    {"_id": "q1", "text": "reset password"},
    {"_id": "q2", "text": "bread recipe flour"},
    {"_id": "q3", "text": "protect account"},
    {"_id": "q9", "text": "an unjudged query"},
]
TINY_QRELS = [("q1", "d1", 2), ("q1", "d4", 1), ("q2", "d2", 1), ("q2", "d5", 1), ("q3", "d3", 1)]


def write_beir(folder: Path, corpus=TINY_CORPUS, queries=TINY_QUERIES, qrels=TINY_QRELS, split="test") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels").mkdir(exist_ok=True)
    rows = "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels)
    (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


def shared_dataset(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"shared dataset {path} not present")
    return path


def make_pdf(pages: list[list[str]]) -> bytes:
    """A minimal valid PDF, one Helvetica text line per string, drawn top-down (an empty list is a blank page)."""
    n = len(pages)
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(n)) + b"] /Count %d >>" % n,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for i, lines in enumerate(pages):
        ops = [b"BT /F1 12 Tf 72 720 Td 14 TL"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(b"(" + escaped.encode("latin-1") + b") Tj T*")
        ops.append(b"ET")
        stream = b"\n".join(ops)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    return pdf_bytes(objects)


def pdf_bytes(objects: list[bytes]) -> bytes:
    """A PDF file of numbered ``objects`` (object 1 is the catalog) with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


FILLER = ["common", "words", "shared", "by", "every", "single", "document", "in", "this", "collection"]


def single_char_dataset(folder: Path, n_queries: int = 60, seed: int = 0) -> Path:
    """Queries and their relevant documents share only one-character tokens: BM25's tokenizer drops
    those (it keeps words of 2+ characters), a word-hashing encoder keeps them. So the dense fakes
    beat BM25 by construction, and their latency is set by ``delay_ms``."""
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    corpus, queries, qrels = [], [], []
    for i in range(n_queries):
        key = " ".join(rng.sample(alphabet, 4))
        corpus.append({"_id": f"d{i:03d}", "title": "", "text": f"{key} {' '.join(rng.sample(FILLER, 5))}"})
        queries.append({"_id": f"q{i:03d}", "text": key})
        qrels.append((f"q{i:03d}", f"d{i:03d}", 1))
    for j in range(n_queries, 3 * n_queries):
        corpus.append({"_id": f"d{j:03d}", "title": "", "text": " ".join(rng.sample(alphabet, 4) + FILLER)})
    return write_beir(folder, corpus=corpus, queries=queries, qrels=qrels)


TRAIN_CORPUS = [
    *TINY_CORPUS,
    {"_id": "d6", "title": "Email login", "text": "Sign in to your mailbox with your email address."},
    {"_id": "d7", "title": "Pancakes", "text": "Mix flour, milk and eggs, then fry thin pancakes."},
    {"_id": "d8", "title": "Phishing", "text": "Do not click links in unexpected emails asking for codes."},
]
TRAIN_QUERIES = [
    {"_id": "t1", "text": "forgot my login credentials"},
    {"_id": "t2", "text": "homemade loaf"},
    {"_id": "t3", "text": "two step verification"},
    {"_id": "t4", "text": "banana cake"},
    {"_id": "t5", "text": "suspicious email with a link"},
    {"_id": "t6", "text": "breakfast with eggs"},
    {"_id": "t7", "text": "Reset password"},
]  # t7 leaks test query q1
TRAIN_QRELS = [
    ("t1", "d4", 1),
    ("t2", "d5", 1),
    ("t3", "d3", 1),
    ("t4", "d2", 1),
    ("t5", "d8", 1),
    ("t6", "d7", 1),
    ("t7", "d1", 1),
]


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


def browser_or_skip() -> None:
    pytest.importorskip("playwright")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: `make test` installs it (apt-get install chromium)")
        pytest.skip("Debian chromium not installed (make test installs it)")


def free_port() -> int:
    """A local port nothing listens on now (bound to 127.0.0.1, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """``n`` seeded random unit vectors (float32): continuous scores, so no ties."""
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
