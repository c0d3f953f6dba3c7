#!/usr/bin/env bash
# Two builds of agent-run side by side in one run, for a change that must not cost anything
# (a refactor): start-to-exit of `true` under each, with no source, a 20-key and a 500-key
# dotenv file, and each supervisor's RSS/PSS while its child sleeps. The cases alternate in
# one hyperfine run, so machine noise hits both builds alike; read the ratio column.
#
#   bash benches/compare-builds.sh BEFORE_DIR AFTER_DIR
#
# Each DIR holds a release `agent-run` (as scripts/build-release.sh makes it). Prints a table;
# raw data goes under benches/runs/<date-host>/compare-*.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: $0 BEFORE_DIR AFTER_DIR" >&2; exit 2; }
before=$1/agent-run
after=$2/agent-run
for bin in "$before" "$after"; do [ -x "$bin" ] || { echo "no agent-run at $bin" >&2; exit 2; }; done
command -v hyperfine >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null; }
TRUE=$(command -v true)
SLEEP=$(command -v sleep)

run_dir=benches/runs/$(date -u +%Y-%m-%d)-$(hostname)
mkdir -p "$run_dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for n in 20 500; do
    for i in $(seq 1 "$n"); do printf 'SECRET_%d=%s\n' "$i" "$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"; done >"$work/$n.env"
done

cases=("no source|" "20-key .env|--env-file $work/20.env" "500-key .env|--env-file $work/500.env")
args=()
for c in "${cases[@]}"; do
    name=${c%%|*} flags=${c#*|}
    args+=(-n "before ($name)" "$before $flags -- $TRUE" -n "after ($name)" "$after $flags -- $TRUE")
done
hyperfine -N --warmup 20 --runs "${RUNS:-300}" --export-json "$run_dir/compare-start.json" \
    -n "true" "$TRUE" "${args[@]}" >"$run_dir/compare-hyperfine.log" 2>&1

rss_pss() { # command... -> "rss pss" in KiB while its child sleeps
    "$@" &
    local pid=$!
    for _ in $(seq 1 200); do [ -n "$(cat /proc/$pid/task/*/children 2>/dev/null)" ] && break; sleep 0.01; done
    sleep 0.2
    awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} END {print r, p}' /proc/$pid/smaps_rollup
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}

python3 - "$run_dir/compare-start.json" >"$run_dir/compare-summary.md" <<'EOF'
import json, statistics, sys
results = {r["command"]: statistics.median(r["times"]) * 1000 for r in json.load(open(sys.argv[1]))["results"]}
base = results.pop("true")
print(f"| case | before (ms) | after (ms) | after/before overhead over `true` ({base:.3f} ms) |")
print("|---|---|---|---|")
for name in ["no source", "20-key .env", "500-key .env"]:
    b, a = results[f"before ({name})"], results[f"after ({name})"]
    print(f"| {name} | {b:.3f} | {a:.3f} | {(a - base) / (b - base):.2f}x |")
EOF
{
    echo
    echo "| case | before RSS / PSS (KiB) | after RSS / PSS (KiB) |"
    echo "|---|---|---|"
    for c in "${cases[@]}"; do
        name=${c%%|*} flags=${c#*|}
        # shellcheck disable=SC2086
        read -r br bp < <(rss_pss "$before" $flags -- "$SLEEP" 30)
        # shellcheck disable=SC2086
        read -r ar ap < <(rss_pss "$after" $flags -- "$SLEEP" 30)
        echo "| $name | $br / $bp | $ar / $ap |"
    done
} >>"$run_dir/compare-summary.md"
cat "$run_dir/compare-summary.md"
