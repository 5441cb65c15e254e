#!/usr/bin/env bash
# The production-failure scenario, rebuilt with the mock and run at growing volumes.
#
# The incident: a pilot ran 600 invocations/day at 98.3% success; production reached
# 12,000/day and success fell to 71%: the queue grew past 4,200, 18% of state writes timed
# out, 23% of LLM requests were rate-limited (40 concurrent requests against an endpoint that
# allows 20), and tools with a 2% error rate and a 30 s timeout blocked the workers.
#
# The same conditions, from ringmaster-mock (one reactor):
#   LLM: at most 20 requests in flight (429 beyond), 15,000 requests/min and 20M tokens/min per
#        API key (3 keys), 10-30 ms per answer (a tool call, then the final answer)
#   tool "weather": 1-5 ms, 2% errors (500), 0.5% hangs of 30 s
#   sessions: 1,000 shared sessions ("session": "u{n mod 1000}"), written by every
#        invocation in them (the last 20 messages go to the LLM: the context window), and 4
#        writers doing If-Match increments on 10 shared counters
#        through the state API at the same time (bench/scenario_client.py)
# The engine (one reactor, default sync durability) is configured for those limits: 20 in
# flight, each key's rpm/tpm at 96% of the provider's, a 1 s tool timeout with 3 attempts
# and a fallback, 100 invocations running at most (5 per LLM slot: more would only share the
# slots and stretch every invocation), a queue of 1,000 (beyond it callers get 429 +
# Retry-After).
#
# Volumes, with one day compressed into 60 s (1440x): pilot 600/day = 10 invocations/s;
# 10x = 12,000/day (the incident's production) = 200/s; 100x = 2,000/s; 1000x = 20,000/s.
# Arrivals are open-loop (build/release/openloop: constant rate, latency from each request's
# intended start); each caller waits for its answer ("wait": 60).
#
# Per volume it prints one JSON row (bench/scenario_client.py report): success rate of the
# invocations admitted (tool fallbacks counted apart), upstream 429s, invocation latency
# p50/p99/p99.9 of the admitted ones (200 answers; the 429s are answered at once), the
# largest queue depths, 429/503 given to callers, breaker openings, and
# lost updates of the counters and of the session histories, checked at the end; then a
# table of every volume. With --check it fails on any upstream 429, lost update, caller
# failure, or success under 99.9% (CI runs `bench/scenario.sh --seconds 60 --check 10x`).
#
# Placement: the engine on CPU 0; the mock, openloop and the Python writers on CPU 1.
# Usage: bench/scenario.sh [--seconds S (10..600, default 60)] [--check] [--out DIR]
#                          [VOLUME... (pilot 10x 100x 1000x; default all four)]
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: $0 [--seconds S (10..600)] [--check] [--out DIR] [pilot|10x|100x|1000x ...]"
seconds=60
check=""
out_dir=""
volumes=()
while [ $# -gt 0 ]; do
    case $1 in
    --seconds) seconds=${2:-}; shift 2 ;;
    --check) check=--check; shift ;;
    --out) out_dir=${2:-}; shift 2 ;;
    pilot | 10x | 100x | 1000x) volumes+=("$1"); shift ;;
    *) echo "$usage"; exit 2 ;;
    esac
done
[[ $seconds =~ ^[0-9]+$ ]] && [ "$seconds" -ge 10 ] && [ "$seconds" -le 600 ] ||
    { echo "$usage"; exit 2; }
[ ${#volumes[@]} -gt 0 ] || volumes=(pilot 10x 100x 1000x)
engine_bin=${RINGMASTER:-build/release/ringmaster}
mock_bin=${RINGMASTER_MOCK:-build/release/ringmaster-mock}
openloop_bin=${OPENLOOP:-build/release/openloop}
for bin in "$engine_bin" "$mock_bin" "$openloop_bin"; do
    [ -x "$bin" ] || { echo "build first: make all ($bin missing)"; exit 1; }
done
for tool in taskset curl python3; do
    command -v "$tool" >/dev/null || { echo "$tool missing: make deps"; exit 1; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge 4096 ] || { echo "open files limit $(ulimit -n): need 4096"; exit 1; }
# Callers hold a connection while they wait; the engine needs as many, plus the upstreams'.
connections=$(( $(ulimit -n) / 2 < 8000 ? $(ulimit -n) / 2 : 8000 ))
source bench/common.sh
[ -n "$out_dir" ] || out_dir="$work/results"
mkdir -p "$out_dir"

sessions=1000
drain=45 # seconds after the schedule: the agent deadline (30 s) plus the queue's wait
export SCENARIO_KEY_1=sk-scenario-1 SCENARIO_KEY_2=sk-scenario-2 SCENARIO_KEY_3=sk-scenario-3

rate_of() {
    case $1 in pilot) echo 10 ;; 10x) echo 200 ;; 100x) echo 2000 ;; 1000x) echo 20000 ;; esac
}

# engine_config FILE MOCK_PORT DATA_DIR
engine_config() {
    local keys="" i
    for i in 1 2 3; do
        keys+="${keys:+, }{\"name\": \"k$i\", \"env\": \"SCENARIO_KEY_$i\", \"rpm\": 14400,"
        keys+=" \"tpm\": 19200000}"
    done
    cat >"$1" <<JSON
{"listen": "127.0.0.1:0", "threads": 1, "data_dir": "$3", "log": {"level": "warn"},
 "limits": {"max_connections": 12000},
 "store": {"require_precondition": true},
 "endpoints": {"llm": {"url": "http://127.0.0.1:$2/v1", "keys": [$keys],
                       "max_in_flight": 20, "max_queue": 20000, "timeout_ms": 10000}},
 "tools": {"weather": {"url": "http://127.0.0.1:$2/tools/weather",
                       "description": "The current weather in a city",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                       "timeout_ms": 1000,
                       "retry": {"max_attempts": 3, "base_ms": 20, "max_ms": 200},
                       "fallback": {"weather": "unknown (the weather service is down)"},
                       "fallback_on_error": true}},
 "agents": {"assistant": {"endpoint": "llm", "model": "gpt-4o-mini",
                          "system": "You are a helpful assistant. Use the weather tool.",
                          "tools": ["weather"], "max_steps": 6, "deadline_ms": 30000,
                          "history_messages": 20,
                          "max_concurrent": 100, "max_queue": 1000}}}
JSON
}

# run_volume VOLUME: one run on a fresh mock and a fresh engine; the row goes to out_dir.
run_volume() {
    local volume=$1 rate
    rate=$(rate_of "$volume")
    taskset -c "$client_cpu" "$mock_bin" --listen 127.0.0.1:0 --threads 1 --seed 42 \
        --llm-latency uniform:10:30 --max-concurrency 20 --retry-after 1 \
        --rpm 15000 --tpm 20000000 --tool-latency uniform:1:5 \
        --tool weather:error-rate=0.02,hang-rate=0.005 --max-hang-ms 30000 \
        2>"$work/mock-$volume.err" &
    local mock_pid=$!
    pids+=("$mock_pid")
    local mock_port
    mock_port=$(started_port "$work/mock-$volume.err" "$mock_pid")
    engine_config "$work/engine-$volume.json" "$mock_port" "$work/data-$volume"
    taskset -c "$server_cpu" "$engine_bin" --config "$work/engine-$volume.json" \
        2>"$work/engine-$volume.err" &
    local engine_pid=$!
    pids+=("$engine_pid")
    local port
    port=$(started_port "$work/engine-$volume.err" "$engine_pid")
    wait_http "$port"
    echo "scenario $volume: $rate invocations/s for $seconds s (engine :$port, mock :$mock_port)" >&2
    taskset -c "$client_cpu" python3 bench/scenario_client.py watch --port "$port" \
        --seconds "$seconds" --drain 5 --out "$work/watch-$volume.json" &
    local watch_pid=$!
    taskset -c "$client_cpu" "$openloop_bin" --method POST \
        --url "http://127.0.0.1:$port/v1/agents/assistant/invocations" \
        --header 'Content-Type: application/json' --keys "$sessions" \
        --body-text '{"input": "weather in Paris? #{n}", "session": "u{k}", "wait": 60}' \
        --rate "$rate" --duration "$seconds" --connections "$connections" --drain "$drain" --json \
        >"$work/openloop-$volume.json" 2>"$work/openloop-$volume.err"
    wait "$watch_pid"
    curl -sf "http://127.0.0.1:$mock_port/mock/stats" >"$work/mock-$volume.json"
    local status=0
    taskset -c "$client_cpu" python3 bench/scenario_client.py report --volume "$volume" \
        --port "$port" --agent assistant --sessions "$sessions" \
        --openloop "$work/openloop-$volume.json" --mock "$work/mock-$volume.json" \
        --watch "$work/watch-$volume.json" $check >"$out_dir/scenario-$volume.json" || status=$?
    cat "$out_dir/scenario-$volume.json"
    kill "$engine_pid" "$mock_pid"
    wait "$engine_pid" "$mock_pid" 2>/dev/null || true
    if [ "$status" -ne 0 ]; then
        echo "--- engine stderr (last 20 lines)"; tail -20 "$work/engine-$volume.err"
        return 1
    fi
}

failed=0
for volume in "${volumes[@]}"; do
    run_volume "$volume" || failed=1
done
rows=()
for volume in "${volumes[@]}"; do
    [ -s "$out_dir/scenario-$volume.json" ] && rows+=("$out_dir/scenario-$volume.json")
done
python3 bench/scenario_client.py table "${rows[@]}"
exit "$failed"
