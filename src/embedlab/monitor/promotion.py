"""Candidates, promotion and rollback of a served collection's A/B arms, with an audit log.

Files in the collection folder (outside the generations, so they survive index updates):

- ``arms.toml``: the default arms file (``embedlab serve NAME --arms FILE`` may name another);
- ``candidates/<arm>.json``: one record per retrained candidate (``embedlab monitor retrain``): when,
  the model folder, the collection built with it, and the gate's figures (passed or not);
- ``audit.jsonl``: one line per change of the arms (stage, promote, rollback): time, who
  (``$EMBEDLAB_OPERATOR``, else the OS user), action, from, to, why, gate summary.

Rules: a switch rewrites the arms file atomically (:mod:`embedlab.atomic`: temporary file + rename),
which the server re-reads within a second (:mod:`embedlab.serve.arms`), so every request sees the
old arms or the new ones, never a mix, and nothing restarts.  A promotion sends all traffic to the
new live arm (``kind = "split"``, its share 1, every other arm kept with share 0 for a rollback).
``promote`` refuses an arm whose candidate record has no passed gate, unless the audit log shows it
was live before (the original arm has no record: it was never retrained).  ``rollback`` returns to
the arm that was live before the last promotion still in force: promotions push on a stack and
rollbacks pop it, so two rollbacks in a row undo two promotions.  A lock on the collection folder
serialises concurrent switches.
"""

from __future__ import annotations

import contextlib
import difflib
import getpass
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from embedlab.atomic import atomic_write_text
from embedlab.collection.layout import CollectionDir
from embedlab.errors import EmbedlabError
from embedlab.serve.arms import Arm, ArmsFile, load_arms, render_arms

ARMS_FILE = "arms.toml"
AUDIT_FILE = "audit.jsonl"
CANDIDATES = "candidates"
Action = Literal["stage", "promote", "rollback"]


def collection_dir(collection: str, *, root: str | Path | None) -> CollectionDir:
    cdir = CollectionDir(collection, root=root)
    if not cdir.exists():
        raise cdir.unknown()
    return cdir


def arms_path(cdir: CollectionDir, given: Path | None) -> Path:
    return given if given is not None else cdir.path / ARMS_FILE


def read_arms(path: Path) -> ArmsFile:
    if not path.is_file():
        raise EmbedlabError(
            "no arms file",
            path=path,
            expected="the arms file the collection is served with",
            hint="write one (see `embedlab serve --help`) and serve with `--arms FILE`, or pass --arms",
        )
    return load_arms(path)


def operator() -> str:
    """Who acts: ``$EMBEDLAB_OPERATOR`` (set it in CI or a shared account), else the OS user."""
    named = os.environ.get("EMBEDLAB_OPERATOR", "").strip()
    if named:
        return named
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"uid {os.getuid()}"


def candidate_file(cdir: CollectionDir, arm: str) -> Path:
    return cdir.path / CANDIDATES / f"{arm}.json"


def write_candidate(cdir: CollectionDir, record: dict[str, Any]) -> Path:
    path = candidate_file(cdir, str(record["arm"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return path


def read_candidate(cdir: CollectionDir, arm: str) -> dict[str, Any] | None:
    path = candidate_file(cdir, arm)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise EmbedlabError(f"cannot read the candidate record ({err})", path=path) from None
    if not isinstance(record, dict) or not isinstance(record.get("gate"), dict):
        raise EmbedlabError("damaged candidate record", path=path, expected="the JSON `monitor retrain` writes")
    return record


def read_audit(cdir: CollectionDir) -> list[dict[str, Any]]:
    path = cdir.path / AUDIT_FILE
    if not path.is_file():
        return []
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise EmbedlabError("damaged audit log line", path=path, line=number, found=line[:60]) from None
        if not isinstance(entry, dict) or entry.get("action") not in ("stage", "promote", "rollback"):
            raise EmbedlabError("damaged audit log line", path=path, line=number, found=line[:60])
        entries.append(entry)
    return entries


def append_audit(cdir: CollectionDir, entry: dict[str, Any]) -> None:
    """One line, appended and flushed to disk (an append of one short line is all or nothing)."""
    with open(cdir.path / AUDIT_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def previous_live(entries: list[dict[str, Any]]) -> list[str]:
    """The stack of arms to roll back to (last = the next rollback's target)."""
    stack: list[str] = []
    for entry in entries:
        if entry["action"] == "promote":
            stack.append(str(entry["from"]))
        elif entry["action"] == "rollback" and stack:
            stack.pop()
    return stack


@contextlib.contextmanager
def switching(cdir: CollectionDir) -> Iterator[None]:
    """Hold an exclusive lock on the collection folder itself (a directory can be flock'ed, so no lock
    file is left behind; builds lock ``.lock`` inside it, so a switch never waits for a build)."""
    import fcntl

    handle = os.open(cdir.path, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)  # blocking: a switch takes milliseconds
        yield
    finally:
        os.close(handle)  # closing releases the lock


def gate_summary(record: dict[str, Any] | None) -> str | None:
    return None if record is None else str(record["gate"].get("summary", ""))


def _write(path: Path, config: ArmsFile) -> None:
    atomic_write_text(path, render_arms(config, as_json=path.suffix.lower() == ".json"))


def _unknown_arm(arm: str, config: ArmsFile, path: Path) -> EmbedlabError:
    close = difflib.get_close_matches(arm, list(config.arms), n=1)
    return EmbedlabError(
        f"unknown arm {arm!r}",
        path=path,
        expected=", ".join(sorted(config.arms)),
        hint=f"did you mean {close[0]!r}?" if close else "`monitor retrain` stages candidate arms",
    )


def _entry(action: Action, source: str, target: str, why: str, gate: str | None, path: Path) -> dict[str, Any]:
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "who": operator(),
        "action": action,
        "from": source,
        "to": target,
        "why": why,
        "gate": gate,
        "arms_file": str(path),
    }


def live_only(config: ArmsFile, live: str) -> ArmsFile:
    """All traffic to ``live``; the other arms kept with share 0 (staged, for a rollback)."""
    arms = {name: arm.model_copy(update={"share": 1.0 if name == live else 0.0}) for name, arm in config.arms.items()}
    return ArmsFile.model_validate({"kind": "split", "live": live, "seed": config.seed, "arms": arms})


def staged(config: ArmsFile, name: str, arm: Arm, *, mode: Literal["interleave", "shadow"]) -> ArmsFile:
    """``config`` with candidate ``arm``: interleaved against the live arm (every other arm share 0),
    or as a shadow (share 0: opened by the server, no traffic)."""
    if mode == "shadow":
        arms = {**config.arms, name: arm.model_copy(update={"share": 0.0})}
        return ArmsFile.model_validate({"kind": config.kind, "live": config.live, "seed": config.seed, "arms": arms})
    arms = {n: a.model_copy(update={"share": 1.0 if n == config.live else 0.0}) for n, a in config.arms.items()}
    arms[name] = arm.model_copy(update={"share": 1.0})
    return ArmsFile.model_validate({"kind": "interleave", "live": config.live, "seed": config.seed, "arms": arms})


@dataclass(frozen=True)
class Switch:
    action: Action
    source: str
    target: str
    arms_file: Path
    gate: str | None

    def line(self) -> str:
        gate = f" (gate: {self.gate})" if self.gate else ""
        return f"{self.action}: live arm {self.source} -> {self.target} in {self.arms_file}{gate}"


def _why(why: str) -> str:
    if not why or not why.strip():
        raise EmbedlabError("a reason is required", expected="--why TEXT (kept in the audit log)")
    return why.strip()


def stage(
    collection: str,
    *,
    name: str,
    arm: Arm,
    mode: Literal["interleave", "shadow"],
    why: str,
    root: str | Path | None,
    arms: Path | None = None,
) -> Switch:
    cdir = collection_dir(collection, root=root)
    path = arms_path(cdir, arms)
    with switching(cdir):
        config = read_arms(path)
        new = staged(config, name, arm, mode=mode)
        gate = gate_summary(read_candidate(cdir, name))
        _write(path, new)
        append_audit(cdir, _entry("stage", config.live, name, why, gate, path) | {"mode": mode})
    return Switch("stage", config.live, name, path, gate)


def promote(collection: str, *, arm: str, why: str, root: str | Path | None, arms: Path | None = None) -> Switch:
    """Make ``arm`` the live arm; it must have passed the retrain gate (or have been live before)."""
    why = _why(why)
    cdir = collection_dir(collection, root=root)
    path = arms_path(cdir, arms)
    with switching(cdir):
        config = read_arms(path)
        if arm not in config.arms:
            raise _unknown_arm(arm, config, path)
        if arm == config.live:
            raise EmbedlabError(f"arm {arm!r} is already the live arm", path=path)
        record = read_candidate(cdir, arm)
        entries = read_audit(cdir)
        was_live = any(e["action"] != "stage" and arm in (e["from"], e["to"]) for e in entries)
        if not (record is not None and record["gate"].get("passed") is True) and not was_live:
            found = "no candidate record" if record is None else f"gate failed: {gate_summary(record)}"
            raise EmbedlabError(
                f"arm {arm!r} has not passed the retrain gate",
                found=found,
                expected="a candidate staged by `embedlab monitor retrain` whose gate passed",
            )
        gate = gate_summary(record)
        _write(path, live_only(config, arm))
        append_audit(cdir, _entry("promote", config.live, arm, why, gate, path))
    return Switch("promote", config.live, arm, path, gate)


def rollback(collection: str, *, why: str, root: str | Path | None, arms: Path | None = None) -> Switch:
    """Return to the arm that was live before the last promotion still in force."""
    why = _why(why)
    cdir = collection_dir(collection, root=root)
    path = arms_path(cdir, arms)
    with switching(cdir):
        config = read_arms(path)
        stack = previous_live(read_audit(cdir))
        if not stack:
            raise EmbedlabError(
                "nothing to roll back to", path=cdir.path / AUDIT_FILE, expected="a promotion in the audit log"
            )
        target = stack[-1]
        if target not in config.arms:
            raise _unknown_arm(target, config, path)
        if target == config.live:
            raise EmbedlabError(f"arm {target!r} is already the live arm", path=path)
        gate = gate_summary(read_candidate(cdir, target))
        _write(path, live_only(config, target))
        append_audit(cdir, _entry("rollback", config.live, target, why, gate, path))
    return Switch("rollback", config.live, target, path, gate)
