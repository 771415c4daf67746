#!/usr/bin/env bash
# Durable state, measured:
#  1. `orderflow run --source gen` on N orders (default 5M), 2 workers,
#     without checkpoints and with `--checkpoint-interval 1s`;
#  2. a book of 1M resting orders (a file of non-crossing GTC limits on one
#     symbol): the checkpoint's size and write time, from its manifest;
#  3. the restart from that checkpoint: the same command again (nothing
#     left to read), so its wall time is loading and restoring the state.
# Usage: scripts/bench_checkpoint.sh [ORDERS] [PROFILE]   (PROFILE: release or dev)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
orders="${1:-5000000}"
profile="${2:-release}"
build "$profile"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
timed() { /usr/bin/time -f "wall %es · max RSS %M KiB" "$@"; }

for mode in plain checkpointed; do
  extra=()
  [[ $mode == checkpointed ]] && extra=(--checkpoint "$work/ck-gen" --checkpoint-interval 1s)
  echo "== gen $orders orders, 2 workers, $mode"
  timed "$bin/orderflow" run --quiet --orders "$orders" --workers 2 \
    --sink "dir:$work/out-$mode" "${extra[@]}"
  rm -rf "$work/out-$mode"
done
manifest="$(ls -d "$work"/ck-gen/checkpoint-* | tail -n 1)/manifest.json"
grep -E '"(id|bytes|duration_ms)"' "$manifest" | tr -d ' ,' | paste -sd' '

echo "== a book of 1,000,000 resting orders"
python3 - "$work/resting.jsonl" <<'EOF'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(1_000_000):
        side, price = ("buy", 1000 - i % 500) if i % 2 else ("sell", 2000 + i % 500)
        f.write('{"type":"new","order_id":"o%d","symbol":"DEEP","side":"%s","price":"%d.25","qty":"%d","ts":%d}\n'
                % (i, side, price, 1 + i % 7, 1700000000000 + i))
EOF
run=("$bin/orderflow" run --quiet --source "file:$work/resting.jsonl" --intervals 1m
     --sink "dir:$work/out-deep" --checkpoint "$work/ck-deep")
echo "-- first run (writes the final checkpoint)"
timed "${run[@]}"
checkpoint="$(ls -d "$work"/ck-deep/checkpoint-* | tail -n 1)"
grep -E '"(id|bytes|duration_ms)"' "$checkpoint/manifest.json" | tr -d ' ,' | paste -sd' '
du -sh "$checkpoint"
echo "-- restart from it (loads 1M resting orders, reads nothing)"
timed "${run[@]}"
