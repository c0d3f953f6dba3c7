#!/usr/bin/env bash
# The README's first command: the main job end to end on the embedded default, with no
# outside service. Starts agent-vault on loopback with a fresh data directory, stores an
# agent's secrets, issues that agent a scoped read token, runs the example agent under
# agent-run, rotates a secret, and shows the agent restarted with the new value.
# Finishes by itself and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --bins
bin=$PWD/target/debug
work=$(mktemp -d)
vault_pid="" run_pid=""
cleanup() {
    [ -n "$run_pid" ] && kill "$run_pid" 2>/dev/null && wait "$run_pid" 2>/dev/null
    [ -n "$vault_pid" ] && kill "$vault_pid" 2>/dev/null && wait "$vault_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
wait_for() { # wait_for FILE PATTERN COUNT: until FILE has COUNT lines matching PATTERN
    for _ in $(seq 1 1000); do
        [ "$(grep -c "$2" "$1" 2>/dev/null || true)" -ge "$3" ] && return 0
        sleep 0.01
    done
    echo "quickstart: timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}
show() { printf '\n$ %s\n' "$*"; }

show "agent-vault init --data-dir DATA  &&  agent-vault serve --data-dir DATA --listen 127.0.0.1:0"
AGENT_VAULT_TOKEN=$("$bin/agent-vault" init --data-dir "$work/data" 2>/dev/null)
export AGENT_VAULT_TOKEN
"$bin/agent-vault" serve --data-dir "$work/data" --listen 127.0.0.1:0 2>"$work/vault.log" &
vault_pid=$!
wait_for "$work/vault.log" "listening on" 1
AGENT_VAULT_ADDR=$(sed -n 's/^agent-vault listening on //p' "$work/vault.log")
export AGENT_VAULT_ADDR
echo "store at $AGENT_VAULT_ADDR"

show "agent-vault secrets set support-bot OPENAI_API_KEY --stdin   (and STRIPE_KEY, REGION --plain)"
printf 'sk-example-0000000000001111' | "$bin/agent-vault" secrets set support-bot OPENAI_API_KEY --stdin
printf 'sk_test_example_22223333' | "$bin/agent-vault" secrets set support-bot STRIPE_KEY --stdin
"$bin/agent-vault" secrets set support-bot REGION --value eu-west-1 --plain
"$bin/agent-vault" secrets list support-bot

show "agent-vault tokens issue --scope 'secrets:read:support-bot/*' --ttl 1h"
AGENT_RUN_TOKEN=$("$bin/agent-vault" tokens issue --scope 'secrets:read:support-bot/*' --ttl 1h 2>/dev/null)
export AGENT_RUN_TOKEN
echo "(a scoped read token for support-bot: ${AGENT_RUN_TOKEN:0:16}...)"

show "agent-run --store \$AGENT_VAULT_ADDR --check"
"$bin/agent-run" --store "$AGENT_VAULT_ADDR" --check

show "agent-run --store \$AGENT_VAULT_ADDR --require OPENAI_API_KEY,STRIPE_KEY -- examples/agent.sh"
"$bin/agent-run" --store "$AGENT_VAULT_ADDR" --require OPENAI_API_KEY,STRIPE_KEY -v -- examples/agent.sh >"$work/agent.out" 2>"$work/agent-run.log" &
run_pid=$!
unset AGENT_RUN_TOKEN
wait_for "$work/agent.out" "started" 1
cat "$work/agent.out"

show "printf NEW | agent-vault secrets set support-bot OPENAI_API_KEY --stdin   (rotation, no redeploy)"
printf 'sk-rotated-9999888877776666' | "$bin/agent-vault" secrets set support-bot OPENAI_API_KEY --stdin
wait_for "$work/agent.out" "started" 2
tail -n 2 "$work/agent.out"
grep -q "OPENAI_API_KEY=\*\*\*\*6666" "$work/agent.out" || { echo "quickstart: the agent did not get the new value" >&2; exit 1; }

show "kill -TERM <agent-run>"
kill -TERM "$run_pid"
wait "$run_pid" && status=0 || status=$?
run_pid=""
echo "agent-run exited with $status (the agent's own exit code)"
show "agent-vault audit --agent support-bot"
"$bin/agent-vault" audit --agent support-bot | tail -n 4
echo
echo "quickstart: ok"
