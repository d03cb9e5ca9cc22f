"""``embedlab models``: every model name the registry answers to, described without loading one.

Generated from the two sources of model names, so a newly registered model is listed without
editing a list: the model registry (:data:`embedlab.encoders.registry.MODELS`, each entry with
the :class:`~embedlab.encoders.registry.ModelAbout` declared where it is registered) and the
weight-carrier packages of transformer folders (:data:`embedlab.encoders.resolve.CARRIERS`).
Whether a model is installed is asked of the package metadata (``importlib.metadata``): nothing
is imported, assembled or loaded, so listing takes milliseconds.  Dimension and size of a
transformer are read from its installed folder (``config.json``, the weights file); licences are
the upstream models' (``/work/shared/MODELS.md``), not the carrier packages' own metadata, which
sometimes differs (a carrier of an Apache-2.0 model declaring MIT).
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path

from embedlab import settings
from embedlab.encoders.registry import MODELS, ModelAbout, _load_plugins
from embedlab.encoders.resolve import CARRIERS, WEIGHT_FILES, Carrier, ZipPartsCarrier

# the upstream licence of each carried transformer (MODELS.md); a test checks every carrier has one
TRANSFORMER_LICENCES = {
    "sentence-transformers/all-minilm-l6-v2": "Apache-2.0",
    "sentence-transformers/all-mpnet-base-v2": "Apache-2.0",
    "sre-embedding-model": "Apache-2.0",
}


@dataclass(frozen=True)
class ModelRow:
    name: str
    aliases: tuple[str, ...]
    kind: str
    dim: int | None
    size_bytes: int | None
    licence: str | None
    source: str
    installed: bool


def _installed(pin: str) -> bool:
    try:
        importlib.metadata.distribution(pin.split("==")[0])
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _dist_size(pin: str) -> int | None:
    """Bytes of an installed distribution's files (its RECORD), or None."""
    try:
        files = importlib.metadata.files(pin.split("==")[0]) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    total = 0
    for item in files:
        path = Path(str(item.locate()))
        if path.is_file():
            total += path.stat().st_size
    return total


def _registered() -> list[ModelRow]:
    groups: dict[int, list[str]] = {}
    entries = {}
    for name in MODELS.names():
        entry = MODELS.get(name)
        key = id(entry.factory) if entry.factory is not None else id(entry)
        groups.setdefault(key, []).append(name)
        entries[key] = entry
    rows = []
    for key, names in groups.items():
        about = entries[key].about or ModelAbout("plugin" if entries[key].factory else "lexical")
        names.sort(key=lambda n: ("/" in n, n))
        installed = all(_installed(pin) for pin in about.packages)
        sizes = [_dist_size(pin) for pin in about.packages]
        size = sum(s for s in sizes if s is not None) if about.packages and installed else None
        source = about.source or (
            "packages " + ", ".join(about.packages) if about.packages else "built in (no weights)"
        )
        rows.append(ModelRow(names[0], tuple(names[1:]), about.kind, about.dim, size, about.licence, source, installed))
    return rows


def _transformer_folder(carriers: list[Carrier | ZipPartsCarrier]) -> tuple[Path | None, bool, str]:
    """(an installed model folder or None, installed?, where from) without assembling zip parts."""
    for carrier in carriers:
        if isinstance(carrier, Carrier):
            folder = carrier.locate()
            if folder is not None:
                return folder, True, f"package {carrier.pip_name}"
        elif all(part.locate() is not None for part in carrier.parts):
            assembled = settings.cache_dir() / "assembled" / carrier.name  # joined on first use
            return (assembled if assembled.is_dir() else None), True, f"packages {carrier.pip_name} (--no-deps)"
    return None, False, "packages " + " or ".join(c.pip_name for c in carriers)


def _folder_facts(folder: Path | None) -> tuple[int | None, int | None]:
    """(dimension, weights bytes) read from a transformer folder's files."""
    if folder is None:
        return None, None
    dim = None
    config = folder / "config.json"
    if config.is_file():
        try:
            value = json.loads(config.read_text(encoding="utf-8")).get("hidden_size")
            dim = value if isinstance(value, int) else None
        except (OSError, ValueError):
            dim = None
    size = next(((folder / w).stat().st_size for w in WEIGHT_FILES if (folder / w).is_file()), None)
    return dim, size


def _transformers() -> list[ModelRow]:
    rows = []
    for key, carriers in CARRIERS.items():
        folder, installed, source = _transformer_folder(carriers)
        dim, size = _folder_facts(folder)
        short = key.split("/")[-1]
        rows.append(
            ModelRow(
                short,
                (key,) if key != short else (),
                "bi-encoder (transformer)",
                dim,
                size,
                TRANSFORMER_LICENCES.get(key),
                source,
                installed,
            )
        )
    return rows


def model_rows() -> list[ModelRow]:
    """Every model name embedlab resolves offline, registered entries first, sorted by name."""
    _load_plugins()
    return sorted(_registered(), key=lambda r: r.name.lower()) + sorted(_transformers(), key=lambda r: r.name.lower())
