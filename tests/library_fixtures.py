"""Small document libraries for the collection tests (text, Markdown, HTML), written into tmp_path."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from embedlab.encoders.spec import ModelSpec

HASHING = ModelSpec(model="hashing", dim=64)
CHUNK = {"max_tokens": 40, "overlap": 8}

LIBRARY = {
    "guide/passwords.md": (
        "# Passwords\n\n"
        "To reset your password, open the login page and click the reset link. The link is sent by email "
        "and expires after one hour. Choose a password with at least twelve characters.\n\n"
        "Forgotten passwords cannot be recovered, only reset. Administrators never ask for your password "
        "by phone or by email, so report such messages to the security team.\n\n"
        "Password managers store long random passwords safely and fill them in for you."
    ),
    "guide/security.txt": (
        "Two factor authentication protects your account even when a password leaks. Enable it in the "
        "settings under security. You need a phone with an authenticator app.\n\n"
        "Recovery codes let you sign in when the phone is lost. Print them and keep them in a safe place. "
        "Each code works once."
    ),
    "recipes/bread.html": (
        "<html><head><title>Bread</title></head><body><h1>Sourdough bread</h1>"
        "<p>Mix flour, water and salt with an active starter. Knead the dough until it is smooth and "
        "elastic, then let it rise overnight in a cool kitchen.</p>"
        "<p>Bake the loaf in a hot oven with steam for forty minutes until the crust is deep brown. "
        "Let it cool before slicing.</p></body></html>"
    ),
    "recipes/soup.txt": (
        "Tomato soup: roast tomatoes, garlic and onions, then blend them with stock. Season with salt, "
        "pepper and a little sugar. Serve hot with bread."
    ),
}


def write_library(folder: Path, files: dict[str, str | bytes] | None = None) -> Path:
    for rel, content in (LIBRARY if files is None else files).items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return folder


def chunk_rows(generation: Path) -> list[tuple]:
    """(id, path, page, char_start, char_end, text) of a generation, by id."""
    db = sqlite3.connect((generation / "chunks.sqlite").resolve().as_uri() + "?mode=ro", uri=True)
    try:
        return db.execute("SELECT id, path, page, char_start, char_end, text FROM chunks ORDER BY id").fetchall()
    finally:
        db.close()


def live_generation(root: Path, name: str) -> Path:
    return root / name / (root / name / "CURRENT").read_text().strip()


def places(rows: list[tuple]) -> list[tuple]:
    """(path, page, char_start, char_end, text), sorted: what a chunk is, whatever its id."""
    return sorted(r[1:] for r in rows)
