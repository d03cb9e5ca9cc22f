"""``embedlab.finetune``: contrastive fine-tuning with mined hard negatives and a before/after verdict.

The keyword options are ``embedlab finetune``'s (which calls this function); the work is
:func:`embedlab.train.run.run_finetune` (its docstring gives the order of the steps).
"""

from __future__ import annotations

from pathlib import Path

from embedlab.api import specs
from embedlab.errors import EmbedlabError
from embedlab.train.align import AlignConfig
from embedlab.train.loop import TrainConfig
from embedlab.train.mining import MiningConfig
from embedlab.train.run import FinetuneResult, FinetuneSpec, run_finetune

IMAGE_TEXT_DEFAULTS = (60, 128, 1e-3)  # epochs, batch size, learning rate of a head on frozen features


def finetune(
    base: str,
    train: str | Path,
    test: str | Path,
    out: str | Path,
    *,
    train_format: str = "auto",
    train_split: str = "train",
    test_split: str = "test",
    loss: str | None = None,
    matryoshka: tuple[int, ...] = (),
    epochs: int | None = None,
    batch_size: int | None = None,
    mini_batch_size: int = 16,
    learning_rate: float | None = None,
    warmup: float = 0.1,
    max_length: int | None = None,
    max_memory_gb: float | None = None,
    gradient_checkpointing: bool = True,
    dev_ratio: float = 0.1,
    patience: int = 2,
    seed: int = 0,
    hard_negatives: int = 1,
    mine_ranks: tuple[int, int] = (10, 30),
    mine_margin: float = 0.95,
    cross_encoder: str | None = None,
    allow_leakage: bool = False,
    drop_leaked: bool = False,
    alpha: float = 0.05,
    cache: specs.Cache = True,
    latency_queries: int = 100,
    show_progress: bool = False,
    kind: str = "bi-encoder",
    first: str | None = None,
    rerank_depth: int = 100,
    text_model: str = "all-MiniLM-L6-v2",
    views: int = 4,
    text_projection: bool = False,
    dim: int | None = None,
    image_hidden: int = 0,
) -> FinetuneResult | None:
    """Fine-tune ``base`` on ``train`` and judge it against the base on ``test``; the model folder,
    its card (README.md), ``finetune.json`` and ``report.html`` are written to ``out`` (which must
    not exist or be empty).

    ``train``: a BEIR dataset (its ``train_split``), or pairs / triplets / click-log JSONL.  Training
    and test queries that overlap stop the run unless ``drop_leaked`` (train without them) or
    ``allow_leakage``.  ``result.verdict.improved`` says whether NDCG@10 rose significantly (p <
    ``alpha``).  ``kind="cross-encoder"``: train a re-ranker for the ``first`` stage (default
    ``bm25``; it mines the negatives) with loss ``listwise`` or ``bce``; the verdict compares
    ``first`` with ``first >> out@rerank_depth``.  ``loss`` defaults to ``mnrl`` for a bi-encoder.
    ``max_memory_gb``: bound the training step (:func:`embedlab.train.memory.plan_step`);
    ``gradient_checkpointing`` (on by default) gives the same gradients in a fraction of the memory.
    Under torchrun only rank 0 returns a result; the other ranks return None.

    ``kind="image-text"``: ``base`` is an image backbone (frozen), ``train`` / ``test`` one or more
    BEIR image tasks (comma-separated); a projection head is trained CLIP-style against the
    ``text_model`` tower (locked as in LiT; ``text_projection`` trains a linear map too, to
    ``dim``), on ``views`` cached views per image (:mod:`embedlab.train.image_text_run`).
    ``epochs`` / ``batch_size`` / ``learning_rate`` default to 4 / 32 / 5e-5, for image-text to
    60 / 128 / 1e-3 (a head on frozen features: many cheap epochs, a larger step).

    >>> result = finetune(  # doctest: +SKIP
    ...     "all-MiniLM-L6-v2", "scifact", "scifact", "models/scifact-ft", drop_leaked=True
    ... )
    >>> result.verdict.improved  # doctest: +SKIP
    True
    """
    if len(mine_ranks) != 2:
        raise EmbedlabError(f"invalid mine_ranks {mine_ranks!r}", expected="(FROM, TO) such as (10, 30)")
    use_cache, cache_dir = specs.cache_option(cache)
    defaults = IMAGE_TEXT_DEFAULTS if kind == "image-text" else (4, 32, 5e-5)
    epochs = defaults[0] if epochs is None else epochs
    batch_size = defaults[1] if batch_size is None else batch_size
    learning_rate = defaults[2] if learning_rate is None else learning_rate
    spec = FinetuneSpec(
        base=base,
        train=str(train),
        test=str(test),
        out=Path(out),
        train_format=train_format,
        train_split=train_split,
        test_split=test_split,
        training=TrainConfig(
            loss=loss or ("listwise" if kind == "cross-encoder" else "mnrl"),
            epochs=epochs,
            batch_size=batch_size,
            mini_batch_size=mini_batch_size,
            learning_rate=learning_rate,
            warmup_ratio=warmup,
            max_length=max_length,
            max_memory_gb=max_memory_gb,
            gradient_checkpointing=gradient_checkpointing,
            matryoshka_dims=tuple(matryoshka),
            patience=patience,
            seed=seed,
        ),
        mining=MiningConfig(
            per_query=hard_negatives,
            rank_from=mine_ranks[0],
            rank_to=mine_ranks[1],
            margin=mine_margin,
            cross_encoder=cross_encoder,
        ),
        dev_ratio=dev_ratio,
        allow_leakage=allow_leakage,
        drop_leaked=drop_leaked,
        alpha=alpha,
        use_cache=use_cache,
        cache_dir=cache_dir,
        latency_queries=specs.positive_int(latency_queries, name="latency_queries", minimum=0),
        show_progress=show_progress,
        kind=kind,
        first=first,
        rerank_depth=specs.positive_int(rerank_depth, name="rerank_depth", minimum=1),
        align=AlignConfig(
            text_model=text_model, views=views, text_projection=text_projection, dim=dim, image_hidden=image_hidden
        ),
    )
    return run_finetune(spec)
