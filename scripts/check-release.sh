#!/usr/bin/env bash
# Checks a release directory made by scripts/build-release.sh (issue 15): SHA256SUMS matches
# the files, the SBOM is valid CycloneDX 1.5 listing every direct dependency, both binaries
# are static and their --version names the git revision they were built from; then
# `cargo deny` on licences, bans and sources (deny.toml). Takes seconds: it reuses the build.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: check-release.sh RELEASE_DIR}

(cd "$dir" && sha256sum --check --quiet SHA256SUMS)
for f in agent-run agent-vault agent-run.cdx.json; do
    grep -q "  $f\$" "$dir/SHA256SUMS" || { echo "SHA256SUMS does not list $f" >&2; exit 1; }
done
python3 scripts/sbom.py --check "$dir/agent-run.cdx.json"

rev=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
for bin in agent-run agent-vault; do
    ! readelf -lW "$dir/$bin" | grep -q 'program interpreter' ||
        { echo "$bin is dynamically linked (it has a program interpreter)" >&2; exit 1; }
    got=$("$dir/$bin" --version)
    [ "$got" = "$bin $version (rev $rev)" ] ||
        { echo "$bin --version printed '$got', expected '$bin $version (rev $rev)'" >&2; exit 1; }
done
echo "release in $dir checked (SHA256SUMS, SBOM, static, --version $version (rev $rev))"

# Advisories need a database fetched from the network, which this environment cannot reach:
# the release pipeline runs `cargo deny check advisories` (see deny.toml).
cargo deny --locked check --hide-inclusion-graph licenses bans sources
