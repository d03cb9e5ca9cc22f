"""Fine-tune guardrails: degenerate training data is refused (one line, exit 2) or warned about,
and a run whose kept checkpoint is the base model says so in plain words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedlab.cli.main import main
from embedlab.errors import EmbedlabError
from embedlab.train.fit import EpochPoint
from embedlab.train.guardrails import BASE_KEPT, FEW_PAIRS, MIN_PAIRS, check_curve, check_data
from tests.helpers import TRAIN_CORPUS, TRAIN_QRELS, TRAIN_QUERIES, write_beir


def _pairs(path: Path, n: int) -> Path:
    words = ["geese", "swans", "cranes", "storks", "robins", "finches", "herons", "owls", "larks", "wrens"]
    rows = [{"query": f"{w} migration season", "positive": f"{w} fly south in autumn"} for w in words[:n]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _finetune(train: Path, test: Path, out: Path, *extra: str) -> list[str]:
    return ["finetune", "--base", "hashing", "--train", str(train), "--test", str(test), "--out", str(out), *extra]


def test_too_few_pairs_is_refused_in_one_line(tmp_path: Path, tiny_dataset: Path, capsys) -> None:
    train = _pairs(tmp_path / "few.jsonl", MIN_PAIRS - 1)
    assert main(_finetune(train, tiny_dataset, tmp_path / "out", "--dev-ratio", "0", "--no-progress")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"too few training pairs to fine-tune: about {MIN_PAIRS - 1}" in err and f"at least {MIN_PAIRS}" in err


def test_a_dev_ratio_that_rounds_to_no_dev_query_is_refused_with_the_ratio_that_works(
    tmp_path: Path, tiny_dataset: Path, capsys
) -> None:
    train = _pairs(tmp_path / "six.jsonl", 6)  # 6 x 0.05 = 0.3 rounds to 0 dev queries
    assert main(_finetune(train, tiny_dataset, tmp_path / "out", "--dev-ratio", "0.05", "--no-progress")) == 2
    err = capsys.readouterr().err
    assert "--dev-ratio 0.05 of 6 training queries leaves 0 dev queries" in err
    assert "--dev-ratio 0.17 or more" in err and "--dev-ratio 0 " in err  # ceil(100 / 6) / 100: 6 x 0.17 = 1.02
    with pytest.raises(EmbedlabError, match="no query to train on"):
        check_data(pairs=6, queries=6, dev_ratio=0.95)


def test_thin_data_passes_with_warnings(caplog) -> None:
    warnings = check_data(pairs=20, queries=20, dev_ratio=0.1)  # 2 dev queries, ~18 training pairs
    assert len(warnings) == 2
    assert warnings[0].startswith("only about 18 training pairs") and "2 dev queries" in warnings[1]
    assert check_data(pairs=FEW_PAIRS * 3, queries=FEW_PAIRS * 3, dev_ratio=0.1) == []
    assert sum("training pairs" in r.getMessage() for r in caplog.records) == 1  # logged once, as a warning


def _curve(*losses: float, dev: tuple[float, ...] = ()) -> tuple[EpochPoint, ...]:
    points = [EpochPoint(0, 0, None, dev[0] if dev else None, 0.0)]
    for epoch, loss in enumerate(losses, start=1):
        points.append(EpochPoint(epoch, epoch * 3, loss, dev[epoch] if dev else None, float(epoch)))
    return tuple(points)


def test_a_loss_at_zero_from_the_first_epoch_and_a_kept_base_are_said() -> None:
    (zero,) = check_curve(_curve(0.0002, 0.0001), best_epoch=2)
    assert zero.startswith("the training loss was 0.0002 in the first epoch") and "nothing to learn" in zero
    assert check_curve(_curve(1.8, 0.9), best_epoch=2) == []
    (kept,) = check_curve(_curve(1.8, 0.9, dev=(0.9, 0.8, 0.7)), best_epoch=0)
    assert kept.startswith(BASE_KEPT)


@pytest.mark.model
def test_kept_base_model_is_said_in_the_verdict_and_card(tmp_path: Path, tiny_dataset: Path, capsys) -> None:
    """The base is perfect on these dev queries (as in test_dev_split_keeps_the_best_checkpoint):
    no epoch beats it, so the written model is the base model, and every output says so."""
    train = write_beir(tmp_path / "train", corpus=TRAIN_CORPUS, queries=TRAIN_QUERIES, qrels=TRAIN_QRELS, split="train")
    out = tmp_path / "models" / "kept-base"
    args = [
        "finetune",
        "--base",
        "all-MiniLM-L6-v2",
        "--train",
        str(train),
        "--test",
        str(tiny_dataset),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--dev-ratio",
        "0.3",
        "--mine-ranks",
        "2-6",
        "--latency-queries",
        "3",
        "--drop-leaked",
        "--no-progress",
    ]
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert "the output is the unchanged base model" in stdout
    result = json.loads((out / "finetune.json").read_text())
    assert result["training"]["best_epoch"] == 0
    assert "the output is the unchanged base model" in result["verdict"]["reason"]
    assert any(w.startswith(BASE_KEPT) for w in result["warnings"])
    assert any("training pairs" in w for w in result["warnings"])  # ~4 pairs: thin data is warned about
    card = (out / "README.md").read_text()
    assert "**Verdict:** fine-tune is " in card and "the output is the unchanged base model" in card
    assert "**Warning:** the best dev checkpoint is epoch 0" in card
    assert "Warning: the best dev checkpoint is epoch 0" in (out / "report.html").read_text()
