"""Where embedlab finds data and keeps its caches (environment first, then defaults).

- ``EMBEDLAB_DATA``: folder of named datasets (``--dataset scifact`` -> ``$EMBEDLAB_DATA/scifact``).
- ``EMBEDLAB_CACHE``: embedding cache and converted models (default ``~/.cache/embedlab``).
- ``EMBEDLAB_THREADS``: compute threads per model when a model spec gives no ``threads=`` (default:
  every core; ``embedlab serve --workers N`` sets it to cores / N so workers do not oversubscribe).
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path | None:
    value = os.environ.get("EMBEDLAB_DATA")
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    value = os.environ.get("EMBEDLAB_CACHE")
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "embedlab"


def default_threads() -> int:
    value = os.environ.get("EMBEDLAB_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return os.cpu_count() or 1
