"""Compare the chunk-level runs of ``bench_chunks_scifact.sh`` across chunk sizes and with the
whole-document model (``make demo`` / ``embedlab eval`` output): nDCG@10 per query, every pair
tested (paired randomization, Holm), written to benchmarks/results/chunks_scifact/comparison.md.

    python benchmarks/compare_chunks_scifact.py [--whole results/demo/scifact/all-MiniLM-L6-v2.per_query.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from embedlab.atomic import atomic_write_text
from embedlab.eval.compare import compare_all_pairs

HERE = Path(__file__).parent / "results" / "chunks_scifact"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--whole",
        type=Path,
        action="append",
        default=[],
        help="a per_query.json of a whole-document run to include (repeatable)",
    )
    args = parser.parse_args()
    systems: dict[str, dict[str, float]] = {}
    for path in sorted(HERE.glob("*/scifact/*.per_query.json")) + args.whole:
        name = path.name.removesuffix(".per_query.json")
        systems[name] = json.loads(path.read_text())["ndcg_at_10"]
    rows = ["| system | nDCG@10 |", "|---|---|"]
    rows += [
        f"| {name} | {sum(v.values()) / len(v):.4f} |"
        for name, v in sorted(systems.items(), key=lambda kv: -sum(kv[1].values()))
    ]
    best = max(systems, key=lambda n: sum(systems[n].values()))
    tests = [c for c in compare_all_pairs(systems, metric="ndcg_at_10") if best in (c.a, c.b)]
    rows += [
        "",
        f"Against the best ({best}); paired randomization test, Holm over all "
        f"{len(systems) * (len(systems) - 1) // 2} pairs:",
        "",
        "| other | diff (best - other) | 95% CI | p (Holm) |",
        "|---|---|---|---|",
    ]
    for c in tests:
        other, sign = (c.b, 1) if c.a == best else (c.a, -1)
        low, high = sorted((sign * c.ci_low, sign * c.ci_high))
        rows.append(f"| {other} | {sign * c.difference:+.4f} | [{low:+.4f}, {high:+.4f}] | {c.p_holm:.4f} |")
    atomic_write_text(HERE / "comparison.md", "\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
