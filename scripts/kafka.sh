#!/usr/bin/env bash
# A real Kafka-protocol broker on 127.0.0.1 for tests and benchmarks: tansu
# (crates.io) with its SQLite storage engine. Idempotent: installs tansu only
# when ~/.cargo/bin/tansu is missing (a long build), starts the broker only
# when nothing answers on the port.
#
# The test area outlives a session (it sits under /tmp): `reset` begins again
# from an empty store, so topics do not pile up run after run.
#
#   scripts/kafka.sh start   # prints the broker address, HOST:PORT
#   scripts/kafka.sh reset   # stop, empty the store, start
#   scripts/kafka.sh stop
set -euo pipefail
source "$(dirname "$0")/servers.sh"

port="${ORDERFLOW_KAFKA_PORT:-9092}"
area="${ORDERFLOW_SERVERS:-${TMPDIR:-/tmp}/orderflow-servers}/kafka"
tansu="${HOME}/.cargo/bin/tansu"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

stop() { stop_server "$area/broker.pid" "tcp://127.0.0.1:$port"; }

case "${1:-start}" in
reset)
    stop
    rm -f "$area"/tansu.db*
    exec "$0" start
    ;;
start)
    if listening; then
        echo "127.0.0.1:$port"
        exit 0
    fi
    if [[ ! -x "$tansu" ]]; then
        echo "installing tansu (cargo install, about 25 minutes on 2 cores)" >&2
        # Its own target dir, so it never competes with the project's lock.
        CARGO_TARGET_DIR="${HOME}/.cache/tansu-target" \
            cargo install tansu --locked --features libsql >&2
    fi
    mkdir -p "$area"
    # tansu resolves sqlite://tansu.db against its working directory.
    (
        cd "$area"
        setsid nohup "$tansu" broker \
            --listener-url "tcp://127.0.0.1:$port" \
            --advertised-listener-url "tcp://127.0.0.1:$port" \
            --storage-engine sqlite://tansu.db \
            >broker.log 2>&1 </dev/null &
        echo $! >broker.pid
    )
    if until_up listening; then
        # tansu looks up each fetched record's headers in an unindexed
        # table: reading a topic whose records carry headers (a
        # checkpointed Kafka sink's) slows with every header stored, to
        # seconds per fetch. An index on the record's key cures it.
        python3 - "$area/tansu.db" <<'PY'
import sqlite3, sys, time
for _ in range(100):
    try:
        db = sqlite3.connect(sys.argv[1], timeout=30)
        db.execute("CREATE INDEX IF NOT EXISTS header_record ON header (topition, offset_id)")
        db.commit()
        break
    except sqlite3.OperationalError:
        time.sleep(0.1)
else:
    sys.exit("could not index tansu's header table")
PY
        echo "127.0.0.1:$port"
        exit 0
    fi
    echo "tansu did not start listening on 127.0.0.1:$port; see $area/broker.log" >&2
    tail -n 20 "$area/broker.log" >&2 || true
    exit 1
    ;;
stop)
    stop
    ;;
*)
    echo "usage: $0 start|reset|stop" >&2
    exit 2
    ;;
esac
