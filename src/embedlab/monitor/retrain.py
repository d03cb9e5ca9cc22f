"""``embedlab monitor retrain``: fine-tune the live arm's model on logged clicks, gate it, stage it.

Order (each step can stop before the expensive ones, and a stop changes nothing):

1. the arms file and the feedback database are checked (another collection's database is refused);
2. the feedback is exported as a click log, each click read from the collection of the arm that
   showed it (:mod:`embedlab.monitor.clicks`);
3. the events are split by session: ``u = SHA-256(seed, session)`` read as a number in [0, 1); a
   session with ``u < holdout`` is held out.  A whole session goes one way, so a user's repeated or
   re-formulated queries never sit on both sides (events without a session are split by their
   search id, then by their row id);
4. the held-out part becomes a BEIR test set: its queries, the clicked chunks as relevant with the
   grade of an inverse-propensity weight (below), and the live collection's chunks as the corpus
   (a collection above ``max_corpus`` chunks: every clicked and shown chunk plus a seeded sample up
   to ``max_corpus``; scores are then higher than on the whole collection, but both models see the
   same subset).  Clicks on another arm's results are mapped to the live collection's chunk with the
   same text; held-out queries that also occur in the training part are dropped from training
   (``drop_leaked``), as are training queries that overlap the optional labelled test set;
5. ``embedlab finetune`` (its Python API) trains the live arm's model on the training part and judges
   it against the base on the held-out set; with ``test_dataset`` it is also judged on that labelled
   set.  "Improved" is NDCG@10 rose significantly (p < alpha, the paired randomization test of
   ``embedlab.eval.compare``).  The gate (``click_gate``): without a labelled set the held-out clicks
   must show an improvement (``--require-improvement``); with one, the labelled set must show an
   improvement and the held-out clicks are reported, not gated (``auto``, the default; ``improve``
   and ``no-regression``, not significantly worse, gate on the clicks too);
6. a candidate record (gate figures, model folder, when) is written either way; only a passed gate
   builds the candidate collection (same library, chunking and reading rules, the new model) and
   stages it in the arms file (interleaved B arm, or a shadow arm with share 0).

Why clicks as labels, and why weighted: a click is a noisy, position-biased relevance judgment
(Joachims et al. 2005).  Counted as plain relevance 1 they favour the model that logged them: a
relevant chunk it ranked 8th was rarely examined, so rarely clicked, so it counts as not relevant,
and a candidate that ranks it 1st is not credited.  The held-out labels therefore weight each click
by the inverse of the probability that its rank was examined (inverse propensity scoring, Joachims, Swaminathan and
Schnabel 2017): with the position-based model ``exam(r) = r^-eta`` (``propensity_eta``, default 1,
the usual prior; 0 counts every click once, the plain labels), a click at displayed rank ``r`` weighs
``min(r, CLIP_RANK)^eta``, summed over the held-out pages of a query, and NDCG@10 with these weights
as linear gains is the self-normalised IPS estimate of each model's DCG on the chunks users could
have clicked.  Weights above ``CLIP_RANK``'s are clipped (a far-down click would otherwise dominate a
query: variance traded for a small bias towards the logging model).  ``eta`` is an assumption about
the users; it can be measured with a swap or interleaving experiment, and the labelled test set,
when given, still guards against learning the bias itself.  This corrects the position bias inside
the shown list, not the selection described next.

Why the clicks are only reported when a labelled set is given: clicks logged by the live model
cannot judge another model fairly, whatever the weights.  A relevant chunk the live model never
showed has examination probability 0 (never clicked, so "not relevant"), and a query where the live
model found nothing gets no click and is not in the held-out set at all: the held-out queries are
those where the live model succeeded, and finding what it misses is what a better model does.
Measured on simulated SciFact traffic (benchmarks/bench_loop.py): two candidates +0.042 and +0.041
NDCG@10 (p = 1e-4) on SciFact's labelled test scored -0.027 (p = 0.07) and -0.052 (p = 3e-4) on the
87 held-out click queries (IPS weights; plain labels -0.027 for the first).  So the clicks gate only
when they are the sole evidence (then only a candidate that wins despite the bias passes); with a
labelled set they are reported, the labelled set gates, and the staged candidate then faces the
online interleaving test (unbiased: both models' results on the same page) before a person promotes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from embedlab.atomic import atomic_write_text
from embedlab.errors import EmbedlabError
from embedlab.monitor import promotion
from embedlab.monitor.clicks import export_clicks, read_events
from embedlab.serve.feedback import Event

log = logging.getLogger(__name__)
RETRAIN_DIR = "retrain"
CLIP_RANK = 20  # click weights stop growing below this displayed rank (see the module doc)
GRADE_SCALE = 100  # qrels grades are integers: weight x 100 (NDCG is unchanged by a common factor)
CLICK_GATES = ("auto", "improve", "no-regression", "report")


@dataclass(frozen=True)
class RetrainSpec:
    collection: str
    root: Path | None = None
    arms: Path | None = None
    feedback_db: Path | None = None
    test_dataset: str | None = None
    holdout: float = 0.2
    seed: int = 0
    out: Path | None = None
    models_dir: Path = Path("models")  # where the new model goes when ``out`` is not given: models_dir/<candidate>
    stage: Literal["interleave", "shadow"] = "interleave"
    candidate: str | None = None
    min_clicks: int = 50
    min_holdout: int = 10
    max_corpus: int = 50_000
    epochs: int = 4
    learning_rate: float = 5e-5
    batch_size: int = 32
    dev_ratio: float = 0.1  # of the training part, for finetune's checkpoint choice (0: keep the last epoch)
    alpha: float = 0.05
    propensity_eta: float = 1.0  # held-out clicks weighted by rank^eta (0: plain clicks); see the module doc
    click_gate: Literal["auto", "improve", "no-regression", "report"] = "auto"  # see the module doc, step 5
    use_cache: bool = True
    why: str = "retrained on logged clicks"


@dataclass
class RetrainOutcome:
    passed: bool
    arm: str
    model: Path
    record: Path
    lines: list[str] = field(default_factory=list)


def held_out(event: Event, *, seed: int, holdout: float) -> bool:
    key = event.session or event.search_id or f"row {event.id}"
    digest = hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < holdout


def _flat(text: str) -> str:
    return " ".join(text.split())


def check_spec(spec: RetrainSpec) -> None:
    """Options checked before any data is read (bad input changes nothing)."""
    if not 0 < spec.holdout < 1:
        raise EmbedlabError("invalid --holdout", found=str(spec.holdout), expected="a share in (0, 1), e.g. 0.2")
    if spec.min_clicks < 1 or spec.min_holdout < 1 or spec.max_corpus < 1:
        raise EmbedlabError("invalid minimums", expected="--min-clicks, --min-holdout and --max-corpus >= 1")
    if spec.click_gate not in CLICK_GATES:
        raise EmbedlabError("invalid --click-gate", found=repr(spec.click_gate), expected=", ".join(CLICK_GATES))
    if spec.stage not in ("interleave", "shadow"):
        raise EmbedlabError("invalid --stage", found=repr(spec.stage), expected="interleave or shadow")
    if not spec.why.strip():
        raise EmbedlabError("a reason is required", expected="--why TEXT (kept in the audit log)")
    if not 0 <= spec.propensity_eta <= 4:
        raise EmbedlabError(
            "invalid --propensity-eta", found=str(spec.propensity_eta), expected="a number in [0, 4], e.g. 1"
        )
    if not 0 <= spec.dev_ratio < 1:
        raise EmbedlabError("invalid --dev-ratio", found=str(spec.dev_ratio), expected="a share in [0, 1)")
    from embedlab.train.loop import TrainConfig

    TrainConfig(epochs=spec.epochs, learning_rate=spec.learning_rate, batch_size=spec.batch_size).check()


def _corpus(collection: str, rows: Sequence[dict[str, object]], *, root: Path | None, limit: int, seed: int):
    """(id -> text of the live collection's chunks, or the documented subset; flat text -> ids)."""
    from embedlab.collection import open_collection

    with open_collection(collection, root=root, load_model=False) as live:
        ids = [int(i) for i in live.store.ids()]
        texts: dict[int, str] = {}
        for start in range(0, len(ids), 4096):
            part = ids[start : start + 4096]
            texts.update({cid: _flat(row.text) for cid, row in live.store.chunks(part).items()})
    if len(texts) > limit:
        wanted = {_flat(str(t)) for row in rows for key in ("clicked", "shown") for t in row[key]}  # type: ignore[attr-defined]
        keep = {cid for cid, text in texts.items() if text in wanted}
        rest = sorted(set(texts) - keep)
        keep |= set(random.Random(seed).sample(rest, max(0, min(len(rest), limit - len(keep)))))
        texts = {cid: texts[cid] for cid in sorted(keep)}
    by_text: dict[str, list[int]] = {}
    for cid, text in texts.items():
        by_text.setdefault(text, []).append(cid)
    return texts, by_text


def click_weight(rank: int, eta: float) -> float:
    """The inverse of ``exam(rank) = rank^-eta``, the rank clipped at :data:`CLIP_RANK`."""
    return float(min(rank, CLIP_RANK)) ** eta


def click_grades(rows: Sequence[dict[str, Any]], by_text, *, eta: float) -> dict[str, dict[int, int]]:
    """query -> {chunk id: integer grade}: with ``eta`` 0 every clicked chunk is 1 (plain clicks), else
    the sum over the query's pages of each click's :func:`click_weight` at its displayed rank, x
    :data:`GRADE_SCALE`."""
    weights: dict[str, dict[int, float]] = {}
    for row in rows:
        shown = [_flat(t) for t in row["shown"]]
        for text in row["clicked"]:
            flat = _flat(text)
            rank = shown.index(flat) + 1 if flat in shown else 1  # click_log only keeps clicks on shown results
            for cid in by_text.get(flat, ()):
                page = weights.setdefault(row["query"], {})
                page[cid] = page.get(cid, 0.0) + click_weight(rank, eta)
    if eta == 0:
        return {q: dict.fromkeys(ids, 1) for q, ids in weights.items() if ids}
    return {q: {cid: max(1, round(GRADE_SCALE * w)) for cid, w in ids.items()} for q, ids in weights.items() if ids}


def write_holdout(
    folder: Path, rows: Sequence[dict[str, Any]], texts: dict[int, str], by_text, *, eta: float = 0.0
) -> int:
    """The held-out click pages as a BEIR folder (split ``test``, grades of :func:`click_grades`);
    returns the number of queries."""
    judged = click_grades(rows, by_text, eta=eta)
    queries = {f"h{n}": query for n, query in enumerate(sorted(judged), start=1)}
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    corpus = "".join(
        json.dumps({"_id": str(c), "title": "", "text": t}, ensure_ascii=False) + "\n" for c, t in texts.items()
    )
    atomic_write_text(folder / "corpus.jsonl", corpus)
    lines = [json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n" for qid, text in queries.items()]
    atomic_write_text(folder / "queries.jsonl", "".join(lines))
    qrels = ["query-id\tcorpus-id\tscore\n"]
    qrels += [
        f"{qid}\t{cid}\t{grade}\n" for qid, text in queries.items() for cid, grade in sorted(judged[text].items())
    ]
    atomic_write_text(folder / "qrels" / "test.tsv", "".join(qrels))
    return len(queries)


def _drop_overlap(rows: list[dict[str, Any]], test: str) -> tuple[list[dict[str, Any]], int]:
    """Training pages whose query overlaps the labelled test set's queries (the leakage check of
    ``embedlab finetune``: same text or near-duplicate) are left out."""
    from embedlab.data.beir import load_dataset
    from embedlab.train.leakage import check_leakage

    queries = {f"t{n}": str(row["query"]) for n, row in enumerate(rows)}
    report = check_leakage(queries, load_dataset(test).queries, check_ids=False)
    leaked = {o.train_id for o in report.overlaps}
    return [row for n, row in enumerate(rows) if f"t{n}" not in leaked], len(leaked)


def click_rule(spec: RetrainSpec) -> str:
    """The held-out clicks' rule: ``auto`` is ``report`` beside a labelled set, else ``improve``."""
    if spec.click_gate != "auto":
        return spec.click_gate
    return "report" if spec.test_dataset is not None else "improve"


def _gate_figures(verdict, *, rule: str = "improve") -> dict[str, Any]:
    """The verdict's NDCG@10 figures and whether they pass ``rule``: ``improve`` (significantly
    better), ``no-regression`` (not significantly worse) or ``report`` (always: not a gate)."""
    m = verdict.metric("ndcg_at_10")
    worse = m.delta.mean < 0 and m.p_value < verdict.alpha
    passed = {"improve": verdict.improved, "no-regression": not worse, "report": True}[rule]
    notes = {"improve": "", "no-regression": " (no significant regression)", "report": " (reported, not gated)"}
    note = " (significantly worse)" if rule == "no-regression" and worse else notes[rule]
    return {
        "rule": rule,
        "passed": passed,
        "dataset": verdict.dataset,
        "queries": verdict.queries,
        "improved": verdict.improved,
        "ndcg_at_10_base": m.base.mean,
        "ndcg_at_10_tuned": m.tuned.mean,
        "delta": m.delta.mean,
        "delta_low": m.delta.low,
        "delta_high": m.delta.high,
        "p_value": m.p_value,
        "alpha": verdict.alpha,
        "reason": verdict.reason() + note,
    }


def _free_name(base: str, taken: set[str], *, root: Path | None) -> str:
    from embedlab.collection.layout import CollectionDir

    for n in range(1, 10_000):
        name = f"{base}-r{n}"
        if name not in taken and not CollectionDir(name, root=root).path.exists():
            return name
    raise EmbedlabError("no free candidate name", hint="pass --candidate NAME")


def _finetune(spec: RetrainSpec, work: Path, base: str, model: Path, live_collection: str, train_rows, held_rows):
    """The training part and the held-out BEIR set written into ``work``, then ``embedlab.finetune``."""
    from embedlab.api.training import finetune

    clicks = work / "train-clicks.jsonl"
    atomic_write_text(clicks, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in train_rows))
    texts, by_text = _corpus(live_collection, held_rows, root=spec.root, limit=spec.max_corpus, seed=spec.seed)
    holdout_queries = write_holdout(work / "heldout", held_rows, texts, by_text, eta=spec.propensity_eta)
    log.info("retraining %s on %d click pages; gate: %d held-out queries", base, len(train_rows), holdout_queries)
    result = finetune(
        base,
        clicks,
        work / "heldout",
        model,
        train_format="clicks",
        epochs=spec.epochs,
        learning_rate=spec.learning_rate,
        batch_size=spec.batch_size,
        dev_ratio=spec.dev_ratio,
        seed=spec.seed,
        alpha=spec.alpha,
        drop_leaked=True,
        cache=spec.use_cache,
        latency_queries=0,
    )
    assert result is not None  # one process: rank 0
    return result, holdout_queries


def retrain(spec: RetrainSpec) -> RetrainOutcome:
    """The whole loop step (see the module docstring); bad input raises before anything is written."""
    from embedlab.collection import build
    from embedlab.collection.layout import CollectionDir, check_name
    from embedlab.collection.manifest import read_manifest
    from embedlab.encoders.spec import ModelSpec
    from embedlab.monitor.events import database_path, load_searches
    from embedlab.train.verdict import compare_on_test

    check_spec(spec)
    cdir = promotion.collection_dir(spec.collection, root=spec.root)
    arms_file = promotion.arms_path(cdir, spec.arms)
    config = promotion.read_arms(arms_file)
    db = database_path(spec.collection, root=spec.root, db=spec.feedback_db)
    load_searches(db, collection=spec.collection)  # refuses another collection's database, one line
    live_arm = config.arms[config.live]
    live_collection = live_arm.collection or spec.collection
    live_dir = CollectionDir(live_collection, root=spec.root)
    if not live_dir.exists():
        raise live_dir.unknown()
    manifest = read_manifest(live_dir.live())
    name = (
        check_name(spec.candidate) if spec.candidate else _free_name(spec.collection, set(config.arms), root=spec.root)
    )
    if name in config.arms or CollectionDir(name, root=spec.root).path.exists():
        raise EmbedlabError(f"candidate {name!r} already exists", hint="pass another --candidate NAME")
    events, skipped = read_events(db)
    held = [e for e in events if held_out(e, seed=spec.seed, holdout=spec.holdout)]
    train_events = [e for e in events if not held_out(e, seed=spec.seed, holdout=spec.holdout)]
    train_rows = export_clicks(spec.collection, db=db, arms=config, root=spec.root, events=train_events).rows
    held_rows = export_clicks(spec.collection, db=db, arms=config, root=spec.root, events=held).rows
    dropped = 0
    if spec.test_dataset is not None:
        train_rows, dropped = _drop_overlap(train_rows, spec.test_dataset)
    held_queries = len({row["query"] for row in held_rows})
    if len(train_rows) < spec.min_clicks or held_queries < spec.min_holdout:
        raise EmbedlabError(
            "too few clicks to retrain",
            found=f"{len(train_rows)} training pages with clicks, {held_queries} held-out queries",
            expected=f"at least {spec.min_clicks} training pages (--min-clicks) and {spec.min_holdout} "
            f"held-out queries (--min-holdout, with --holdout {spec.holdout})",
            hint="serve more traffic and retrain later",
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = cdir.path / RETRAIN_DIR / f"{name}-{stamp}"
    base = str(manifest.model_spec["model"])
    model = spec.out or spec.models_dir / name
    try:  # a stop on the way (bad model, leakage everywhere) leaves nothing behind
        work.mkdir(parents=True)
        result, holdout_queries = _finetune(spec, work, base, model, live_collection, train_rows, held_rows)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    gates = {"held_out": _gate_figures(result.verdict, rule=click_rule(spec))}
    if spec.test_dataset is not None:
        labelled = compare_on_test(
            spec.test_dataset,
            base=ModelSpec(model=base),
            tuned=ModelSpec(model=str(model.resolve()), label=model.name),
            alpha=spec.alpha,
            use_cache=spec.use_cache,
            latency_queries=0,
            seed=spec.seed,
        )
        gates["labelled"] = _gate_figures(labelled)
    passed = all(g["passed"] for g in gates.values())
    summary = "; ".join(f"{side} ({g['rule']}): {g['reason']}" for side, g in gates.items())
    record = {
        "arm": name,
        "collection": name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "who": promotion.operator(),
        "base_collection": live_collection,
        "base_model": base,
        "model": str(model.resolve()),
        "gate": {"passed": passed, "summary": summary, **gates},
        "data": {
            "events": len(events),
            "damaged_rows": len(skipped),
            "train_pages": len(train_rows),
            "train_pages_overlapping_test": dropped,
            "held_out_queries": holdout_queries,
            "held_out_click_weight": f"min(rank, {CLIP_RANK})^{spec.propensity_eta:g}",
            "holdout": spec.holdout,
            "seed": spec.seed,
            "work": str(work),
        },
        "staged": None,
    }
    lines = [f"gate {'PASSED' if passed else 'FAILED'}: {summary}"]
    if passed:
        build(
            manifest.source_folder,
            name,
            model_spec=ModelSpec(model=str(model.resolve())),
            max_tokens=manifest.chunking.max_tokens,
            overlap=manifest.chunking.overlap,
            root=spec.root,
            rules=manifest.library.rules(),
            use_cache=spec.use_cache,
        )
        record["staged"] = spec.stage
    path = promotion.write_candidate(cdir, record)
    if passed:
        arm = live_arm.model_copy(update={"collection": name})
        switch = promotion.stage(
            spec.collection, name=name, arm=arm, mode=spec.stage, why=spec.why, root=spec.root, arms=arms_file
        )
        lines.append(f"candidate {name} built with {model} and staged ({spec.stage}) in {switch.arms_file}")
    else:
        lines.append(f"nothing staged; the candidate record is {path}")
    return RetrainOutcome(passed, name, model, path, lines)
