#!/usr/bin/env bash
# Kafka → pipeline → dir: beside the broker's raw consume rate, in one run:
# N generated orders (default 1M) are produced to a fresh 4-partition topic,
# read once by a plain rdkafka consumer, then by `orderflow run` with 1 and
# 2 workers. The test broker (tansu) is slow, so the raw rate is the ceiling
# the pipeline is measured against.
# Usage: scripts/bench_kafka.sh [ORDERS] [PROFILE]   (PROFILE: release or dev)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
orders="${1:-1000000}"
profile="${2:-release}"

broker="$(scripts/kafka.sh start)"
build "$profile" --examples
topic="bench-orders-$orders-$(date +%s)"
echo "== orderflow gen --to kafka://$broker/$topic --orders $orders --partitions 4"
"$bin/orderflow" gen --to "kafka://$broker/$topic" --orders "$orders" --partitions 4
echo "== raw consumer"
"$bin/examples/kafka_consume" "$broker" "$topic"
out="$(mktemp -d)"
for workers in 1 2; do
  echo "== orderflow run --source kafka://$broker/$topic --stop latest --workers $workers"
  /usr/bin/time -f "wall %es · max RSS %M KiB" \
    "$bin/orderflow" run --quiet --source "kafka://$broker/$topic" --stop latest \
    --no-commit --workers "$workers" --sink "dir:$out/w$workers"
done
rm -rf "$out"
