#!/bin/bash
# The GPU measurements the README cites, in one go (a lent GPU's time is short): the n-table,
# per-layer spectra and GGN vs Hessian, per-product times, the deflated-trace variance and the
# 1-vs-N GPU products. Needs LOSSLANDS_CIFAR10_ROOT and three SmallCNN state dicts:
#   SGD=... MOMENTUM=... ADAMW=... OUT=results-folder bash benchmarks/gpu_checks.sh
# (model.pt files from the training cache, e.g. the study's seed-0 models).
set -u
OUT=${OUT:-gpu_checks}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
W="sgd=$SGD momentum=$MOMENTUM adamw=$ADAMW"
step() { echo "### $1 ($(date +%T))"; }
step vs_n
# --out: the subsets already measured (VS_N_ROWS, e.g. benchmarks/results/vs_n_cpu.jsonl) are
# copied in and kept; only the missing ones are computed, and all come back in $OUT/vs_n.jsonl
ROWS=$OUT/vs_n.jsonl
if [ -n "${VS_N_ROWS:-}" ]; then cp "$VS_N_ROWS" "$ROWS"; fi
timeout 240 python3 benchmarks/spectrum_vs_n.py --weights $W --ns 256 512 1024 2048 4096 8192 \
    --subsets 4 --chunk-size 8192 --out "$ROWS" 2>&1 | tee "$OUT/vs_n.md"
step layers
timeout 120 python3 benchmarks/layers_and_ggn.py --weights $W --samples 5000 --subsets 2 2>&1 | tee "$OUT/layers.md"
step products
timeout 60 python3 benchmarks/spectrum.py --products-only --device cuda --samples 5000 --repeats 5 \
    --weights "$SGD" 2>&1 | tee "$OUT/products.txt"
step variance
for m in "$SGD" "$MOMENTUM" "$ADAMW"; do
    timeout 40 python3 benchmarks/spectrum.py --variance-only --device cuda --samples 5000 --k 10 --weights "$m"
done 2>&1 | tee "$OUT/variance.txt"
step distributed
timeout 120 python3 benchmarks/distributed.py --skip-cpu --gpu-samples 50000 --chunk-size 10000 2>&1 | tee "$OUT/distributed.txt"
step done
