"""embedlab select: constraints steer the recommendation; bad candidates files give one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedlab.cli.main import main
from embedlab.encoders.spec import ModelSpec
from embedlab.select.analysis import Constraints, pareto_front
from embedlab.select.candidates import load_candidates
from embedlab.select.run import SelectSpec, run_selection
from tests.helpers import single_char_dataset

CANDIDATES = (
    ModelSpec(model="hashing", dim=512, delay_ms=25, label="dense-big"),
    ModelSpec(model="hashing", dim=8, delay_ms=12, label="dense-small"),
    ModelSpec(model="bm25"),
)


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    return single_char_dataset(tmp_path / "synth")


def _run(dataset: Path, tmp_path: Path, **constraints) -> object:
    spec = SelectSpec(
        datasets=(str(dataset),),
        candidates=CANDIDATES,
        constraints=Constraints(**constraints),
        cache_dir=tmp_path / "cache",
        latency_queries=15,
    )
    return run_selection(spec)[1]


def test_tightening_latency_below_every_dense_model_changes_the_recommendation(synthetic: Path, tmp_path: Path) -> None:
    free = _run(synthetic, tmp_path)
    assert free.best == "dense-big" and free.recommended == "dense-big"
    comp = {c.model: c for c in free.comparisons}
    assert not comp["dense-small"].tied and comp["dense-small"].p_holm < 0.05
    fastest_dense = min(s.worst_p95_ms for s in free.summaries if s.model.startswith("dense"))
    tight = _run(synthetic, tmp_path, max_p95_ms=fastest_dense * 0.5)
    assert tight.recommended == "bm25"
    assert {s.model for s in tight.summaries if not s.qualifies} == {"dense-big", "dense-small"}
    assert any("p95" in v for s in tight.summaries for v in s.violations)


def test_nothing_qualifies_says_what_to_relax(synthetic: Path, tmp_path: Path) -> None:
    sel = _run(synthetic, tmp_path, min_ndcg10=1.01)
    assert sel.recommended is None
    assert sel.reasons[0].startswith("No candidate meets")
    assert any("--min-ndcg10" in line for line in sel.reasons)


def test_ties_go_to_the_cheaper_model(synthetic: Path, tmp_path: Path) -> None:
    twins = (
        ModelSpec(model="hashing", dim=512, delay_ms=25, label="slow-twin"),
        ModelSpec(model="hashing", dim=512, delay_ms=0, label="fast-twin"),
    )
    spec = SelectSpec(
        datasets=(str(synthetic),),
        candidates=twins,
        constraints=Constraints(price_per_hour=1.0),
        cache_dir=tmp_path / "cache",
        latency_queries=15,
    )
    _, sel = run_selection(spec)
    assert sel.recommended == "fast-twin"
    assert sel.comparisons[0].tied and sel.comparisons[0].p_holm == 1.0
    assert all(c.cost_per_1k_queries is not None and c.cost_per_1k_queries > 0 for c in sel.cells)


def test_pareto_front() -> None:
    points = {"a": (0.70, 30.0), "b": (0.65, 5.0), "c": (0.60, 10.0), "d": (0.70, 40.0), "e": (0.50, 1.0)}
    assert pareto_front(points) == ["e", "b", "a"]


def test_select_cli_writes_reports_and_reports_a_failing_candidate(synthetic: Path, tmp_path: Path, capsys) -> None:
    not_a_model = tmp_path / "empty-model-folder"
    not_a_model.mkdir()
    cands = tmp_path / "cands.toml"
    cands.write_text(f"""
[machine]
price_per_hour = 0.5

[[candidate]]
model = "hashing"
dim = 256
label = "h256"
variants = [{{ dim = 32, label = "h32" }}]

[[candidate]]
model = "{not_a_model}"
label = "broken"

[[candidate]]
model = "bm25"
""")
    out = tmp_path / "out"
    code = main(
        [
            "select",
            "-d",
            str(synthetic),
            "--candidates",
            str(cands),
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "c"),
            "--latency-queries",
            "5",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "FAILED broken" in printed and "Recommendation:" in printed
    data = json.loads((out / "selection.json").read_text())
    assert {s["model"] for s in data["summaries"]} == {"h256", "h32", "bm25"}
    assert data["failures"][0]["model"] == "broken"
    page = (out / "selection.html").read_text()
    assert ("<svg" in page and "Pareto" in page) or "pareto" in page
    assert (out / "eval" / "summary.json").is_file()


@pytest.mark.parametrize(
    ("text", "suffix", "needle"),
    [
        ('[[candidate]]\nmodel = "bm25"\npoolng = "cls"\n', ".toml", "poolng"),
        ('[[candidate]]\nmodel = "bm25"\n[extra]\nx = 1\n', ".toml", "extra"),
        ("[[candidate]]\nmodel = \n", ".toml", "invalid TOML"),
        ("candidate:\n  - model: bm25\n    k1: -3\n", ".yaml", "k1"),
        ("candidate: [\n", ".yaml", "invalid YAML"),
        ("[machine]\nprice_per_hour = 1\n", ".toml", "candidate"),
        ('[[candidate]]\nmodel = "bm25"\n[[candidate]]\nmodel = "bm25"\n', ".toml", "both named"),
        ('[[candidate]]\nmodel = "bm25"\nvariants = "cls"\n', ".toml", "variants"),
        ('[[candidate]]\nmodel = "bm25"\n', ".json", "unknown candidates file type"),
    ],
)
def test_bad_candidates_files_give_one_line(
    tmp_path: Path, text: str, suffix: str, needle: str, tiny_dataset: Path, capsys
) -> None:
    path = tmp_path / f"cands{suffix}"
    path.write_text(text)
    code = main(
        [
            "select",
            "-d",
            str(tiny_dataset),
            "--candidates",
            str(path),
            "--out",
            str(tmp_path / "out"),
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("embedlab: error:")
    assert needle in err and str(path) in err
    assert not (tmp_path / "out").exists()


def test_yaml_candidates_with_variants(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "machine: {price_per_hour: 2}\ncandidate:\n  - model: all-MiniLM-L6-v2\n"
        "    variants: [{pooling: cls}, {pooling: max}]\n"
    )
    specs, machine = load_candidates(path)
    assert [s.pooling for s in specs] == [None, "cls", "max"] and machine.price_per_hour == 2
    assert len({s.name for s in specs}) == 3


def test_unknown_candidate_model_is_one_line(tmp_path: Path, tiny_dataset: Path, capsys) -> None:
    code = main(["select", "-d", str(tiny_dataset), "-m", "bm52", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "Did you mean 'bm25'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.model
def test_pooling_shortcut_compares_three_heads_of_one_transformer(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "pooling",
            "-m",
            "all-MiniLM-L6-v2",
            "-d",
            str(tiny_dataset),
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "c"),
            "--latency-queries",
            "3",
        ]
    )
    data = json.loads((out / "selection.json").read_text())
    assert code == 0
    assert [s["model"] for s in data["summaries"]] == [
        "all-MiniLM-L6-v2:mean",
        "all-MiniLM-L6-v2:cls",
        "all-MiniLM-L6-v2:max",
    ]
    fingerprints = {
        json.loads((out / "eval" / "tiny" / f"{name}.json").read_text())["embedlab"]["fingerprint"]["pooling"]
        for name in ("all-MiniLM-L6-v2_mean", "all-MiniLM-L6-v2_cls", "all-MiniLM-L6-v2_max")
    }
    assert fingerprints == {"mean", "cls", "max"}
