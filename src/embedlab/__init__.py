"""embedlab: choose, adapt, shrink, serve and watch text embedding models on your own data.

The Python API (documented in README.md, "Python API"; the CLI is a thin layer over it)::

    import embedlab

    model = embedlab.load_model("all-MiniLM-L6-v2")
    vectors = model.encode(["a passage", "another one"])            # role="document"
    result = embedlab.evaluate("bm25", "scifact", metrics=["ndcg@10"])
    choice = embedlab.select_model(["bm25", "all-MiniLM-L6-v2"], ["scifact"], max_p95_ms=30)
    embedlab.build_collection("papers", "lib", model="all-MiniLM-L6-v2")
    hits = embedlab.Collection.open("lib").search("fit a model", k=5, mode="hybrid").hits

Importing ``embedlab`` is cheap and changes no global state: each name below is imported on
first use (module ``__getattr__``, PEP 562), so ``import embedlab`` loads neither numpy nor torch.
``embedlab.select`` stays the subpackage of that name: the selection function is ``select_model``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it (imported on first access)
_API = {
    "EmbedlabError": "embedlab.errors",
    "Model": "embedlab.api.model",
    "load_model": "embedlab.api.model",
    "Evaluation": "embedlab.api.evaluation",
    "EvaluationReport": "embedlab.api.evaluation",
    "evaluate": "embedlab.api.evaluation",
    "evaluate_all": "embedlab.api.evaluation",
    "SelectionResult": "embedlab.api.selection",
    "select_model": "embedlab.api.selection",
    "Collection": "embedlab.collection.collection",
    "open_collection": "embedlab.api.collections",
    "build_collection": "embedlab.api.collections",
    "update_collection": "embedlab.api.collections",
    "finetune": "embedlab.api.training",
}

__all__ = [  # the same names as _API (a test checks it): listed so that tools read them statically
    "Collection",
    "EmbedlabError",
    "Evaluation",
    "EvaluationReport",
    "Model",
    "SelectionResult",
    "__version__",
    "build_collection",
    "evaluate",
    "evaluate_all",
    "finetune",
    "load_model",
    "open_collection",
    "select_model",
    "update_collection",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports on demand
    from embedlab.api.collections import build_collection, open_collection, update_collection
    from embedlab.api.evaluation import Evaluation, EvaluationReport, evaluate, evaluate_all
    from embedlab.api.model import Model, load_model
    from embedlab.api.selection import SelectionResult, select_model
    from embedlab.api.training import finetune
    from embedlab.collection.collection import Collection
    from embedlab.errors import EmbedlabError


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'embedlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
