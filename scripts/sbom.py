#!/usr/bin/env python3
"""The release's SBOM: a CycloneDX 1.5 JSON document of what is built into agent-run and
agent-vault, made from `cargo metadata` (the resolved graph for the release target) and
Cargo.lock (each crate's SHA-256). scripts/build-release.sh writes it beside the binaries.

Why not `cargo cyclonedx`: installing it means building cargo itself from source, far longer
than the few minutes a CI run may spend on it; this script needs only python3 and cargo.
The crates linked into the binaries (normal dependencies) have scope "required"; crates used
only to build them (proc-macros and what they use, build scripts' dependencies) are listed
with scope "excluded"; dev-dependencies are left out.

    python3 scripts/sbom.py > agent-run.cdx.json     # write
    python3 scripts/sbom.py --check agent-run.cdx.json
        # validate against the CycloneDX 1.5 schema (cyclonedx-python-lib, which bundles it)
        # and check every direct dependency of Cargo.toml is in it
"""

import json
import os
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = "x86_64-unknown-linux-gnu"


def purl(package):
    return f"pkg:cargo/{package['name']}@{package['version']}"


def spdx(expression):
    # Cargo still accepts the old "MIT/Apache-2.0" form, which is not an SPDX expression.
    return " OR ".join(part.strip() for part in expression.split("/"))


def generate():
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked",
             "--filter-platform", TARGET],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout
    )
    lock = tomllib.loads((ROOT / "Cargo.lock").read_text())
    checksums = {(p["name"], p["version"]): p.get("checksum") for p in lock["package"]}
    packages = {p["id"]: p for p in metadata["packages"]}
    nodes = {n["id"]: n for n in metadata["resolve"]["nodes"]}
    root = metadata["resolve"]["root"]

    def proc_macro(pid):
        return any("proc-macro" in t["kind"] for t in packages[pid]["targets"])

    def reachable(kinds, into_proc_macros):
        seen, stack = {root}, [root]
        while stack:
            for dep in nodes[stack.pop()]["deps"]:
                if not into_proc_macros and proc_macro(dep["pkg"]):
                    continue
                if any(k["kind"] in kinds for k in dep["dep_kinds"]) and dep["pkg"] not in seen:
                    seen.add(dep["pkg"])
                    stack.append(dep["pkg"])
        return seen

    linked = reachable({None}, into_proc_macros=False)
    built = reachable({None, "build"}, into_proc_macros=True)

    def component(pid, scope=None):
        package = packages[pid]
        c = {"type": "library", "bom-ref": purl(package), "name": package["name"],
             "version": package["version"], "purl": purl(package)}
        if scope:
            c["scope"] = scope
        if package.get("license"):
            c["licenses"] = [{"expression": spdx(package["license"])}]
        checksum = checksums.get((package["name"], package["version"]))
        if checksum:
            c["hashes"] = [{"alg": "SHA-256", "content": checksum}]
        return c

    app = component(root)
    app["type"] = "application"
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
    components = [component(pid, "required" if pid in linked else "excluded")
                  for pid in sorted(built - {root}, key=lambda p: purl(packages[p]))]
    dependencies = [
        {"ref": purl(packages[pid]),
         "dependsOn": sorted({purl(packages[d["pkg"]]) for d in nodes[pid]["deps"]
                              if d["pkg"] in built
                              and any(k["kind"] in (None, "build") for k in d["dep_kinds"])})}
        for pid in sorted(built, key=lambda p: purl(packages[p]))
    ]
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)),
            "tools": {"components": [{"type": "application", "name": "scripts/sbom.py"}]},
            "component": app,
        },
        "components": components,
        "dependencies": dependencies,
    }


def check(path):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = Path(path).read_text()
    error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
    if error is not None:
        message = getattr(error.data, "message", str(error.data))
        sys.exit(f"{path}: not a valid CycloneDX 1.5 document: {message}")
    bom = json.loads(text)
    names = {c["name"] for c in bom["components"] if c.get("scope") == "required"}
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    missing = sorted(set(manifest["dependencies"]) - names)
    if missing:
        sys.exit(f"{path}: direct dependencies missing from the SBOM: {', '.join(missing)}")
    print(f"{path}: CycloneDX 1.5, {len(bom['components'])} components")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--check"] and len(sys.argv) == 3:
        check(sys.argv[2])
    elif len(sys.argv) == 1:
        json.dump(generate(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.exit("usage: sbom.py [--check FILE]")
