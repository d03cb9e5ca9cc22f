"""Transformer bi-encoders (BERT-family sentence-transformers folders) with two runners.

- ``onnx`` (default on CPU): the transformer is exported once to ONNX (fp32, opset 17,
  kept in the cache folder under the weights' sha256) and run by onnxruntime; the same
  vectors as torch to ~1e-6, and markedly faster on small CPUs.
- ``torch`` (default on CUDA): the transformer run by PyTorch.

Tokenisation (``tokenizers``, dynamic padding per batch) and pooling (numpy) are shared,
so both runners see identical inputs and differ only in the matrix arithmetic.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np

from embedlab import settings
from embedlab.atomic import atomic_open
from embedlab.encoders.base import Encoder, Fingerprint
from embedlab.encoders.pooling import model_pooling, pool
from embedlab.encoders.resolve import ResolvedModel, resolve_model
from embedlab.encoders.spec import ModelSpec
from embedlab.errors import EmbedlabError
from embedlab.payloads import Conditions, SizeInfo

log = logging.getLogger(__name__)
ONNX_OPSET = 17


def _nvidia_driver_present() -> bool:
    """Whether an NVIDIA driver is loaded (Linux: /proc/driver/nvidia; elsewhere a libcuda to load).

    ``torch.cuda.is_available()`` cannot be true without one, and ``import torch`` alone costs 1-2 s:
    most of a one-off ``embedlab search`` on a CPU machine, which then runs ONNX and never needs torch.
    """
    import ctypes.util

    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in {"", "-1"}:
        return False
    return Path("/proc/driver/nvidia/version").is_file() or ctypes.util.find_library("cuda") is not None


def _cuda_available() -> bool:
    if "torch" not in sys.modules and not _nvidia_driver_present():
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


class TransformerEncoder(Encoder):
    def __init__(self, spec: ModelSpec, *, resolved: ResolvedModel | None = None) -> None:
        self.spec = spec
        self.resolved = resolved or resolve_model(spec.model)
        folder = self.resolved.path
        self.max_length = spec.max_length or _declared_max_length(folder)
        self.pooling = spec.pooling or model_pooling(folder)
        self.normalize = spec.normalize if spec.normalize is not None else _default_normalize(folder)
        self.device = ("cuda" if _cuda_available() else "cpu") if spec.device == "auto" else spec.device
        self.backend = (
            spec.backend if spec.backend != "auto" else ("torch" if self.device.startswith("cuda") else "onnx")
        )
        self.threads = spec.threads or settings.default_threads()
        self.batch_size = spec.batch_size
        self.tokenizer = load_tokenizer(folder, self.max_length)
        self.dim = _hidden_size(folder)
        self.runner = (
            OnnxRunner(self.resolved, self.threads)
            if self.backend == "onnx"
            else TorchRunner(self.resolved, self.device, self.threads)
        )
        self.fingerprint = Fingerprint(
            kind="transformer",
            model=self.resolved.name,
            weights=self.resolved.weights_sha256,
            backend=self.backend,
            pooling=self.pooling,
            normalize=self.normalize,
            max_length=self.max_length,
            precision="fp32",
            query_prompt=spec.query_prompt,
            document_prompt=spec.document_prompt,
        )

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        ids, mask, types = tokenize_batch(self.tokenizer, texts)
        hidden = self.runner(ids, mask, types)
        return pool(hidden, mask, self.pooling).astype(np.float32)

    def size_info(self) -> SizeInfo:
        weights = self.resolved.weights_file
        info: SizeInfo = {
            "dim": self.dim,
            "parameters": self.resolved.parameters(),
            "weights_bytes": weights.stat().st_size,
            "source": self.resolved.source,
        }
        if isinstance(self.runner, OnnxRunner):
            info["onnx_bytes"] = self.runner.path.stat().st_size
        return info

    def conditions(self) -> Conditions:
        return {
            "backend": self.backend,
            "device": self.device,
            "threads": self.threads,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "precision": "fp32",
        }


def _declared_max_length(folder: Path) -> int:
    config = folder / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text()).get("max_seq_length")
        if value:
            return int(value)
    tok_config = folder / "tokenizer_config.json"
    if tok_config.is_file():
        value = json.loads(tok_config.read_text()).get("model_max_length")
        if isinstance(value, int) and value < 100_000:
            return value
    return 512


def _default_normalize(folder: Path) -> bool:
    """Cosine unless the model says dot product: a Normalize module, or no declared similarity
    (sentence-transformers and MTEB default to cosine), means normalise."""
    modules = folder / "modules.json"
    if modules.is_file() and any(m.get("type", "").endswith("Normalize") for m in json.loads(modules.read_text())):
        return True
    config = folder / "config_sentence_transformers.json"
    if config.is_file():
        similarity = json.loads(config.read_text()).get("similarity_fn_name")
        if similarity in {"dot", "dot_product"}:
            return False
    return True


def _hidden_size(folder: Path) -> int:
    return int(json.loads((folder / "config.json").read_text())["hidden_size"])


def tokenize_batch(tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids, attention mask and token types (int64), padded to the batch's longest text."""
    encodings = tokenizer.encode_batch([t.strip() for t in texts])
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(texts), width), dtype=np.int64)
    mask = np.zeros((len(texts), width), dtype=np.int64)
    types = np.zeros((len(texts), width), dtype=np.int64)
    for row, enc in enumerate(encodings):
        n = len(enc.ids)
        ids[row, :n] = enc.ids
        mask[row, :n] = 1
        types[row, :n] = enc.type_ids
    return ids, mask, types


def load_tokenizer(folder: Path, max_length: int):
    """The folder's fast tokenizer, truncating to ``max_length`` tokens and not padding
    (``tokenize_batch`` pads per batch)."""
    from tokenizers import Tokenizer

    path = folder / "tokenizer.json"
    if path.is_file():
        tokenizer = Tokenizer.from_file(str(path))
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder)).backend_tokenizer
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


class TorchRunner:
    """Runs the transformer with PyTorch; returns the last hidden state as numpy."""

    def __init__(self, resolved: ResolvedModel, device: str, threads: int) -> None:
        import torch
        from transformers import AutoModel

        self.torch = torch
        self.device = device
        if device == "cpu":
            torch.set_num_threads(threads)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.model = AutoModel.from_pretrained(str(resolved.path)).to(device).eval()

    def __call__(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            out = self.model(
                input_ids=torch.from_numpy(ids).to(self.device),
                attention_mask=torch.from_numpy(mask).to(self.device),
                token_type_ids=torch.from_numpy(types).to(self.device),
            ).last_hidden_state
        return out.float().cpu().numpy()


class OnnxRunner:
    """Runs an fp32 ONNX export of the transformer with onnxruntime."""

    def __init__(self, resolved: ResolvedModel, threads: int) -> None:
        self.path = fused_onnx(resolved)
        self.session = onnx_session(self.path, threads)
        self.inputs = {i.name for i in self.session.get_inputs()}

    def __call__(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]


def onnx_session(path: Path | bytes, threads: int):
    """An onnxruntime CPU session with embedlab's settings (all graph optimisations, no spinning);
    ``path`` is a file, or a serialised graph built in memory."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise EmbedlabError("the onnx backend needs onnxruntime", hint='pip install "embedlab"') from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # no busy-waiting between runs: otherwise ORT's idle threads fight numpy's BLAS
    # threads for the cores and single-query latency doubles (measured: 25 -> 11 ms)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def fused_onnx(resolved: ResolvedModel) -> Path:
    """The export with onnxruntime's BERT fusions (Attention, SkipLayerNorm, BiasGelu) when the
    architecture is BERT-family: fewer, larger kernels, so ~5-10% faster on small CPUs and far
    less sensitive to thread wake-ups; vectors stay within 1e-6 of the plain export."""
    plain = onnx_export(resolved)
    config = json.loads((resolved.path / "config.json").read_text())
    if config.get("model_type") != "bert":  # the fusion patterns are checked on BERT only
        return plain
    target = plain.with_name("model.fused.onnx")
    if target.is_file():
        return target
    from onnxruntime.transformers.optimizer import optimize_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused = optimize_model(
            str(plain),
            model_type="bert",
            num_heads=int(config["num_attention_heads"]),
            hidden_size=int(config["hidden_size"]),
            opt_level=1,
        )
    with atomic_open(target, "wb") as handle:
        handle.write(fused.model.SerializeToString())
    return target


def onnx_export(resolved: ResolvedModel) -> Path:
    """Export once per weights hash into the cache folder (atomic: temp file, then rename)."""
    target = settings.cache_dir() / "onnx" / f"{resolved.weights_sha256[:24]}-opset{ONNX_OPSET}" / "model.onnx"
    if target.is_file():
        return target
    log.info("exporting %s to ONNX (once per model): %s", resolved.name, target)
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    base = AutoModel.from_pretrained(str(resolved.path), attn_implementation="eager").eval()
    uses_types = "token_type_ids" in inspect.signature(base.forward).parameters

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base = base

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {"token_type_ids": token_type_ids} if uses_types else {}
            return self.base(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state

    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if uses_types else [])
    example = tuple(torch.ones(2, 8, dtype=torch.long) for _ in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(target, "wb") as handle, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about constant shapes; the test compares outputs
        try:
            # torch annotates ``f`` as a path only, but the TorchScript exporter (dynamo=False) writes to a file too
            torch.onnx.export(
                LastHidden(),
                example,
                handle,  # type: ignore[arg-type]  # a binary file: see the comment above
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
        except Exception as err:  # the exporter raises many types; the op it names is what a user needs
            raise export_error(err, resolved.name) from None
    return target


_UNSUPPORTED_OP = re.compile(r"(?:operator|op)\s+'?([A-Za-z_]+::[A-Za-z0-9_.]+)'?|(aten::[A-Za-z0-9_.]+)")


def export_error(err: BaseException, model: str) -> EmbedlabError:
    """An ONNX export failure as one line naming the operator the exporter could not convert."""
    text = str(err)
    match = _UNSUPPORTED_OP.search(text)
    op = next((g for g in match.groups() if g), None) if match else None
    first = text.strip().splitlines()[0][:200] if text.strip() else type(err).__name__
    return EmbedlabError(
        f"cannot export {model!r} to ONNX (opset {ONNX_OPSET}): "
        + (f"operator {op} is not supported" if op else first),
        hint="use backend=torch for this model; ONNX variants (shrink int8/fp16) need an exportable model",
    )
