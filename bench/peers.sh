#!/usr/bin/env bash
# The peer comparison in one run: Ringmaster against nginx, Redis 7 and the mock upstream,
# same run, same cores (every server pinned to CPU 0, every load generator to CPU 1, all
# traffic on 127.0.0.1). Prints a markdown table (what | Ringmaster | peer | ratio) and writes
# three latency-vs-load plots, the raw points and the table into the output directory.
#
#   1. HTTP, GET /healthz: Ringmaster (threads 1) vs nginx (1 worker) returning the same
#      15-byte JSON body. Open-loop sweep with openloop (constant arrival rate, latency from
#      each request's intended start, so queueing shows: no coordinated omission) over offered
#      rates, p50/p90/p99/p99.9 and the achieved rate per point, the two servers interleaved
#      at each rate; then the closed-loop maximum with wrk -t1 -c100 (as http_vs_nginx.sh).
#   2. State CAS: PUT If-Match through Ringmaster's HTTP state API (durability async) vs
#      Redis 7 EVALSHA of the usual Lua CAS script (appendonly, appendfsync everysec), with
#      state-bench (closed loop, the same client code for both) at several connection counts:
#      each count gives a (throughput, p99) point, a latency-vs-load curve; the ratio is
#      taken at 64 connections. Then durability sync vs appendfsync always at 64 connections.
#      Each point starts a fresh server (state-bench's first write per key is a create).
#   3. Gateway: POST /v1/chat/completions through the engine (threads 1, one endpoint) to
#      ringmaster-mock (1 reactor, zero latency) vs the same request to the mock directly,
#      engine and mock sharing CPU 0 (as llm_vs_mock.sh). Open-loop sweep; the table gives
#      the p50 overhead at the lowest rate and the closed-loop throughput ratio (wrk -c64).
#
# Files in the output directory: peers.md (the table and notes), http_latency.png,
# state_latency.png, gateway_latency.png (p99 solid, p50 dashed, log-scale ms), the points
# as http_points.csv, state_points.csv, gateway_points.csv, closed_loop.csv, and peers.gp
# (re-plot with: cd DIR && gnuplot peers.gp). Server CPU % is the server processes' own CPU
# time over the point's wall time; server/client core % is how busy CPU 0/1 was (all
# processes, this benchmark's and any other work's).
#
# Reading the figures: "sustained" is the highest offered rate whose achieved rate is >= 97%
# of it with no timeouts and only 2xx answers, every lower rate having held too. Past saturation the p99 counts completed
# requests only (timeouts, flagged in the CSV, never complete); such points are circled in
# the plots. On a 2-core machine the load generator's core is often the limit, not the
# server's: compare server CPU % and client core % in the CSVs before reading a ceiling.
# Everything else running on the machine shows up as noise; rerun before trusting a ratio.
#
# Points and time: full run, open-loop points of 4 s (+1 s drain when saturated) at 5k, 10k,
# 20k, 40k, 60k, 80k, 100k, 120k req/s (HTTP) and 1k, 2k, 5k, 10k, 20k, 30k, 40k, 60k req/s
# (gateway), state points of 3 s at 1, 4, 16, 64, 256 connections, sync runs of 5 s, and 3
# interleaved wrk runs of 3 s per side: about 4 minutes. --quick: 2 s points at 4 rates
# each, 1/16/64/256 connections, 2 s sync and wrk runs: about 1.5 minutes. Every load runs
# under timeout(1).
#
# Usage: bench/peers.sh [--out DIR] [--quick]
#   --out DIR   output directory (default bench/results; created if missing)
#   --quick     fewer points and shorter runs: about 1.5 minutes instead of about 4
# Binaries: RINGMASTER, RINGMASTER_MOCK, OPENLOOP, STATE_BENCH (default build/release/...).
# Needs nginx, redis-server, redis-cli, wrk, gnuplot, taskset, curl, python3 (make deps).
set -euo pipefail

usage() { sed -n 's/^# \{0,1\}//; /^Usage:/,/^Needs/p' "$0"; }
out=bench/results
quick=0
while [ $# -gt 0 ]; do
    case $1 in
    --out)
        [ $# -ge 2 ] && [ -n "$2" ] || { echo "--out needs a directory" >&2; exit 2; }
        out=$2
        shift 2
        ;;
    --out=?*) out=${1#--out=}; shift ;;
    --quick) quick=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
# Paths given by the caller are relative to the caller's directory; defaults to the repo's.
absolute() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
out=$(absolute "$out")
engine_bin=$(absolute "${RINGMASTER:-$(dirname "$0")/../build/release/ringmaster}")
mock_bin=$(absolute "${RINGMASTER_MOCK:-$(dirname "$0")/../build/release/ringmaster-mock}")
openloop_bin=$(absolute "${OPENLOOP:-$(dirname "$0")/../build/release/openloop}")
state_bin=$(absolute "${STATE_BENCH:-$(dirname "$0")/../build/release/state-bench}")
cd "$(dirname "$0")/.."

for bin in "$engine_bin" "$mock_bin" "$openloop_bin" "$state_bin"; do
    [ -x "$bin" ] || { echo "missing $bin: build first (make all)"; exit 1; }
done
for tool in nginx redis-server redis-cli wrk gnuplot taskset timeout curl python3 awk pgrep; do
    command -v "$tool" >/dev/null || { echo "$tool missing: make deps"; exit 1; }
done
mkdir -p "$out" || { echo "cannot create $out"; exit 1; }
source bench/common.sh
[ "$client_cpu" != "$server_cpu" ] ||
    echo "warning: one CPU only, servers and load generators share it" >&2

if [ "$quick" = 1 ]; then
    point_s=2 wrk_s=2 state_s=2 sync_s=2
    http_rates="10000 40000 80000 120000"
    state_conns="1 16 64 256"
    gw_rates="1000 5000 20000 40000"
else
    point_s=4 wrk_s=3 state_s=3 sync_s=5
    http_rates="5000 10000 20000 40000 60000 80000 100000 120000"
    state_conns="1 4 16 64 256"
    gw_rates="1000 2000 5000 10000 20000 30000 40000 60000"
fi
drain_s=1
wrk_rounds=3 # closed-loop runs per side, interleaved; the table takes their medians
http_mid=40000 # the rate the table quotes HTTP open-loop latency at (in both sweeps)
ticks=$(getconf CLK_TCK)
notes=()
note() { notes+=("$*"); echo "note: $*" >&2; }
started_at=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- measuring helpers ----

# core_ticks: "busy total" ticks so far of the server CPU and of the client CPU (all
# processes on each).
core_ticks() {
    awk -v a="cpu$server_cpu" -v b="cpu$client_cpu" '$1 == a || $1 == b { t = 0;
        for (i = 2; i <= NF; i++) t += $i; v[$1] = (t - $5 - $6) " " t }
        END { print v[a], v[b] }' /proc/stat
}
now() { date +%s.%N; }
# cpu_pct TICKS_BEFORE TICKS_AFTER START END: a process set's CPU % over the wall time.
cpu_pct() { awk -v a="$1" -v b="$2" -v s="$3" -v e="$4" -v k="$ticks" \
    'BEGIN { printf "%.0f", 100 * (b - a) / k / (e - s) }'; }
# core_pct BEFORE AFTER: "server_core_pct,client_core_pct" from two core_ticks.
core_pct() {
    awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ");
        for (i = 1; i <= 3; i += 2) { d = y[i + 1] - x[i + 1];
            printf "%s%.0f", (i > 1 ? "," : ""), (d > 0 ? 100 * (y[i] - x[i]) / d : 0) } }'
}

# ol_point SERIES RATE URL "PIDS" [openloop options]: one open-loop point; appends to
# $work/SERIES.rows: offered,achieved,p50,p90,p99,p999,max,completed,timeouts,non2xx,
# server_cpu_pct,server_core_pct,client_core_pct (latencies in us).
ol_point() {
    local series=$1 rate=$2 url=$3 procs
    read -r -a procs <<<"$4"
    shift 4
    local file="$work/$series-$rate" t0 t1 c0 c1 s e
    t0=$(pid_ticks "${procs[@]}"); c0=$(core_ticks); s=$(now)
    taskset -c "$client_cpu" timeout $((point_s + drain_s + 15)) "$openloop_bin" --url "$url" \
        --rate "$rate" --duration "$point_s" --drain "$drain_s" --json "$@" \
        >"$file.json" 2>"$file.err" ||
        { echo "openloop failed ($series at $rate req/s):"; cat "$file.err"; exit 1; }
    e=$(now); c1=$(core_ticks); t1=$(pid_ticks "${procs[@]}")
    python3 - "$file.json" "$(cpu_pct "$t0" "$t1" "$s" "$e")" "$(core_pct "$c0" "$c1")" \
        >>"$work/$series.rows" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency_us"]
non2xx = r["completed"] - r["classes"]["2xx"] + r["connect_errors"] + r["malformed"]
print(",".join(str(v) for v in [int(r["rate"]), r["achieved_rate"], l["p50"], l["p90"],
      l["p99"], l["p99.9"], l["max"], r["completed"], r["timeouts"], non2xx,
      sys.argv[2]]) + "," + sys.argv[3])
PY
    local row; row=$(tail -n 1 "$work/$series.rows")
    printf '  %-22s %7s req/s offered: achieved %s, p50 %s us, p99 %s us, timeouts %s, non-2xx %s, server CPU %s%%\n' \
        "$series" "$rate" "$(cut -d, -f2 <<<"$row")" "$(cut -d, -f3 <<<"$row")" \
        "$(cut -d, -f5 <<<"$row")" "$(cut -d, -f9 <<<"$row")" "$(cut -d, -f10 <<<"$row")" \
        "$(cut -d, -f11 <<<"$row")" >&2
    [ "$(cut -d, -f10 <<<"$row")" = 0 ] ||
        note "$series at $rate req/s: $(cut -d, -f10 <<<"$row") answers were not 2xx" \
             "(codes: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["codes"])' "$file.json"))"
}

# wrk_point PAIR SIDE ROUND URL CONNECTIONS "PIDS" [wrk options]: one closed-loop wrk run;
# appends pair,side,round,connections,seconds,req_per_s,p50_us,p99_us,server_cpu_pct,
# server_core_pct,client_core_pct to the closed-loop rows.
wrk_point() {
    local pair=$1 side=$2 round=$3 url=$4 connections=$5 procs
    read -r -a procs <<<"$6"
    shift 6
    local file="$work/wrk-$pair-$side-$round.out" t0 t1 c0 c1 s e
    t0=$(pid_ticks "${procs[@]}"); c0=$(core_ticks); s=$(now)
    taskset -c "$client_cpu" timeout $((wrk_s + 15)) wrk -t1 -c"$connections" -d"${wrk_s}s" \
        --latency "$@" "$url" >"$file" 2>&1 || { echo "wrk failed ($pair $side):"; cat "$file"; exit 1; }
    e=$(now); c1=$(core_ticks); t1=$(pid_ticks "${procs[@]}")
    ! grep -q "Non-2xx\|Socket errors" "$file" ||
        note "wrk $pair $side: $(grep "Non-2xx\|Socket errors" "$file" | tr -s ' ' | tr '\n' ' ')"
    local rps p50 p99
    rps=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' "$file")
    p50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$file")" 0) || p50=0
    p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$file")" 0) || p99=0
    [ -n "$rps" ] || { echo "wrk printed no rate ($pair $side):"; cat "$file"; exit 1; }
    echo "$pair,$side,$round,$connections,$wrk_s,$rps,$p50,$p99,$(cpu_pct "$t0" "$t1" "$s" "$e"),$(core_pct "$c0" "$c1")" \
        >>"$work/closed_loop.rows"
    printf '  wrk %-8s %-10s round %s -c%-4s %s req/s, p50 %s us, p99 %s us\n' "$pair" "$side" \
        "$round" "$connections" "$rps" "$p50" "$p99" >&2
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# ---- 1. HTTP: Ringmaster vs nginx on GET /healthz ----
echo "== HTTP: GET /healthz, Ringmaster vs nginx (rates: $http_rates; ${point_s}s each)" >&2
cat >"$work/http.json" <<JSON
{"listen": "127.0.0.1:0", "threads": 1, "data_dir": "$work/http-data", "log": {"level": "warn"}}
JSON
taskset -c "$server_cpu" "$engine_bin" --config "$work/http.json" 2>"$work/http-rm.err" &
rm_pid=$!
pids+=("$rm_pid")
rm_port=$(started_port "$work/http-rm.err" "$rm_pid")
wait_http "$rm_port"

start_nginx
nginx_procs="$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')" # master and its worker

# Warm-up, not recorded.
for port in "$rm_port" "$nginx_port"; do
    taskset -c "$client_cpu" timeout 15 "$openloop_bin" --url "http://127.0.0.1:$port/healthz" \
        --rate 20000 --duration 1 --drain 1 --json >/dev/null 2>&1 || true
done
for rate in $http_rates; do
    ol_point http_ringmaster "$rate" "http://127.0.0.1:$rm_port/healthz" "$rm_pid"
    ol_point http_nginx "$rate" "http://127.0.0.1:$nginx_port/healthz" "$nginx_procs"
done
for round in $(seq 1 "$wrk_rounds"); do
    wrk_point http ringmaster "$round" "http://127.0.0.1:$rm_port/healthz" 100 "$rm_pid"
    wrk_point http nginx "$round" "http://127.0.0.1:$nginx_port/healthz" 100 "$nginx_procs"
done
stop "$rm_pid"
stop "$nginx_pid"

# ---- 2. State: Ringmaster CAS vs Redis Lua CAS ----
echo "== State: CAS, Ringmaster vs Redis (connections: $state_conns; ${state_s}s each)" >&2
# The standard versioned CAS: the version lives beside the data in a hash; a mismatch
# returns the current version negated, a match writes and returns the new version.
cas_lua='local v = tonumber(redis.call("HGET", KEYS[1], "v") or "0")
if v ~= tonumber(ARGV[1]) then return -v - 1 end
redis.call("HSET", KEYS[1], "v", v + 1, "d", ARGV[2])
return v + 1'

start_ringmaster() { # durability
    rm -rf "$work/state-data"
    cat >"$work/state.json" <<JSON
{"listen": "127.0.0.1:0", "threads": 1, "data_dir": "$work/state-data",
 "log": {"level": "warn"}, "durability": {"default": "$1"}}
JSON
    : >"$work/state-rm.err"
    taskset -c "$server_cpu" "$engine_bin" --config "$work/state.json" 2>"$work/state-rm.err" &
    server_pid=$!
    pids+=("$server_pid")
    server_port=$(started_port "$work/state-rm.err" "$server_pid")
    wait_http "$server_port"
}
start_redis() { # appendfsync
    server_port=$(free_port)
    rm -rf "$work/redis"
    mkdir -p "$work/redis"
    taskset -c "$server_cpu" redis-server --port "$server_port" --bind 127.0.0.1 --save "" \
        --appendonly yes --appendfsync "$1" --dir "$work/redis" --daemonize no \
        --loglevel warning >"$work/redis.log" 2>&1 &
    server_pid=$!
    pids+=("$server_pid")
    local up=0
    for _ in $(seq 1 100); do
        timeout 2 redis-cli -p "$server_port" ping >/dev/null 2>&1 && { up=1; break; }
        sleep 0.05
    done
    [ "$up" = 1 ] || { echo "redis did not come up:"; cat "$work/redis.log"; exit 1; }
    redis_sha=$(timeout 5 redis-cli -p "$server_port" SCRIPT LOAD "$cas_lua")
}
# state_point SERIES DURABILITY CONNECTIONS SECONDS: a fresh server, one state-bench run;
# appends connections,ops_per_s,p50,p99,p999,errors,server_cpu_pct,server_core_pct,client_core_pct.
state_point() {
    local series=$1 durability=$2 connections=$3 seconds=$4 protocol sha=""
    case $series in
    *ringmaster*) protocol=http; start_ringmaster "$durability" ;;
    *) protocol=redis; start_redis "$durability"; sha=$redis_sha ;;
    esac
    local t0 t1 c0 c1 s e result
    t0=$(pid_ticks "$server_pid"); c0=$(core_ticks); s=$(now)
    # shellcheck disable=SC2086
    result=$(taskset -c "$client_cpu" timeout $((seconds + 15)) "$state_bin" "$protocol" \
        127.0.0.1 "$server_port" cas "$connections" "$seconds" $sha) ||
        { echo "state-bench failed ($series, $connections connections)"; exit 1; }
    e=$(now); c1=$(core_ticks); t1=$(pid_ticks "$server_pid")
    stop "$server_pid"
    read -r ops p50 p99 p999 errors <<<"$result"
    echo "$connections,$ops,$p50,$p99,$p999,$errors,$(cpu_pct "$t0" "$t1" "$s" "$e"),$(core_pct "$c0" "$c1")" \
        >>"$work/$series.rows"
    printf '  %-22s %4s connections: %s ops/s, p50 %s us, p99 %s us, errors %s\n' "$series" \
        "$connections" "$ops" "$p50" "$p99" "$errors" >&2
    [ "$errors" = 0 ] || note "$series at $connections connections: $errors CAS errors"
}
for connections in $state_conns; do
    state_point state_ringmaster_async async "$connections" "$state_s"
    state_point state_redis_everysec everysec "$connections" "$state_s"
done
state_point state_ringmaster_sync sync 64 "$sync_s"
state_point state_redis_always always 64 "$sync_s"

# ---- 3. Gateway: through the engine to the mock vs the mock directly ----
echo "== Gateway: POST /v1/chat/completions, engine -> mock vs mock (rates: $gw_rates)" >&2
start_gateway

body='{"model":"gpt-mock","messages":[{"role":"user","content":"hello"}]}'
status=$(curl -s -m 5 -o "$work/check.json" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' --data-binary "$body" \
    "http://127.0.0.1:$engine_port/v1/chat/completions") || status=000
[ "$status" = 200 ] && grep -q '"chat.completion"' "$work/check.json" || {
    echo "a request through the engine answered $status, not 200 with a chat completion:"
    cat "$work/check.json" "$work/gateway.err"
    exit 1
}
escaped=${body//\\/\\\\}
escaped=${escaped//\"/\\\"}
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = "$escaped"
LUA
mock_answered() {
    curl -sf -m 5 "http://127.0.0.1:$mock_port/mock/stats" |
        sed -n 's/.*"chat_completions":\([0-9]*\).*/\1/p'
}
post=(--method POST --header 'Content-Type: application/json' --body-text "$body")
for port in "$mock_port" "$engine_port"; do # warm-up, not recorded
    taskset -c "$client_cpu" timeout 15 "$openloop_bin" \
        --url "http://127.0.0.1:$port/v1/chat/completions" --rate 5000 --duration 1 \
        --drain 1 --json "${post[@]}" >/dev/null 2>&1 || true
done
for rate in $gw_rates; do
    before=$(mock_answered)
    ol_point gw_ringmaster "$rate" "http://127.0.0.1:$engine_port/v1/chat/completions" \
        "$engine_pid $mock_pid" "${post[@]}"
    answered=$(($(mock_answered) - before))
    completed=$(tail -n 1 "$work/gw_ringmaster.rows" | cut -d, -f8)
    [ "$answered" -ge "$completed" ] ||
        note "gateway at $rate req/s: the engine completed $completed requests," \
             "the mock answered only $answered"
    ol_point gw_direct "$rate" "http://127.0.0.1:$mock_port/v1/chat/completions" \
        "$mock_pid" "${post[@]}"
done
for round in $(seq 1 "$wrk_rounds"); do
    wrk_point gateway ringmaster "$round" "http://127.0.0.1:$engine_port/v1/chat/completions" \
        64 "$engine_pid $mock_pid" -s "$work/post.lua"
    wrk_point gateway direct "$round" "http://127.0.0.1:$mock_port/v1/chat/completions" 64 \
        "$mock_pid" -s "$work/post.lua"
done
stop "$engine_pid"
stop "$mock_pid"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the CSV files ----
ol_header="offered_rps,achieved_rps,p50_us,p90_us,p99_us,p999_us,max_us,completed,timeouts,non2xx,server_cpu_pct,server_core_pct,client_core_pct"
{
    echo "server,$ol_header"
    sed 's/^/ringmaster,/' "$work/http_ringmaster.rows"
    sed 's/^/nginx,/' "$work/http_nginx.rows"
} >"$out/http_points.csv"
{
    echo "path,$ol_header"
    sed 's/^/ringmaster,/' "$work/gw_ringmaster.rows"
    sed 's/^/direct,/' "$work/gw_direct.rows"
} >"$out/gateway_points.csv"
{
    echo "system,durability,connections,ops_per_s,p50_us,p99_us,p999_us,errors,server_cpu_pct,server_core_pct,client_core_pct"
    sed 's/^/ringmaster,async,/' "$work/state_ringmaster_async.rows"
    sed 's/^/redis,everysec,/' "$work/state_redis_everysec.rows"
    sed 's/^/ringmaster,sync,/' "$work/state_ringmaster_sync.rows"
    sed 's/^/redis,always,/' "$work/state_redis_always.rows"
} >"$out/state_points.csv"
{
    echo "pair,side,round,connections,seconds,req_per_s,p50_us,p99_us,server_cpu_pct,server_core_pct,client_core_pct"
    cat "$work/closed_loop.rows"
} >"$out/closed_loop.csv"

# ---- the table ----
# sustained ROWS: the highest offered rate held (achieved >= 97%, no timeouts, all 2xx) with
# every lower rate held too (a noisy later point does not count); ">=MAX" when every rate
# held, "<MIN" when the lowest did not.
sustained() {
    awk -F, 'BEGIN { best = -1; held = 1 } NR == 1 { first = $1 }
        held { held = $2 >= 0.97 * $1 && $9 == 0 && $10 == 0; if (held) best = $1 }
        END { if (best < 0) print "<" first; else if (held) print ">=" best; else print best }' "$1"
}
fmt_rate() { awk -v v="$1" 'BEGIN { p = v; sub(/[0-9.]+$/, "", p); n = substr(v, length(p) + 1) + 0;
    if (n >= 1e6) printf "%s%.2fM", p, n / 1e6; else if (n >= 1e3) printf "%s%.1fk", p, n / 1e3;
    else printf "%s%.0f", p, n }'; }
fmt_us() { awk -v v="$1" 'BEGIN { if (v >= 10000) printf "%.0f ms", v / 1000;
    else if (v >= 1000) printf "%.2f ms", v / 1000; else printf "%.0f us", v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2fx", a / b; else print "n/a" }'; }
sus_ratio() { # ratio of two sustained figures, only when both are exact
    case "$1$2" in *'<'* | *'>'*) echo "n/a (sweep bound)" ;; *) ratio "$1" "$2" ;; esac
}

cl="$out/closed_loop.csv"
hp="$out/http_points.csv"
sp="$out/state_points.csv"
gp="$out/gateway_points.csv"
rows_of() { awk -F, -v s="$2" 'NR > 1 && $1 == s { sub(/^[^,]*,/, ""); print }' "$1" >"$work/$2.sel"; echo "$work/$2.sel"; }
at_rate() { awk -F, -v s="$2" -v r="$3" -v c="$4" 'NR > 1 && $1 == s && $2 == r { print $c; exit }' "$1"; }
st() { awk -F, -v s="$2" -v d="$3" -v n="$4" -v c="$5" \
    'NR > 1 && $1 == s && $2 == d && $3 == n { print $c; exit }' "$1"; }

# median_of PAIR SIDE COLUMN: the median over the closed-loop rounds.
median_of() {
    awk -F, -v p="$1" -v s="$2" -v c="$3" '$1 == p && $2 == s { print $c }' "$cl" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR) print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# range_of PAIR SIDE: "min-max" req/s over the rounds.
range_of() {
    awk -F, -v p="$1" -v s="$2" '$1 == p && $2 == s { if (n++ == 0 || $6 < lo) lo = $6; if ($6 > hi) hi = $6 }
        END { print lo, hi }' "$cl" | { read -r lo hi; echo "$(fmt_rate "$lo")-$(fmt_rate "$hi")"; }
}
h_rm_rps=$(median_of http ringmaster 6)
h_ng_rps=$(median_of http nginx 6)
h_rm_p99=$(median_of http ringmaster 8)
h_ng_p99=$(median_of http nginx 8)
h_rm_sus=$(sustained "$(rows_of "$hp" ringmaster)")
h_ng_sus=$(sustained "$(rows_of "$hp" nginx)")
h_rm_mid=$(at_rate "$hp" ringmaster "$http_mid" 6)
h_ng_mid=$(at_rate "$hp" nginx "$http_mid" 6)
h_rm_mid50=$(at_rate "$hp" ringmaster "$http_mid" 4)
h_ng_mid50=$(at_rate "$hp" nginx "$http_mid" 4)

s_rm=$(st "$sp" ringmaster async 64 4); s_rd=$(st "$sp" redis everysec 64 4)
s_rm99=$(st "$sp" ringmaster async 64 6); s_rd99=$(st "$sp" redis everysec 64 6)
s_rm1=$(st "$sp" ringmaster async 1 6); s_rd1=$(st "$sp" redis everysec 1 6)
s_rms=$(st "$sp" ringmaster sync 64 4); s_rds=$(st "$sp" redis always 64 4)
s_rms99=$(st "$sp" ringmaster sync 64 6); s_rds99=$(st "$sp" redis always 64 6)
s_rm_max=$(awk -F, 'NR > 1 && $1 == "ringmaster" && $2 == "async" && $4 > m { m = $4 } END { print m + 0 }' "$sp")
s_rd_max=$(awk -F, 'NR > 1 && $1 == "redis" && $2 == "everysec" && $4 > m { m = $4 } END { print m + 0 }' "$sp")

g_low=${gw_rates%% *}
g_rm50=$(at_rate "$gp" ringmaster "$g_low" 4); g_d50=$(at_rate "$gp" direct "$g_low" 4)
g_rm99=$(at_rate "$gp" ringmaster "$g_low" 6); g_d99=$(at_rate "$gp" direct "$g_low" 6)
g_rm_rps=$(median_of gateway ringmaster 6)
g_d_rps=$(median_of gateway direct 6)
g_rm_sus=$(sustained "$(rows_of "$gp" ringmaster)")
g_d_sus=$(sustained "$(rows_of "$gp" direct)")
g_added=$(awk -v a="$g_rm50" -v b="$g_d50" 'BEGIN { d = a - b; printf "%s%.0f us", (d < 0 ? "" : "+"), d }')
g_added99=$(awk -v a="$g_rm99" -v b="$g_d99" 'BEGIN { d = a - b; printf "%s%.0f us", (d < 0 ? "" : "+"), d }')

# Where each open-loop sweep first fell behind, and which core was full there.
fell_behind() { # CSV SERIES LABEL
    local at
    at=$(awk -F, -v s="$2" 'NR > 1 && $1 == s && ($3 < 0.97 * $2 || $10 > 0) {
        print $2, $12, $13, $14; exit }' "$1")
    [ -n "$at" ] || return 0
    local rate server core client why="no core was full: the server's own limits?"
    read -r rate server core client <<<"$at"
    if [ "$server" -ge 90 ]; then why="the server processes were CPU-bound"
    elif [ "$core" -ge 95 ]; then why="CPU $server_cpu was full, partly with other work: contention"
    elif [ "$client" -ge 95 ]; then why="CPU $client_cpu (the load generator's) was full: a client-side ceiling"
    fi
    note "$3 first fell behind at $(fmt_rate "$rate") req/s offered (server processes $server%" \
         "of a core, CPU $server_cpu busy $core%, CPU $client_cpu busy $client%): $why"
}
fell_behind "$hp" ringmaster "HTTP Ringmaster"
fell_behind "$hp" nginx "HTTP nginx"
fell_behind "$gp" ringmaster "gateway through the engine (engine + mock CPU)"
fell_behind "$gp" direct "gateway direct (mock CPU)"
awk -v l="${load_before%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }' &&
    note "the load average was ${load_before%% *} before the run on $(nproc) CPUs: other work shared" \
         "these cores, so latency tails and ceilings are noisier than usual"

elapsed=$(($(date +%s) - started_at))
{
    echo "| what | Ringmaster | peer | ratio |"
    echo "|---|---|---|---|"
    echo "| HTTP GET /healthz, closed loop, wrk -c100, median of $wrk_rounds interleaved ${wrk_s}s runs (range) | $(fmt_rate "$h_rm_rps") req/s ($(range_of http ringmaster)), p99 $(fmt_us "$h_rm_p99") | nginx $(fmt_rate "$h_ng_rps") req/s ($(range_of http nginx)), p99 $(fmt_us "$h_ng_p99") | $(ratio "$h_rm_rps" "$h_ng_rps") req/s, p99 $(ratio "$h_rm_p99" "$h_ng_p99") |"
    echo "| HTTP open loop, highest offered rate sustained (sweep $(fmt_rate "${http_rates%% *}")-$(fmt_rate "${http_rates##* }")) | $(fmt_rate "$h_rm_sus") req/s | nginx $(fmt_rate "$h_ng_sus") req/s | $(sus_ratio "$h_rm_sus" "$h_ng_sus") |"
    echo "| HTTP open loop at $(fmt_rate "$http_mid") req/s: p50 / p99 | $(fmt_us "$h_rm_mid50") / $(fmt_us "$h_rm_mid") | nginx $(fmt_us "$h_ng_mid50") / $(fmt_us "$h_ng_mid") | p99 $(ratio "$h_rm_mid" "$h_ng_mid") (lower is better) |"
    echo "| state CAS, 64 connections, async vs appendfsync everysec | $(fmt_rate "$s_rm") ops/s, p99 $(fmt_us "$s_rm99") | Redis $(fmt_rate "$s_rd") ops/s, p99 $(fmt_us "$s_rd99") | $(ratio "$s_rm" "$s_rd") ops/s, p99 $(ratio "$s_rm99" "$s_rd99") |"
    echo "| state CAS, best throughput over $(echo "$state_conns" | tr ' ' '/') connections | $(fmt_rate "$s_rm_max") ops/s | Redis $(fmt_rate "$s_rd_max") ops/s | $(ratio "$s_rm_max" "$s_rd_max") |"
    echo "| state CAS, 1 connection: p99 | $(fmt_us "$s_rm1") | Redis $(fmt_us "$s_rd1") | $(ratio "$s_rm1" "$s_rd1") (lower is better) |"
    echo "| state CAS, 64 connections, sync vs appendfsync always | $(fmt_rate "$s_rms") ops/s, p99 $(fmt_us "$s_rms99") | Redis $(fmt_rate "$s_rds") ops/s, p99 $(fmt_us "$s_rds99") | $(ratio "$s_rms" "$s_rds") ops/s, p99 $(ratio "$s_rms99" "$s_rds99") |"
    echo "| gateway (engine -> mock) vs mock directly, open loop at $(fmt_rate "$g_low") req/s: p50 / p99 | $(fmt_us "$g_rm50") / $(fmt_us "$g_rm99") | direct $(fmt_us "$g_d50") / $(fmt_us "$g_d99") | added p50 $g_added, p99 $g_added99 |"
    echo "| gateway, closed loop, wrk -c64, median of $wrk_rounds ${wrk_s}s runs (range; engine and mock share CPU 0) | $(fmt_rate "$g_rm_rps") req/s ($(range_of gateway ringmaster)) | direct $(fmt_rate "$g_d_rps") req/s ($(range_of gateway direct)) | $(ratio "$g_rm_rps" "$g_d_rps") |"
    echo "| gateway open loop, highest offered rate sustained (sweep $(fmt_rate "$g_low")-$(fmt_rate "${gw_rates##* }")) | $(fmt_rate "$g_rm_sus") req/s | direct $(fmt_rate "$g_d_sus") req/s | $(sus_ratio "$g_rm_sus" "$g_d_sus") |"
    echo
    echo "Servers on CPU $server_cpu, load generators on CPU $client_cpu; $(nproc) CPUs, $(uname -r)," \
        "$(nginx -v 2>&1 | sed 's/.*: //'), Redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')." \
        "Open-loop points ${point_s}s each (drain ${drain_s}s); state points ${state_s}s, sync ${sync_s}s."
    echo "Load average (1 5 15 min): $load_before before, $load_after after; run took ${elapsed}s" \
        "on $(date -u +%Y-%m-%dT%H:%MZ)$([ "$quick" = 1 ] && echo ' (--quick)'). Other work on the" \
        "machine adds noise: rerun before trusting a ratio."
    if [ ${#notes[@]} -gt 0 ]; then
        echo
        echo "Notes:"
        for n in "${notes[@]}"; do echo "- $n"; done
    fi
} >"$out/peers.md"

# ---- the plots ----
if gnuplot -e 'set terminal' 2>&1 | grep -q pngcairo; then
    terminal='pngcairo size 1100,720 font "sans,11"'
else
    terminal='png size 1100,720'
fi
# tics "LABEL" VALUE, ... for gnuplot: one per offered rate, 5000 as "5k".
tics() { awk '{ for (i = 1; i <= NF; i++) printf "%s\"%gk\" %s", (i > 1 ? ", " : ""), $i / 1000, $i }' <<<"$1"; }
http_tics=$(tics "$http_rates")
gw_tics=$(tics "$gw_rates")
# span RATES: an x range a little wider than the rates on a log axis.
span() { awk '{ printf "[%g:%g]", $1 / 1.4, $NF * 1.4 }' <<<"$1"; }
cat >"$out/peers.gp" <<GP
# Re-plot: cd to this directory, then gnuplot peers.gp (written by bench/peers.sh).
set terminal $terminal
set datafile separator ","
set logscale y
set format y "%g"
set grid xtics ytics mytics lc rgb "#dddddd"
set key below vertical maxrows 2 width -1
set ylabel "latency (ms, log scale): p99 solid, p50 dashed"
sat(off, got, to) = got < 0.97 * off || to > 0
set label 1 "circled: saturated (achieved < 97% of offered, or timeouts;\nthen p99 counts completed requests only)" at graph 0.02, graph 0.95 font ",10"
# 1. HTTP
set output "http_latency.png"
set title "HTTP GET /healthz: Ringmaster (1 thread) vs nginx (1 worker), open-loop sweep\nservers on CPU $server_cpu, openloop on CPU $client_cpu, ${point_s} s per point; latency from each request's intended start"
set xlabel "offered load (requests/s, log scale)"
set logscale x
set xrange $(span "$http_rates")
set xtics ($http_tics)
plot "http_points.csv" skip 1 using 2:(strcol(1) eq "ringmaster" ? \$6/1000 : NaN) with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "Ringmaster p99", \
     "" skip 1 using 2:(strcol(1) eq "nginx" ? \$6/1000 : NaN) with linespoints lw 2 pt 5 lc rgb "#d62728" title "nginx p99", \
     "" skip 1 using 2:(strcol(1) eq "ringmaster" ? \$4/1000 : NaN) with linespoints lw 1 dt 2 pt 6 lc rgb "#1f77b4" title "Ringmaster p50", \
     "" skip 1 using 2:(strcol(1) eq "nginx" ? \$4/1000 : NaN) with linespoints lw 1 dt 2 pt 4 lc rgb "#d62728" title "nginx p50", \
     "" skip 1 using 2:(sat(\$2, \$3, \$10) ? \$6/1000 : NaN) with points pt 6 ps 3 lw 2 lc rgb "black" notitle
# 2. State
set output "state_latency.png"
set title "State compare-and-swap: Ringmaster PUT If-Match (durability async) vs Redis 7 Lua CAS (appendfsync everysec)\nclosed loop, state-bench on CPU $client_cpu, server on CPU $server_cpu, ${state_s} s per point; point labels: connections"
set xlabel "achieved throughput (CAS operations/s)"
unset logscale x
set xtics autofreq
set format x "%.0s%c"
set xrange [0:*]
set offsets 0, graph 0.06, 0, 0
unset label 1
plot "state_points.csv" skip 1 using 4:(strcol(1) eq "ringmaster" && strcol(2) eq "async" ? \$6/1000 : NaN) with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "Ringmaster p99 (PUT If-Match)", \
     "" skip 1 using 4:(strcol(1) eq "redis" && strcol(2) eq "everysec" ? \$6/1000 : NaN) with linespoints lw 2 pt 5 lc rgb "#d62728" title "Redis p99 (EVALSHA)", \
     "" skip 1 using 4:(strcol(1) eq "ringmaster" && strcol(2) eq "async" ? \$5/1000 : NaN) with linespoints lw 1 dt 2 pt 6 lc rgb "#1f77b4" title "Ringmaster p50", \
     "" skip 1 using 4:(strcol(1) eq "redis" && strcol(2) eq "everysec" ? \$5/1000 : NaN) with linespoints lw 1 dt 2 pt 4 lc rgb "#d62728" title "Redis p50", \
     "" skip 1 using 4:(strcol(2) eq "async" || strcol(2) eq "everysec" ? \$6/1000 : NaN):(sprintf("%d", \$3)) with labels offset char 1.2,0.6 font ",9" notitle
# 3. Gateway
set output "gateway_latency.png"
set title "POST /v1/chat/completions: through the engine to ringmaster-mock vs the mock directly, open-loop sweep\nengine and mock on CPU $server_cpu, openloop on CPU $client_cpu, ${point_s} s per point; latency from each request's intended start"
set xlabel "offered load (requests/s, log scale)"
set logscale x
set format x "%g"
unset offsets
set label 1 "circled: saturated (achieved < 97% of offered, or timeouts;\nthen p99 counts completed requests only)" at graph 0.02, graph 0.95 font ",10"
set xrange $(span "$gw_rates")
set xtics ($gw_tics)
plot "gateway_points.csv" skip 1 using 2:(strcol(1) eq "ringmaster" ? \$6/1000 : NaN) with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "engine -> mock p99", \
     "" skip 1 using 2:(strcol(1) eq "direct" ? \$6/1000 : NaN) with linespoints lw 2 pt 5 lc rgb "#d62728" title "mock directly p99", \
     "" skip 1 using 2:(strcol(1) eq "ringmaster" ? \$4/1000 : NaN) with linespoints lw 1 dt 2 pt 6 lc rgb "#1f77b4" title "engine -> mock p50", \
     "" skip 1 using 2:(strcol(1) eq "direct" ? \$4/1000 : NaN) with linespoints lw 1 dt 2 pt 4 lc rgb "#d62728" title "mock directly p50", \
     "" skip 1 using 2:(sat(\$2, \$3, \$10) ? \$6/1000 : NaN) with points pt 6 ps 3 lw 2 lc rgb "black" notitle
GP
(cd "$out" && gnuplot peers.gp) || { echo "gnuplot failed (script: $out/peers.gp)"; exit 1; }

cat "$out/peers.md"
echo
echo "wrote $out/{peers.md,http_latency.png,state_latency.png,gateway_latency.png,http_points.csv,state_points.csv,gateway_points.csv,closed_loop.csv,peers.gp}"
