"""HTTP serving of a collection: ``create_app`` (FastAPI) and ``serve`` (uvicorn).

Needs the ``serve`` extra: ``pip install "embedlab[serve]"``.
"""

from __future__ import annotations

from embedlab.serve.app import ServeConfig, create_app

__all__ = ["ServeConfig", "create_app"]
