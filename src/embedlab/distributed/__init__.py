"""Encoding a corpus into vector shards, in one process or on Ray (``embedlab encode``).

``corpus.py`` reads the corpus (BEIR JSONL, Parquet) once, validated; ``shards.py`` owns the
on-disk layout (Parquet shards of (id, vector) and the manifest that makes a re-run resume);
``ray_engine.py`` runs the encoder as Ray Data actors; ``run.py`` ties them together.
"""
