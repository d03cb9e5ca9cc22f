"""The embedding cache: keys never collide across settings, warm runs read, interrupted runs resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from embedlab.cache.store import EmbeddingCache, text_key
from embedlab.encoders.base import EncodeStats, Fingerprint
from embedlab.encoders.fake import HashingEncoder
from embedlab.encoders.spec import ModelSpec

TEXTS = [f"document number {i} about topic {i % 7}" for i in range(50)]
BASE = Fingerprint(
    kind="transformer",
    model="m",
    weights="sha-a",
    backend="onnx",
    pooling="mean",
    normalize=True,
    max_length=256,
    precision="fp32",
    query_prompt="",
    document_prompt="",
)


class CountingEncoder(HashingEncoder):
    def __init__(self, spec: ModelSpec, fail_after: int | None = None) -> None:
        super().__init__(spec)
        self.calls = 0
        self.encoded_texts = 0
        self.fail_after = fail_after

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1
        self.encoded_texts += len(texts)
        return super().encode_batch(texts)


@pytest.mark.parametrize(
    "change",
    [
        {"weights": "sha-b"},
        {"backend": "torch"},
        {"pooling": "cls"},
        {"pooling": "max"},
        {"normalize": False},
        {"max_length": 128},
        {"precision": "int8"},
        {"model": "other"},
        {"kind": "static"},
    ],
)
def test_every_fingerprint_field_changes_the_space(tmp_path: Path, change: dict) -> None:
    cache = EmbeddingCache(tmp_path)
    for role in ("query", "document"):
        a = cache.space(BASE.for_role(role), 4)
        b = cache.space(replace(BASE, **change).for_role(role), 4)
        assert a != b


def test_prompts_and_roles_never_share(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    spaces = {
        cache.space(BASE.for_role("query"), 4),
        cache.space(BASE.for_role("document"), 4),
        cache.space(replace(BASE, query_prompt="query: ").for_role("query"), 4),
        cache.space(replace(BASE, document_prompt="passage: ").for_role("document"), 4),
    }
    assert len(spaces) == 4
    # a prompt for the other role does not change this role's space (it does not change its vectors)
    assert cache.space(replace(BASE, query_prompt="query: ").for_role("document"), 4) == cache.space(
        BASE.for_role("document"), 4
    )


def test_prompted_and_plain_vectors_are_kept_apart(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    plain = CountingEncoder(ModelSpec(model="hashing", dim=32))
    prompted = CountingEncoder(ModelSpec(model="hashing", dim=32, query_prompt="query: "))
    a = plain.encode(["reset password"], role="query", cache=cache)
    b = prompted.encode(["reset password"], role="query", cache=cache)
    assert prompted.calls == 1  # a miss, not a wrong hit
    assert not np.allclose(a, b)
    assert np.allclose(b, prompted.encode(["reset password"], role="query"))


def test_warm_run_reads_instead_of_encoding(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    cold = CountingEncoder(ModelSpec(model="hashing", dim=32, batch_size=8))
    first = cold.encode(TEXTS, role="document", cache=cache)
    assert cold.encoded_texts == len(TEXTS)
    warm = CountingEncoder(ModelSpec(model="hashing", dim=32, batch_size=8))
    stats = EncodeStats()
    second = warm.encode(TEXTS, role="document", cache=cache, stats=stats)
    assert warm.calls == 0 and stats.cache_hits == len(TEXTS) and stats.encoded == 0
    np.testing.assert_array_equal(first, second)
    assert cache.measured_throughput(next(iter(stats.spaces)))["texts"] == len(TEXTS)


def test_duplicates_in_one_call_are_encoded_once(tmp_path: Path) -> None:
    enc = CountingEncoder(ModelSpec(model="hashing", dim=16))
    out = enc.encode(["a b", "c d", "a b"], role="document", cache=EmbeddingCache(tmp_path))
    assert enc.encoded_texts == 2
    np.testing.assert_array_equal(out[0], out[2])


def test_interrupted_encoding_keeps_finished_batches(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    failing = CountingEncoder(ModelSpec(model="hashing", dim=32, batch_size=10), fail_after=3)
    with pytest.raises(KeyboardInterrupt):
        failing.encode(TEXTS, role="document", cache=cache)
    resumed = CountingEncoder(ModelSpec(model="hashing", dim=32, batch_size=10))
    stats = EncodeStats()
    out = resumed.encode(TEXTS, role="document", cache=cache, stats=stats)
    assert stats.cache_hits == 30 and resumed.encoded_texts == 20
    # exact: the hashing encoder's vectors are integer counts, normalised the same way in the same process
    np.testing.assert_allclose(out, resumed.encode(TEXTS, role="document"), rtol=0, atol=0)


def test_sigkill_mid_encoding_leaves_a_loadable_cache(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        from embedlab.cache.store import EmbeddingCache, text_key
        from embedlab.encoders.fake import HashingEncoder
        from embedlab.encoders.spec import ModelSpec
        texts = [f"text {{i}}" for i in range(400)]
        enc = HashingEncoder(ModelSpec(model="hashing", dim=32, batch_size=10, delay_ms=40))
        enc.encode(texts, role="document", cache=EmbeddingCache({str(tmp_path)!r}))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    cache = EmbeddingCache(tmp_path)
    deadline = time.time() + 60
    while cache.count() < 50 and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = cache.count()
    assert 50 <= kept < 400 and kept % 10 == 0  # whole batches only
    enc = CountingEncoder(ModelSpec(model="hashing", dim=32, batch_size=10))
    stats = EncodeStats()
    enc.encode([f"text {i}" for i in range(400)], role="document", cache=cache, stats=stats)
    assert stats.cache_hits == kept and enc.encoded_texts == 400 - kept
    assert cache.count() == 400


def test_a_row_of_the_wrong_size_is_a_miss(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    enc = CountingEncoder(ModelSpec(model="hashing", dim=32))
    enc.encode(["x"], role="query", cache=cache)
    space = cache.space(enc.fingerprint.for_role("query"), 32)
    _, found = cache.get(space, [text_key("x")], 16)
    assert not found.any()
