#!/usr/bin/env bash
# Agent invocations through the engine vs the same three calls made directly against the
# mock, and the engine's memory per queued invocation vs Redis holding the same records.
#
# 1. Throughput and latency. One agent "assistant" with one http tool "weather", both on
#    ringmaster-mock (one reactor, zero latency). wrk posts {"input": "weather in Paris?",
#    "wait": 30} to /v1/agents/assistant/invocations: each 200 is one whole invocation of
#    three steps (an LLM call answered with a tool call, the tool call, an LLM call answered
#    with the final answer); anything but a 200 with "status":"completed" and three steps
#    stops the script. Two engines run side by side, one with the default durability (sync:
#    every journal write of an invocation is fdatasync'ed, grouped per reactor tick) and one
#    with "inv" and "sessions" async. The peer: wrk makes the same three calls against the
#    mock itself, with the bodies the engine sends (built from the mock's own answers), each
#    connection sending the step that follows the answer it last received; it counts
#    sequences/s = responses / 3. Its latency is per call; the engines' is per invocation.
#    The mock and the engines (one reactor each) share CPU 0, wrk runs alone on CPU 1, with
#    64 and then 1024 connections; rounds are interleaved and repeated so that background
#    load hits every round alike, and the table gives medians, the engine's CPU per
#    invocation, CPU 0's CPU per sequence (mock alone for the peer, mock + engine for the
#    engines) and how busy CPU 0 was. Ratio: engine invocations/s / peer sequences/s.
# 2. Memory per queued invocation. An engine whose agent runs one invocation at a time, on a
#    second mock whose LLM holds every request for 600 s (the engine's LLM timeouts and the
#    agent's deadline are raised to an hour), so the first invocation stays running and the
#    others stay queued ("inv" async to fill fast). Its RSS is read after 1000 warm-up
#    invocations and again after N more, posted without wait by wrk (64 connections; its
#    script posts exactly N and the run ends once N answers are in, or at a time bound);
#    ringmaster_invocation_queue_depth must then sum to N + 999. Peer: Redis 7 (same CPU,
#    no persistence) RPUSHes N copies of the journal record of a queued invocation
#    (GET /v1/state/inv/{id}, each copy with its own id) into one list: used_memory delta / N
#    from INFO memory (and its RSS delta / N), in the same run.
# Usage: bench/invocations_vs_mock.sh [seconds per round (1..10, default 5)]
#                                     [repeats (1..20, default 3)]
#                                     [queued N (1000..1900000, default 1000000)]
# Defaults: about 2 minutes of rounds and 1-3 minutes of memory fill.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: $0 [seconds per round (1..10, default 5)] [repeats (1..20, default 3)]"
usage+=" [queued N (1000..1900000, default 1000000)]"
seconds=${1:-5}
repeats=${2:-3}
queued=${3:-1000000}
engine_bin=${RINGMASTER:-build/release/ringmaster}
mock_bin=${RINGMASTER_MOCK:-build/release/ringmaster-mock}
[ $# -le 3 ] || { echo "$usage"; exit 2; }
[[ $seconds =~ ^[0-9]+$ ]] && [ "$seconds" -ge 1 ] && [ "$seconds" -le 10 ] ||
    { echo "$usage"; exit 2; }
[[ $repeats =~ ^[0-9]+$ ]] && [ "$repeats" -ge 1 ] && [ "$repeats" -le 20 ] ||
    { echo "$usage"; exit 2; }
[[ $queued =~ ^[0-9]+$ ]] && [ "$queued" -ge 1000 ] && [ "$queued" -le 1900000 ] ||
    { echo "$usage"; exit 2; }
for bin in "$engine_bin" "$mock_bin"; do
    [ -x "$bin" ] || { echo "build first: make $bin"; exit 1; }
done
for tool in wrk taskset curl python3 redis-server redis-cli; do
    command -v "$tool" >/dev/null || { echo "$tool missing: make deps"; exit 1; }
done
# 1024 connections from wrk, as many into the engine and out of it to the mock.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge 8192 ] || { echo "open files limit $(ulimit -n): need 8192"; exit 1; }
source bench/common.sh
ticks=$(getconf CLK_TCK)
connection_counts="64 1024"
fill_bound=$((60 + queued / 5000)) # seconds: the fill stops by itself after this at most

# start_mock NAME [FLAGS...]: a mock with one reactor on CPU 0; sets mock_pid, mock_port.
start_mock() {
    local name=$1
    shift
    taskset -c "$server_cpu" "$mock_bin" --listen 127.0.0.1:0 --threads 1 "$@" \
        2>"$work/$name.err" &
    mock_pid=$!
    pids+=("$mock_pid")
    mock_port=$(started_port "$work/$name.err" "$mock_pid")
}

# start_engine NAME CONFIG: an engine on CPU 0; sets engine_pid, engine_port.
start_engine() {
    taskset -c "$server_cpu" "$engine_bin" --config "$2" 2>"$work/$1.err" &
    engine_pid=$!
    pids+=("$engine_pid")
    engine_port=$(started_port "$work/$1.err" "$engine_pid")
    wait_http "$engine_port"
    engine_ports+=("$engine_port")
}

# engine_config FILE MOCK_PORT NAME AGENT_LIMITS EXTRA [ENDPOINT_EXTRA]: the agent and its
# tool on the mock.
system_prompt="You are a helpful assistant. Use the weather tool for questions about weather."
tool_parameters='{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}'
tool_description="The current weather in a city"
engine_config() {
    cat >"$1" <<JSON
{"listen": "127.0.0.1:0", "threads": 1, "data_dir": "$work/$3-data", "log": {"level": "warn"},
 $5
 "endpoints": {"llm": {"url": "http://127.0.0.1:$2/v1", "keys": [{"name": "mock"}],
                       "max_in_flight": 4096, "max_connections": 1024${6:-}}},
 "tools": {"weather": {"url": "http://127.0.0.1:$2/tools/weather",
                       "description": "$tool_description", "parameters": $tool_parameters,
                       "timeout_ms": 2000, "max_connections": 1024,
                       "fallback": {"weather": "unknown (the weather service is down)"}}},
 "agents": {"assistant": {"endpoint": "llm", "model": "gpt-4o-mini", "system": "$system_prompt",
                          "tools": ["weather"], "max_steps": 6, "params": {"temperature": 0.2},
                          $4}}}
JSON
}

# rss_kb PID: resident set size in KiB.
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# mock_count PORT FIELD: a counter from the mock's /mock/stats (the first "chat_completions",
# "tools": the requests answered).
mock_count() {
    curl -sf "http://127.0.0.1:$1/mock/stats" | grep -o "\"$2\":[0-9]*" | head -n 1 | cut -d: -f2
}

# fail WHY [FILE...]: stops the script, showing the files (wrk output, stderr of servers).
fail() {
    echo "FAILED: $1"
    shift
    local file port
    for file in "$@"; do
        [ -s "$file" ] || continue
        if [[ $file == *.err ]]; then
            echo "--- $(basename "$file"): $(wc -l <"$file") lines; log messages by count:"
            grep -o '"msg":"[^"]*"' "$file" | sort | uniq -c | sort -rn | head -n 10 || true
            echo "--- $(basename "$file"): first 5 and last 5 lines"
            head -n 5 "$file"
            [ "$(wc -l <"$file")" -le 5 ] || tail -n 5 "$file"
        else
            echo "--- $(basename "$file") (last 40 lines)"
            tail -n 40 "$file"
        fi
    done
    for port in "${engine_ports[@]}"; do
        echo "--- the engine on port $port: failure counters that are not zero"
        curl -s -m 5 "http://127.0.0.1:$port/metrics" |
            grep -E '^ringmaster_(upstream_requests_total|tool_calls_total|llm_requests_total|invocations_total|invocation_rejections_total|breaker_state|breaker_transitions_total|llm_retries_total|llm_fallbacks_total|llm_rejected_total|llm_short_circuited_total|invocation_queue_depth|invocations_running)' |
            grep -v 'outcome="ok"' | grep -v ' 0$' || true
    done
    exit 1
}
engine_ports=()

# ======================= 1. throughput and latency =======================
start_mock mock
llm_mock_pid=$mock_pid
llm_mock_port=$mock_port
agent_limits='"max_concurrent": 100000, "max_queue": 1000000'
limits='"limits": {"max_connections": 4096},'
engine_config "$work/sync.json" "$llm_mock_port" sync "$agent_limits" "$limits"
engine_config "$work/async.json" "$llm_mock_port" async "$agent_limits" \
    "$limits \"durability\": {\"namespaces\": {\"inv\": \"async\", \"sessions\": \"async\"}},"
start_engine sync "$work/sync.json"
sync_pid=$engine_pid
sync_port=$engine_port
start_engine async "$work/async.json"
async_pid=$engine_pid
async_port=$engine_port

invoke_body='{"input": "weather in Paris?", "wait": 30}'
for port in "$sync_port" "$async_port"; do
    status=$(curl -s -m 35 -o "$work/check.json" -w '%{http_code}' -X POST \
        -H 'Content-Type: application/json' --data-binary "$invoke_body" \
        "http://127.0.0.1:$port/v1/agents/assistant/invocations")
    steps=$(grep -o '"kind":"[a-z]*"' "$work/check.json" | tr -d '\n' || true)
    [ "$status" = 200 ] && grep -q '"status":"completed"' "$work/check.json" &&
        [ "$steps" = '"kind":"llm""kind":"tool""kind":"llm"' ] || {
        echo "one invocation answered $status, not 200, completed, steps llm, tool, llm:"
        cat "$work/check.json"
        echo
        fail "the check invocation" "$work/sync.err" "$work/async.err" "$work/mock.err"
    }
done

# The engine's load: every answer must be a 200 with a completed invocation of 3 steps.
cat >"$work/engine.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[$invoke_body]==]
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; bad = 0; samples = {} end
function response(status, headers, body)
    local _, steps = body:gsub('"kind":"', "")
    if status == 200 and steps == 3 and body:find('"status":"completed"', 1, true) then
        ok = ok + 1
    else
        bad = bad + 1
        if samples[status] == nil then
            local e = body:find('"error"', 1, true)
            samples[status] = string.format("%d (first of this status): %s%s", status,
                body:sub(1, 200), e and " ... " .. body:sub(e, e + 300) or "")
        end
    end
end
function done(summary, latency, requests)
    local o, b = 0, 0
    for _, t in ipairs(threads) do o = o + t:get("ok"); b = b + t:get("bad") end
    io.write(string.format("counted ok=%d bad=%d\n", o, b))
    for _, t in ipairs(threads) do
        for _, s in pairs(t:get("samples")) do io.write("bad answer " .. s .. "\n") end
    end
end
LUA

# The peer's bodies: what the engine sends for this agent, built from the mock's own answers
# (its tool call, the tool's answer), and the wrk script that walks through the 3 steps.
python3 - "$llm_mock_port" "$system_prompt" "$tool_description" "$tool_parameters" \
    >"$work/peer.lua" <<'PY'
import json, sys, urllib.request
port, system, description, parameters = sys.argv[1:5]
compact = lambda value: json.dumps(value, separators=(",", ":"))
def post(path, body):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(request, timeout=10).read().decode()
tools = [{"type": "function", "function": {"name": "weather", "description": description,
                                           "parameters": json.loads(parameters)}}]
messages = [{"role": "system", "content": system}, {"role": "user", "content": "weather in Paris?"}]
def chat(messages):
    return compact({"model": "gpt-4o-mini", "messages": messages, "tools": tools,
                    "temperature": 0.2})
first = chat(messages)
answer = json.loads(post("/v1/chat/completions", first))
assert answer["choices"][0]["finish_reason"] == "tool_calls", answer
call = answer["choices"][0]["message"]["tool_calls"][0]
assistant = {"role": "assistant", "content": None,
             "tool_calls": [{"id": call["id"], "type": "function",
                             "function": {"name": call["function"]["name"],
                                          "arguments": call["function"]["arguments"]}}]}
arguments = call["function"]["arguments"]
result = post("/tools/" + call["function"]["name"], arguments)
third = chat(messages + [assistant, {"role": "tool", "tool_call_id": call["id"], "content": result}])
final = json.loads(post("/v1/chat/completions", third))
assert final["choices"][0]["finish_reason"] == "stop", final
for body in (first, arguments, third):
    assert "]==]" not in body
print(f"""-- step 1: the chat with the tools (answered with a tool call), step 2: the tool,
-- step 3: the chat holding the tool call and its result (answered with the final answer).
-- wrk's Lua has no connection handle, but it asks for a connection's next request right
-- after that connection's answer, in the order the answers arrived: so each answer queues
-- the step that follows it (1 after 3), and each request takes the oldest queued step.
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args)
    -- (made here, not at load: wrk knows the Host header only from init on)
    local h = {{["Content-Type"] = "application/json"}}
    requests = {{
        wrk.format("POST", "/v1/chat/completions", h, [==[{first}]==]),
        wrk.format("POST", "/tools/weather", h, [==[{arguments}]==]),
        wrk.format("POST", "/v1/chat/completions", h, [==[{third}]==]),
    }}
    queue = {{}}; head = 1; tail = 0
    n1 = 0; n2 = 0; n3 = 0; bad = 0; sample = ""
end
function request()
    local step = 1
    if head <= tail then step = queue[head]; queue[head] = nil; head = head + 1 end
    return requests[step]
end
function response(status, headers, body)
    local next_step = 1
    if status ~= 200 then
        bad = bad + 1
        if sample == "" then sample = status .. " " .. body:sub(1, 400) end
    elseif body:find('"finish_reason":"tool_calls"', 1, true) then n1 = n1 + 1; next_step = 2
    elseif body:find('"finish_reason":"stop"', 1, true) then n3 = n3 + 1
    elseif body:find('{{"tool":"weather"', 1, true) == 1 then n2 = n2 + 1; next_step = 3
    else
        bad = bad + 1
        if sample == "" then sample = status .. " " .. body:sub(1, 400) end
    end
    tail = tail + 1; queue[tail] = next_step
end
function done(summary, latency, requests)
    local a, b, c, x, s = 0, 0, 0, 0, ""
    for _, t in ipairs(threads) do
        a = a + t:get("n1"); b = b + t:get("n2"); c = c + t:get("n3"); x = x + t:get("bad")
        if s == "" then s = t:get("sample") end
    end
    io.write(string.format("counted steps=%d,%d,%d bad=%d\\n", a, b, c, x))
    if x > 0 then io.write("first bad answer: " .. s .. "\\n") end
end""")
PY

# run_once NAME CONNECTIONS [SECONDS]: one wrk round on the client CPU; appends to
# $work/NAME.rows "ops/s p50_us p99_us engine_us_per_op cpu0_us_per_op cpu0_percent".
# NAME is peer_*, sync_* or async_*.
run_once() {
    local name=$1 connections=$2 duration=${3:-$seconds} out="$work/$1.out"
    local kind=${name%%_*} port script url engine_pid=""
    case $kind in
        peer) port=$llm_mock_port script=$work/peer.lua ;;
        sync) port=$sync_port script=$work/engine.lua engine_pid=$sync_pid ;;
        async) port=$async_port script=$work/engine.lua engine_pid=$async_pid ;;
    esac
    url="http://127.0.0.1:$port"
    [ "$kind" = peer ] || url+=/v1/agents/assistant/invocations
    local errs=("$work/mock.err")
    [ -z "$engine_pid" ] || errs+=("$work/$kind.err")
    local engine_before=0 cpu0_before chats_before tools_before started ended
    [ -z "$engine_pid" ] || engine_before=$(pid_ticks "$engine_pid")
    cpu0_before=$(pid_ticks "$llm_mock_pid" ${engine_pid:+"$engine_pid"})
    chats_before=$(mock_count "$llm_mock_port" chat_completions)
    tools_before=$(mock_count "$llm_mock_port" tools)
    started=$(date +%s.%N)
    taskset -c "$client_cpu" timeout $((duration + 40)) wrk -t1 -c"$connections" \
        -d"${duration}s" --timeout 10s --latency -s "$script" "$url" >"$out" 2>&1 ||
        fail "round $name: wrk failed" "$out" "${errs[@]}"
    ended=$(date +%s.%N)
    for pid in "$llm_mock_pid" ${engine_pid:+"$engine_pid"}; do
        kill -0 "$pid" 2>/dev/null || fail "round $name: a server died" "$out" "${errs[@]}"
    done
    local engine_used=0 cpu0_used chats tools
    [ -z "$engine_pid" ] || engine_used=$(($(pid_ticks "$engine_pid") - engine_before))
    cpu0_used=$(($(pid_ticks "$llm_mock_pid" ${engine_pid:+"$engine_pid"}) - cpu0_before))
    chats=$(($(mock_count "$llm_mock_port" chat_completions) - chats_before))
    tools=$(($(mock_count "$llm_mock_port" tools) - tools_before))
    ! grep -q "Non-2xx" "$out" || fail "round $name: non-2xx answers" "$out" "${errs[@]}"
    ! grep -q "Socket errors" "$out" || fail "round $name: socket errors" "$out" "${errs[@]}"
    ! grep -q "^bad answer\|^first bad answer" "$out" ||
        fail "round $name: bad answers" "$out" "${errs[@]}"
    local rps p50 p99 requests ops per_op cpu0_per_op busy
    rps=$(awk '/^Requests\/sec/ { print $2 }' "$out")
    p50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$out")") || fail "round $name: no p50" "$out"
    p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$out")") || fail "round $name: no p99" "$out"
    requests=$(awk '/requests in/ { print $1 }' "$out")
    [ -n "$rps" ] && [ "${requests:-0}" -gt 0 ] || fail "round $name: no requests" "$out"
    if [ "$kind" = peer ]; then
        # The three steps must have been made about equally often, and all reached the mock.
        local counted
        counted=$(sed -n 's/^counted steps=\([0-9,]*\) bad=0$/\1/p' "$out")
        [ -n "$counted" ] || fail "round $name: no step counts" "$out"
        awk -v c="$counted" -v n="$connections" 'BEGIN { split(c, s, ",");
            lo = s[1]; hi = s[1]; for (i = 2; i <= 3; i++) { if (s[i] < lo) lo = s[i];
            if (s[i] > hi) hi = s[i] } exit !(hi - lo <= n) }' ||
            fail "round $name: the steps were not made equally often ($counted)" "$out"
        [ "$chats" -ge $((requests * 2 / 3 - connections)) ] &&
            [ "$tools" -ge $((requests / 3 - connections)) ] ||
            fail "round $name: the mock answered $chats chats, $tools tools for $requests calls" \
                "$out"
        ops=$(awk -v r="$rps" 'BEGIN { printf "%.1f", r / 3 }')
        per_op=-
        requests=$((requests / 3))
    else
        # Every invocation wrk counted made two LLM calls and one tool call on the mock.
        grep -q "^counted ok=$requests bad=0$" "$out" ||
            fail "round $name: wrk's answers and the Lua count differ" "$out" "${errs[@]}"
        [ "$chats" -ge $((2 * requests)) ] && [ "$tools" -ge "$requests" ] ||
            fail "round $name: the mock answered $chats chats, $tools tools for $requests" \
                "invocations" "$out" "${errs[@]}"
        ops=$rps
        per_op=$(awk -v t="$engine_used" -v k="$ticks" -v n="$requests" \
            'BEGIN { printf "%.1f", t / k * 1e6 / n }')
    fi
    cpu0_per_op=$(awk -v t="$cpu0_used" -v k="$ticks" -v n="$requests" \
        'BEGIN { printf "%.1f", t / k * 1e6 / n }')
    busy=$(awk -v t="$cpu0_used" -v k="$ticks" -v a="$started" -v b="$ended" \
        'BEGIN { printf "%.0f", 100 * t / k / (b - a) }')
    echo "$ops $p50 $p99 $per_op $cpu0_per_op $busy" >>"$work/$name.rows"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average (1 5 15 min) at start: $load_before" >&2
# A warm-up that is not counted: upstream connections, buffers, the first segments (3 s at
# 1024 connections: the first wave of 1024 invocations can take over a second).
for kind in peer sync async; do
    run_once "${kind}_warmup" 64 1
    run_once "${kind}_warmup" 1024 3
done
for repeat in $(seq 1 "$repeats"); do
    echo "repeat $repeat/$repeats (load $(cut -d' ' -f1 /proc/loadavg))" >&2
    for connections in $connection_counts; do
        for kind in peer sync async; do run_once "${kind}_$connections" "$connections"; done
    done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
for pid in "$sync_pid" "$async_pid"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done

# median NAME COLUMN: the median of one column over the repeats ("-" stays "-").
median() {
    awk -v c="$2" '{ print $c }' "$work/$1.rows" | sort -g |
        awk '{ v[NR] = $1 }
             END { if (v[1] == "-") { print "-"; exit }
                   print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ======================= 2. memory per queued invocation =======================
echo "memory: filling $queued queued invocations (bound ${fill_bound}s)" >&2
start_mock hang-mock --llm-hang-rate 1 --max-hang-ms 600000
hang_mock_port=$mock_port
engine_config "$work/queue.json" "$hang_mock_port" queue \
    '"max_concurrent": 1, "max_queue": 2000000, "deadline_ms": 3600000' \
    '"limits": {"max_connections": 4096, "max_invocations": 2000000, "drain_timeout_ms": 500},
     "durability": {"namespaces": {"inv": "async"}},' \
    ', "first_byte_timeout_ms": 3600000, "timeout_ms": 3600000'
start_engine queue "$work/queue.json"
queue_pid=$engine_pid
queue_port=$engine_port

# fill-N.lua: N posts without wait, then only GET /healthz until the N answers are in; stops.
fill_script() {
    cat >"$work/fill-$1.lua" <<LUA
local limit = $1
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
    sent = 0; accepted = 0; bad = 0; sample = ""
    post = wrk.format("POST", "/v1/agents/assistant/invocations",
                      {["Content-Type"] = "application/json"}, '{"input": "weather in Paris?"}')
    idle = wrk.format("GET", "/healthz")
end
function request()
    -- wrk calls request() once before any connection, to check the script: not a post
    if not checked then checked = true; return idle end
    if sent < limit then sent = sent + 1; return post end
    return idle
end
function response(status, headers, body)
    if status == 202 then
        accepted = accepted + 1
    elseif status ~= 200 or not body:find('"ok"', 1, true) then
        bad = bad + 1
        if sample == "" then sample = status .. " " .. body:sub(1, 400) end
    end
    if accepted + bad >= limit and not finished then
        -- wrk runs until -d even when its threads stop: the script interrupts it on this file
        finished = true
        io.open("$work/fill.done", "w"):close()
        wrk.thread:stop()
    end
end
function done(summary, latency, requests)
    local a, b, s = 0, 0, ""
    for _, t in ipairs(threads) do
        a = a + t:get("accepted"); b = b + t:get("bad")
        if s == "" then s = t:get("sample") end
    end
    io.write(string.format("counted accepted=%d bad=%d\n", a, b))
    if b > 0 then io.write("first bad answer: " .. s .. "\n") end
end
LUA
}

# fill NAME COUNT BOUND: posts COUNT invocations; sets filled to how many were accepted.
fill() {
    fill_script "$2"
    local out="$work/$1.out" wrk_pid
    rm -f "$work/fill.done"
    taskset -c "$client_cpu" wrk -t1 -c64 -d"${3}s" --timeout 10s \
        -s "$work/fill-$2.lua" "http://127.0.0.1:$queue_port" >"$out" 2>&1 &
    wrk_pid=$!
    while kill -0 "$wrk_pid" 2>/dev/null; do
        [ -e "$work/fill.done" ] && { kill -INT "$wrk_pid"; break; }
        sleep 0.1
    done
    wait "$wrk_pid" || fail "fill $1: wrk failed" "$out" "$work/queue.err"
    kill -0 "$queue_pid" 2>/dev/null || fail "fill $1: the engine died" "$out" "$work/queue.err"
    ! grep -q "first bad answer" "$out" || fail "fill $1: bad answers" "$out" "$work/queue.err"
    filled=$(sed -n 's/^counted accepted=\([0-9]*\) bad=0$/\1/p' "$out")
    [ -n "$filled" ] || fail "fill $1: no count" "$out" "$work/queue.err"
}

# queue_depth: the sum of ringmaster_invocation_queue_depth over agents.
queue_depth() {
    curl -sf "http://127.0.0.1:$queue_port/metrics" |
        awk '/^ringmaster_invocation_queue_depth[{ ]/ { s += $NF } END { printf "%d", s }'
}

# wait_depth EXPECTED: until the queue depth is EXPECTED (10 s at most); prints the depth.
wait_depth() {
    local depth=0
    for _ in $(seq 1 100); do
        depth=$(queue_depth)
        [ "$depth" = "$1" ] && break
        sleep 0.1
    done
    echo "$depth"
}

post_one() {
    curl -sf -m 10 -X POST -H 'Content-Type: application/json' \
        --data-binary '{"input": "weather in Paris?"}' \
        "http://127.0.0.1:$queue_port/v1/agents/assistant/invocations" |
        sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p'
}

# Warm-up: 1000 invocations; the first runs (its LLM call hangs), the rest wait.
running_id=$(post_one)
queued_id=$(post_one)
[ -n "$running_id" ] && [ -n "$queued_id" ] || fail "the first invocations" "$work/queue.err"
fill warmup 998 60
[ "$filled" = 998 ] || fail "warm-up: $filled of 998 accepted" "$work/warmup.out" "$work/queue.err"
depth=$(wait_depth 999)
[ "$depth" = 999 ] || fail "after 1000 invocations the queue depth is $depth, not 999" \
    "$work/queue.err"
curl -sf "http://127.0.0.1:$queue_port/v1/state/inv/$queued_id" >"$work/record.json" ||
    fail "GET /v1/state/inv/$queued_id" "$work/queue.err"
grep -q '"status":"queued"' "$work/record.json" ||
    fail "the record of $queued_id is not queued: $(cat "$work/record.json")"
sleep 1
rss_before=$(rss_kb "$queue_pid")

fill_started=$(date +%s.%N)
fill queued "$queued" "$fill_bound"
accepted=$filled
fill_ended=$(date +%s.%N)
[ "${accepted:-0}" -gt 0 ] || fail "the fill: nothing accepted" "$work/queued.out" "$work/queue.err"
[ "$accepted" = "$queued" ] ||
    echo "WARNING: the fill stopped at its ${fill_bound}s bound after $accepted of $queued"
depth=$(wait_depth $((accepted + 999)))
[ "$depth" = $((accepted + 999)) ] ||
    echo "WARNING: queue depth $depth, expected $((accepted + 999))"
sleep 1
rss_after=$(rss_kb "$queue_pid")
engine_bytes=$(awk -v a="$rss_after" -v b="$rss_before" -v n="$accepted" \
    'BEGIN { printf "%.0f", (a - b) * 1024 / n }')
fill_rate=$(awk -v n="$accepted" -v a="$fill_started" -v b="$fill_ended" \
    'BEGIN { printf "%.0f", n / (b - a) }')
kill "$queue_pid"
wait "$queue_pid" 2>/dev/null || true

# The peer: Redis holding the same records in a list, each with its own 16-hex-digit id.
record=$(cat "$work/record.json")
record_bytes=${#record}
[[ $record == *"$queued_id"* ]] || fail "the record does not hold its id: $record"
prefix=${record%%"$queued_id"*}
suffix=${record#*"$queued_id"}
redis_port=$(free_port)
taskset -c "$server_cpu" redis-server --port "$redis_port" --bind 127.0.0.1 --save "" \
    --appendonly no --dir "$work" --daemonize no --loglevel warning \
    >"$work/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")
for _ in $(seq 1 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
redis_info() { redis-cli -p "$redis_port" INFO memory | tr -d '\r' | sed -n "s/^$1:\([0-9]*\)$/\1/p"; }
redis_used_before=$(redis_info used_memory)
redis_rss_before=$(redis_info used_memory_rss)
push_lua='for i = ARGV[3], ARGV[3] + ARGV[4] - 1 do
  redis.call("RPUSH", KEYS[1], ARGV[1] .. string.format("%016x", i) .. ARGV[2]) end
return redis.call("LLEN", KEYS[1])'
pushed=0
while [ "$pushed" -lt "$accepted" ]; do
    batch=$((accepted - pushed < 100000 ? accepted - pushed : 100000))
    length=$(redis-cli -p "$redis_port" EVAL "$push_lua" 1 invocations "$prefix" "$suffix" \
        "$pushed" "$batch")
    pushed=$((pushed + batch))
    [ "$length" = "$pushed" ] || fail "Redis list length $length after $pushed" "$work/redis.log"
done
sleep 1
redis_used_after=$(redis_info used_memory)
redis_rss_after=$(redis_info used_memory_rss)
redis_bytes=$(awk -v a="$redis_used_after" -v b="$redis_used_before" -v n="$accepted" \
    'BEGIN { printf "%.0f", (a - b) / n }')
redis_rss_bytes=$(awk -v a="$redis_rss_after" -v b="$redis_rss_before" -v n="$accepted" \
    'BEGIN { printf "%.0f", (a - b) / n }')
kill "$redis_pid"
wait "$redis_pid" 2>/dev/null || true

# ======================= the report =======================
printf '\n%-32s %6s %10s %9s %9s %-9s %10s %10s %6s\n' "mode (${seconds}s, x$repeats)" \
    conns "ops/s" "p50 us" "p99 us" latency "engine us" "CPU0 us" "CPU0%"
label() {
    case $1 in
        peer) echo "peer: wrk -> mock, 3 calls" ;;
        sync) echo "engine sync (default)" ;;
        async) echo "engine async (inv, sessions)" ;;
    esac
}
for connections in $connection_counts; do
    for kind in peer sync async; do
        name=${kind}_$connections
        unit=per-inv
        [ "$kind" = peer ] && unit=per-call
        printf '%-32s %6s %10s %9s %9s %-9s %10s %10s %6s\n' "$(label "$kind")" \
            "$connections" "$(median "$name" 1)" "$(median "$name" 2)" "$(median "$name" 3)" \
            "$unit" "$(median "$name" 4)" "$(median "$name" 5)" "$(median "$name" 6)"
    done
done
echo "ops/s: the peer's completed 3-call sequences/s (responses / 3), the engines'"
echo "  invocations/s (each a 200 with 3 steps); latency per call for the peer, per whole"
echo "  invocation for the engines; engine us: the engine's CPU per invocation; CPU0 us:"
echo "  CPU 0's CPU (mock, plus engine) per sequence or invocation; medians of $repeats."
for connections in $connection_counts; do
    peer=$(median "peer_$connections" 1)
    ratios=""
    for kind in sync async; do
        ratios+=$(awk -v a="$(median "${kind}_$connections" 1)" -v b="$peer" -v k="$kind" \
            'BEGIN { printf "  %s %.2fx", k, (b > 0 ? a / b : 0) }')
    done
    echo "ratio at $connections connections, engine invocations/s / peer sequences/s:$ratios"
done
echo
echo "memory per queued invocation ($accepted queued, filled at $fill_rate/s, record" \
    "$record_bytes bytes):"
echo "  engine RSS  $((rss_before / 1024)) MiB -> $((rss_after / 1024)) MiB:" \
    "$engine_bytes bytes per queued invocation"
echo "  Redis list  used_memory $((redis_used_before / 1048576)) MiB ->" \
    "$((redis_used_after / 1048576)) MiB: $redis_bytes bytes per record" \
    "(RSS delta: $redis_rss_bytes bytes per record)"
awk -v a="$engine_bytes" -v b="$redis_bytes" \
    'BEGIN { printf "  ratio engine / Redis used_memory: %.2fx\n", (b > 0 ? a / b : 0) }'
echo
echo "load average (1 5 15 min): $load_before before, $load_after after the rounds;" \
    "servers on CPU $server_cpu, wrk on CPU $client_cpu; $(nproc) CPUs, $(uname -r)," \
    "$(redis-server --version | cut -d' ' -f3)"
for name in sync async queue mock hang-mock; do
    lines=$(wc -l <"$work/$name.err")
    [ "$lines" -le 1 ] || { echo "$name stderr ($lines lines, last 10):"; tail -n 10 "$work/$name.err"; }
done
