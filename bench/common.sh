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

# pid_ticks PID...: CPU ticks (user + system) the processes used so far.
pid_ticks() {
    local total=0 pid fields
    for pid in "$@"; do
        read -r -a fields <"/proc/$pid/stat"
        total=$((total + fields[13] + fields[14]))
    done
    echo "$total"
}

# to_us VALUE [DECIMALS]: wrk's "1.23ms" style figure in microseconds (1 decimal by default);
# fails on a figure without a unit.
to_us() {
    awk -v v="$1" -v d="${2:-1}" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        f = u == "us" ? 1 : u == "ms" ? 1000 : u == "s" ? 1e6 : 0;
        if (f == 0) { exit 1 } printf "%.*f", d, n * f }'
}

# start_nginx: nginx on CPU 0 (one worker) answering GET /healthz like the engine, with its
# files under $work/nginx; sets nginx_pid (the master) and nginx_port.
start_nginx() {
    nginx_port=$(free_port)
    mkdir -p "$work/nginx"
    cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
worker_cpu_affinity 0001;
daemon off;
error_log $work/nginx/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 4096; multi_accept on; }
http {
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path $work/nginx;
    proxy_temp_path $work/nginx;
    fastcgi_temp_path $work/nginx;
    uwsgi_temp_path $work/nginx;
    scgi_temp_path $work/nginx;
    server {
        listen 127.0.0.1:$nginx_port reuseport;
        location = /healthz {
            default_type application/json;
            return 200 '{"status":"ok"}';
        }
    }
}
CONF
    taskset -c "$server_cpu" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
    nginx_pid=$!
    pids+=("$nginx_pid")
    wait_http "$nginx_port"
}

# start_gateway: ringmaster-mock ($mock_bin), then the engine ($engine_bin) in front of it
# with one endpoint "mock" for any model (max_in_flight 1024), both on CPU $server_cpu; sets
# mock_pid, mock_port, engine_pid and engine_port. Logs: $work/mock.err, $work/gateway.err.
start_gateway() {
    taskset -c "$server_cpu" "$mock_bin" --listen 127.0.0.1:0 --threads 1 2>"$work/mock.err" &
    mock_pid=$!
    pids+=("$mock_pid")
    mock_port=$(started_port "$work/mock.err" "$mock_pid")
    cat >"$work/gateway.json" <<JSON
{"listen": "127.0.0.1:0", "threads": 1, "data_dir": "$work/gateway-data",
 "log": {"level": "warn"},
 "endpoints": {"mock": {"url": "http://127.0.0.1:$mock_port/v1", "keys": [{"name": "local"}],
                        "max_in_flight": 1024, "max_queue": 100000}}}
JSON
    taskset -c "$server_cpu" "$engine_bin" --config "$work/gateway.json" \
        2>"$work/gateway.err" &
    engine_pid=$!
    pids+=("$engine_pid")
    engine_port=$(started_port "$work/gateway.err" "$engine_pid")
    wait_http "$engine_port"
}
