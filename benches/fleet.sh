#!/usr/bin/env bash
# Fleet scale on one machine: N (default 300) real agent-run processes, each with a sleeping
# child (examples/test_child stamp: logs "start NANOS KEY=VALUE" with the wall clock at its
# main), all on one agent-vault and all carrying one project variable (`vars`). One write of
# that variable; per launcher, the time from the write's acknowledgement to its new child
# running with the new value; p50/p99/max over the fleet, ROTATIONS times, without and with
# --restart-jitter (JITTER, default 0-5s). The store's CPU time (utime+stime from
# /proc/PID/stat) and RSS are sampled every 50 ms from before the write until the last child.
# TAG (e.g. -run2) is inserted into the output file names, to keep repeated runs apart.
# Prints tables; raw CSV and a machine note go to benches/runs/<date-host>/fleet-*.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-300} ROTATIONS=${ROTATIONS:-3} JITTER=${JITTER:-0-5s}
export N ROTATIONS JITTER
bin=$(bash scripts/build-release.sh)
child=$bin/examples/test_child
run_dir=benches/runs/$(date -u +%Y-%m-%d)-$(hostname)
mkdir -p "$run_dir"
work=$(mktemp -d)
vault_pid=""
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true   # 300 long-polls on one server
cleanup() {
    # Launchers run in a process group each (started by the Python driver, which stops them
    # itself); if it failed half-way, stop the ones it left from their recorded ids.
    [ -f "$work/launchers" ] && while read -r p; do kill -TERM -- "-$p" 2>/dev/null || true; done <"$work/launchers"
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
# One agent with 5 secrets; the project variable every agent carries.
for i in 1 2 3 4 5; do printf 'secret-%d-xxxxxxxxxxxx' "$i" | "$bin/agent-vault" secrets set fleet "SECRET_$i" --stdin >/dev/null; done
"$bin/agent-vault" vars set FLEET_VAR --value initial --plain >/dev/null
export AGENT_RUN_TOKEN
AGENT_RUN_TOKEN=$("$bin/agent-vault" tokens issue --scope 'secrets:read:fleet/*' --ttl 2h 2>/dev/null)

{
    echo "date: $(date -u +%FT%TZ); host: $(hostname), $(nproc) cores, $(awk '/MemTotal/ {print $2" kB"}' /proc/meminfo); kernel $(uname -r)"
    echo "agent-run $(git rev-parse --short HEAD 2>/dev/null), release build (scripts/build-release.sh)"
    echo "agent-vault on loopback; $N agent-run --store, 1 agent (5 secrets) + 1 project var, one read token"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$run_dir/fleet${TAG:-}-README.SETUP"

python3 - "$work" "$run_dir" "$bin/agent-run" "$child" "$vault_pid" <<'PY'
import json, os, signal, statistics, subprocess, sys, threading, time, urllib.request
work, run_dir, AR, CHILD, vpid = sys.argv[1:6]
vpid = int(vpid)
N, ROT, JITTER = int(os.environ["N"]), int(os.environ["ROTATIONS"]), os.environ["JITTER"]
addr, admin = os.environ["AGENT_VAULT_ADDR"], os.environ["AGENT_VAULT_TOKEN"]
TICK = os.sysconf("SC_CLK_TCK")

def cpu_rss(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    cpu = (int(f[11]) + int(f[12])) / TICK
    rss = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:"))
    return cpu, rss

def last_value(i):
    try:
        with open(f"{work}/c{i}.log", "rb") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    return lines[-1].decode() if lines else None

def put_var(value):
    req = urllib.request.Request(f"{addr}/v1/vars/FLEET_VAR", method="PUT",
                                 data=json.dumps({"value": value}).encode(),
                                 headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).read()

rows, load_rows, samples_out = [], [], []
for case, extra in [("no jitter", []), (f"--restart-jitter {JITTER}", ["--restart-jitter", JITTER])]:
    for i in range(N):
        try: os.unlink(f"{work}/c{i}.log")
        except FileNotFoundError: pass
    put_var(f"start-{len(extra)}")
    procs = []
    for i in range(N):
        procs.append(subprocess.Popen([AR, "--store", addr, "-q", *extra, "--", CHILD, "stamp", f"{work}/c{i}.log", "FLEET_VAR"],
                                      stdout=subprocess.DEVNULL, stderr=open(f"{work}/ar.err", "a"), start_new_session=True))
        with open(f"{work}/launchers", "a") as f: f.write(f"{procs[-1].pid}\n")
    deadline = time.time() + 120
    while not all(last_value(i) for i in range(N)):
        assert time.time() < deadline, "not every launcher started its child"
        time.sleep(0.1)
    time.sleep(3)   # every launcher past its watch set-up (long-poll connected)
    idle_cpu, idle_rss = cpu_rss(vpid)
    print(f"  {case}: {N} launchers up; store RSS {idle_rss} KiB", file=sys.stderr)
    for r in range(ROT):
        value = f"rot-{len(extra)}-{r}-{time.time_ns()}"
        samples, stop = [], threading.Event()
        def sample():
            while not stop.is_set():
                samples.append((time.time_ns(), *cpu_rss(vpid))); time.sleep(0.05)
        t = threading.Thread(target=sample); t.start()
        time.sleep(0.2)
        put_var(value)
        acked = time.time_ns()
        pending, lat = set(range(N)), {}
        deadline = time.time() + 60
        while pending:
            assert time.time() < deadline, f"{len(pending)} launchers never restarted"
            for i in list(pending):
                line = last_value(i)
                if line and line.endswith(f"FLEET_VAR={value}"):
                    lat[i] = (int(line.split()[1]) - acked) / 1e6; pending.discard(i)
            time.sleep(0.02)
        time.sleep(0.3); stop.set(); t.join()
        for i in range(N):
            rows.append((case, r, i, lat[i]))
        cpu_used = samples[-1][1] - samples[0][1]
        peak = max(s[2] for s in samples)
        load_rows.append((case, r, cpu_used, samples[0][2], peak, (samples[-1][0] - samples[0][0]) / 1e9))
        samples_out += [(case, r, s[0], s[1], s[2]) for s in samples]
        v = sorted(lat.values())
        print(f"  {case} rotation {r + 1}/{ROT}: p50 {statistics.median(v):.0f} ms, max {v[-1]:.0f} ms; store CPU {cpu_used:.2f} s, RSS peak {peak} KiB", file=sys.stderr)
        time.sleep(6 if extra else 1)
    for p in procs:
        os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        p.wait()

with open(f"{run_dir}/fleet{os.environ.get('TAG', '')}-raw.csv", "w") as f:
    f.write("case,rotation,launcher,ack_to_new_child_ms\n")
    for row in rows: f.write(f"{row[0]},{row[1]},{row[2]},{row[3]:.3f}\n")
with open(f"{run_dir}/fleet{os.environ.get('TAG', '')}-store.csv", "w") as f:
    f.write("case,rotation,unix_ns,store_cpu_s,store_rss_kib\n")
    for s in samples_out: f.write(f"{s[0]},{s[1]},{s[2]},{s[3]:.2f},{s[4]}\n")
def pct(v, q): return v[min(len(v) - 1, int(len(v) * q))]
out = ["| case | rotation | launchers | p50 (ms) | p99 (ms) | max (ms) | store CPU during it (s) | store RSS before → peak (KiB) |",
       "|---|---|---|---|---|---|---|---|"]
for (case, r, cpu, rss0, peak, _) in load_rows:
    v = sorted(x[3] for x in rows if x[0] == case and x[1] == r)
    out.append(f"| {case} | {r + 1} | {len(v)} | {statistics.median(v):.0f} | {pct(v, .99):.0f} | {v[-1]:.0f} | {cpu:.2f} | {rss0} → {peak} |")
table = "\n".join(out)
open(f"{run_dir}/fleet{os.environ.get('TAG', '')}-summary.md", "w").write(table + "\n")
print(table)
PY
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$run_dir/fleet${TAG:-}-README.SETUP"
echo "raw data and machine note: $run_dir/fleet${TAG:-}-*"
