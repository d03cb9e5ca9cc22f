#!/usr/bin/env bash
# Chunk-level evaluation on SciFact: all-MiniLM-L6-v2 collections with 128 / 256 / 512-token chunks
# (overlap 32), each scored in dense, BM25 and hybrid mode (document = best chunk), modes compared
# with paired randomization tests (Holm).  ~10 min per chunk size on 2 cores; run it alone.
#
#   benchmarks/bench_chunks_scifact.sh [SIZES...]      # default: 256 128 512
#
# 512-token chunks use the model with max_length=512 (MiniLM's position table has 512 entries;
# its default reads 256 tokens).  Results: benchmarks/results/chunks_scifact/<size>/.
set -euo pipefail
cd "$(dirname "$0")/.."
EMBEDLAB="${EMBEDLAB:-.venv/bin/embedlab}"
ROOT="${ROOT:-$(mktemp -d -t embedlab-chunks-XXXX)}"
OUT=benchmarks/results/chunks_scifact
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export EMBEDLAB_DATA="${EMBEDLAB_DATA:-$(cd .. && pwd)/shared/datasets}"
for size in "${@:-256 128 512}"; do
  for t in $size; do
    model=all-MiniLM-L6-v2
    [ "$t" -gt 256 ] && model="all-MiniLM-L6-v2:max_length=$t"
    start=$(date +%s)
    "$EMBEDLAB" index build --dataset scifact --collection "scifact-$t" --model "$model" \
      --chunk-tokens "$t" --overlap 32 --root "$ROOT" --no-progress --replace | tee "/tmp/build-$t.log"
    echo "build $t: $(( $(date +%s) - start )) s"
    mkdir -p "$OUT/$t"
    cp "/tmp/build-$t.log" "$OUT/$t/build.log"
    "$EMBEDLAB" eval -d scifact --collection "scifact-$t" --root "$ROOT" --out "$OUT/$t" --no-progress \
      | tee "$OUT/$t/eval.log"
  done
done
