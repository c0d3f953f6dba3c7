#!/usr/bin/env bash
# Rotation latency with the agent-vault source: from "store write acknowledged" to "new
# child running with the new value" (the child stamps the wall clock at the top of main),
# over ROTATIONS rotations; beside it, the child's own start time measured alone, and
# agent-run's start-to-child time with the store source vs. a dotenv file.
# Prints tables; raw data and a machine note go to benches/runs/<date-host>/.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null; }
bin=$(bash scripts/build-release.sh)
child=$bin/examples/test_child
run_dir=benches/runs/$(date -u +%Y-%m-%d)-$(hostname)
mkdir -p "$run_dir"
work=$(mktemp -d)
vault_pid="" run_pid=""
cleanup() {
    [ -n "$run_pid" ] && kill "$run_pid" 2>/dev/null && wait "$run_pid" 2>/dev/null
    [ -n "$vault_pid" ] && kill "$vault_pid" 2>/dev/null && wait "$vault_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

export AGENT_VAULT_TOKEN
AGENT_VAULT_TOKEN=$("$bin/agent-vault" init --data-dir "$work/data" 2>/dev/null)
"$bin/agent-vault" serve --data-dir "$work/data" --listen 127.0.0.1:0 2>"$work/vault.log" &
vault_pid=$!
for _ in $(seq 1 500); do grep -q "listening on" "$work/vault.log" && break; sleep 0.01; done
export AGENT_VAULT_ADDR
AGENT_VAULT_ADDR=$(sed -n 's/^agent-vault listening on //p' "$work/vault.log")
printf 'initial-value-0000' | "$bin/agent-vault" secrets set bench API_KEY --stdin >/dev/null
for i in $(seq 1 19); do printf 'filler-%04d-xxxxxxxx' "$i" | "$bin/agent-vault" secrets set bench "FILLER_$i" --stdin >/dev/null; done
token=$("$bin/agent-vault" tokens issue --scope 'secrets:read:bench/*' --ttl 1h 2>/dev/null)

AGENT_RUN_TOKEN=$token "$bin/agent-run" --store "$AGENT_VAULT_ADDR" -- "$child" stamp "$work/stamps.log" API_KEY 2>"$work/agent-run.log" &
run_pid=$!

ROTATIONS=${ROTATIONS:-120} python3 - "$work/stamps.log" "$run_dir/rotation-raw.csv" <<'PY'
import json, os, statistics, sys, time, urllib.request
log, raw = sys.argv[1], sys.argv[2]
addr, admin, n = os.environ["AGENT_VAULT_ADDR"], os.environ["AGENT_VAULT_TOKEN"], int(os.environ["ROTATIONS"])
def lines():
    try:
        return open(log).read().splitlines()
    except FileNotFoundError:
        return []
deadline = time.time() + 20
while not lines():
    assert time.time() < deadline, "first child never started"
    time.sleep(0.005)
time.sleep(0.3)  # past the launcher's watch set-up
rows = []
for i in range(n):
    value = f"rotated-{i:04d}-{time.time_ns()}"
    req = urllib.request.Request(f"{addr}/v1/agents/bench/secrets/API_KEY", method="PUT",
                                 data=json.dumps({"value": value}).encode(),
                                 headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
    sent = time.time_ns()
    urllib.request.urlopen(req).read()
    acked = time.time_ns()
    deadline = time.time() + 20
    while True:
        hit = [l for l in lines() if l.endswith(f"API_KEY={value}")]
        if hit:
            started = int(hit[0].split()[1])
            break
        assert time.time() < deadline, f"rotation {i} never arrived"
        time.sleep(0.001)
    rows.append((i, (acked - sent) / 1e6, (started - acked) / 1e6))
    time.sleep(0.05)
with open(raw, "w") as f:
    f.write("rotation,write_rtt_ms,ack_to_new_child_ms\n")
    for r in rows:
        f.write(f"{r[0]},{r[1]:.3f},{r[2]:.3f}\n")
lat = sorted(r[2] for r in rows)
p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
print(f"| rotation: write acked -> new child running | {len(lat)} | {statistics.median(lat):.2f} | {statistics.mean(lat):.2f} ± {statistics.stdev(lat):.2f} | {p99:.2f} |")
PY
kill -TERM "$run_pid"; wait "$run_pid" 2>/dev/null || true; run_pid=""

# The child's own start, alone; and agent-run's start-to-child with each source.
for i in $(seq 1 20); do printf 'SECRET_%d=%s\n' "$i" "$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"; done >"$work/20.env"
export AGENT_RUN_TOKEN=$token
hyperfine -N --warmup 10 --runs "${RUNS:-100}" --export-json "$work/start.json" \
    -n "child alone (test_child noop)" "$child noop" \
    -n "agent-run, 20-key .env" "$bin/agent-run --env-file $work/20.env -- $child noop" \
    -n "agent-run, store (20 keys)" "$bin/agent-run --store $AGENT_VAULT_ADDR -- $child noop" >/dev/null 2>&1
python3 - "$work/start.json" <<'PY'
import json, statistics, sys
for r in json.load(open(sys.argv[1]))["results"]:
    t = sorted(x * 1000 for x in r["times"])
    p99 = t[min(len(t) - 1, int(len(t) * 0.99))]
    print(f"| start to exit: {r['command']} | {len(t)} | {statistics.median(t):.2f} | {statistics.mean(t):.2f} ± {statistics.stdev(t):.2f} | {p99:.2f} |")
PY
cp "$work/start.json" "$run_dir/rotation-start.json"
{
    echo "date: $(date -u +%FT%TZ); host: $(hostname), $(nproc) cores; kernel $(uname -r)"
    echo "agent-run $(git rev-parse --short HEAD 2>/dev/null), release; agent-vault on loopback, synchronous=FULL"
} >"$run_dir/rotation-README.SETUP"
