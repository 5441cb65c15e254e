#!/usr/bin/env bash
# The engine's overhead per LLM request through its queue: wrk posts the same OpenAI chat body
# to ringmaster-mock directly, then through the engine (POST /v1/chat/completions, one
# endpoint "mock" serving any model, no API key, max_in_flight 1024), in the same run.
# The mock (one reactor, zero latency, its default) and the engine (one reactor) share CPU 0,
# as the upstream and the engine would share a host's cores; wrk runs alone on CPU 1 in both
# rounds. So "through" pays the engine's work and the second hop on CPU 0, and "direct" does
# not: the difference is what the engine adds.
# Rounds, interleaved and repeated so that background load hits every round alike:
#   direct   wrk -> mock,           1 connection, then 64
#   through  wrk -> engine -> mock, 1 connection, then 64
# At 1 connection the latency difference is the added latency (issue target: under 50 us at
# p50); at 64 connections the req/s ratio is the throughput cost. The table gives medians over
# the repeats: req/s, p50/p99, the engine's CPU per request (through rounds) and how busy CPU 0
# (mock plus engine) was. Every run must be all 2xx, and the mock must have answered at least
# as many requests as wrk counted through the engine; anything else stops the script.
# Usage: bench/llm_vs_mock.sh [seconds (1..10, default 5)] [repeats (default 3)]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
repeats=${2:-3}
engine_bin=${RINGMASTER:-build/release/ringmaster}
mock_bin=${RINGMASTER_MOCK:-build/release/ringmaster-mock}
[[ $seconds =~ ^[0-9]+$ ]] && [ "$seconds" -ge 1 ] && [ "$seconds" -le 10 ] ||
    { echo "usage: $0 [seconds (1..10, default 5)] [repeats (default 3)]"; exit 2; }
[[ $repeats =~ ^[0-9]+$ ]] && [ "$repeats" -ge 1 ] ||
    { echo "usage: $0 [seconds (1..10, default 5)] [repeats (>= 1, default 3)]"; exit 2; }
for bin in "$engine_bin" "$mock_bin"; do
    [ -x "$bin" ] || { echo "build first: make $bin"; exit 1; }
done
for tool in wrk taskset curl; do
    command -v "$tool" >/dev/null || { echo "$tool missing: make deps"; exit 1; }
done
source bench/common.sh
ticks=$(getconf CLK_TCK)

# ---- the mock, then the engine in front of it ----
start_gateway

# ---- the body, the wrk script, and one request through the engine ----
body='{"model":"gpt-mock","messages":[{"role":"user","content":"hello"}]}'
escaped=${body//\\/\\\\}
escaped=${escaped//\"/\\\"}
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = "$escaped"
LUA
status=$(curl -s -o "$work/check.json" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' --data-binary "$body" \
    "http://127.0.0.1:$engine_port/v1/chat/completions")
[ "$status" = 200 ] && grep -q '"chat.completion"' "$work/check.json" || {
    echo "a request through the engine answered $status, not 200 with a chat completion:"
    cat "$work/check.json"
    echo
    cat "$work/gateway.err"
    exit 1
}

# mock_answered: chat completions the mock has answered so far.
mock_answered() {
    curl -sf "http://127.0.0.1:$mock_port/mock/stats" |
        sed -n 's/.*"chat_completions":\([0-9]*\).*/\1/p'
}

# fail NAME WHY: stops the script with the run's wrk output.
fail() {
    echo "round $1: $2"
    cat "$work/$1.out"
    exit 1
}

# run_once NAME PORT CONNECTIONS [SECONDS]: one wrk run on the client CPU; appends to
# $work/NAME.rows "req/s p50_us p99_us engine_us_per_request cpu0_percent".
run_once() {
    local name=$1 port=$2 connections=$3 duration=${4:-$seconds} out="$work/$1.out"
    local engine_before cpu0_before answered_before started ended
    engine_before=$(pid_ticks "$engine_pid")
    cpu0_before=$(pid_ticks "$mock_pid" "$engine_pid")
    answered_before=$(mock_answered)
    started=$(date +%s.%N)
    taskset -c "$client_cpu" wrk -t1 -c"$connections" -d"${duration}s" --latency \
        -s "$work/post.lua" "http://127.0.0.1:$port/v1/chat/completions" >"$out" 2>&1 ||
        fail "$name" "wrk failed"
    ended=$(date +%s.%N)
    local engine_used cpu0_used answered
    engine_used=$(($(pid_ticks "$engine_pid") - engine_before))
    cpu0_used=$(($(pid_ticks "$mock_pid" "$engine_pid") - cpu0_before))
    answered=$(($(mock_answered) - answered_before))
    ! grep -q "Non-2xx" "$out" || fail "$name" "non-2xx answers"
    ! grep -q "Socket errors" "$out" || fail "$name" "socket errors"
    local rps p50 p99 requests per_request busy
    rps=$(awk '/^Requests\/sec/ { print $2 }' "$out")
    p50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$out")") || fail "$name" "no p50"
    p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$out")") || fail "$name" "no p99"
    requests=$(awk '/requests in/ { print $1 }' "$out")
    [ -n "$rps" ] && [ "${requests:-0}" -gt 0 ] || fail "$name" "no requests counted"
    # Every request wrk counted must have reached the mock, through the engine or not.
    [ "$answered" -ge "$requests" ] ||
        fail "$name" "the mock answered $answered chat completions, wrk counted $requests"
    per_request=-
    if [ "$port" = "$engine_port" ]; then
        per_request=$(awk -v t="$engine_used" -v k="$ticks" -v n="$requests" \
            'BEGIN { printf "%.1f", t / k * 1e6 / n }')
    fi
    busy=$(awk -v t="$cpu0_used" -v k="$ticks" -v a="$started" -v b="$ended" \
        'BEGIN { printf "%.0f", 100 * t / k / (b - a) }')
    echo "$rps $p50 $p99 $per_request $busy" >>"$work/$name.rows"
}

# A warm-up that is not counted: the engine's upstream connections and both servers' buffers.
run_once warmup_direct "$mock_port" 64 1
run_once warmup_through "$engine_port" 64 1

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for repeat in $(seq 1 "$repeats"); do
    echo "repeat $repeat/$repeats (load $(cut -d' ' -f1 /proc/loadavg))" >&2
    for connections in 1 64; do
        run_once "direct_$connections" "$mock_port" "$connections"
        run_once "through_$connections" "$engine_port" "$connections"
    done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# median NAME COLUMN: the median of one column over the repeats ("-" stays "-").
median() {
    awk -v c="$2" '{ print $c }' "$work/$1.rows" | sort -g |
        awk '{ v[NR] = $1 }
             END { if (v[1] == "-") { print "-"; exit }
                   print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

printf '\n%-26s %6s %10s %9s %9s %14s %7s\n' "mode (${seconds}s, x$repeats)" "conns" \
    "req/s" "p50 us" "p99 us" "engine us/req" "CPU0 %"
for connections in 1 64; do
    for row in "direct:wrk -> mock" "through:wrk -> engine -> mock"; do
        name="${row%%:*}_$connections"
        printf '%-26s %6s %10s %9s %9s %14s %7s\n' "${row#*:}" "$connections" \
            "$(median "$name" 1)" "$(median "$name" 2)" "$(median "$name" 3)" \
            "$(median "$name" 4)" "$(median "$name" 5)"
    done
done
added() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; printf "%s%.1f", (d < 0 ? "" : "+"), d }'; }
added_p50=$(added "$(median through_1 2)" "$(median direct_1 2)")
added_p99=$(added "$(median through_1 3)" "$(median direct_1 3)")
ratio=$(awk -v a="$(median through_64 1)" -v b="$(median direct_64 1)" \
    'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
verdict=$(awk -v d="$added_p50" 'BEGIN { print (d + 0 < 50 ? "met" : "missed") }')
echo
echo "added latency at 1 connection: p50 $added_p50 us, p99 $added_p99 us" \
    "(target: under 50 us at p50, $verdict)"
echo "throughput at 64 connections: through/direct = $ratio"
echo "load average (1 5 15 min): $load_before before, $load_after after;" \
    "mock and engine on CPU $server_cpu, wrk on CPU $client_cpu"
