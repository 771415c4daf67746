#!/usr/bin/env bash
# The fan-out benchmark of `run --serve` (README "Benchmarks"): the
# pipeline paced at RATE orders/s on 2 workers into dir:, alone and with
# CLIENTS Server-Sent Events clients (trades, bbo, candles) of one symbol:
# a quiet one (SYM0001, ~0.7% of the flow) and the hot one (SYM0000, 30%:
# the generator's default --hot-share). One table: the pipeline's rate,
# what the clients received and missed, and the delay from each record's
# handover to the stream (`: handed µs`) to its arrival at a client.
# The clients run in one thread of one process beside the pipeline, so they
# read far slower than the hot symbol flows: its row is run twice, with the
# kernel's own receive buffers (which grow to megabytes, seconds of records
# queued in front of what a client reads) and with 32 KiB ones, as a live
# view that wants the newest records would keep (the server's ring then
# drops the backlog and the clients are told what they missed).
# Usage: scripts/fanout.sh [CLIENTS] [RATE] [SECONDS]   (1000 100000 20)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
clients="${1:-1000}"
rate="${2:-100000}"
seconds="${3:-20}"
orders=$((rate * seconds))
build release
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"; pkill -P $$ 2>/dev/null || true' EXIT
rows=()

# run LABEL [QUERY [RECEIVE_KIB]]: one paced run; with QUERY, CLIENTS
# clients follow /v1/stream?QUERY from a second in until a second before
# the run ends, with RECEIVE_KIB receive buffers if given.
run() {
  local label="$1" query="${2:-}" receive="${3:-}" address clients_line="–"
  rm -rf "$scratch/out"
  "$bin/orderflow" run --quiet --sink "dir:$scratch/out" --workers 2 \
    --orders "$orders" --rate "$rate" --serve 127.0.0.1:0 \
    >"$scratch/summary" 2>"$scratch/stderr" &
  local pid=$!
  for _ in $(seq 1 100); do
    address="$(sed -n 's/^serving http:\/\///p' "$scratch/stderr")"
    [[ -n "$address" ]] && break
    sleep 0.1
  done
  if [[ -n "$query" ]]; then
    sleep 1
    clients_line="$("$bin/sse-clients" \
      "http://$address/v1/stream?$query" "$clients" "$((seconds - 3))" $receive)"
  fi
  wait "$pid"
  local summary rate_reached
  summary="$(head -1 "$scratch/summary")"
  rate_reached="${summary##*· }"
  echo "$label: $summary | $clients_line" >&2
  rows+=("| $label | $rate_reached | ${clients_line#clients * · } |")
}

run "no clients"
run "$clients clients of SYM0001 (~0.7% of orders)" symbols=SYM0001
run "$clients clients of SYM0000 (hot, 30% of orders)" symbols=SYM0000
run "$clients clients of SYM0000, 32 KiB receive buffers" symbols=SYM0000 32

echo
echo "Fan-out at $rate orders/s paced, 2 workers, $seconds s; $(nproc) cores, $(uname -m)"
echo
echo "| clients | pipeline rate | received by the clients |"
echo "|---|---|---|"
printf '%s\n' "${rows[@]}"
