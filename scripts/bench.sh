#!/usr/bin/env bash
# Benchmarks: the book on exchange-core's mix (criterion), then end to end
# `orderflow run --source gen` on N orders (default 10M) with 1 and 2 workers.
# Usage: scripts/bench.sh [ORDERS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
orders="${1:-10000000}"

cargo bench -p orderflow-operators --bench book
build release
out="$(mktemp -d)"
for workers in 1 2; do
  echo "== orderflow run --source gen --orders $orders --workers $workers"
  /usr/bin/time -f "wall %es · max RSS %M KiB" \
    "$bin/orderflow" run --quiet --source gen --orders "$orders" \
    --workers "$workers" --sink "dir:$out/w$workers"
done
rm -rf "$out"
