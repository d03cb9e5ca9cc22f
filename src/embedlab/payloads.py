"""The shapes of result payloads: measurements, conditions, environment and manifests.

Results are written as JSON (MTEB-compatible result files, ``summary.json``, ``finetune.json``)
and read back by key in reports, selection and the fine-tune verdict.  TypedDicts keep them
plain dicts at run time, so what is written is unchanged, while mypy checks every key that is
built or read.  They live at the top of the package because encoders, search, eval, reports,
collections and train all use them (the core never imports the layers above it).
"""

from __future__ import annotations

from typing import Any, NotRequired, Required, TypedDict


class SizeInfo(TypedDict, total=False):
    """A model's size as measured; each backend fills in what it knows (``dim`` always)."""

    dim: Required[int]
    parameters: int | None  # None: the backend cannot count them
    weights_bytes: int
    onnx_bytes: int
    source: str
    index_bytes: int
    index_bytes_per_vector: float  # what grows with the rows (index_fixed_bytes left out)
    index_fixed_bytes: int  # what does not: a PCA projection, int8 ranges
    index: str
    index_info: dict[str, Any]  # the vector index built: kind, options used, recall@10 vs exact, note
    stages: list[SizeInfo]  # a pipeline: each first-stage retriever's own


class MachineLoad(TypedDict):
    """How busy the machine was while a speed figure was timed (``embedlab.eval.load``)."""

    seconds: float
    cpus: int
    load_average_1m: float | None
    steal_percent: float | None
    other_cpu_percent: float | None
    busy: NotRequired[bool]
    busy_because: NotRequired[str]  # "" when quiet


class Conditions(TypedDict, total=False):
    """The settings a speed figure depends on, written next to it (reports list them as key=value)."""

    backend: str
    device: str
    threads: int | None
    batch_size: int
    max_length: int | str  # "none": no truncation
    precision: str
    image_size: int  # image models: the side of the square the network sees
    stages: list[Conditions]  # a pipeline with several first-stage retrievers
    # a collection's search (collection eval)
    mode: str
    chunk_tokens: int
    overlap: int
    chunk_depth: int
    rrf_k: float
    weights: list[float]
    reranker: str | None
    document_score: str
    machine: MachineLoad  # the load while the latency was timed (the quietest of --repeat runs)


class Latency(TypedDict, total=False):
    """Single-query latency (``samples`` 0: not probed, and nothing else)."""

    samples: Required[int]
    p50_ms: float
    p95_ms: float
    mean_ms: float
    warmup: int
    what: str
    stages_mean_ms: dict[str, float]  # a collection's search: mean ms per stage
    machine: MachineLoad  # the load during the timing (moved into the conditions by the runner)
    repeats: int  # --repeat N: the probe ran N times, the quietest is kept
    kept_repeat: int  # which one (1-based)
    p95_ms_per_repeat: list[float]
    waited_quiet_s: float  # --wait-quiet S: seconds spent waiting for a quiet machine before timing


class CorpusThroughput(TypedDict):
    documents: int
    chunks: NotRequired[int]  # a collection: its chunks
    seconds: float
    encoded: int
    cache_hits: int
    docs_per_second: float | None
    source: str  # where the rate comes from (this run, or the cache's record of an earlier one)


class QueryTiming(TypedDict):
    count: int
    seconds: float
    encoded: NotRequired[int]
    cache_hits: NotRequired[int]


class Memory(TypedDict):
    rss_after_index_bytes: NotRequired[int]
    peak_rss_bytes: int
    note: NotRequired[str]


class Measurements(TypedDict):
    """Everything measured for one (dataset, model), beside its scores."""

    load_seconds: float
    corpus: CorpusThroughput
    queries: QueryTiming
    latency: Latency
    size: SizeInfo
    memory: Memory
    conditions: Conditions


class Hardware(TypedDict):
    cpu: str
    cpus: int | None
    memory_bytes: int
    platform: str
    python: str
    gpu: str | None


class Environment(TypedDict):
    """The run manifest's environment: versions, hardware, seed."""

    embedlab: str
    libraries: dict[str, str]
    hardware: Hardware
    seed: int
    cache: NotRequired[str | None]  # eval: the embedding cache used, if any
    collection: NotRequired[dict[str, Any]]  # collection eval: name, generation, chunking, counts, index


class DatasetManifest(TypedDict):
    name: str
    path: str
    split: str
    documents: int
    queries: int
    qrels_pairs: int
    sha256: str


class CollectionInfo(TypedDict):
    """``embedlab index info``: what a collection holds.  The nested dicts are the manifest's
    validated pydantic models, dumped (``collection/manifest.py`` has their fields)."""

    name: str
    path: str
    generation: int
    source_folder: str
    model: str
    model_spec: dict[str, Any]
    encoder: dict[str, Any]
    dim: int
    metric: str
    chunking: dict[str, Any]
    library: dict[str, Any]
    counts: dict[str, Any]
    files_by_kind: dict[str, int]
    index: dict[str, Any]
    lexical: dict[str, Any]
    vectors: dict[str, Any]
    size_bytes: int
    folder_bytes: int
    created: str
    updated: str
    versions: dict[str, str]
    skipped: list[dict[str, str]]
    corpus_drift: dict[str, Any] | None  # the last update's added chunks vs the previous generation
    images: dict[str, Any] | None  # an image collection's decoding limits (None: documents)
