"""Fine-tuning memory (issue 18): per-phase peak RSS, gradient checkpointing, --max-memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedlab.cli.main import main
from embedlab.errors import EmbedlabError
from embedlab.train.memory import GB, MemoryLog, per_text_bytes, plan_step, rss_now
from tests.helpers import TRAIN_CORPUS, TRAIN_QRELS, TRAIN_QUERIES, write_beir
from tests.tiny_models import make_tiny_sentence_transformer


def test_memory_log_records_each_phase_with_non_decreasing_peaks() -> None:
    log = MemoryLog()
    log.mark("small")
    block = np.ones(96 * 1024 * 1024 // 8)  # 96 MiB, touched: resident
    log.mark("big")
    del block
    log.mark("after")
    phases = [p.phase for p in log.phases]
    assert phases == ["small", "big", "after"]
    peaks = [p.peak_bytes for p in log.phases]
    assert peaks == sorted(peaks)  # ru_maxrss never falls
    # the 96 MiB block raised the peak unless an earlier test had already pushed it higher;
    # either way it was resident at the end of "big"
    big = log.phases[1]
    assert big.current_bytes is not None and big.current_bytes >= 90 * 1024 * 1024
    # peak >= resident now, up to the kernel's lazily synced per-thread RSS counters (tens of pages
    # per thread, well under 1% of this ~150 MB process)
    assert big.peak_bytes >= 0.99 * big.current_bytes
    assert log.as_dict()["peak_rss_bytes"] == peaks[-1]
    now = rss_now()
    assert now is not None and 0 < now <= log.peak_bytes + 200 * 1024 * 1024


def test_plan_step_rule() -> None:
    per_text = per_text_bytes(layers=6, hidden=384, intermediate=1536, heads=12, length=256)
    # the measurement the factor was fitted to: ~21 MB a text for all-MiniLM-L6-v2 at 256 tokens
    assert 18e6 < per_text < 24e6
    common = {"parameters": 22_700_000, "per_text": per_text, "batch_size": 32, "texts_per_example": 3}
    roomy = plan_step(max_memory_gb=8, resident_bytes=GB // 2, loss="mnrl", mini_batch_size=16, **common)
    assert (roomy.loss, roomy.texts_per_forward) == ("mnrl", 96)  # 96 texts fit: the step is unchanged
    tight = plan_step(max_memory_gb=1.5, resident_bytes=GB // 2, loss="mnrl", mini_batch_size=16, **common)
    fixed = GB // 2 + 16 * 22_700_000
    assert tight.loss == "cached-mnrl" and tight.mini_batch_size == (int(0.9 * 1.5 * GB) - fixed) // per_text < 96
    with pytest.raises(EmbedlabError, match="below what training needs"):
        plan_step(max_memory_gb=0.6, resident_bytes=GB // 2, loss="mnrl", mini_batch_size=16, **common)
    with pytest.raises(EmbedlabError, match="only mnrl"):
        plan_step(max_memory_gb=1.5, resident_bytes=GB // 2, loss="triplet", mini_batch_size=16, **common)


def test_gradient_checkpointing_gives_the_same_step(tmp_path: Path) -> None:
    """Train mode (dropout on), same seed: checkpointing recomputes with the saved RNG state, so the
    loss and every gradient are those of the plain step (same kernels, same order: exact)."""
    import torch
    from sentence_transformers import SentenceTransformer

    from embedlab.train.data import TrainExample
    from embedlab.train.loop import TrainConfig, _checkpointing, _step

    model = SentenceTransformer(str(make_tiny_sentence_transformer(tmp_path / "tiny")), device="cpu")
    model.train()
    batch = [
        TrainExample(f"q{i}", f"what is topic {i}", f"d{i}", f"topic {i} is a thing", (f"n{i}",), (f"other {i}",))
        for i in range(4)
    ]
    results = []
    for enabled in (False, True):
        _checkpointing(model, enabled=enabled)
        inner: Any = model[0].auto_model
        flag = getattr(inner, "is_activation_checkpointing", None)  # transformers 5; 4: is_gradient_checkpointing
        assert (flag if flag is not None else inner.is_gradient_checkpointing) is enabled
        model.zero_grad()
        torch.manual_seed(7)
        value = _step(model, batch, TrainConfig().loss_fn(), TrainConfig(), "cpu")
        after = torch.rand(1).item()  # the RNG stream continues where the plain step leaves it
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((value, after, grads))
    (v1, r1, g1), (v2, r2, g2) = results
    assert v1 == v2 and r1 == r2 and g1.keys() == g2.keys() and len(g1) > 10
    for name in g1:
        assert torch.equal(g1[name], g2[name]), name


def _finetune(tmp_path: Path, base: Path, test: Path, out: Path, *extra: str) -> int:
    train = write_beir(tmp_path / "train", corpus=TRAIN_CORPUS, queries=TRAIN_QUERIES, qrels=TRAIN_QRELS, split="train")
    return main(
        [
            "finetune",
            "--base",
            str(base),
            "--train",
            str(train),
            "--test",
            str(test),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--mine-ranks",
            "2-6",
            "--latency-queries",
            "10",
            "--drop-leaked",
            "--no-progress",
            *extra,
        ]
    )


def test_finetune_records_memory_per_phase_and_max_memory_plan(
    tmp_path: Path, tiny_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = make_tiny_sentence_transformer(tmp_path / "tiny")
    out = tmp_path / "ft"
    assert _finetune(tmp_path, base, tiny_dataset, out, "--max-memory", "64") == 0
    stdout = capsys.readouterr().out
    assert "| phase " in stdout and "| whole run |" in stdout
    result = json.loads((out / "finetune.json").read_text())
    memory = result["memory"]
    phases = [p["phase"] for p in memory["phases"]]
    assert phases == ["data", "mining", "model load", "dev evaluation (epoch 0)", "training", "export", "verdict"]
    peaks = [p["peak_bytes"] for p in memory["phases"]]
    assert peaks == sorted(peaks) and memory["peak_rss_bytes"] == peaks[-1]
    assert all(p["current_bytes"] and p["current_bytes"] > 0 for p in memory["phases"])
    assert memory["plan"]["loss"] == "mnrl" and memory["plan"]["texts_per_forward"] == memory["plan"]["texts_per_step"]
    assert result["training"]["conditions"]["gradient_checkpointing"] is True
    assert "## Memory per phase" in (out / "README.md").read_text()
    assert "Memory per phase" in (out / "report.html").read_text()
    # a fine-tune has its base's shape: latency is the interleaved paired test, not p50(B) - p50(A)
    paired = result["verdict"]["latency_comparison"]
    assert paired is not None and paired["samples"] == 10 and "p = " in paired["summary"]
    card = (out / "README.md").read_text()
    assert "latency, interleaved median (ms)" in card and "see paired row" in card


def test_max_memory_too_small_or_not_positive_is_one_line_exit_2(
    tmp_path: Path, tiny_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = make_tiny_sentence_transformer(tmp_path / "tiny")
    assert _finetune(tmp_path, base, tiny_dataset, tmp_path / "a", "--max-memory", "0") == 2
    assert "--max-memory must be > 0" in capsys.readouterr().err
    assert _finetune(tmp_path, base, tiny_dataset, tmp_path / "b", "--max-memory", "0.01") == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # earlier lines are the run's progress log
    assert "below what training needs" in last and "hint" not in err.lower().split(last.lower())[0]
