"""A real agent-vault for the tests: ``init`` in a temporary directory, ``serve`` on a free
loopback port (``127.0.0.1:0``, the address read back from its log), stopped at the end.

The binary is ``AGENT_VAULT_BIN`` when set (scripts/test-all.sh passes the release build),
else the debug build of this repository (``cargo build`` first)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]


def binary(variable: str, name: str) -> str:
    path = os.environ.get(variable) or str(REPO / "target" / "debug" / name)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run `cargo build` in {REPO}, or set {variable}")
    return path


def clean_env() -> Dict[str, str]:
    """This process's environment without any AGENT_VAULT_* / AGENT_RUN_* setting."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AGENT_VAULT_", "AGENT_RUN_")) and k != "RUST_LOG"
    }


class Vault:
    def __init__(self, directory: Path):
        self.bin = binary("AGENT_VAULT_BIN", "agent-vault")
        data = directory / "data"
        init = subprocess.run(
            [self.bin, "init", "--data-dir", str(data)],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert init.returncode == 0, f"agent-vault init failed: {init.stderr}"
        self.admin = init.stdout.strip()
        assert self.admin.startswith("avt_"), init.stdout
        self.process = subprocess.Popen(
            [self.bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data), "-vvv"],
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: List[str] = []
        ready = threading.Event()
        self.addr: Optional[str] = None

        def read() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.lines.append(line)
                if line.startswith("agent-vault listening on ") and self.addr is None:
                    self.addr = line.split("listening on ", 1)[1].strip()
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(30):
            self.stop()
            raise AssertionError("agent-vault printed no address:\n" + self.log())
        self.http = httpx.Client(base_url=self.addr, timeout=30, trust_env=False)

    def log(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def call(self, method: str, path: str, token: Optional[str] = None, **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.admin}"}
        return self.http.request(method, path, headers=headers, **kw)

    def set(self, agent: str, key: str, value: str, **extra) -> dict:
        r = self.call("PUT", f"/v1/agents/{agent}/secrets/{key}", json={"value": value, **extra})
        assert r.status_code in (200, 201), r.text
        return r.json()

    def issue(self, *scopes: str, ttl=None) -> str:
        body = {"scopes": list(scopes), "allow_empty": True}
        if ttl is not None:
            body["ttl"] = ttl
        r = self.call("POST", "/v1/tokens", json=body)
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def audit(self, agent: str) -> list:
        r = self.call("GET", "/v1/audit", params={"agent": agent})
        assert r.status_code == 200, r.text
        return r.json()["records"]

    def wait_audit(self, agent: str, predicate, seconds: float = 10) -> list:
        """Read records are written in the background: poll until one matches."""
        deadline = time.monotonic() + seconds
        while True:
            records = self.audit(agent)
            if any(predicate(r) for r in records):
                return records
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching audit record in {records}")
            time.sleep(0.02)


@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    server = Vault(tmp_path_factory.mktemp("vault"))
    yield server
    server.http.close()
    server.stop()


@pytest.fixture(autouse=True)
def no_inherited_settings(monkeypatch):
    """Each test sets the variables it means; none comes from the shell running pytest (but
    the binaries under test, ``*_BIN``)."""
    for name in list(os.environ):
        if name.startswith(("AGENT_VAULT_", "AGENT_RUN_")) and not name.endswith("_BIN"):
            monkeypatch.delenv(name)
