#!/usr/bin/env bash
# Where the time of a long-poll fan-out goes (issue 17, diagnosis of the 10,000-waiter
# miss in benches/vault.sh): the same `vault_load waiters` with 1,000 and 10,000 waiters on a
# fresh agent-vault, sampling the CPU ticks (utime+stime, 10 ms units) of the server and of
# the load process every 20 ms. The last rows of each series cover the fan-out after the
# rotation: compare the server's and the client's tick increase over that window.
# Writes vault-fanout-cpu.txt under benches/runs/<date>-<host>/. Not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
R=$(bash scripts/build-release.sh)
RUN=benches/runs/$(date -u +%Y-%m-%d)-$(hostname)
mkdir -p "$RUN"
BIN=$R/agent-vault; LOAD=$R/examples/vault_load
ulimit -n "$(ulimit -Hn)"
T=$(mktemp -d)
PID=
trap 'if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi; rm -rf "$T"' EXIT
"$BIN" init --data-dir "$T/data" --admin-token-file "$T/admin" 2>/dev/null
"$BIN" serve --data-dir "$T/data" --listen 127.0.0.1:0 2>"$T/serve.log" &
PID=$!
for _ in $(seq 1 500); do ADDR=$(sed -n 's/^agent-vault listening on //p' "$T/serve.log"); [ -n "$ADDR" ] && break; sleep 0.01; done
export AGENT_VAULT_ADDR=$ADDR AGENT_VAULT_TOKEN_FILE=$T/admin
ADMIN=$(head -n1 "$T/admin")
echo x | "$BIN" secrets set bench S0 --stdin >/dev/null
READ=$("$BIN" tokens issue --scope 'secrets:read:bench/*' --ttl 1h 2>/dev/null)
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
{
echo "date: $(date -u +%FT%TZ), load before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
echo "series rows: seconds since sampling began, server ticks, client ticks (10 ms each), rows where either changed"
for n in 1000 10000; do
  "$LOAD" waiters "$ADDR" "$READ" "$ADMIN" "$PID" "$n" > "$T/out" &
  LP=$!
  # sample server and client CPU ticks (10 ms) every 20 ms
  ( while kill -0 $LP 2>/dev/null; do echo "$(date +%s.%N) $(cpu $PID) $(cpu $LP 2>/dev/null || echo -)"; sleep 0.02; done ) > "$T/cpu-$n" &
  SP=$!
  wait $LP; wait $SP || true
  echo "n=$n: $(cat $T/out)"
  echo "  load: $(cut -d' ' -f1-3 /proc/loadavg)"
  tail -n 60 "$T/cpu-$n" | awk 'NR==1{t0=$1;s0=$2;c0=$3} {print $1-t0, $2-s0, $3-c0}' | awk '{ if ($2!=p2 || $3!=p3) print; p2=$2; p3=$3 }' | tail -n 40 | tr '\n' ';'
  echo
done
} | tee "$RUN/vault-fanout-cpu.txt"
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
