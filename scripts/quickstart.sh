#!/usr/bin/env bash
# The README's first command: the main job end to end with nothing but this repository.
# Runs the example agent under agent-run with secrets from a dotenv file, rotates a secret,
# and shows the agent restarted with the new value. Finishes by itself and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --bin agent-run
AGENT_RUN=target/debug/agent-run
work=$(mktemp -d)
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

cp examples/agent.env "$work/agent.env"
wait_for() { # wait_for PATTERN COUNT: until the agent's output has COUNT lines matching
    for _ in $(seq 1 500); do
        [ "$(grep -c "$1" "$work/out" 2>/dev/null || true)" -ge "$2" ] && return 0
        sleep 0.02
    done
    echo "quickstart: timed out waiting for '$1'" >&2; cat "$work/out" >&2; exit 1
}

echo "\$ agent-run --env-file agent.env -- examples/agent.sh"
"$AGENT_RUN" -v --env-file "$work/agent.env" -- examples/agent.sh >"$work/out" 2>&1 &
pid=$!
wait_for "agent .* started" 1
grep "agent .* started" "$work/out"

echo "\$ # rotate OPENAI_API_KEY (an atomic rename, as editors and config managers do)"
sed 's/^OPENAI_API_KEY=.*/OPENAI_API_KEY=sk-rotated-9999888877776666/' "$work/agent.env" >"$work/agent.env.new"
mv "$work/agent.env.new" "$work/agent.env"
wait_for "agent .* started" 2
grep -E "agent .* (started|SIGTERM)" "$work/out" | tail -n 2

kill -TERM "$pid"
wait "$pid" && status=0 || status=$?
pid=""
echo "agent-run exited with $status after SIGTERM (the agent's own code)"
grep -q "OPENAI_API_KEY=\*\*\*\*6666" "$work/out" || { echo "quickstart: the agent did not get the new value" >&2; exit 1; }
echo "quickstart: ok"
