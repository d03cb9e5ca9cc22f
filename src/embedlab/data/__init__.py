"""Reading and writing datasets (BEIR), relevance judgments and runs (TREC)."""

from embedlab.data.beir import Dataset, Document, load_dataset, resolve_dataset
from embedlab.data.types import Qrels, Run

__all__ = ["Dataset", "Document", "Qrels", "Run", "load_dataset", "resolve_dataset"]
