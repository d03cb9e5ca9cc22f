"""Data-parallel fine-tuning (torchrun / torch.distributed, gloo on CPU): two processes give the
gradient one process gets for the whole batch, and ``torchrun --nproc_per_node 2 ... finetune``
runs end to end with rank 0 writing the model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.float_tolerance import assert_close_float32
from tests.helpers import TRAIN_CORPUS, TRAIN_QRELS, TRAIN_QUERIES, write_beir

pytestmark = pytest.mark.model
WATCHED = (
    "0.model.encoder.layer.0.attention.self.query.weight",
    "0.model.embeddings.word_embeddings.weight",
    "0.model.encoder.layer.5.output.dense.bias",
)


def _batch(loss: str):
    from embedlab.train.data import TrainExample

    negatives = [
        ("a distractor about taxes", "cooking rice slowly"),
        (),
        ("rain in the mountains",),
        ("the history of chess",),
        (),
    ]  # uneven: padding is exercised
    if loss == "triplet":  # triplet reads one negative per example; a near copy of the query as the negative
        # makes max(0, cos(q, n) - cos(q, p) + margin) positive, so the gradients are not all zero
        negatives = [(f"question number {i} about topic {i}?",) for i in range(len(negatives))]
    return [
        TrainExample(
            f"q{i}",
            f"question number {i} about topic {i}",
            f"d{i}",
            f"an answer about topic {i}",
            tuple(f"n{i}{j}" for j in range(len(n))),
            n,
        )
        for i, n in enumerate(negatives)
    ]


def _gradients(rank: int, world: int, loss: str, out: str | None) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    from embedlab.encoders.resolve import resolve_model
    from embedlab.train.distributed import Cluster, average_gradients, start, stop
    from embedlab.train.loop import TrainConfig, _step

    cluster = Cluster(rank=rank, world=world)
    start(cluster)
    torch.manual_seed(0)
    model = SentenceTransformer(str(resolve_model("all-MiniLM-L6-v2").path), device="cpu")
    model.eval()  # no dropout: the two runs must see the same network
    config = TrainConfig(loss=loss)
    value = _step(model, _batch(loss), config.loss_fn(), config, "cpu", cluster)
    average_gradients(model, cluster)
    params = dict(model.named_parameters())
    grads = {name: params[name].grad.clone() for name in WATCHED}
    stop(cluster)
    if out is not None and rank == 0:
        torch.save({"loss": value, "grads": grads}, out)
    return {"loss": value, "grads": grads}


def _worker(rank: int, world: int, port: int, loss: str, out: str) -> None:
    os.environ.update(
        {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": str(world)}
    )
    _gradients(rank, world, loss, out)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("loss", ["mnrl", "triplet"])
def test_two_processes_give_the_whole_batch_gradient(tmp_path: Path, loss: str) -> None:
    import torch
    import torch.multiprocessing as mp

    out = tmp_path / "grads.pt"
    mp.spawn(_worker, args=(2, _free_port(), loss, str(out)), nprocs=2, join=True)
    shared = torch.load(out)
    single = _gradients(0, 1, loss, None)
    # one scalar from the same embeddings: 1e-5 relative is ~80 float32 eps, far above reordering noise
    assert shared["loss"] == pytest.approx(single["loss"], rel=1e-5)
    for name in WATCHED:
        # Two half batches and one whole batch run different matrix shapes, so the kernels add in
        # another order (and the order differs again between AVX2 and AVX-512 machines and thread
        # counts): the gradients agree to float32 rounding only (measured: 4-22 eps x max|g|, e.g.
        # 2.9e-7 on values up to 0.32).  The allowed noise scales with the gradient's magnitude and
        # the model's hidden size (384-term sums); a wrong gradient (missing cross-process negatives,
        # a factor of the world size) is off by a good fraction of max|g|.
        assert float(single["grads"][name].abs().max()) > 0, f"{name}: zero gradient, the test would prove nothing"
        assert_close_float32(shared["grads"][name], single["grads"][name], terms=384, what=name)


def test_torchrun_finetune_end_to_end(tmp_path: Path, tiny_dataset: Path) -> None:
    train = write_beir(tmp_path / "train", corpus=TRAIN_CORPUS, queries=TRAIN_QUERIES, qrels=TRAIN_QRELS, split="train")
    out = tmp_path / "models" / "ddp-ft"
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "embedlab.cli.main",
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
            "0",
            "--mine-ranks",
            "2-6",
            "--latency-queries",
            "2",
            "--drop-leaked",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("| NDCG@10 |") == 1  # only rank 0 reports
    saved = json.loads((out / "finetune.json").read_text())
    assert saved["training"]["conditions"]["processes"] == 2 and saved["training"]["steps"] >= 1
    assert (out / "model.safetensors").is_file()
