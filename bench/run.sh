#!/usr/bin/env bash
# `make run`: the engine with the example agent (bench/examples/). The mock (ringmaster-mock
# on 127.0.0.1:8089) serves the weather tool, and the LLM too unless OPENAI_API_KEY is set, in
# which case the agent talks to OpenAI's API. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
config=bench/examples/agents-mock.json
if [ -n "${OPENAI_API_KEY:-}" ]; then
    config=bench/examples/agents-openai.json
fi
build/release/ringmaster-mock --listen 127.0.0.1:8089 --threads 1 2>/dev/null &
mock=$!
trap 'kill $mock 2>/dev/null; wait $mock 2>/dev/null || true' EXIT
echo "example agent 'assistant' ($config); try:"
echo "  curl -s -X POST localhost:8080/v1/agents/assistant/invocations \\"
echo "       -d '{\"input\": \"What is the weather in Paris?\", \"wait\": 30}'"
build/release/ringmaster --config "$config"
