#!/usr/bin/env bash
# How close the engine's outbound HTTP client (bench/client_bench.c) comes to wrk, both
# driving the same ringmaster-mock in the same run. The mock (one reactor, zero latency) and,
# for TLS, nginx (one worker, terminating TLS 1.2 and proxying to the mock over keep-alive)
# share CPU 0; the load generator, wrk or client-bench with one reactor, runs alone on CPU 1.
# Rounds, interleaved and repeated so that background load hits every round alike:
#   plain   wrk -> mock, then client-bench -> mock, keep-alive
#   tls     wrk -> nginx -> mock, then client-bench -> nginx -> mock, keep-alive
#   handshakes  client-bench, one request per fresh TLS connection: full (an nginx listener
#               with ssl_session_cache off issues no session ids, so nothing can be resumed)
#               and resumed (a listener with a shared session cache; tickets off, so
#               resumption uses session ids, all BearSSL 0.6 supports)
# Every client posts the same chat body (the first turn of mock_ceiling.sh). The table gives
# medians over the repeats: req/s, p50/p99 latency, the client process's CPU per request and
# how busy the server side (mock plus nginx worker, CPU 0) was; then client/wrk ratios.
# Usage: bench/client_vs_mock.sh [seconds (1..10, default 5)] [connections (default 64)]
#                                [repeats (default 3)]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
connections=${2:-64}
repeats=${3:-3}
mock_bin=${RINGMASTER_MOCK:-build/release/ringmaster-mock}
client_bin=${CLIENT_BENCH:-build/release/client-bench}
[[ $seconds =~ ^[0-9]+$ ]] && [ "$seconds" -ge 1 ] && [ "$seconds" -le 10 ] ||
    { echo "seconds must be 1..10"; exit 2; }
[[ $connections =~ ^[0-9]+$ ]] && [ "$connections" -ge 1 ] ||
    { echo "connections must be a positive integer"; exit 2; }
[[ $repeats =~ ^[0-9]+$ ]] && [ "$repeats" -ge 1 ] || { echo "repeats must be >= 1"; exit 2; }
for bin in "$mock_bin" "$client_bin"; do
    [ -x "$bin" ] || { echo "build first: make $bin"; exit 1; }
done
for tool in wrk nginx openssl taskset; do
    command -v "$tool" >/dev/null || { echo "$tool missing: make deps"; exit 1; }
done
source bench/common.sh
ticks=$(getconf CLK_TCK)

# ---- PKI: an EC P-256 CA and a localhost leaf (ECDHE-ECDSA suites) ----
mkdir -p "$work/pki"
(
    cd "$work/pki"
    k() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
    k ca.key
    k leaf.key
    openssl req -x509 -new -key ca.key -subj /CN=rm-bench-ca -days 2 -out ca.crt
    openssl req -new -key leaf.key -subj /CN=localhost -out leaf.csr
    printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n' >leaf.ext
    openssl x509 -req -in leaf.csr -CA ca.crt -CAkey ca.key -set_serial 1 -days 2 \
        -extfile leaf.ext -out leaf.crt
) >"$work/pki.log" 2>&1 || { echo "PKI generation failed:"; cat "$work/pki.log"; exit 1; }

# ---- the mock ----
taskset -c "$server_cpu" "$mock_bin" --listen 127.0.0.1:0 --threads 1 2>"$work/mock.err" &
mock_pid=$!
pids+=("$mock_pid")
mock_port=""
for _ in $(seq 1 100); do
    mock_port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$work/mock.err")
    [ -n "$mock_port" ] && break
    sleep 0.05
done
[ -n "$mock_port" ] || { echo "the mock did not start:"; cat "$work/mock.err"; exit 1; }

# ---- nginx: TLS in front of the mock ----
tls_port=$(free_port)
full_port=$(free_port)
mkdir -p "$work/nginx"
proxy="location / { proxy_pass http://mock; proxy_http_version 1.1;
        proxy_set_header Connection \"\"; }"
cat >"$work/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    upstream mock {
        server 127.0.0.1:$mock_port;
        keepalive 256;
        keepalive_requests 100000000;
    }
    ssl_certificate $work/pki/leaf.crt;
    ssl_certificate_key $work/pki/leaf.key;
    ssl_protocols TLSv1.2;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256;
    ssl_session_tickets off;
    server {
        listen 127.0.0.1:$tls_port ssl;
        ssl_session_cache shared:SSL:10m;
        $proxy
    }
    server {
        listen 127.0.0.1:$full_port ssl;
        ssl_session_cache off;
        $proxy
    }
}
NGINX
taskset -c "$server_cpu" nginx -p "$work/nginx" -e "$work/nginx/error.log" \
    -c "$work/nginx/nginx.conf" 2>"$work/nginx/start.err" &
nginx_pid=$!
pids+=("$nginx_pid")
for _ in $(seq 1 100); do
    curl -sk -o /dev/null "https://127.0.0.1:$tls_port/mock/stats" && break
    kill -0 "$nginx_pid" 2>/dev/null || { echo "nginx failed:"; cat "$work/nginx/start.err" \
        "$work/nginx/error.log"; exit 1; }
    sleep 0.05
done
curl -skf -o /dev/null "https://127.0.0.1:$tls_port/mock/stats" ||
    { echo "nginx did not come up"; cat "$work/nginx/error.log"; exit 1; }

# ---- the body and the wrk script ----
tools='"tools":[{"type":"function","function":{"name":"search","parameters":'
tools+='{"type":"object","properties":{"query":{"type":"string"}}}}}]'
question='{"role":"user","content":"What is the weather in Paris?"}'
printf '%s' '{"model":"gpt-mock","messages":['"$question"'],'"$tools"'}' >"$work/body.json"
escaped=$(sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' "$work/body.json")
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench"
wrk.body = "$escaped"
LUA

# CPU ticks used so far by the server side: the mock and nginx's worker(s).
server_ticks() {
    local total=0 pid fields
    for pid in "$mock_pid" $(pgrep -P "$nginx_pid" || true); do
        read -r -a fields <"/proc/$pid/stat" || continue
        total=$((total + fields[13] + fields[14]))
    done
    echo "$total"
}

# run_once NAME COMMAND...: one run of the load generator on the client CPU; appends to
# $work/NAME.rows one line "req/s p50_us p99_us cpu_us_per_request server_cpu_percent".
run_once() {
    local name=$1 out="$work/$1.out" before after started ended cpu rps p50 p99 requests
    shift
    before=$(server_ticks)
    started=$(date +%s.%N)
    /usr/bin/time -f '%U %S' -o "$work/$name.time" taskset -c "$client_cpu" "$@" \
        >"$out" 2>&1 || return 1
    ended=$(date +%s.%N)
    after=$(server_ticks)
    cpu=$(awk '{ print $1 + $2 }' "$work/$name.time")
    if [ "$1" = wrk ]; then
        ! grep -q "Non-2xx\|Socket errors" "$out" || return 1
        rps=$(awk '/^Requests\/sec/ { print $2 }' "$out")
        p50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$out")")
        p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$out")")
        requests=$(awk '/requests in/ { print $1 }' "$out")
    else
        rps=$(sed -n 's/.* requests_per_s=\([0-9]*\).*/\1/p' "$out")
        p50=$(sed -n 's/.* p50_us=\([0-9.]*\).*/\1/p' "$out")
        p99=$(sed -n 's/.* p99_us=\([0-9.]*\).*/\1/p' "$out")
        requests=$(sed -n 's/.* requests=\([0-9]*\).*/\1/p' "$out")
    fi
    local per_request busy
    per_request=$(awk -v c="$cpu" -v n="$requests" 'BEGIN { printf "%.1f", c * 1e6 / n }')
    busy=$(awk -v t=$((after - before)) -v k="$ticks" -v a="$started" -v b="$ended" \
        'BEGIN { printf "%.0f", 100 * t / k / (b - a) }')
    echo "$rps $p50 $p99 $per_request $busy" >>"$work/$name.rows"
}

# measure NAME COMMAND...: run_once, retried up to four times when the run fails (a crash of
# the load generator); every failure is kept in $work/failures.log and listed at the end.
measure() {
    for attempt in 1 2 3 4 5; do
        run_once "$@" && return 0
        { echo "round $1, attempt $attempt:"; tail -3 "$work/$1.out"; } >>"$work/failures.log"
    done
    echo "round $1 failed five times:"
    cat "$work/$1.out"
    exit 1
}

wrk_run=(wrk -t1 -c"$connections" -d"${seconds}s" --latency -s "$work/post.lua")
client_run=("$client_bin" --seconds "$seconds" --connections "$connections"
            --body-file "$work/body.json")
tls_url="https://localhost:$tls_port"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for repeat in $(seq 1 "$repeats"); do
    echo "repeat $repeat/$repeats (load $(cut -d' ' -f1 /proc/loadavg))" >&2
    measure wrk_plain "${wrk_run[@]}" "http://127.0.0.1:$mock_port/v1/chat/completions"
    measure client_plain "${client_run[@]}" "http://127.0.0.1:$mock_port"
    measure wrk_tls "${wrk_run[@]}" "$tls_url/v1/chat/completions"
    measure client_tls "${client_run[@]}" --ca "$work/pki/ca.crt" "$tls_url"
    measure hs_full "${client_run[@]}" --ca "$work/pki/ca.crt" --handshakes full \
        "https://localhost:$full_port"
    measure hs_resumed "${client_run[@]}" --ca "$work/pki/ca.crt" --handshakes resumed \
        "$tls_url"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# median NAME COLUMN: the median of one column over the repeats.
median() {
    awk -v c="$2" '{ print $c }' "$work/$1.rows" | sort -g |
        awk '{ v[NR] = $1 }
             END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

printf '\n%-34s %10s %9s %9s %13s %11s\n' "round ($connections conns, ${seconds}s, x$repeats)" \
    "req/s" "p50 us" "p99 us" "client us/req" "server CPU%"
for row in "wrk_plain:wrk -> mock (ceiling)" "client_plain:client-bench -> mock" \
    "wrk_tls:wrk -> nginx TLS -> mock" "client_tls:client-bench -> nginx TLS" \
    "hs_full:handshakes full (new conn)" "hs_resumed:handshakes resumed (new conn)"; do
    name=${row%%:*}
    printf '%-34s %10s %9s %9s %13s %11s\n' "${row#*:}" "$(median "$name" 1)" \
        "$(median "$name" 2)" "$(median "$name" 3)" "$(median "$name" 4)" "$(median "$name" 5)"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
echo
echo "plain: client/wrk = $(ratio "$(median client_plain 1)" "$(median wrk_plain 1)")"
echo "TLS:   client/wrk = $(ratio "$(median client_tls 1)" "$(median wrk_tls 1)")"
echo "handshakes/s: full $(median hs_full 1), resumed $(median hs_resumed 1)," \
    "resumed/full = $(ratio "$(median hs_resumed 1)" "$(median hs_full 1)")"
echo "load average (1 5 15 min): $load_before before, $load_after after;" \
    "server side on CPU $server_cpu, load generators on CPU $client_cpu"
# The connections and handshake kinds the client counted in the last repeat.
for name in hs_full hs_resumed; do
    tr ' ' '\n' <"$work/$name.out" |
        grep -E '^(mode|requests|connections_opened|handshakes_full|handshakes_resumed)=' |
        paste -sd' '
done
if [ -s "$work/failures.log" ]; then
    echo "runs that failed and were repeated ($(grep -c '^round' "$work/failures.log")):"
    cat "$work/failures.log"
fi
