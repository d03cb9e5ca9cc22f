"""Snippet highlights mark the query's content words only, and the terminal gets real bold or plain text."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from embedlab.cli.main import main
from embedlab.collection.snippet import BOLD, highlights, query_terms, terminal_marks
from embedlab.index.lexical import TermAnalyzer
from embedlab.serve.feedback import click_log
from tests.library_fixtures import write_library


def marked(text: str, query: str) -> list[str]:
    return [text[a:b] for a, b in highlights(text, query, TermAnalyzer())]


def test_stop_words_are_not_highlighted_but_stems_are() -> None:
    text = "How can you reset passwords? Users did use the reset links they can find."
    assert marked(text, "how can I reset my password") == ["reset", "passwords", "reset"]
    assert marked(text, "did they use links") == ["links"]
    assert query_terms("how did you use it", TermAnalyzer()) == set()
    assert query_terms("Resetting passwords", TermAnalyzer()) == {"reset", "password"}  # BM25's stems


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_marks_follow_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert terminal_marks(Tty()) == BOLD and terminal_marks(io.StringIO()) == ("", "")
    monkeypatch.setenv("NO_COLOR", "1")
    assert terminal_marks(Tty()) == ("", "")


def test_search_output_bold_on_a_tty_plain_when_piped_markup_in_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EMBEDLAB_COLLECTIONS", str(tmp_path / "collections"))
    monkeypatch.delenv("NO_COLOR", raising=False)
    library = write_library(tmp_path / "lib")
    assert main(["-q", "index", "build", "lib", str(library), "--model", "hashing:dim=64", "--no-progress"]) == 0
    capsys.readouterr()
    query = ["search", "lib", "how can I reset my password", "--mode", "bm25", "--k", "1"]
    assert main(query) == 0
    piped = capsys.readouterr().out
    assert "reset" in piped and "**" not in piped and "\033[" not in piped
    tty = Tty()
    monkeypatch.setattr("sys.stdout", tty)
    assert main(query) == 0
    shown = tty.getvalue()
    assert f"{BOLD[0]}reset{BOLD[1]}" in shown and f"{BOLD[0]}can{BOLD[1]}" not in shown
    monkeypatch.undo()
    monkeypatch.setenv("EMBEDLAB_COLLECTIONS", str(tmp_path / "collections"))
    assert main([*query, "--json"]) == 0
    hit = json.loads(capsys.readouterr().out)["hits"][0]
    assert "**reset**" in hit["marked_snippet"] and "**can**" not in hit["marked_snippet"]


def test_click_log_texts_are_one_line() -> None:
    from embedlab.serve.feedback import Event

    event = Event(id=1, query="q", kind="up", chunk_id=1, result_ids=(1, 2))
    rows, left_out = click_log([event], {1: "a\ttabbed\n  text", 2: "second\n\nchunk"})
    assert left_out == 0 and rows == [
        {"query": "q", "clicked": ["a tabbed text"], "shown": ["a tabbed text", "second chunk"]}
    ]
