"""Encoding on Ray Data: one encoder per actor, shards handed back to the driver as they finish.

Why Ray Data rather than a scheduler of our own: it already does actor pools, back-pressure,
retries of lost actors and cluster placement, and the same code runs on a laptop (an in-process
Ray) and on a cluster (``--ray-address auto`` or ``ray://head:10001``).

The dataset is built from the shards still to do, as Arrow blocks (columns ``shard``, ``row``
(the position in the shard), ``text``) that never straddle two shards, about four per actor, so
each block range maps to exactly one output shard.  ``map_batches`` runs :class:`EncodeActor` (a
pool of ``actors`` actors, each loading the model once, with ``cores / actors`` CPU threads or
``num_gpus``); the driver puts rows back in shard order (blocks finish in any order) and calls
``on_shard`` as soon as a shard is whole, so an interrupted run keeps every finished shard.
Actors that die are restarted (``max_restarts``) and their batches retried (``max_task_retries``).

Connecting is bounded: an address that is not ``auto`` is first probed with a gRPC handshake of
:data:`CONNECT_TIMEOUT_S` seconds, and Ray's own wait for the GCS is cut to the same, so an
unreachable head is one line, not a hang.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from embedlab.errors import EmbedlabError

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 3.0
MAX_RESTARTS = 3  # an actor killed more often than this is a real fault: fail with one line
MAX_TASK_RETRIES = 3
CLIENT_PORT = 10001  # ray:// (Ray Client) default port
GCS_PORT = 6379

OnShard = Callable[[int, list[str], np.ndarray], None]
Engine = Literal["local", "ray"]  # where a corpus or collection is encoded


@dataclass(frozen=True)
class RayEngine:
    """Where and how wide to encode on Ray: ``--ray-address`` (None: a Ray started in this process),
    ``--actors`` (one model each) and ``--num-gpus-per-actor`` (0: CPU actors, cores / actors
    threads each).  The same options for ``embedlab encode`` and ``index build/update``."""

    address: str | None = None
    actors: int = 1
    num_gpus_per_actor: float = 0.0

    @classmethod
    def of(cls, engine: Engine, address: str | None, actors: int, num_gpus_per_actor: float) -> RayEngine | None:
        """The options of ``--engine local|ray`` (None: local); Ray options without Ray are an error."""
        if engine not in ("local", "ray"):
            raise EmbedlabError("unknown engine", found=repr(engine), expected="local or ray")
        if engine == "local":
            if address or actors != 1 or num_gpus_per_actor:
                raise EmbedlabError("--ray-address, --actors and --num-gpus-per-actor need --engine ray")
            return None
        return cls(address, actors, num_gpus_per_actor)

    def __post_init__(self) -> None:  # a RayEngine is a sound one: checked once, where it is made
        if self.actors < 1 or self.num_gpus_per_actor < 0:
            raise EmbedlabError(
                "invalid Ray option",
                found=f"actors={self.actors}, num_gpus_per_actor={self.num_gpus_per_actor}",
                expected="actors >= 1, GPUs per actor >= 0",
            )

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Connected to Ray for the block; a Ray this call started is shut down after it."""
        started = connect(self.address)
        try:
            yield
        finally:
            if started:
                _ray().shutdown()


class RayTextEncoder:
    """``texts -> vectors`` on Ray actors, for the encode loop's ``bulk`` hook
    (:meth:`embedlab.encoders.base.Encoder.encode`): the driver looks up and fills the embedding
    cache and sends only the texts it lacks, prompts already applied; Ray is joined at the first
    call (a build with nothing new to encode never starts it) and left by :meth:`close`."""

    def __init__(self, engine: RayEngine, spec_json: str, batch_size: int) -> None:
        self.engine, self.spec_json, self.batch_size = engine, spec_json, batch_size
        self._session: contextlib.ExitStack | None = None

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self._session is None:
            stack = contextlib.ExitStack()
            stack.enter_context(self.engine.session())
            self._session = stack
        got: dict[int, np.ndarray] = {}
        encode_shards(
            [(0, [str(i) for i in range(len(texts))], texts)],
            spec_json=self.spec_json,
            actors=self.engine.actors,
            batch_size=self.batch_size,
            num_gpus_per_actor=self.engine.num_gpus_per_actor,
            cache_dir=None,
            on_shard=lambda index, _ids, vectors: got.__setitem__(index, vectors),
            use_prompt=False,
        )
        return got[0]

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise EmbedlabError(
            "--engine ray needs Ray Data, which is not installed", hint='pip install "ray[data]==2.60.0"'
        ) from None
    return ray


def connect(address: str | None) -> bool:
    """Join the Ray cluster at ``address`` (None: start one in this process).  Returns whether this
    call started Ray (then the caller shuts it down); an already initialised Ray is reused."""
    ray = _ray()
    if ray.is_initialized():
        return False
    if address not in (None, "auto", "local"):
        _probe(str(address))
    try:
        if address is None:
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            with _bounded_gcs_wait(), _stderr_to_log():
                ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
        reason = str(err).splitlines()[0].rstrip(".") if str(err) else type(err).__name__
        raise EmbedlabError(
            f"cannot connect to Ray at {address!r}: {reason}",
            hint="start a cluster (`ray start --head`), or leave out --ray-address to run Ray in this process",
        ) from None
    return True


def _probe(address: str) -> None:
    """A gRPC handshake with the head (GCS or Ray Client server), bounded, before Ray's own retry loops
    (about 20 s for a GCS address, 30 s for ``ray://``): an unreachable head is one line in seconds."""
    import grpc

    client = address.startswith("ray://")
    hostport = address.removeprefix("ray://").split("/")[0]
    host, _, port_text = hostport.rpartition(":")
    if not host:
        host, port_text = hostport, ""
    if not host or (port_text and not port_text.isdigit()):
        raise EmbedlabError(f"cannot read the Ray address {address!r}", expected="auto, HOST:PORT or ray://HOST:PORT")
    port = int(port_text) if port_text else (CLIENT_PORT if client else GCS_PORT)
    channel = grpc.insecure_channel(f"{host}:{port}")
    hint = "check the head's address and port, and that `ray start --head` runs there"
    try:
        grpc.channel_ready_future(channel).result(timeout=CONNECT_TIMEOUT_S)
        if client:
            _ping_client_server(channel)
    except grpc.FutureTimeoutError:
        raise EmbedlabError(
            f"cannot connect to Ray at {address!r}: no gRPC answer from {host}:{port} within {CONNECT_TIMEOUT_S:g} s",
            hint=hint,
        ) from None
    except grpc.RpcError as err:
        raise EmbedlabError(
            f"cannot connect to Ray at {address!r}: {host}:{port} is not a Ray Client server ({err.code().name})",
            hint=hint,
        ) from None
    finally:
        channel.close()


def _ping_client_server(channel: Any) -> None:
    """Ray Client's own PING, bounded: a server that does not implement it (or does not answer) is not
    Ray.  Any other refusal (e.g. a missing client id) still proves a Ray Client server listens."""
    import grpc
    from ray.core.generated import ray_client_pb2, ray_client_pb2_grpc

    messages: Any = ray_client_pb2  # generated protobuf code: no type stubs for its messages
    request = messages.ClusterInfoRequest(type=messages.ClusterInfoType.PING)
    try:
        ray_client_pb2_grpc.RayletDriverStub(channel).ClusterInfo(request, timeout=CONNECT_TIMEOUT_S)
    except grpc.RpcError as err:
        code = grpc.StatusCode
        if err.code() in (code.UNIMPLEMENTED, code.UNAVAILABLE, code.DEADLINE_EXCEEDED):
            raise


@contextlib.contextmanager
def _bounded_gcs_wait() -> Iterator[None]:
    """Ray retries a GCS that answers but is not (yet) Ray for ~20 s; this bounds it (the variable is
    Ray's own, read when connecting; a value the user set is kept)."""
    name = "RAY_gcs_server_port_wait_time_s"
    before = os.environ.get(name)
    if before is None:
        os.environ[name] = str(int(CONNECT_TIMEOUT_S))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)


@contextlib.contextmanager
def _stderr_to_log() -> Iterator[None]:
    """Ray's C++ core prints one warning per connect retry to file descriptor 2; they go to the debug
    log instead, so a failed connect is the one line of the error."""
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace").strip()
            if text:
                log.debug("Ray while connecting:\n%s", text)


class EncodeActor:
    """One model per actor; ``__call__`` encodes a batch of rows through the embedding cache."""

    def __init__(
        self, *, spec_json: str, threads: int, cache_dir: str | None, plugins: str, use_prompt: bool = True
    ) -> None:
        os.environ["EMBEDLAB_THREADS"] = str(threads)  # cores / actors: actors do not oversubscribe
        if plugins:
            os.environ["EMBEDLAB_PLUGINS"] = plugins  # the driver's plugins, also on remote nodes
        from embedlab.cache.store import EmbeddingCache
        from embedlab.encoders.registry import load_encoder
        from embedlab.encoders.spec import ModelSpec

        self.encoder = load_encoder(ModelSpec.model_validate(json.loads(spec_json)))
        self.cache = EmbeddingCache(cache_dir) if cache_dir else None
        self.use_prompt = use_prompt  # False: the driver sends texts with the document prompt already on

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        vectors = self.encoder.encode(texts, role="document", cache=self.cache, use_prompt=self.use_prompt)
        return {"shard": batch["shard"], "row": batch["row"], "vector": vectors}


def encode_shards(
    shards: list[tuple[int, list[str], list[str]]],
    *,
    spec_json: str,
    actors: int,
    batch_size: int,
    num_gpus_per_actor: float,
    cache_dir: str | None,
    on_shard: OnShard,
    use_prompt: bool = True,
) -> None:
    """Encode ``(index, ids, texts)`` shards on the connected Ray; ``on_shard(index, ids, vectors)``
    is called once per shard, in any order, as soon as all its rows are back."""
    ray = _ray()
    import pyarrow as pa

    if not shards:
        return
    cpus = int(ray.cluster_resources().get("CPU", 1))
    threads = max(1, cpus // actors)
    # blocks are Ray's unit of parallel work: about 4 per actor (never fewer rows than a batch), each
    # inside one shard, so a shard is a range of whole blocks and every actor gets work
    total = sum(len(ids) for _, ids, _ in shards)
    block_rows = max(batch_size, -(-total // (actors * 4)))
    blocks = [
        pa.table(
            {
                "shard": pa.array([index] * len(ids[s : s + block_rows]), type=pa.int64()),
                "row": pa.array(range(s, s + len(ids[s : s + block_rows])), type=pa.int64()),
                "text": texts[s : s + block_rows],
            }
        )
        for index, ids, texts in shards
        for s in range(0, len(ids), block_rows)
    ]
    resources: dict[str, Any] = {"num_gpus": num_gpus_per_actor} if num_gpus_per_actor else {"num_cpus": threads}
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the CLI logs its own progress; Ray's bars flood stderr
    context.print_on_execution_start = False
    if not log.isEnabledFor(logging.DEBUG):
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        # Ray Data defaults to endless actor restarts and task retries (a crash loop would hang the run);
        # passing the bounds as extra remote args is the documented way in 2.60, which warns about it
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        dataset = ray.data.from_arrow(blocks).map_batches(
            EncodeActor,
            fn_constructor_kwargs={
                "spec_json": spec_json,
                "threads": threads,
                "cache_dir": cache_dir,
                "plugins": os.environ.get("EMBEDLAB_PLUGINS", ""),
                "use_prompt": use_prompt,
            },
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            max_restarts=MAX_RESTARTS,
            max_task_retries=MAX_TASK_RETRIES,
            **resources,
        )
    # blocks come back in any order (and a retried task may deliver a block twice): each row goes to
    # its place in its shard, and a shard is whole when every one of its rows has arrived
    wanted = {index: ids for index, ids, _ in shards}
    pending: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    log.info(
        "Ray: %d shard(s) in %d block(s) on %d actor(s), %d CPU thread(s) each",
        len(shards),
        len(blocks),
        actors,
        threads,
    )
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for index in (int(i) for i in np.unique(batch["shard"])):
                if index not in wanted:
                    continue  # already written: a duplicate delivery
                rows = batch["shard"] == index
                size = len(wanted[index])
                out, arrived = pending.setdefault(
                    index, (np.zeros((size, batch["vector"].shape[1]), np.float32), np.zeros(size, bool))
                )
                out[batch["row"][rows]] = batch["vector"][rows]
                arrived[batch["row"][rows]] = True
                if arrived.all():
                    del pending[index]
                    on_shard(index, wanted.pop(index), out)
    except Exception as err:  # Ray wraps errors raised in actors; ours keep their one line
        cause = _embedlab_cause(err)
        if cause is not None:
            raise cause from None
        raise
    if wanted:
        raise RuntimeError(f"Ray returned shards {sorted(wanted)} incomplete")  # a bug, not input


def _embedlab_cause(err: BaseException) -> EmbedlabError | None:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, EmbedlabError):
            return current
        current = current.__cause__ or current.__context__
    return None
