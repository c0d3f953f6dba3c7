#!/usr/bin/env python3
"""ARCHITECTURE.md's code map and src/ must agree, both ways.

1. Every source file is on the map: `src/x/y.rs` is named as `x/y.rs` (or `src/x/y.rs`, or,
   inside its folder's entry, as `y.rs`); a folder's `mod.rs` as `x/`; a root module
   (`sys.rs`, `exit.rs`) as `sys`/`exit`.
2. Every path the map names exists: each backticked `a/b.rs`, `a/b/` or `b.rs` that looks
   like a module of src/ must be a file or folder there (tests/, docs/, packaging/, sdk/ … are
   checked against the repository root instead).

Prints what disagrees and exits 1; silent and 0 when both hold.
"""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
src = root / "src"
text = (root / "ARCHITECTURE.md").read_text()
named = set(re.findall(r"`([^`\s]+)`", text))

files = sorted(p.relative_to(src).as_posix() for p in src.rglob("*.rs"))
basenames = {f.rsplit("/", 1)[-1] for f in files}
folders = {p.relative_to(src).as_posix() + "/" for p in src.rglob("*") if p.is_dir()}

problems = []
for f in files:
    if f == "lib.rs":
        continue
    folder, _, base = f.rpartition("/")
    candidates = {f, "src/" + f}
    if base == "mod.rs":
        candidates |= {folder + "/", "src/" + folder + "/"}
    elif folder:
        # `y.rs` alone counts when the map names its folder too (it is that folder's entry).
        if base in named and (folder + "/") in named:
            continue
    else:
        candidates.add(base[: -len(".rs")])
    if not candidates & named:
        problems.append(f"src/{f} is not on the code map (name it as `{f}`)")

other_roots = ("tests/", "docs/", "packaging/", "examples/", "benches/", "scripts/", ".ci/", "sdk/")
for name in sorted(named):
    if not re.fullmatch(r"[A-Za-z0-9_./-]+(\.rs|/)", name) or "://" in name or name == "src/":
        continue
    if name.startswith(other_roots):
        if not (root / name).exists():
            problems.append(f"ARCHITECTURE.md names {name}, which does not exist")
        continue
    path = name[len("src/"):] if name.startswith("src/") else name
    if path.endswith("/"):
        ok = path in folders
    elif "/" in path:
        ok = path in files
    else:
        ok = path in basenames
    if not ok:
        problems.append(f"ARCHITECTURE.md names {name}, which is not in src/")

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
