#!/usr/bin/env bash
# --mask's cost (issue 16 item 3): throughput of 50 MB of child output (base64 text in
# 76-byte lines, like a log) through agent-run with and without --mask, beside a bare
# `cat`, with 1, 20 and 500 secret values (random alphanumeric, 16 to 64 bytes, so the
# masker tracks many distinct lengths: each value, its four base64 forms); and the
# false-positive rate: 1 GB of random bytes through `--mask` with 500 values must come out
# unchanged (expected false matches ~ N·n·L/2^61 ≈ 1e9·2500·64/2.3e18 ≈ 7e-5).
# Prints tables; raw data and a machine note go to benches/runs/<date-host>/.
# MASK_MB (50), FP_MB (1024) and RUNS (3) override the sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${AGENT_RUN_BIN:-target/release/agent-run}
[ -x "$bin" ] || cargo build --release --bin agent-run >&2
run_dir=benches/runs/$(date -u +%Y-%m-%d)-$(hostname)
mkdir -p "$run_dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

MASK_MB=${MASK_MB:-50} FP_MB=${FP_MB:-1024} RUNS=${RUNS:-3}
head -c $((MASK_MB * 1024 * 1024 * 3 / 4)) /dev/urandom | base64 -w 76 >"$work/output.txt"
truncate -s $((MASK_MB * 1024 * 1024)) "$work/output.txt"
for n in 1 20 500; do
    python3 - "$n" >"$work/values-$n.env" <<'PY'
import random, string, sys
rng = random.SystemRandom()
for i in range(int(sys.argv[1])):
    length = rng.randint(16, 64)
    print(f"MASK_BENCH_{i}=" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length)))
PY
done

python3 - "$bin" "$work" "$run_dir" "$MASK_MB" "$RUNS" <<'PY'
import os, statistics, subprocess, sys, time
bin, work, run_dir, mb, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
data = f"{work}/output.txt"
cases = [("cat (no agent-run)", ["cat", data])]
cases.append(("agent-run, no --mask (20 values)", [bin, "--env-file", f"{work}/values-20.env", "--", "cat", data]))
for n in (1, 20, 500):
    cases.append((f"agent-run --mask, {n} value(s)", [bin, "--mask", "--env-file", f"{work}/values-{n}.env", "--", "cat", data]))
rows, raw = [], ["case,run,seconds,mb_per_s"]
for name, cmd in cases:
    times = []
    for r in range(runs):
        with open(os.devnull, "wb") as sink:
            start = time.perf_counter()
            subprocess.run(cmd, stdout=sink, check=True)
            times.append(time.perf_counter() - start)
        raw.append(f"{name},{r},{times[-1]:.4f},{mb / times[-1]:.1f}")
    med = statistics.median(times)
    rows.append((name, runs, med, mb / med))
open(f"{run_dir}/mask-raw.csv", "w").write("\n".join(raw) + "\n")
out = [f"{mb} MB of base64 text lines, child `cat` to agent-run's stdout (/dev/null), median of {runs}:", "",
       "| case | runs | median (s) | MB/s |", "|---|---|---|---|"]
out += [f"| {n} | {r} | {s:.3f} | {t:.1f} |" for n, r, s, t in rows]
text = "\n".join(out)
print(text)
open(f"{run_dir}/mask-summary.md", "w").write(text + "\n")
PY

# False positives: random bytes in, the same bytes out (cmp), 500 values' fingerprints.
head -c $((FP_MB * 1024 * 1024)) /dev/urandom >"$work/random.bin"
start=$(date +%s%N)
"$bin" --mask --env-file "$work/values-500.env" -- cat "$work/random.bin" >"$work/random.out"
seconds=$(awk -v ns=$(($(date +%s%N) - start)) 'BEGIN { printf "%.1f", ns / 1e9 }')
if cmp -s "$work/random.bin" "$work/random.out"; then changed=0; else changed=$(cmp -l "$work/random.bin" "$work/random.out" 2>/dev/null | wc -l); fi
masks_in=$(grep -o -a -F '****' "$work/random.bin" | wc -l || true)
masks_out=$(grep -o -a -F '****' "$work/random.out" | wc -l || true)
fp=$(printf '| false-positive run | %s MB random bytes, 500 values | %s s | output identical to input: %s (bytes differing: %s; `****` in input %s, in output %s) |\n' \
    "$FP_MB" "$seconds" "$([ "$changed" = 0 ] && echo yes || echo no)" "$changed" "$masks_in" "$masks_out")
echo
echo "| run | input | time | result |"
echo "|---|---|---|---|"
echo "$fp"
echo "$fp" >>"$run_dir/mask-summary.md"
{
    echo "benches/mask.sh on $(hostname), $(date -u +%FT%TZ)"
    echo "kernel: $(uname -r); cpus: $(nproc); load: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "binary: $bin ($(stat -c %s "$bin") bytes)"
} >"$run_dir/mask-README.SETUP"
