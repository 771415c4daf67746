#!/usr/bin/env bash
# Rows/s into ClickHouse: `orderflow run --source gen --sink clickhouse://…`
# with N generated orders (default 1M) into a fresh database on the test
# server, with 1 and 2 workers; rows = every row of every output table.
# Usage: scripts/bench_clickhouse.sh [ORDERS] [PROFILE]   (PROFILE: release or dev)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
orders="${1:-1000000}"
profile="${2:-release}"

server="$(scripts/clickhouse.sh start)"
build "$profile"
query() { curl -fsS "http://$server/" --data-binary "$1"; }
for workers in 1 2; do
  db="bench_$(date +%s)_w$workers"
  echo "== orderflow run --source gen --orders $orders --workers $workers --sink clickhouse://$server/$db"
  start=$(date +%s.%N)
  /usr/bin/time -f "wall %es · max RSS %M KiB" \
    "$bin/orderflow" run --quiet --source gen --orders "$orders" --workers "$workers" \
    --sink "clickhouse://$server/$db"
  end=$(date +%s.%N)
  rows=$(query "SELECT sum(rows) FROM system.parts WHERE database = '$db' AND active AND table != 'pipeline_metrics'")
  awk -v r="$rows" -v s="$start" -v e="$end" 'BEGIN { printf "rows %d · %.0f rows/s (wall, with start-up and the final flush)\n", r, r / (e - s) }'
  query "DROP DATABASE $db"
done
