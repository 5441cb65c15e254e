#!/usr/bin/env bash
# The ceiling of ringmaster-mock: how many chat completions per second one mock reactor
# answers, so that a benchmark knows the mock is not its bottleneck. The mock runs one
# reactor pinned to CPU 0 and wrk runs pinned to CPU 1 (a 2-core machine has no room for
# more without the two fighting), posting a small chat completion with one tool, which the
# mock parses and answers with a tool call (the common case). A second round posts the
# conversation after the tool result (a final answer). Zero latency and no limits: this is
# the mock's own cost per request.
# Usage: bench/mock_ceiling.sh [seconds] [connections]
# Prints req/s of each round; the last line is the ceiling figure.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
connections=${2:-64}
bin=${RINGMASTER_MOCK:-build/release/ringmaster-mock}
[ -x "$bin" ] || { echo "build first: make build/release/ringmaster-mock"; exit 1; }
command -v wrk >/dev/null || { echo "wrk missing: make deps"; exit 1; }
cpus=$(nproc)
server_cpu=0
client_cpu=$((cpus > 1 ? 1 : 0))

work=$(mktemp -d)
mock_pid=""
cleanup() {
    if [ -n "$mock_pid" ]; then
        kill "$mock_pid" 2>/dev/null || true
        wait "$mock_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

taskset -c "$server_cpu" "$bin" --listen 127.0.0.1:0 --threads 1 2>"$work/mock.err" &
mock_pid=$!
port=""
for _ in $(seq 1 100); do
    port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$work/mock.err")
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || { echo "the mock did not start:"; cat "$work/mock.err"; exit 1; }

tools='"tools":[{"type":"function","function":{"name":"search","parameters":'
tools+='{"type":"object","properties":{"query":{"type":"string"}}}}}]'
question='{"role":"user","content":"What is the weather in Paris?"}'
call='{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function",'
call+='"function":{"name":"search","arguments":"{\"query\":\"Paris\"}"}}]}'
result='{"role":"tool","tool_call_id":"c1","content":"sunny, 21C"}'
first='{"model":"gpt-mock","messages":['"$question"'],'"$tools"'}'
final='{"model":"gpt-mock","messages":['"$question,$call,$result"'],'"$tools"'}'

# run_round NAME BODY: prints the round's req/s
run_round() {
    local lua="$work/$1.lua"
    local body=${2//\\/\\\\}
    body=${body//\"/\\\"}
    cat >"$lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench"
wrk.body = "$body"
LUA
    taskset -c "$client_cpu" wrk -t1 -c"$connections" -d"${seconds}s" -s "$lua" \
        "http://127.0.0.1:$port/v1/chat/completions" >"$work/$1.wrk" 2>&1
    if grep -q "Non-2xx" "$work/$1.wrk"; then
        echo "round $1: the mock answered errors:" >&2
        cat "$work/$1.wrk" >&2
        exit 1
    fi
    awk '/^Requests\/sec/ {print $2}' "$work/$1.wrk"
}

tool_rps=$(run_round tool_call "$first")
final_rps=$(run_round final "$final")
echo "tool-call answers:  $tool_rps req/s"
echo "final answers:      $final_rps req/s"
curl -s "http://127.0.0.1:$port/mock/stats" >"$work/stats.json"
echo "mock stats: $(head -c 160 "$work/stats.json")..."
ceiling=$(awk -v a="$tool_rps" -v b="$final_rps" 'BEGIN { printf "%.0f", a < b ? a : b }')
echo "ringmaster-mock ceiling: $ceiling req/s per reactor (POST /v1/chat/completions," \
    "$connections connections, ${seconds}s, mock on CPU $server_cpu, wrk on CPU $client_cpu)"
