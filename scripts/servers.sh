# Sourced by kafka.sh and clickhouse.sh: waiting for and stopping the server
# a test area started.

# until_up CHECK: runs CHECK every 0.1 s for up to 30 s; succeeds once it does.
until_up() {
    for _ in $(seq 1 300); do
        "$1" && return 0
        sleep 0.1
    done
    return 1
}

# stop_server PIDFILE MARK [SIGNAL]: stops the process PIDFILE names (with
# SIGNAL, TERM by default), but only if its command line holds MARK: the
# area outlives a session, and a pid file left by an earlier one may name
# some other process now. Waits until it is gone, so that its port and data
# are free.
stop_server() {
    local pidfile="$1" mark="$2" signal="${3:-TERM}" pid
    [[ -f "$pidfile" ]] || return 0
    pid="$(cat "$pidfile")"
    if [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$mark"; then
        kill -s "$signal" "$pid" 2>/dev/null || true
        gone() { ! kill -0 "$pid" 2>/dev/null; }
        until_up gone || true
    fi
    rm -f "$pidfile"
}
