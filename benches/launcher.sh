#!/usr/bin/env bash
# Launcher start-up overhead and supervisor memory, side by side in one run:
#   start-to-exit of `true` alone, under tini, dumb-init, and agent-run (no source,
#   a 20-key dotenv file, a 500-key one); RSS and PSS of each supervisor while its child sleeps.
# Prints a table of medians and the overhead ratios, and keeps the raw data and a machine
# note under benches/runs/<date-host>/. Installs hyperfine, tini and dumb-init if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in hyperfine tini dumb-init; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
release=$(bash scripts/build-release.sh)
AR=$release/agent-run
TRUE=$(command -v true)
SLEEP=$(command -v sleep)

run_dir=benches/runs/$(date -u +%Y-%m-%d)-$(hostname)
mkdir -p "$run_dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for n in 20 500; do
    for i in $(seq 1 "$n"); do printf 'SECRET_%d=%s\n' "$i" "$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"; done >"$work/$n.env"
done

runs=${RUNS:-300}
hyperfine -N --warmup 20 --runs "$runs" --export-json "$run_dir/launcher-start.json" \
    -n "true" "$TRUE" \
    -n "tini" "tini -s -- $TRUE" \
    -n "dumb-init" "dumb-init -- $TRUE" \
    -n "agent-run (no source)" "$AR -- $TRUE" \
    -n "agent-run (20-key .env)" "$AR --env-file $work/20.env -- $TRUE" \
    -n "agent-run (500-key .env)" "$AR --env-file $work/500.env -- $TRUE" \
    >"$run_dir/launcher-hyperfine.log" 2>&1

# Memory of each supervisor while its child sleeps.
memory() { # name command...
    local name=$1; shift
    "$@" &
    local pid=$!
    for _ in $(seq 1 200); do [ -n "$(cat /proc/$pid/task/*/children 2>/dev/null)" ] && break; sleep 0.01; done
    sleep 0.2
    local rss pss
    rss=$(awk '/^Rss:/ {print $2}' /proc/$pid/smaps_rollup)
    pss=$(awk '/^Pss:/ {print $2}' /proc/$pid/smaps_rollup)
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    echo "$name,$rss,$pss"
}
{
    echo "supervisor,rss_kib,pss_kib"
    memory "tini" tini -s -- "$SLEEP" 30
    memory "dumb-init" dumb-init -- "$SLEEP" 30
    memory "agent-run (no source)" "$AR" -- "$SLEEP" 30
    memory "agent-run (20-key .env)" "$AR" --env-file "$work/20.env" -- "$SLEEP" 30
    memory "agent-run (500-key .env)" "$AR" --env-file "$work/500.env" -- "$SLEEP" 30
} >"$run_dir/launcher-memory.csv"

{
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(hostname), $(nproc) cores, $(awk '/MemTotal/ {print $2" kB"}' /proc/meminfo)"
    echo "kernel: $(uname -r)"
    echo "cpu: $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "agent-run: $(git rev-parse --short HEAD 2>/dev/null || echo unknown), static-pie release build (scripts/build-release.sh)"
    echo "tools: $(hyperfine --version), tini $(tini --version | awk '{print $3}'), dumb-init $(dumb-init --version 2>&1 | awk '{print $2}')"
    echo "runs: $runs per case (hyperfine -N --warmup 20)"
} >"$run_dir/launcher-README.SETUP"

python3 - "$run_dir" <<'PY'
import csv, json, statistics, sys
run_dir = sys.argv[1]
results = json.load(open(f"{run_dir}/launcher-start.json"))["results"]
with open(f"{run_dir}/launcher-raw.csv", "w") as raw:
    raw.write("case,run,seconds\n")
    for r in results:
        for i, t in enumerate(r["times"]):
            raw.write(f"{r['command']},{i},{t:.9f}\n")
med = {r["command"]: statistics.median(r["times"]) * 1000 for r in results}
base = med["true"]
tini_over = med["tini"] - base
lines = ["| case | n | median (ms) | mean ± sd (ms) | p99 (ms) | overhead over `true` (ms) | overhead / tini's |",
         "|---|---|---|---|---|---|---|"]
for r in results:
    t = sorted(x * 1000 for x in r["times"])
    p99 = t[min(len(t) - 1, int(len(t) * 0.99))]
    over = med[r["command"]] - base
    ratio = f"{over / tini_over:.2f}x" if r["command"] not in ("true", "tini") and tini_over > 0 else "-"
    lines.append(f"| {r['command']} | {len(t)} | {med[r['command']]:.3f} | {statistics.mean(t):.3f} ± {statistics.stdev(t):.3f} | {p99:.3f} | {over:+.3f} | {ratio} |")
lines += ["", "| supervisor (child sleeping) | RSS (KiB) | PSS (KiB) |", "|---|---|---|"]
for row in csv.DictReader(open(f"{run_dir}/launcher-memory.csv")):
    lines.append(f"| {row['supervisor']} | {row['rss_kib']} | {row['pss_kib']} |")
table = "\n".join(lines)
open(f"{run_dir}/launcher-summary.md", "w").write(table + "\n")
print(table)
PY
echo
echo "raw data and machine note: $run_dir/"
