"""The two-stage image pipeline through the pipeline spec: a first image model's top ``depth``
re-scored by a ``bi:`` stage with its own towers (image queries and image documents alike), the
same code path ``embedlab eval -m "A >> bi:B@50"`` runs; text re-rankers refuse images in one line.
Two tiny CLIPs with different random weights stand in for a cheap and an aligned model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedlab.data.beir import load_dataset
from embedlab.encoders.base import EncodeStats
from embedlab.encoders.registry import load_encoder
from embedlab.encoders.spec import ModelSpec
from embedlab.errors import EmbedlabError
from embedlab.search.build import build_retriever
from embedlab.search.pipeline import parse_retrieval
from tests.image_fixtures import ITEMS, write_image_tasks, write_tiny_clip

pytest.importorskip("PIL")
pytest.importorskip("transformers")
DEPTH = 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Path]]:
    base = tmp_path_factory.mktemp("pipeline")
    first = write_tiny_clip(base / "clip-a")
    second = write_tiny_clip(base / "clip-b")
    import torch
    from transformers import CLIPModel

    torch.manual_seed(1)  # the same folder with other random weights: a model that ranks otherwise
    CLIPModel(CLIPModel.from_pretrained(str(second)).config).save_pretrained(str(second))
    return first, second, write_image_tasks(base / "shapes")


def _expected(base: list[str], scores: np.ndarray) -> list[str]:
    """The first stage's top DEPTH ordered by the second model's scores (ties: first-stage order), then the rest."""
    top = base[:DEPTH]
    return [top[i] for i in sorted(range(DEPTH), key=lambda i: (-float(scores[i]), i))] + base[DEPTH:]


@pytest.mark.parametrize("task", ["image2image", "text2image"])
def test_bi_stage_reorders_the_first_stages_top_depth(setup, task: str) -> None:
    first, second, tasks = setup
    data = load_dataset(tasks[task])
    images = {d.id: d.image for d in data.iter_documents() if d.image is not None}
    stats = EncodeStats()
    pipeline = build_retriever(parse_retrieval(f"{first} >> bi:{second}@{DEPTH}"))
    alone = build_retriever(parse_retrieval(str(first)))
    for retriever in (pipeline, alone):
        retriever.index(data.iter_documents(), cache=None, stats=stats)
    k = len(ITEMS)
    if task == "image2image":
        run = pipeline.search_images(data.query_images, k, cache=None, stats=stats)
        base = alone.search_images(data.query_images, k, cache=None, stats=stats)
    else:
        run = pipeline.search(data.queries, k, cache=None, stats=stats)
        base = alone.search(data.queries, k, cache=None, stats=stats)
    model = load_encoder(ModelSpec(model=str(second)))
    changed = 0
    for query_id in data.queries:
        order = [d for d, _ in base.ranking(query_id)]
        docs = model.encode_images([images[d] for d in order[:DEPTH]], role="document")
        if task == "image2image":
            query = model.encode_images([data.query_images[query_id]], role="query")[0]
        else:
            query = model.encode([data.queries[query_id]], role="query")[0]
        expected = _expected(order, docs @ query)
        assert [d for d, _ in run.ranking(query_id)] == expected, query_id
        changed += expected != order
    assert changed > 0  # the second model disagrees somewhere: the test would see a stage that did nothing
    if task == "image2image":  # one query at a time (latency probes) ranks as the batch does
        one = pipeline.search_image_one(data.query_images["q-i1"], k)
        assert [d for d, _ in one] == [d for d, _ in run.ranking("q-i1")]


def test_text_rerankers_and_fusion_refuse_images_in_one_line(setup) -> None:
    first, _, tasks = setup
    data = load_dataset(tasks["image2image"])
    stats = EncodeStats()
    overlap = build_retriever(parse_retrieval(f"{first} >> word-overlap@{DEPTH}"))
    overlap.index(data.iter_documents(), cache=None, stats=stats)
    with pytest.raises(EmbedlabError, match="reads text; image queries and documents need a bi-encoder stage"):
        overlap.search_images(data.query_images, 3, cache=None, stats=stats)
    fused = build_retriever(parse_retrieval(f"bm25 + {first}"))
    assert fused.modalities() == {"text"}
    with pytest.raises(EmbedlabError, match="image queries take one"):
        fused.search_images(data.query_images, 3, cache=None, stats=stats)
