"""Both SDKs checked against docs/openapi.yaml (issue 14 item 4: "built from or checked
against"): every method and path they call exists in the spec with the same path
parameters, no API path is called outside their endpoint tables, and the error codes they
map are exactly the ones the spec lists, which are exactly the server's (`protocol::wire::code`).

The TypeScript side is read from its compiled output (`npm test` in sdk/typescript builds it;
this test runs `tsc` itself when the output is missing and the dev dependencies are there).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "docs" / "openapi.yaml"
PYTHON_SRC = REPO / "sdk" / "python" / "src"
TS = REPO / "sdk" / "typescript"

sys.path.insert(0, str(PYTHON_SRC))
import agent_vault  # noqa: E402


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load(SPEC.read_text())


@pytest.fixture(scope="module")
def typescript() -> dict:
    index = TS / "dist" / "src" / "index.js"
    if not index.exists():
        tsc = TS / "node_modules" / ".bin" / "tsc"
        if not tsc.exists():
            pytest.fail("sdk/typescript is not built: run `npm ci && npm test` in sdk/typescript")
        subprocess.run([str(tsc), "-p", str(TS)], check=True)
    script = (
        f"const m = await import({json.dumps(str(index))});"
        "console.log(JSON.stringify({endpoints: m.ENDPOINTS, codes: Object.keys(m.ERROR_CLASSES)}));"
    )
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def sdk_endpoints(typescript: dict) -> list:
    """(sdk, call, method, path) of every call both SDKs make."""
    rows = [("python", name, m, p) for name, (m, p) in agent_vault.ENDPOINTS.items()]
    rows += [("typescript", name, m, p) for name, (m, p) in typescript["endpoints"].items()]
    return rows


def server_codes() -> set:
    """The constants of `pub mod code` in src/protocol/wire.rs."""
    text = (REPO / "src" / "protocol" / "wire.rs").read_text()
    body = text.split("pub mod code {", 1)[1].split("\n}", 1)[0]
    return set(re.findall(r'pub const [A-Z_]+: &str = "([a-z_]+)";', body))


def test_every_call_of_both_sdks_is_in_the_spec(spec, typescript):
    paths = spec["paths"]
    rows = sdk_endpoints(typescript)
    assert {r[1] for r in rows if r[0] == "python"} >= {"get_secret", "set_secret", "issue_token"}
    assert {r[1] for r in rows if r[0] == "typescript"} >= {"getSecret", "setSecret", "issueToken"}
    for sdk, name, method, path in rows:
        assert path in paths, f"{sdk} {name}: {path} is not in docs/openapi.yaml"
        operation = paths[path].get(method.lower())
        assert operation, f"{sdk} {name}: {method} {path} is not in docs/openapi.yaml"
        # The path's parameters as the spec names them.
        declared = set()
        for param in paths[path].get("parameters", []) + operation.get("parameters", []):
            if "$ref" in param:
                param = spec["components"]["parameters"][param["$ref"].rsplit("/", 1)[1]]
            if param["in"] == "path":
                declared.add(param["name"])
        assert set(re.findall(r"\{(\w+)\}", path)) == declared, f"{sdk} {name}: {path}"
        # A success answer the SDK can parse is documented as JSON.
        ok = [c for c in operation["responses"] if c.startswith("2")]
        assert ok and all(
            "application/json" in operation["responses"][c].get("content", {}) for c in ok
        ), f"{sdk} {name}: {method} {path} has no JSON success answer in the spec"
    # Both SDKs call the same operations.
    assert {(m, p) for s, _, m, p in rows if s == "python"} == {
        (m, p) for s, _, m, p in rows if s == "typescript"
    }


def test_no_api_path_is_called_outside_the_endpoint_tables(typescript):
    """Every `/v1/…` literal in the SDKs' sources is one of their table's paths, so the
    check above covers every call they make."""
    tables = {p for _, _, _, p in sdk_endpoints(typescript)}
    sources = list((PYTHON_SRC / "agent_vault").glob("*.py")) + list((TS / "src").glob("*.ts"))
    assert sources
    for source in sources:
        for literal in re.findall(r"""["'`](/v1/[^"'`]*)["'`]""", source.read_text()):
            assert literal in tables, f"{source.relative_to(REPO)} calls {literal} outside its table"


def test_the_sdks_map_exactly_the_error_codes_the_spec_lists(spec, typescript):
    listed = set(
        spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
    )
    assert listed == server_codes(), (
        "docs/openapi.yaml's Error.code enum and src/protocol/wire.rs `code` differ: "
        f"only in the spec {sorted(listed - server_codes())}, "
        f"only in the server {sorted(server_codes() - listed)}"
    )
    assert set(agent_vault.ERROR_CLASSES) == listed, sorted(set(agent_vault.ERROR_CLASSES) ^ listed)
    assert set(typescript["codes"]) == listed, sorted(set(typescript["codes"]) ^ listed)
    # The prose list in the spec's description names the same codes.
    described = set(re.findall(r"`([a-z_]+)`", spec["info"]["description"]))
    assert listed <= described, sorted(listed - described)
    # Each code maps to its own class in Python (the TypeScript table is checked by name).
    assert all(cls.code == code for code, cls in agent_vault.ERROR_CLASSES.items())
