#!/usr/bin/env python3
"""Static checks of the recipes in packaging/ (issue 15), run by scripts/test-all.sh.

What the recipes do at run time is tested for real in tests/launcher/packaging.rs (the
container contract, the CI step, the systemd credential); this script checks that the files a
user copies say what those tests assume, and that each parses: the Dockerfiles' final stages
run agent-run/agent-vault as a numeric non-root user, the compose file keeps tokens and keys
in secrets and runs read-only, the CI recipes call `agent-run --once` with the token from the
CI's secret store, and the Kubernetes manifests pass `kubernetes-validate` (which bundles its
schemas: nothing is downloaded). Each failure names the file and what is wrong.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
failures = []


def fail(path, message):
    failures.append(f"{path.relative_to(ROOT)}: {message}")


def final_stage(path):
    """The instructions of the last stage of a Dockerfile (the image `docker build` makes)."""
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            lines = []
        lines.append(line)
    return lines


def check_dockerfile(path, program):
    text = path.read_text()
    if "scripts/build-release.sh" not in text:
        fail(path, "does not build with scripts/build-release.sh (the static release build)")
    stage = final_stage(path)
    if not stage or not re.match(r"FROM\s+scratch\b", stage[0], re.I):
        fail(path, "the final stage is not FROM scratch")
    users = [l.split(None, 1)[1] for l in stage if l.upper().startswith("USER ")]
    if not users or not re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", users[-1]):
        fail(path, f"the final stage's USER must be a numeric non-root uid:gid, not {users}")
    entry = [l for l in stage if l.upper().startswith("ENTRYPOINT ")]
    if not entry or f'"/usr/local/bin/{program}"' not in entry[-1]:
        fail(path, f"the final stage's ENTRYPOINT must be [\"/usr/local/bin/{program}\"]")


def check_compose(path):
    compose = yaml.safe_load(path.read_text())
    services = compose.get("services", {})
    for name in ("agent-vault", "support-bot"):
        if name not in services:
            fail(path, f"no service {name}")
    for name, service in services.items():
        if service.get("read_only") is not True:
            fail(path, f"service {name} is not read_only")
        for key, value in (service.get("environment") or {}).items():
            if "TOKEN" in key and not key.endswith("_FILE"):
                fail(path, f"service {name} passes {key} in the environment: use a secret file")
        for secret in service.get("secrets", []):
            if secret not in compose.get("secrets", {}):
                fail(path, f"service {name} uses undeclared secret {secret}")
    agent = services.get("support-bot", {})
    if (agent.get("environment") or {}).get("AGENT_RUN_TOKEN_FILE") != "/run/secrets/agent-token":
        fail(path, "support-bot must read its token from /run/secrets/agent-token")


STEP = "agent-run --once -- make deploy"


def check_github(path):
    workflow = yaml.safe_load(path.read_text())
    steps = [s for job in workflow.get("jobs", {}).values() for s in job.get("steps", [])]
    deploy = [s for s in steps if s.get("run", "").strip() == STEP]
    if len(deploy) != 1:
        fail(path, f"needs exactly one step running `{STEP}`")
        return
    token = (deploy[0].get("env") or {}).get("AGENT_RUN_TOKEN", "")
    if not re.fullmatch(r"\$\{\{\s*secrets\.[A-Z_]+\s*\}\}", token):
        fail(path, "the deploy step must take AGENT_RUN_TOKEN from ${{ secrets.* }}")


def check_gitlab(path):
    pipeline = yaml.safe_load(path.read_text())
    job = pipeline.get("deploy") or {}
    if STEP not in job.get("script", []):
        fail(path, f"job deploy must run `{STEP}`")
    for scope in (pipeline.get("variables") or {}, job.get("variables") or {}):
        for key in scope:
            if "TOKEN" in key:
                fail(path, f"{key} set in the file: it belongs in the CI/CD settings (File type)")


def check_kubernetes(directory):
    """kubernetes-validate --strict (unknown fields fail), against the oldest Kubernetes the
    manifests promise (1.29, for the projected token's audience and seccompProfile fields) and
    the newest the package bundles; plus what the tests assume of them."""
    tool = shutil.which("kubernetes-validate")
    if tool is None:
        fail(directory, "kubernetes-validate missing: python3 -m pip install kubernetes-validate")
        return
    files = sorted(str(p) for p in directory.glob("*.yaml"))
    for version in (["-k", "1.29.0"], []):
        run = subprocess.run([tool, "--strict", "--quiet", *version, *files],
                             capture_output=True, text=True)
        if run.returncode != 0:
            fail(directory, f"kubernetes-validate {' '.join(version)}:\n{run.stdout}{run.stderr}")
    docs = [d for f in files for d in yaml.safe_load_all(Path(f).read_text()) if d]
    pods = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in docs
            if d["kind"] in ("Deployment", "StatefulSet")}
    agent = pods.get("support-bot")
    if agent is None:
        fail(directory, "agent-pod.yaml has no support-bot Deployment")
    else:
        container = agent["containers"][0]
        if container.get("command") != ["/usr/local/bin/agent-run"]:
            fail(directory, "the agent's container command must be agent-run")
        projected = [v for v in agent["volumes"] if "projected" in v]
        if not any("serviceAccountToken" in s for v in projected for s in v["projected"]["sources"]):
            fail(directory, "the agent pod needs a projected service-account token for OpenBao")
        if not any("secret" in v for v in agent["volumes"]):
            fail(directory, "the agent pod needs a secret volume")
    if "agent-vault" not in pods or not any(d["kind"] == "StatefulSet" and "volumeClaimTemplates"
                                             in d["spec"] for d in docs):
        fail(directory, "agent-vault.yaml needs a StatefulSet with a volumeClaimTemplate")


def main():
    check_dockerfile(PACKAGING / "docker" / "Dockerfile", "agent-run")
    check_dockerfile(PACKAGING / "docker" / "agent-vault.Dockerfile", "agent-vault")
    check_compose(PACKAGING / "docker" / "compose.yaml")
    check_github(PACKAGING / "ci" / "github-actions.yml")
    check_gitlab(PACKAGING / "ci" / "gitlab-ci.yml")
    check_kubernetes(PACKAGING / "kubernetes")
    if failures:
        print("packaging checks failed:", *failures, sep="\n  ", file=sys.stderr)
        return 1
    print("packaging recipes checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
