"""Retrievers: an encoder plus an index (dense), or BM25 (sparse), behind one interface."""
