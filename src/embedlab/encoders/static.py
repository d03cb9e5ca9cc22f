"""Static embeddings: one vector per token, averaged (no transformer at query time).

Thousands of passages per second on a CPU, a fraction of a transformer's quality: the
floor a transformer has to beat, and the model for tight latency budgets.

- ``WordLlamaEncoder``: WordLlama's ``l2_supercat`` token embeddings (256-dim), from the
  ``wordllama`` package (a real library: its loader is called, downloads disabled).
- ``Model2VecEncoder``: a model2vec distillation of the bundled all-MiniLM-L6-v2 (every
  vocabulary token through the transformer, PCA to 256 dims, SIF weighting; Tulkens & van
  Dongen 2024), built once per MiniLM weights hash into the cache folder (about 30 s).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from embedlab import settings
from embedlab.atomic import atomic_dir
from embedlab.checksum import file_sha256
from embedlab.encoders.base import Encoder, Fingerprint
from embedlab.encoders.resolve import resolve_model, verify_sha256
from embedlab.encoders.spec import ModelSpec, check_options
from embedlab.errors import EmbedlabError
from embedlab.payloads import Conditions, SizeInfo
from embedlab.progress import progress_bar

if TYPE_CHECKING:
    from embedlab.encoders.onnx_folder import FolderManifest

log = logging.getLogger(__name__)

WORDLLAMA_PIN = "wordllama==0.4.0.post1"
# skeletoken must be installed with --no-deps (requirements-nodeps.lock): model2vec[distill] would pin
# transformers<5.4, so the message gives both commands exactly
MODEL2VEC_INSTALL = "pip install model2vec==0.10.0 && pip install --no-deps skeletoken==0.6.1"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MODEL2VEC_DIMS = 256
STATIC_BATCH = 1024  # model2vec's default batch; see Model2VecEncoder


def _installed(dist: str, command: str) -> str:
    """The installed version of ``dist``; else an error whose hint is the exact ``command``."""
    try:
        return version(dist)
    except PackageNotFoundError:
        raise EmbedlabError(f"this model needs the {dist} package, which is not installed", hint=command) from None


@contextlib.contextmanager
def _root_logging_kept() -> Iterator[None]:
    """wordllama calls ``logging.basicConfig`` on import; importing embedlab's backends must
    not configure the application's logging, so the root logger is put back as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


class WordLlamaEncoder(Encoder):
    CONFIG = "l2_supercat"

    def __init__(self, spec: ModelSpec) -> None:
        check_options(spec, accepted={"max_length", "normalize"}, what="the static model wordllama-l2-supercat")
        self.version = _installed("wordllama", f"pip install {WORDLLAMA_PIN}")
        with _root_logging_kept():
            import wordllama
            from wordllama import WordLlama

        folder = Path(wordllama.__file__).parent
        self.weights = folder / "weights" / f"{self.CONFIG}_256.safetensors"
        if not self.weights.is_file():
            raise EmbedlabError(
                "the wordllama package has no bundled l2_supercat weights",
                path=self.weights,
                hint=f"pip install {WORDLLAMA_PIN}",
            )
        # cache_dir = the package folder: the loader finds the bundled files and never downloads
        self.model = WordLlama.load(config=self.CONFIG, cache_dir=folder, disable_download=True)
        self.max_length = spec.max_length or 0  # 0: no truncation, as upstream
        if self.max_length:
            self.model.tokenizer.enable_truncation(self.max_length)
        self.dim = int(self.model.embedding.shape[1])
        self.batch_size = spec.batch_size
        self.fingerprint = Fingerprint(
            kind="static",
            model="wordllama-l2-supercat",
            weights=file_sha256(self.weights),
            backend=f"wordllama {self.version}",
            pooling="mean",
            normalize=spec.normalize if spec.normalize is not None else True,
            max_length=self.max_length,
            precision="fp32",  # float16 on disk, float32 in use
            query_prompt=spec.query_prompt,
            document_prompt=spec.document_prompt,
        )

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        return self.model.embed(texts, norm=False, batch_size=len(texts)).astype(np.float32)

    def size_info(self) -> SizeInfo:
        return {
            "dim": self.dim,
            "parameters": int(self.model.embedding.size),
            "weights_bytes": self.weights.stat().st_size,
            "source": f"package wordllama=={self.version}",
        }

    def conditions(self) -> Conditions:
        return {
            "backend": "numpy (static)",
            "device": "cpu",
            "batch_size": self.batch_size,
            "max_length": self.max_length or "none",
            "precision": "fp32",
        }


class Model2VecEncoder(Encoder):
    """A model2vec static model: the packaged MiniLM distillation (``folder`` None), or a folder
    ``embedlab shrink`` distilled from the user's model (``folder`` and its ``manifest``, whose
    sha256 of the vectors is verified before loading)."""

    def __init__(self, spec: ModelSpec, folder: Path | None = None, manifest: FolderManifest | None = None) -> None:
        name = manifest.name if manifest is not None else "minilm-model2vec"
        check_options(spec, accepted={"max_length"}, what=f"the static model {name}")
        self.version = _installed("model2vec", MODEL2VEC_INSTALL)
        if folder is None or manifest is None:
            base = resolve_model(MINILM)
            self.folder = model2vec_folder(base.path, base.weights_sha256)
            self.source = f"built with model2vec from {MINILM} ({self.folder})"
            made = f"from all-MiniLM-L6-v2 {base.weights_sha256[:12]}, pca {MODEL2VEC_DIMS}"
        else:
            self.folder = folder
            self.source = f"local folder (model2vec distillation of {manifest.base_model})"
            made = f"from {manifest.base_model} {manifest.base_weights_sha256[:12]}"
        self.weights = self.folder / "model.safetensors"
        if manifest is not None:
            verify_sha256(name, self.weights, "the model folder", manifest.sha256)
        from model2vec import StaticModel

        self.model = StaticModel.from_pretrained(self.folder, force_download=False)  # normalises, as distilled
        self.max_length = spec.max_length or 512  # model2vec's default truncation
        self.dim = int(self.model.dim)
        # a static model is bound by its tokenizer and the per-call overhead, not by memory: unless
        # set, batches of model2vec's own default, 1024 (NPL, 2 cores: 16,800 docs/s at 1024 against
        # 12,900 at 32, model calls alone)
        self.batch_size = spec.batch_size if "batch_size" in spec.model_fields_set else STATIC_BATCH
        tokenizer = file_sha256(self.folder / "tokenizer.json")[:16]  # a corpus vocabulary changes it
        self.fingerprint = Fingerprint(
            kind="static",
            model=name,
            weights=file_sha256(self.weights) + ("" if manifest is None else f"+tokenizer:{tokenizer}"),
            backend=f"model2vec {self.version} ({made})",
            pooling="mean",
            normalize=True,
            max_length=self.max_length,
            precision="fp32",  # float16 on disk, float32 in use
            query_prompt=spec.query_prompt,
            document_prompt=spec.document_prompt,
        )

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts, max_length=self.max_length, batch_size=len(texts), show_progress_bar=False, use_multiprocessing=False
        ).astype(np.float32)

    def size_info(self) -> SizeInfo:
        return {
            "dim": self.dim,
            "parameters": int(self.model.embedding.size),
            "weights_bytes": sum(f.stat().st_size for f in self.folder.iterdir() if f.is_file()),
            "source": self.source,
        }

    def conditions(self) -> Conditions:
        return {
            "backend": "numpy (static)",
            "device": "cpu",
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "precision": "fp32",
        }


def model2vec_folder(minilm: Path, minilm_sha256: str) -> Path:
    """The distilled model, built once per MiniLM weights hash (atomically: in a temporary
    sibling folder, then renamed into place)."""
    target = settings.cache_dir() / "model2vec" / minilm_sha256[:24]
    if target.is_dir():
        return target
    log.info("distilling all-MiniLM-L6-v2 into a static model2vec model (once, about 30 s): %s", target)
    with atomic_dir(target) as work:
        distill_static(minilm, work, pca_dims=MODEL2VEC_DIMS, what="minilm-model2vec")
    return target


def distill_static(model: Path, work: Path, *, pca_dims: int, what: str, vocabulary: list[str] | None = None) -> int:
    """model2vec's distillation of the transformer folder ``model`` saved into ``work``: every
    token of its vocabulary (plus ``vocabulary``'s words, each a new token) through the
    transformer, PCA to ``pca_dims``, SIF weighting; the number of tokens it holds."""
    try:
        import model2vec.distill.inference as steps
        from model2vec.distill import distill
        from transformers.utils import logging as hf_logging
    except ImportError as err:
        raise EmbedlabError(
            f"building {what} needs model2vec's distill module ({err.name} is missing)", hint=MODEL2VEC_INSTALL
        ) from None
    hf_logging.disable_progress_bar()
    plain_bar = steps.tqdm
    # model2vec's own progress bar, made to follow embedlab's log level like embedlab's bars
    steps.tqdm = lambda *, total, desc, **_: progress_bar(total=total, desc=desc, unit="tokens", enabled=True)
    try:
        static = distill(str(model), vocabulary=vocabulary or None, pca_dims=pca_dims, device="cpu")
    finally:
        steps.tqdm = plain_bar
    static.save_pretrained(str(work))
    return int(static.embedding.shape[0])
