# Shared by the bench scripts (sourced): a scratch directory removed on exit, every started
# process killed on exit, free loopback ports, and waiting for a server to answer.
work=$(mktemp -d /tmp/rm-bench.XXXXXX)
pids=()
bench_cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${BENCH_KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap bench_cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_http PORT [PATH]: until the server answers (5 s at most).
wait_http() {
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$1${2:-/healthz}" && return 0
        sleep 0.05
    done
    echo "server on port $1 did not come up"; exit 1
}

server_cpu=0
client_cpu=$(( $(nproc) > 1 ? 1 : 0 ))

# started_port FILE PID: the port a server printed on stderr ("... listening on port N").
started_port() {
    local port=""
    for _ in $(seq 1 100); do
        port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$1")
        [ -n "$port" ] && { echo "$port"; return 0; }
        kill -0 "$2" 2>/dev/null || break
        sleep 0.05
    done
    echo "the server did not start:" >&2
    cat "$1" >&2
    return 1
}
