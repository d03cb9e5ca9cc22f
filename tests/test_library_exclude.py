"""--exclude GLOB and .embedlabignore: files left out on purpose, listed as skipped, kept for updates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedlab.cli.main import main
from embedlab.collection import build, update
from embedlab.data.ignore import Excluder, compile_pattern
from embedlab.data.library import LibraryRules, Skipped, library_files
from embedlab.errors import EmbedlabError
from tests.library_fixtures import CHUNK, HASHING, write_library


def names(folder: Path, rules: LibraryRules) -> tuple[list[str], dict[str, str]]:
    entries = library_files(folder, rules=rules)
    kept = [p.relative_to(folder).as_posix() for p in entries if not isinstance(p, Skipped)]
    skipped = {s.path.relative_to(folder).as_posix(): s.reason for s in entries if isinstance(s, Skipped)}
    return kept, skipped


@pytest.mark.parametrize(
    ("glob", "path", "folder", "matches"),
    [
        ("SOURCES.md", "SOURCES.md", False, True),
        ("SOURCES.md", "deep/down/SOURCES.md", False, True),  # no slash: any depth
        ("*.draft.pdf", "a/b.draft.pdf", False, True),
        ("notes/*.md", "notes/a.md", False, True),
        ("notes/*.md", "notes/sub/a.md", False, False),  # * does not cross a folder
        ("notes/*.md", "x/notes/a.md", False, False),  # a slash anchors to the root
        ("/build", "build", True, True),
        ("**/old/*.pdf", "a/b/old/c.pdf", False, True),
        ("**/old/*.pdf", "old/c.pdf", False, True),
        ("drafts/", "drafts", True, True),
        ("drafts/", "drafts", False, False),  # a trailing slash: folders only
        ("[ab].txt", "b.txt", False, True),
        ("[!ab].txt", "c.txt", False, True),
    ],
)
def test_glob_rules(glob: str, path: str, folder: bool, matches: bool) -> None:
    assert (Excluder([compile_pattern(glob, source="--exclude")]).reason(path, is_folder=folder) is not None) is matches


def test_negation_and_empty_patterns_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(EmbedlabError, match="negated"):
        LibraryRules(exclude=("!keep.md",))
    with pytest.raises(EmbedlabError, match="empty"):
        LibraryRules(exclude=("  ",))
    (tmp_path / ".embedlabignore").write_text("# fine\n\n*.tmp\n!x\n")
    with pytest.raises(EmbedlabError) as err:
        library_files(tmp_path)
    assert err.value.line == 4 and "negated" in err.value.one_line()


def test_exclude_and_ignore_file_skip_files_and_folders(tmp_path: Path) -> None:
    library = write_library(tmp_path / "lib")
    (library / "SOURCES.md").write_text("where the files came from")
    (library / "recipes" / "old").mkdir()
    (library / "recipes" / "old" / "stew.txt").write_text("a stew")
    (library / ".embedlabignore").write_text("# not documents\nold/\n")
    kept, skipped = names(library, LibraryRules(exclude=("SOURCES.md",)))
    assert "SOURCES.md" not in kept and "recipes/old/stew.txt" not in kept and "guide/passwords.md" in kept
    assert skipped == {
        "SOURCES.md": "excluded by --exclude 'SOURCES.md'",
        "recipes/old": "excluded by .embedlabignore line 2 'old/'",
    }


def test_build_keeps_excludes_for_update(tmp_path: Path) -> None:
    library = write_library(tmp_path / "lib")
    (library / "SOURCES.md").write_text("where the files came from")
    root = tmp_path / "collections"
    report = build(library, "lib", model_spec=HASHING, root=root, rules=LibraryRules(exclude=("SOURCES.md",)), **CHUNK)
    assert report.files == 4 and ("SOURCES.md", "excluded by --exclude 'SOURCES.md'") in report.skipped
    manifest = json.loads((root / "lib" / "gen-000001" / "manifest.json").read_text())
    assert manifest["library"]["exclude"] == ["SOURCES.md"]
    (library / "SOURCES.md").write_text("changed, still excluded")
    (library / "more.txt").write_text("a new document about soup and bread")
    (library / ".embedlabignore").write_text("recipes/\n")
    report = update("lib", root=root)
    assert report.files_new == 1 and report.files_removed == 2 and report.files == 3
    assert {p for p, _ in report.skipped} == {"SOURCES.md", "recipes"}


def test_cli_exclude_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EMBEDLAB_COLLECTIONS", str(tmp_path / "collections"))
    library = write_library(tmp_path / "lib")
    (library / "SOURCES.md").write_text("where the files came from")
    argv = ["index", "build", "lib", str(library), "--model", "hashing:dim=64", "--no-progress"]
    assert main([*argv, "--exclude", "SOURCES.md", "--exclude", "recipes/"]) == 0
    out = capsys.readouterr().out
    assert (
        "2 files" in out and "excluded by --exclude 'SOURCES.md'" in out and "excluded by --exclude 'recipes/'" in out
    )
