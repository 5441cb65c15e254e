#!/usr/bin/env bash
# Ringmaster's state API vs Redis 7 with the usual Lua compare-and-swap script, same run,
# same cores: each server on CPU 0 (Ringmaster with one reactor; Redis is single-threaded),
# the client (bench/state_bench.c, the same code for both protocols) on CPU 1.
#   async: Ringmaster durability async    vs Redis appendonly + appendfsync everysec
#   sync:  Ringmaster durability sync     vs Redis appendonly + appendfsync always
# Usage: bench/state_vs_redis.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
connections=${2:-64}
bin=build/release/ringmaster
client=build/release/state-bench
[ -x "$bin" ] && [ -x "$client" ] || { echo "build first: make all"; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server missing: make deps"; exit 1; }
source bench/common.sh

# The standard versioned CAS: the version lives beside the data in a hash; a mismatch
# returns the current version negated, a match writes and returns the new version.
cas_lua='local v = tonumber(redis.call("HGET", KEYS[1], "v") or "0")
if v ~= tonumber(ARGV[1]) then return -v - 1 end
redis.call("HSET", KEYS[1], "v", v + 1, "d", ARGV[2])
return v + 1'

start_ringmaster() { # mode
    local port; port=$(free_port)
    rm -rf "$work/rm-data"
    cat >"$work/rm.json" <<JSON
{"listen": "127.0.0.1:$port", "threads": 1, "data_dir": "$work/rm-data",
 "log": {"level": "warn"}, "durability": {"default": "$1"}}
JSON
    taskset -c "$server_cpu" "$bin" --config "$work/rm.json" 2>>"$work/rm.err" &
    rm_pid=$!
    pids+=("$rm_pid")
    wait_http "$port"
    rm_port=$port
}

start_redis() { # appendfsync
    local port; port=$(free_port)
    mkdir -p "$work/redis-$1"
    taskset -c "$server_cpu" redis-server --port "$port" --bind 127.0.0.1 --save "" \
        --appendonly yes --appendfsync "$1" --dir "$work/redis-$1" --daemonize no \
        --loglevel warning >"$work/redis.log" 2>&1 &
    redis_pid=$!
    pids+=("$redis_pid")
    for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
    redis_port=$port
    redis_sha=$(redis-cli -p "$port" SCRIPT LOAD "$cas_lua")
}

measure() { # protocol port op [sha]
    taskset -c "$client_cpu" "$client" "$1" 127.0.0.1 "$2" "$3" "$connections" "$seconds" ${4:-}
}

printf '%-34s %10s %8s %8s %8s %7s\n' run ops/s p50us p99us p999us errors
row() { printf '%-34s %10s %8s %8s %8s %7s\n' "$1" $2; }
ratio() { # label, ringmaster line, redis line
    awk -v l="$1" -v a="$2" -v b="$3" 'BEGIN { split(a, x, " "); split(b, y, " ");
        printf "  ratio %-26s ops/s %.2fx, p99 %.2fx (lower is better)\n", l, x[1]/y[1], x[3]/y[3] }'
}

for pair in "async everysec" "sync always"; do
    set -- $pair
    start_ringmaster "$1"
    rm_cas=$(measure http "$rm_port" cas)
    rm_get=$(measure http "$rm_port" get)
    kill "$rm_pid"; wait "$rm_pid" 2>/dev/null || true
    start_redis "$2"
    redis_cas=$(measure redis "$redis_port" cas "$redis_sha")
    redis_get=$(measure redis "$redis_port" get)
    kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true
    row "ringmaster $1 CAS (PUT If-Match)" "$rm_cas"
    row "redis $2 CAS (EVALSHA)" "$redis_cas"
    ratio "$1 CAS" "$rm_cas" "$redis_cas"
    row "ringmaster $1 GET" "$rm_get"
    row "redis $2 GET (HGET)" "$redis_get"
    ratio "$1 GET" "$rm_get" "$redis_get"
done
echo "(servers on CPU $server_cpu, client on CPU $client_cpu, $connections connections," \
     "${seconds}s per run, $(nproc) CPUs, $(uname -r), $(redis-server --version | cut -d' ' -f3))"
