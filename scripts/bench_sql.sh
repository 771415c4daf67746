#!/usr/bin/env bash
# `orderflow sql` over about 10M trades from Parquet: an aggregate's rows/s,
# and a full sort of every trade under a small --memory-limit, which must
# spill to disk and keep the process's memory near the limit.
# Usage: scripts/bench_sql.sh [ORDERS] [release|dev]   (20M orders ≈ 10M trades)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
orders="${1:-20000000}"
profile="${2:-release}"
build "$profile"
data="${BENCH_DATA:-$(mktemp -d)}"
if [[ ! -f "$data/trades.parquet" ]]; then
  echo "== orderflow run --orders $orders --intervals 1m --sink dir:$data"
  "$bin/orderflow" run --quiet --orders "$orders" --intervals 1m --sink "dir:$data"
fi
trades="$("$bin/orderflow" sql --data "$data" --format csv "SELECT count(*) AS n FROM trades" | tail -1)"
du -sh "$data/trades.parquet"
measure() {
  local label="$1"; shift
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -f "  max RSS %M KiB" "$bin/orderflow" sql --data "$data" --format csv "$@" >/dev/null
  end=$(date +%s.%N)
  python3 -c "s=$end-$start; print(f'  $label: $trades trades in {s:.2f} s = {$trades/s:,.0f} rows/s')"
}
echo "== aggregate: VWAP, notional, volume and count by symbol"
measure aggregate "SELECT symbol, count(*) AS trades, sum(qty) AS volume, vwap(price, qty) AS vwap, notional(price, qty) AS notional FROM trades GROUP BY symbol"
echo "== OHLC by minute (sql/ohlc_resample.sql shape, every symbol)"
measure resample "SELECT symbol, date_bin(INTERVAL '1 minute', ts) AS minute, min(price), max(price), sum(qty) FROM trades GROUP BY symbol, minute"
echo "== every trade sorted by price under --memory-limit 256M (spills)"
measure sort --memory-limit 256M "SELECT * FROM trades ORDER BY price, trade_id"
