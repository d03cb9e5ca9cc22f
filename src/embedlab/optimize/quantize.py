"""Quantized ONNX variants of a transformer, each written as a loadable model folder.

All three start from embedlab's plain fp32 export (opset 17, cached per weights hash,
:func:`embedlab.encoders.transformer.onnx_export`), not the fused one: the quantizers
recognise plain MatMul nodes, not onnxruntime's fused Attention.

- ``int8-dynamic``: ``quantize_dynamic`` with per-channel int8 weights; activations are
  quantized per batch at run time.  ``reduce_range`` (7-bit weights) on CPUs without VNNI:
  there the u8 x s8 kernels (``vpmaddubsw``) add pairs of products in 16 bits and saturate,
  which cost MiniLM 0.948 mean cosine to fp32 with the default settings; with 7-bit weights
  nothing saturates (0.992; ../shared/MODELS.md).  With VNNI the products are summed in
  32 bits and full 8-bit weights are used (measured here: 0.994 mean, 0.992 min, MiniLM).
- ``int8-static``: QDQ int8 weights *and* activations, with activation ranges calibrated
  (min/max) on a sample of the user's corpus.  The feed-forward down-projections (MatMuls
  whose weight has more rows than columns: intermediate -> hidden) stay float: their inputs
  are the post-GELU activations, whose few huge outliers stretch a min/max range until most
  values fall into one or two levels (measured, MiniLM on 64 SciFact passages: mean cosine
  0.949 with them quantized, 0.995 without).
- ``fp16``: weights and arithmetic in float16, inputs and outputs kept as they are
  (``keep_io_types``); for GPUs.  onnxruntime's CPU provider runs it through casts: correct
  but not faster, which the report shows.

Each folder is validated when written: the cosine of its embeddings to the fp32 model's on
a sample of the corpus, recorded in its manifest (``made_with``).
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from embedlab.atomic import atomic_dir
from embedlab.checksum import file_sha256
from embedlab.encoders.onnx_folder import FolderManifest, OnnxFolderEncoder, read_manifest, write_manifest
from embedlab.encoders.spec import ModelSpec
from embedlab.encoders.static import _root_logging_kept
from embedlab.encoders.transformer import TransformerEncoder, onnx_export, tokenize_batch
from embedlab.errors import EmbedlabError

log = logging.getLogger(__name__)
ONNX_VARIANTS = ("int8-dynamic", "int8-static", "fp16")
MIN_CALIBRATION = 8  # texts: fewer cannot give activation ranges worth calibrating
CALIBRATION_BATCH = 8
VALIDATION_TEXTS = 50
TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json")


def has_vnni() -> bool:
    """Whether this CPU has VNNI (AVX512-VNNI or AVX-VNNI): int8 dot products summed in 32 bits."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_vnni", "avx_vnni"})
    except OSError:
        pass
    return False  # unknown: reduce_range is the setting that is safe everywhere


def _base_encoder(model: str) -> TransformerEncoder:
    return TransformerEncoder(ModelSpec(model=model, backend="onnx", device="cpu"))


def build_onnx_variant(variant: str, model: str, target: Path, *, texts: list[str], label: str) -> FolderManifest:
    """Write ``variant`` of the transformer ``model`` as a model folder at ``target`` (atomically)."""
    base = _base_encoder(model)
    plain = onnx_export(base.resolved)
    settings: dict[str, object] = {"variant": variant, "source_graph": "plain fp32 export, opset 17"}
    with atomic_dir(target) as work:
        graph = work / "model.onnx"
        with warnings.catch_warnings(), _root_logging_kept():
            warnings.simplefilter("ignore")
            if variant == "int8-dynamic":
                settings.update(_dynamic(plain, graph))
            elif variant == "int8-static":
                settings.update(_static(plain, graph, texts, base))
            elif variant == "fp16":
                settings.update(_fp16(plain, graph))
            else:  # pragma: no cover - the caller passes ONNX_VARIANTS only
                raise ValueError(variant)
        _copy_tokenizer(base, work)
        manifest = FolderManifest(
            kind="onnx",
            name=f"{label}:{variant}",
            base_model=model,
            base_weights_sha256=base.resolved.weights_sha256,
            file=graph.name,
            sha256=file_sha256(graph),
            pooling=base.pooling,  # type: ignore[arg-type]  # the folder's own pooling: one of mean, cls, max
            normalize=base.normalize,
            max_length=base.max_length,
            dim=base.dim,
            precision=variant if variant != "fp16" else "fp16",  # type: ignore[arg-type]  # ONNX_VARIANTS
            made_with=settings,
        )
        write_manifest(work, manifest)
        check = OnnxFolderEncoder(work, manifest, ModelSpec(model=str(work), device="cpu"))
        sample = texts[:VALIDATION_TEXTS]
        cosine = np.sum(base.encode(sample, role="document") * check.encode(sample, role="document"), axis=1)
        manifest = manifest.model_copy(
            update={
                "made_with": {
                    **settings,
                    "validation": {
                        "texts": len(sample),
                        "cosine_to_fp32_mean": round(float(cosine.mean()), 6),
                        "cosine_to_fp32_min": round(float(cosine.min()), 6),
                    },
                }
            }
        )
        write_manifest(work, manifest)
    log.info("%s: mean cosine to fp32 %.4f", variant, manifest.made_with["validation"]["cosine_to_fp32_mean"])
    return read_manifest(target) or manifest


def _copy_tokenizer(base: TransformerEncoder, work: Path) -> None:
    (work / "tokenizer.json").write_text(base.tokenizer.to_str(), encoding="utf-8")
    for name in TOKENIZER_FILES:
        if (base.resolved.path / name).is_file():
            shutil.copyfile(base.resolved.path / name, work / name)


def _dynamic(plain: Path, graph: Path) -> dict[str, object]:
    return dynamic_int8(plain, graph)


def dynamic_int8(plain: Path, graph: Path, *, op_types: list[str] | None = None) -> dict[str, object]:
    """``quantize_dynamic`` with per-channel int8 weights (of ``op_types`` only, when given);
    ``reduce_range`` without VNNI (see the module docstring)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    vnni = has_vnni()
    quantize_dynamic(
        str(plain),
        str(graph),
        per_channel=True,
        reduce_range=not vnni,
        weight_type=QuantType.QInt8,
        **({"op_types_to_quantize": op_types} if op_types else {}),
    )
    weights = "int8 per channel" + (f" ({', '.join(op_types)} only)" if op_types else "")
    return {"weights": weights, "reduce_range": not vnni, "cpu_vnni": vnni}


def static_int8(plain: Path, graph: Path, reader, *, nodes: list[str]) -> dict[str, object]:
    """QDQ int8: per-channel weights and uint8 activations with min/max ranges from ``reader``
    (an onnxruntime CalibrationDataReader), for ``nodes`` only."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    vnni = has_vnni()
    quantize_static(  # its calibration copy of the graph goes to a temporary folder of its own
        str(plain),
        str(graph),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=not vnni,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_quantize=nodes,
    )
    return {
        "weights": "int8 per channel (QDQ)",
        "activations": "uint8, min/max calibrated",
        "reduce_range": not vnni,
        "cpu_vnni": vnni,
    }


def _fp16(plain: Path, graph: Path) -> dict[str, object]:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(plain)), keep_io_types=True), str(graph))
    return {"weights": "float16", "keep_io_types": True, "intended_device": "cuda"}


def weight_matmuls(graph_path: Path) -> tuple[list[str], list[str]]:
    """MatMul nodes with a weight (initializer) input, split into (quantized, kept float): the
    down-projections (weight rows > columns) are kept float; see the module docstring."""
    import onnx

    graph = onnx.load(str(graph_path)).graph
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    quantized: list[str] = []
    kept: list[str] = []
    for node in graph.node:
        weights = [shapes[name] for name in node.input if name in shapes]
        if node.op_type != "MatMul" or not weights or len(weights[0]) != 2:
            continue
        rows, cols = weights[0]
        (kept if rows > cols else quantized).append(node.name)
    return quantized, kept


def _static(plain: Path, graph: Path, texts: list[str], base: TransformerEncoder) -> dict[str, object]:
    from onnxruntime.quantization import CalibrationDataReader

    if len(texts) < MIN_CALIBRATION:
        raise EmbedlabError(
            f"the calibration sample is too small for int8-static: {len(texts)} texts",
            expected=f"at least {MIN_CALIBRATION} texts",
            hint="raise --calibration-size or use a larger corpus",
        )
    batches = []
    for start in range(0, len(texts), CALIBRATION_BATCH):
        ids, mask, types = tokenize_batch(base.tokenizer, texts[start : start + CALIBRATION_BATCH])
        batches.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    import onnxruntime as ort

    inputs = {i.name for i in ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"]).get_inputs()}

    class Corpus(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[dict[str, np.ndarray]] = iter(
                [{k: v for k, v in b.items() if k in inputs} for b in batches]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    quantized, kept = weight_matmuls(plain)
    return {
        **static_int8(plain, graph, Corpus(), nodes=quantized),
        "calibration_texts": len(texts),
        "matmuls_quantized": len(quantized),
        "matmuls_kept_float": len(kept),
    }
