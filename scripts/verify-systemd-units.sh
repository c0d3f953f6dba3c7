#!/bin/sh
# Runs `systemd-analyze verify` on packaging/systemd/*.service (issue 15). The units name
# /usr/local/bin/...; here they point at the built binaries (target/debug by default) so
# verify checks the executables too. Any warning fails the check.
set -eu
cd "$(dirname "$0")/.."
bin=${1:-target/debug}
command -v systemd-analyze >/dev/null || { echo "systemd-analyze missing: apt-get install systemd" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for unit in packaging/systemd/*.service; do
    sed "s|/usr/local/bin/|$(pwd)/$bin/|g" "$unit" > "$tmp/$(basename "$unit")"
done
status=0
for unit in "$tmp"/*.service; do
    name=$(basename "$unit")
    case $name in *@.service) target="$tmp/${name%@.service}@check.service"; cp "$unit" "$target"; unit=$target ;; esac
    out=$(systemd-analyze verify "$unit" 2>&1) || status=1
    if [ -n "$out" ]; then echo "$out"; status=1; fi
done
[ $status -eq 0 ] && echo "systemd units verified"
exit $status
