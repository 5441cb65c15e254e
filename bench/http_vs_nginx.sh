#!/usr/bin/env bash
# Ringmaster vs nginx on GET /healthz, same run, same cores: each server gets one worker
# pinned to CPU 0, wrk runs pinned to CPU 1, with the same connections and duration.
# Two rounds: plain keep-alive requests (one in flight per connection), and pipelined
# requests (16 per write), where the client's per-request cost is small enough that the server
# core, not wrk, is what saturates on a 2-core machine.
# Usage: bench/http_vs_nginx.sh [seconds] [connections]
# Prints req/s and latency p50/p99 of both and the ratios. Everything listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
connections=${2:-100}
bin=build/release/ringmaster
[ -x "$bin" ] || { echo "build first: make all"; exit 1; }
command -v nginx >/dev/null || { echo "nginx missing: make deps"; exit 1; }
command -v wrk >/dev/null || { echo "wrk missing: make deps"; exit 1; }
source bench/common.sh

cat >"$work/pipeline.lua" <<'LUA'
init = function(args)
    local r = {}
    for i = 1, 16 do r[i] = wrk.format("GET", "/healthz") end
    req = table.concat(r)
end
request = function() return req end
LUA

# run_wrk PORT NAME [extra wrk arguments]: prints "req/s p50 p99"
run_wrk() {
    taskset -c "$client_cpu" wrk -t1 -c"$connections" -d"${seconds}s" --latency ${3:-} \
        "http://127.0.0.1:$1/healthz" >"$work/$2.wrk" 2>&1
    local rps p50 p99
    rps=$(awk '/^Requests\/sec/ {print $2}' "$work/$2.wrk")
    p50=$(awk '$1=="50%" {print $2}' "$work/$2.wrk")
    p99=$(awk '$1=="99%" {print $2}' "$work/$2.wrk")
    echo "$rps $p50 $p99"
}

rm_port=$(free_port)
cat >"$work/ringmaster.json" <<JSON
{"listen": "127.0.0.1:$rm_port", "threads": 1, "data_dir": "$work/data",
 "log": {"level": "warn"}}
JSON
taskset -c "$server_cpu" "$bin" --config "$work/ringmaster.json" 2>"$work/ringmaster.err" &
pids+=($!)
wait_http "$rm_port"

start_nginx

report() { # title, ringmaster figures, nginx figures
    local title=$1; shift
    local rm_rps=$1 rm_p50=$2 rm_p99=$3 ng_rps=$4 ng_p50=$5 ng_p99=$6
    echo "== $title"
    printf '%-12s %12s %10s %10s\n' server req/s p50 p99
    printf '%-12s %12s %10s %10s\n' ringmaster "$rm_rps" "$rm_p50" "$rm_p99"
    printf '%-12s %12s %10s %10s\n' nginx "$ng_rps" "$ng_p50" "$ng_p99"
    # wrk's percentile table can print 0.00us for pipelined runs (its per-request timer does
    # not fit 16 responses per request); no ratio is printed from such a figure.
    awk -v a="$rm_rps" -v b="$ng_rps" -v c="$(to_us "$rm_p99")" -v d="$(to_us "$ng_p99")" \
        'BEGIN { printf "ratio ringmaster/nginx: req/s %.2fx, ", a/b;
                 if (c > 0 && d > 0) printf "p99 latency %.2fx (lower is better)\n", c/d;
                 else print "p99 latency n/a (wrk printed no p99)" }'
}

report "keep-alive, 1 request in flight per connection" \
    $(run_wrk "$rm_port" ringmaster) $(run_wrk "$nginx_port" nginx)
report "pipelined, 16 requests per write" \
    $(run_wrk "$rm_port" ringmaster-pipelined "-s $work/pipeline.lua") \
    $(run_wrk "$nginx_port" nginx-pipelined "-s $work/pipeline.lua")
echo "(1 worker each on CPU $server_cpu, wrk -t1 -c$connections -d${seconds}s on CPU $client_cpu, $(nproc) CPUs, $(uname -r))"
