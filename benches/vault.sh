#!/usr/bin/env bash
# Benchmark of agent-vault on loopback (issue 5, "Benchmark"). Not a timed test.
#
# Builds the release binary and the load generator (examples/vault_load.rs), starts one
# server on 127.0.0.1, seeds one agent with 10 secrets and 5 project variables, then measures:
#   - run-time reads/s with 1, 16 and 64 concurrent clients (5 s each);
#   - 1,000 long-polling waiters, one rotation, time until each waiter answered (p50/p99/all),
#     with the server's RSS before and after the waiters connected;
#   - admin writes/s (1 and 16 concurrent writers; every write is an fsync'd transaction).
# Prints a table and writes vault-raw.csv, vault-summary.txt and vault-README.SETUP (machine note) under
# benches/runs/<date>-<host>/.
#
# Usage: benches/vault.sh            (CARGO_TARGET_DIR is honoured)
set -euo pipefail
cd "$(dirname "$0")/.."
READ_SECONDS=${READ_SECONDS:-5}
WAITERS=${WAITERS:-1000}

release=$(bash scripts/build-release.sh)
BIN=$release/agent-vault
LOAD=$release/examples/vault_load

# Every waiter is a socket on both sides.
ulimit -n "$(ulimit -Hn)"

RUN=benches/runs/$(date +%Y-%m-%d)-$(hostname)
mkdir -p "$RUN"
TMP=$(mktemp -d)
PID=
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

"$BIN" init --data-dir "$TMP/data" --admin-token-file "$TMP/admin" 2>/dev/null
"$BIN" serve --data-dir "$TMP/data" --listen 127.0.0.1:0 2>"$TMP/serve.log" &
PID=$!
ADDR=
for _ in $(seq 1 500); do
  ADDR=$(sed -n 's/^agent-vault listening on //p' "$TMP/serve.log")
  [ -n "$ADDR" ] && break
  sleep 0.01
done
[ -n "$ADDR" ] || { echo "server did not start:" >&2; cat "$TMP/serve.log" >&2; exit 1; }
export AGENT_VAULT_ADDR=$ADDR AGENT_VAULT_TOKEN_FILE=$TMP/admin
ADMIN=$(head -n1 "$TMP/admin")

for i in $(seq 0 9); do
  printf 'bench-secret-value-%02d-xxxxxxxxxxxxxxxx' "$i" | "$BIN" secrets set bench "SECRET_$i" --stdin >/dev/null
done
for i in $(seq 0 4); do
  "$BIN" vars set "SHARED_$i" --value "shared-config-$i" --plain >/dev/null
done
READ=$("$BIN" tokens issue --scope 'secrets:read:bench/*' --ttl 1h 2>/dev/null)

RAW=$RUN/vault-raw.csv
echo "case,n,mean_ms,sd_ms,p50_ms,p99_ms,per_second,extra" >"$RAW"
for c in 1 16 64; do
  "$LOAD" reads "$ADDR" "$READ" "$c" "$READ_SECONDS" >>"$RAW"
done
"$LOAD" waiters "$ADDR" "$READ" "$ADMIN" "$PID" "$WAITERS" >>"$RAW"
"$LOAD" writes "$ADDR" "$ADMIN" 1 300 >>"$RAW"
"$LOAD" writes "$ADDR" "$ADMIN" 16 1000 >>"$RAW"

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(hostname)"
  echo "kernel: $(uname -srm)"
  echo "cpus: $(nproc) x $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)"
  echo "memory: $(sed -n 's/^MemTotal:\s*//p' /proc/meminfo)"
  echo "rustc: $(rustc --version)"
  echo "filesystem of the data dir: $(df -T "${TMPDIR:-/tmp}" | awk 'NR==2 {print $2}')"
  echo "server: release build, default flags, synchronous=FULL, loopback HTTP"
  echo "client: examples/vault_load.rs (tokio + reqwest) on the same machine"
} >"$RUN/vault-README.SETUP"

{
  printf '%-22s %7s %18s %9s %9s %10s  %s\n' case n "mean ± sd (ms)" "p50 ms" "p99 ms" "per sec" extra
  tail -n +2 "$RAW" | while IFS=, read -r name n mean sd p50 p99 rate extra; do
    printf '%-22s %7s %18s %9s %9s %10s  %s\n' "$name" "$n" "$mean ± $sd" "$p50" "$p99" "${rate:--}" "$extra"
  done
} | tee "$RUN/vault-summary.txt"
echo "raw data: $RAW" >&2
