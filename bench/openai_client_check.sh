#!/usr/bin/env bash
# Runs the official OpenAI Node client (npm package "openai", installed into a scratch
# directory from the npm registry) against the gateway: the example engine and the mock, as
# `make run` starts them, on free ports. Not part of `make test`, since it needs the registry.
# Usage: bench/openai_client_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for bin in build/release/ringmaster build/release/ringmaster-mock; do
    [ -x "$bin" ] || { echo "build first: make $bin"; exit 1; }
done
command -v npm >/dev/null || { echo "npm missing: apt-get install npm"; exit 1; }
source bench/common.sh
(cd "$work" && npm install --silent --no-audit --no-fund openai@4 >/dev/null) ||
    { echo "npm install openai failed (is the npm registry reachable?)"; exit 1; }
mock_port=$(free_port)
engine_port=$(free_port)
build/release/ringmaster-mock --listen "127.0.0.1:$mock_port" --threads 1 2>"$work/mock.err" &
pids+=($!)
sed -e "s|127.0.0.1:8089|127.0.0.1:$mock_port|g" -e "s|127.0.0.1:8080|127.0.0.1:$engine_port|" \
    -e "s|./ringmaster-data|$work/data|" bench/examples/agents-mock.json >"$work/config.json"
build/release/ringmaster --config "$work/config.json" 2>"$work/engine.err" &
pids+=($!)
wait_http "$mock_port" /mock/stats
wait_http "$engine_port"
cp bench/openai_client_check.mjs "$work/check.mjs"
(cd "$work" && node check.mjs "http://127.0.0.1:$engine_port/v1")
