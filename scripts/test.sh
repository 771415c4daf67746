#!/usr/bin/env bash
# The test suite: formatting, lints, then every unit, property, scenario and
# end-to-end test. Builds go to a persistent target directory outside the
# clone so reruns are incremental.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/orderflow-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The real servers the Kafka and ClickHouse tests talk to (installed on
# first use; both from empty data, as their area outlives sessions), and
# current ClickHouse in-process (chdb-core) for the queries.
kafka="$(scripts/kafka.sh reset)"
echo "== Kafka broker: $kafka"
clickhouse="$(scripts/clickhouse.sh reset)"
echo "== ClickHouse server: $clickhouse"
if ! python3 -c 'import chdb' 2>/dev/null; then
    echo "== installing chdb-core (pip)"
    python3 -m pip install --quiet chdb-core
fi
# Headless Chromium for the chart page's browser test (tests/serve.rs).
if ! command -v chromium >/dev/null; then
    echo "== installing chromium (apt)"
    if [[ $(id -u) -eq 0 ]]; then sudo=(); else sudo=(sudo); fi
    "${sudo[@]}" apt-get install -y -q chromium >/dev/null ||
        { "${sudo[@]}" apt-get update -q >/dev/null && "${sudo[@]}" apt-get install -y -q chromium >/dev/null; }
fi
echo "== cargo test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# One closing line over all test binaries (cargo prints one per binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f; exit (f > 0 || p == 0) }' "$log"
