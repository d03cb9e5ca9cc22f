"""Scoring runs against judgments: metrics, per-query values, aggregation."""
