#!/usr/bin/env bash
# A real ClickHouse server on 127.0.0.1 for tests and benchmarks: Debian's
# clickhouse-server, run by hand with a private config (its own data, tmp and
# log paths under the test area). Idempotent: installs the package only when
# it is missing, starts the server only when nothing answers on the port.
# The test area outlives a session (it sits under /tmp): `reset` begins again
# from empty data, so tables left by an older checkout cannot stop the server
# from loading its metadata.
#
#   scripts/clickhouse.sh start   # prints the HTTP address, HOST:PORT
#   scripts/clickhouse.sh reset   # stop, empty the data, start
#   scripts/clickhouse.sh stop
#   scripts/clickhouse.sh crash   # SIGKILL: gone at once, as in a crash
set -euo pipefail
source "$(dirname "$0")/servers.sh"

http="${ORDERFLOW_CLICKHOUSE_PORT:-8123}"
native="${ORDERFLOW_CLICKHOUSE_NATIVE_PORT:-9000}"
https="${ORDERFLOW_CLICKHOUSE_HTTPS_PORT:-8443}"
area="${ORDERFLOW_SERVERS:-${TMPDIR:-/tmp}/orderflow-servers}/clickhouse"

answering() { curl -fsS "http://127.0.0.1:$http/ping" >/dev/null 2>&1; }

config() {
    # HTTPS with a self-signed certificate for 127.0.0.1, which clients
    # trust through SSL_CERT_FILE=$area/tls/cert.pem.
    if [[ ! -f "$area/tls/cert.pem" ]]; then
        mkdir -p "$area/tls"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=127.0.0.1" \
            -addext "subjectAltName=IP:127.0.0.1" \
            -keyout "$area/tls/key.pem" -out "$area/tls/cert.pem" 2>/dev/null
    fi
    cat >"$area/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$area/log/server.log</log>
        <errorlog>$area/log/server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$http</http_port>
    <tcp_port>$native</tcp_port>
    <https_port>$https</https_port>
    <openSSL>
        <server>
            <certificateFile>$area/tls/cert.pem</certificateFile>
            <privateKeyFile>$area/tls/key.pem</privateKeyFile>
            <verificationMode>none</verificationMode>
            <disableProtocols>sslv2,sslv3</disableProtocols>
        </server>
    </openSSL>
    <path>$area/data/</path>
    <tmp_path>$area/tmp/</tmp_path>
    <user_files_path>$area/user_files/</user_files_path>
    <format_schema_path>$area/format_schemas/</format_schema_path>
    <users_config>$area/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>268435456</mark_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
EOF
    cat >"$area/users.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <allow_experimental_low_cardinality_type>1</allow_experimental_low_cardinality_type>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default></default></quotas>
</yandex>
EOF
}

stop() { stop_server "$area/server.pid" "--config-file=$area/config.xml" "$@"; }

case "${1:-start}" in
reset)
    stop
    rm -rf "$area/data" "$area/tmp"
    exec "$0" start
    ;;
start)
    if answering; then
        echo "127.0.0.1:$http"
        exit 0
    fi
    if ! command -v clickhouse-server >/dev/null; then
        echo "installing clickhouse-server (apt)" >&2
        if [[ $(id -u) -eq 0 ]]; then sudo=(); else sudo=(sudo); fi
        "${sudo[@]}" apt-get install -y clickhouse-server clickhouse-client >&2 ||
            { "${sudo[@]}" apt-get update >&2 && "${sudo[@]}" apt-get install -y clickhouse-server clickhouse-client >&2; }
    fi
    mkdir -p "$area"/{data,tmp,log,user_files,format_schemas}
    config
    (
        cd "$area"
        setsid nohup clickhouse-server --config-file="$area/config.xml" \
            >"$area/log/stdout.log" 2>&1 </dev/null &
        echo $! >server.pid
    )
    if until_up answering; then
        echo "127.0.0.1:$http"
        exit 0
    fi
    echo "clickhouse-server did not answer on 127.0.0.1:$http; see $area/log" >&2
    echo "(tables it cannot load? scripts/clickhouse.sh reset starts from empty data)" >&2
    grep -h '<Error>' "$area/log/server.err.log" 2>/dev/null | tail -n 3 >&2 || true
    tail -n 20 "$area/log/stdout.log" >&2 || true
    exit 1
    ;;
stop)
    stop
    ;;
crash)
    stop KILL
    ;;
*)
    echo "usage: $0 start|reset|stop|crash" >&2
    exit 2
    ;;
esac
