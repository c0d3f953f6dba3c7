#!/usr/bin/env bash
# The shipping build: both programs (and the examples the benchmarks drive) as static-pie
# executables, with SHA256SUMS and a CycloneDX SBOM (agent-run.cdx.json, scripts/sbom.py)
# beside them. Prints the directory they are in. `--version` of both names the git revision
# (build.rs; set AGENT_RUN_GIT_REV to build outside a git checkout).
#
# Why static: a dynamically linked agent-run maps libc, libm and the loader (about 1.6 MB of
# RSS) and resolves their symbols at every start; tini-static exists for the same reason. A
# static glibc normally makes name resolution depend on the host's NSS modules, so reqwest
# resolves names with hickory-dns (it reads /etc/hosts and /etc/resolv.conf itself) and the
# binaries run in any image. `--target` keeps crt-static away from build scripts and
# proc-macros, which must stay dynamic.
#
# AGENT_RUN_RELEASE=DIR reuses a build made earlier in the same job (scripts/test-all.sh
# exports it, so a benchmark run after the tests links nothing again): the binaries in DIR
# are taken as they are, and the script only checks that they are all there.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${AGENT_RUN_RELEASE:-}" ]; then
    for f in agent-run agent-vault examples/test_child examples/vault_load; do
        [ -x "$AGENT_RUN_RELEASE/$f" ] || { echo "AGENT_RUN_RELEASE=$AGENT_RUN_RELEASE has no $f" >&2; exit 1; }
    done
    echo "$AGENT_RUN_RELEASE"
    exit 0
fi
triple=x86_64-unknown-linux-gnu
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --quiet --target "$triple" --bins --example test_child --example vault_load >&2
out="${CARGO_TARGET_DIR:-$PWD/target}/$triple/release"
python3 scripts/sbom.py > "$out/agent-run.cdx.json"
(cd "$out" && sha256sum agent-run agent-vault agent-run.cdx.json > SHA256SUMS)
echo "$out"
