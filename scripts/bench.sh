#!/usr/bin/env bash
# Throughput, latency and memory in one table (README "Performance"):
#   - the book on exchange-core's mix, with a few thousand and with a
#     million resting orders (criterion);
#   - the contract's JSON written for the books' records (criterion);
#   - `orderflow run` end to end into `dir:`: the generator on 1 and 2
#     workers, one hot symbol, a JSONL file of the same orders, and a file
#     of a deep book (scripts/deep_book.py: 1M resting orders on one
#     symbol, then 1M of exchange-core's mix) on 1 worker;
#   - latency paced at 100k (with and without the views) and 1M orders/s
#     on 2 workers;
#   - max RSS at 1M and at ORDERS orders;
#   - the differential views: the rate with them left out, and how many
#     exposure rows a second 10,000 accounts over 100 symbols make when
#     every batch feeds the views.
# Usage: scripts/bench.sh [ORDERS]   (default 10M)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
orders="${1:-10000000}"

cargo bench -p orderflow-operators --bench book --bench encode 2>&1 |
  tee /tmp/orderflow-bench-book.txt | grep -E "^(book|encode)/|thrpt:"
build release
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
rows=()

# The median of criterion's throughput for bench $1 (group/name), as
# "8.46M" (or "979.36K": criterion prints the unit the figure needs).
median() {
  grep -A3 -E "^$1( |$)" /tmp/orderflow-bench-book.txt | grep -m1 "thrpt:" |
    sed -E 's/.*thrpt: *\[[^ ]+ [^ ]+ ([^ ]+) ([KM])elem\/s .*/\1\2/'
}
rows+=("| book, exchange-core mix (few thousand resting) | $(median book/exchange_core_mix) ops/s |")
rows+=("| book, exchange-core mix, 1M resting orders | $(median book/exchange_core_mix_1m_resting) ops/s |")
rows+=("| JSON of the books' events, trades and bbo (\`json::write\`) | $(median encode/json) records/s |")

# run LABEL ARGS…: one run into a fresh dir; its summary, latency and max RSS.
run() {
  local label="$1"
  shift
  rm -rf "$scratch/out"
  /usr/bin/time -f "rss %M" -o "$scratch/time" \
    "$bin/orderflow" run --quiet --sink "dir:$scratch/out" "$@" >"$scratch/summary"
  summary="$(head -1 "$scratch/summary")"
  latency="$(grep '^latency' "$scratch/summary" | sed 's/^latency //')"
  rss="$(awk '/^rss/ {printf "%.0f MiB", $2 / 1024}' "$scratch/time")"
  rate="${summary##*· }"
  echo "$label: $summary · max RSS $rss" >&2
}

m=$((orders / 1000000))M
run "gen $m, 1 worker" --orders "$orders" --workers 1
rows+=("| gen $m → dir, 1 worker | $rate · max RSS $rss |")
run "gen $m, 2 workers" --orders "$orders" --workers 2
rows+=("| gen $m → dir, 2 workers | $rate · max RSS $rss |")
rss_all="$rss"
views_rate="$rate"
run "gen $m, 2 workers, no views" --orders "$orders" --workers 2 --no-views
rows+=("| gen $m → dir, 2 workers, \`--no-views\` (views on: $views_rate) | $rate · max RSS $rss |")
# Every batch feeds the views (`--view-interval 0ms`): what they can take,
# not what the default cadence asks of them.
run "gen 3M, 10,000 accounts, 2 workers" --orders 3000000 --workers 2 --accounts 10000 --symbols 100 --view-interval 0ms
secs="$(grep -oE '[0-9.]+s · [^·]+ orders/s$' <<<"$summary" | cut -d's' -f1)"
exposure="$(wc -l <"$scratch/out/exposure.jsonl")"
rows+=("| exposure rows, 10,000 accounts over 100 symbols, every batch, 2 workers | $(awk -v n="$exposure" -v s="$secs" -v r="$rate" 'BEGIN {printf "%.0f rows/s (%d in %ss, %s)", n / s, n, s, r}') |")
run "gen $m, hot share 0.9, 2 workers" --orders "$orders" --workers 2 --hot-share 0.9
rows+=("| gen $m, \`--hot-share 0.9\` → dir, 2 workers | $rate · max RSS $rss |")
"$bin/orderflow" gen --orders "$orders" --out "$scratch/orders.jsonl"
run "file of $m lines, 2 workers" --source "file:$scratch/orders.jsonl" --workers 2
rows+=("| file of $m lines → dir, 2 workers | $rate · max RSS $rss |")
rm "$scratch/orders.jsonl"
scripts/deep_book.py "$scratch/deep.jsonl"
run "deep book file, 1 worker, no views" --source "file:$scratch/deep.jsonl" --workers 1 --no-views
rows+=("| file of a deep book (1M resting orders on one symbol, then 1M of the mix) → dir, 1 worker, \`--no-views\` | $rate · max RSS $rss |")
rm "$scratch/deep.jsonl"
run "paced 100k/s, 2 workers" --orders 3000000 --workers 2 --rate 100000
rows+=("| latency at 100k orders/s paced, 2 workers | $latency |")
run "paced 100k/s, 2 workers, no views" --orders 3000000 --workers 2 --rate 100000 --no-views
rows+=("| latency at 100k orders/s paced, 2 workers, \`--no-views\` | $latency |")
run "paced 1M/s, 2 workers" --orders 5000000 --workers 2 --rate 1000000
rows+=("| latency at 1M orders/s paced, 2 workers ($rate reached) | $latency |")
run "gen 1M, 2 workers" --orders 1000000 --workers 2
rows+=("| max RSS, 1M orders vs $m, 2 workers | $rss vs $rss_all |")

echo
echo "$(nproc) cores · $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) · $(date -u +%F)"
echo "| measure | figure |"
echo "|---|---|"
printf '%s\n' "${rows[@]}"
