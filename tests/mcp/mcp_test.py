#!/usr/bin/env python3
"""`agent-vault mcp` (issue 14 item 5) through the official MCP Python SDK over stdio.

Starts a real agent-vault (AGENT_VAULT_BIN, else target/debug/agent-vault): `init` into a
temporary directory, `serve` on 127.0.0.1:0, secrets set with the CLI from stdin. Then runs
`agent-vault mcp` as the SDK's stdio server with a token of its own and checks, through the
SDK's ClientSession: the handshake and ping; every tool listed with an object inputSchema;
agents and entries listed with masked previews; a plain variable set through MCP read back
by a run-time token, and refused on a key holding a secret; `set_secret` and `issue_token`
refused with `isError` and the terminal command, storing and issuing nothing; tokens listed
without a token; a revoke that takes effect; an unknown tool is a protocol error; the audit
trail (read through MCP and through the API) shows the MCP's actions under its token id; a
write-scoped token gets `forbidden` for admin tools. No secret value and no token appears
in any MCP message either way, nor in the MCP server's stderr at -vvv, and stdout carries
nothing but protocol messages (the SDK reports anything else to the message handler).

Run: python3 tests/mcp/mcp_test.py   (tests/vault/mcp.rs runs it under `cargo test`)
Needs: pip install 'mcp>=2.3,<3' (the 2.x API: snake_case fields)
"""

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SECRET = "sk_live_mcp_first_value_R8t3"
OTHER_SECRET = "stripe-mcp-second-value-Q5w7"
SENT_BY_MISTAKE = "sk_typed_into_the_chat_V2n6"
TOOLS = {
    "list_agents", "list_entries", "describe_entry", "list_project_variables",
    "set_plain_variable", "set_project_variable", "set_secret", "list_tokens",
    "issue_token", "revoke_token", "read_audit",
}


def vault_bin():
    path = os.environ.get("AGENT_VAULT_BIN") or os.path.join(ROOT, "target", "debug", "agent-vault")
    if not os.access(path, os.X_OK):
        sys.exit(f"agent-vault binary not found at {path}: build it or set AGENT_VAULT_BIN")
    return path


def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("AGENT_VAULT_") and k != "RUST_LOG"}


class Vault:
    """A real agent-vault on 127.0.0.1:0 with a fresh data directory."""

    def __init__(self, workdir):
        data = os.path.join(workdir, "data")
        init = subprocess.run([vault_bin(), "init", "--data-dir", data], env=clean_env(),
                              capture_output=True, text=True, check=True)
        self.admin = init.stdout.strip()
        assert self.admin.startswith("avt_"), init
        self.proc = subprocess.Popen(
            [vault_bin(), "serve", "--listen", "127.0.0.1:0", "--data-dir", data, "-vvv"],
            env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        self.data = data
        self.log = []
        found = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.log.append(line)
                if line.startswith("agent-vault listening on "):
                    self.addr = line.split("listening on ", 1)[1].strip()
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(20):
            self.stop()
            sys.exit("agent-vault did not start:\n" + "".join(self.log))

    def cli(self, args, stdin=None):
        env = clean_env()
        env["AGENT_VAULT_ADDR"] = self.addr
        env["AGENT_VAULT_TOKEN"] = self.admin
        out = subprocess.run([vault_bin(), *args], env=env, input=stdin, capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 0, f"agent-vault {args}: {out.stderr}"
        return out.stdout

    def issue(self, *scopes):
        args = ["tokens", "issue", "--json", "--description", "mcp test"]
        for scope in scopes:
            args += ["--scope", scope]
        issued = json.loads(self.cli(args))
        return issued["id"], issued["token"]

    def call(self, method, path, token):
        """(status, parsed body) of one API call."""
        req = urllib.request.Request(self.addr + path, method=method,
                                     headers={"Authorization": "Bearer " + token})
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                text = resp.read().decode()
                return resp.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read().decode() or "null")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Transcript:
    """Every MCP answer, as JSON text, to search for values and tokens afterwards."""

    def __init__(self):
        self.texts = []

    def add(self, result):
        self.texts.append(result.model_dump_json(by_alias=True))
        return result

    def assert_free_of(self, needles, what):
        for text in self.texts:
            for needle in needles:
                assert needle not in text, f"{what} found in an MCP answer: {text}"


def text_of(result):
    assert result.content and result.content[0].type == "text", result
    return result.content[0].text


def mcp_server(vault, token_file, log):
    env = clean_env()
    env["AGENT_VAULT_ADDR"] = vault.addr
    env["AGENT_VAULT_TOKEN_FILE"] = token_file
    return StdioServerParameters(command=vault_bin(), args=["mcp", "-vvv"], env=env), log


async def session_of(params, stack, stray):
    async def on_message(message):
        # Anything but a protocol message arriving here means stdout carried something else.
        if isinstance(message, Exception):
            stray.append(repr(message))

    read, write = await stack.enter_async_context(stdio_client(params[0], errlog=params[1]))
    session = await stack.enter_async_context(ClientSession(read, write, message_handler=on_message))
    return session


async def admin_session(vault, workdir, transcript, stray):
    from contextlib import AsyncExitStack

    mcp_id, mcp_token = vault.issue("admin")
    token_file = os.path.join(workdir, "mcp.token")
    with open(token_file, "w", encoding="utf-8") as f:
        f.write(mcp_token + "\n")
    os.chmod(token_file, 0o600)
    read_id, read_token = vault.issue("secrets:read:support-bot/*")
    doomed_id, doomed_token = vault.issue("secrets:read:support-bot/*")
    tokens = [vault.admin, mcp_token, read_token, doomed_token]

    log_path = os.path.join(workdir, "mcp-admin.log")
    with open(log_path, "w", encoding="utf-8") as log:
        async with AsyncExitStack() as stack:
            s = await session_of(mcp_server(vault, token_file, log), stack, stray)
            init = await s.initialize()
            assert init.protocol_version in ("2025-06-18", "2025-03-26"), init
            assert init.server_info.name == "agent-vault", init
            assert init.capabilities.tools is not None, init
            assert "ever returns a secret's value" in (init.instructions or ""), init
            await s.send_ping()

            listed = transcript.add(await s.list_tools())
            names = {t.name for t in listed.tools}
            assert names == TOOLS, names
            for tool in listed.tools:
                assert tool.input_schema["type"] == "object", tool
                assert tool.description, tool
            revoke = next(t for t in listed.tools if t.name == "revoke_token")
            assert revoke.input_schema["required"] == ["id"], revoke
            assert revoke.annotations.destructive_hint is True, revoke

            async def call(name, arguments=None):
                return transcript.add(await s.call_tool(name, arguments or {}))

            agents = await call("list_agents")
            assert not agents.is_error, agents
            assert [a["name"] for a in agents.structured_content["agents"]] == ["support-bot"], agents
            assert json.loads(text_of(agents)) == agents.structured_content

            entries = await call("list_entries", {"agent": "support-bot"})
            assert not entries.is_error, entries
            by_key = {e["key"]: e for e in entries.structured_content["entries"]}
            assert by_key["OPENAI_API_KEY"]["preview"] == "****" + SECRET[-4:], by_key
            assert by_key["OPENAI_API_KEY"]["kind"] == "secret", by_key
            assert by_key["STRIPE_KEY"]["preview"] == "****" + OTHER_SECRET[-4:], by_key
            assert all("value" not in e for e in by_key.values()), by_key

            described = await call("describe_entry", {"agent": "support-bot", "key": "OPENAI_API_KEY"})
            assert not described.is_error and described.structured_content["preview"].endswith("R8t3"), described
            missing = await call("describe_entry", {"agent": "support-bot", "key": "NOPE"})
            assert missing.is_error and "not_found" in text_of(missing), missing

            # A plain variable through MCP, read back by a run-time token.
            plain = await call("set_plain_variable", {"agent": "support-bot", "key": "REGION",
                                                      "value": "eu-west-1", "description": "where it runs"})
            assert not plain.is_error, plain
            assert plain.structured_content["created"] is True, plain
            assert plain.structured_content["entry"]["kind"] == "plain", plain
            status, runtime = vault.call("GET", "/v1/runtime/secrets?agent=support-bot", read_token)
            assert status == 200, runtime
            read_back = {e["name"]: e for e in runtime["secrets"]}
            assert read_back["REGION"]["value"] == "eu-west-1", read_back
            assert read_back["REGION"]["kind"] == "plain", read_back
            # Not even a plain value comes back through MCP: previews only.
            assert "value" not in plain.structured_content["entry"], plain
            region = await call("describe_entry", {"agent": "support-bot", "key": "REGION"})
            assert not region.is_error and "value" not in region.structured_content, region
            assert region.structured_content["kind"] == "plain", region
            again = await call("list_entries", {"agent": "support-bot"})
            assert [e for e in again.structured_content["entries"] if e["key"] == "REGION"], again
            assert all("value" not in e for e in again.structured_content["entries"]), again
            assert "eu-west-1" not in region.model_dump_json() + again.model_dump_json()
            project = await call("set_project_variable", {"key": "LOG_LEVEL", "value": "debug"})
            assert not project.is_error, project
            project_list = await call("list_project_variables")
            assert [v["key"] for v in project_list.structured_content["vars"]] == ["LOG_LEVEL"], project_list

            # Names that change how the child starts stay refused: MCP has no override.
            dangerous = await call("set_plain_variable", {"agent": "support-bot", "key": "LD_PRELOAD",
                                                          "value": "/tmp/x.so"})
            assert dangerous.is_error and "dangerous_name" in text_of(dangerous), dangerous

            # A plain value never replaces a secret.
            over = await call("set_plain_variable", {"agent": "support-bot", "key": "OPENAI_API_KEY",
                                                     "value": "not-a-credential"})
            assert over.is_error and "is a secret" in text_of(over), over
            assert "agent-vault secrets set support-bot OPENAI_API_KEY --stdin" in text_of(over), over

            # Refused: a secret's value and a token never pass through MCP.
            refused = await call("set_secret", {"agent": "support-bot", "key": "NEW_KEY",
                                                "value": SENT_BY_MISTAKE})
            assert refused.is_error, refused
            assert "agent-vault secrets set support-bot NEW_KEY --stdin" in text_of(refused), refused
            assert "rotated" in text_of(refused), refused
            status, body = vault.call("GET", "/v1/agents/support-bot/secrets/NEW_KEY", vault.admin)
            assert status == 404, body
            before = vault.call("GET", "/v1/tokens", vault.admin)[1]["tokens"]
            no_token = await call("issue_token", {"scopes": ["secrets:read:support-bot/*"], "ttl": "7d"})
            assert no_token.is_error, no_token
            assert ("agent-vault tokens issue --scope 'secrets:read:support-bot/*' --ttl 7d"
                    in text_of(no_token)), no_token
            assert vault.call("GET", "/v1/tokens", vault.admin)[1]["tokens"] == before

            listed_tokens = await call("list_tokens")
            assert not listed_tokens.is_error, listed_tokens
            ids = {t["id"] for t in listed_tokens.structured_content["tokens"]}
            assert {mcp_id, read_id, doomed_id} <= ids, ids

            # Revoke: the token stops working at once.
            assert vault.call("GET", "/v1/runtime/secrets?agent=support-bot", doomed_token)[0] == 200
            revoked = await call("revoke_token", {"id": doomed_id})
            assert not revoked.is_error and revoked.structured_content == {"revoked": doomed_id}, revoked
            status, body = vault.call("GET", "/v1/runtime/secrets?agent=support-bot", doomed_token)
            assert status == 401, (status, body)

            # Arguments outside the schema are a tool error the model can correct.
            bad = await call("list_entries", {"agnt": "support-bot"})
            assert bad.is_error and "agnt" in text_of(bad), bad
            try:
                await s.call_tool("no_such_tool", {})
                raise AssertionError("an unknown tool was answered")
            except MCPError as e:
                assert e.code == -32602, e

            # The audit trail, through MCP: the MCP's actions under its own token id.
            audit = await call("read_audit", {"agent": "support-bot", "since": "1h"})
            assert not audit.is_error, audit
            mine = [(r["action"], r["keys"]) for r in audit.structured_content["records"]
                    if r["token_id"] == mcp_id]
            assert ("create", ["REGION"]) in mine, audit.structured_content
            assert all(r["agent"] == "support-bot" for r in audit.structured_content["records"]), audit
            limited = await call("read_audit", {"limit": 1})
            assert len(limited.structured_content["records"]) == 1, limited

    # And through the API, after the session: every MCP change is under the MCP's token.
    records = vault.call("GET", "/v1/audit", vault.admin)[1]["records"]
    mine = {(r["action"], tuple(r["keys"])) for r in records if r["token_id"] == mcp_id}
    assert ("create", ("REGION",)) in mine, records
    assert ("create", ("LOG_LEVEL",)) in mine, records
    assert any(a == "token.revoke" for a, _ in mine), records
    assert not any("NEW_KEY" in keys for _, keys in mine), records

    with open(log_path, encoding="utf-8") as f:
        log_text = f.read()
    assert "mcp tool called" in log_text, log_text
    for needle in [SECRET, OTHER_SECRET, SENT_BY_MISTAKE, *tokens]:
        assert needle not in log_text, f"a value or token in the MCP server's stderr:\n{log_text}"
    transcript.assert_free_of([SECRET, OTHER_SECRET, SENT_BY_MISTAKE], "a secret value")
    transcript.assert_free_of(tokens, "a token")


async def write_token_session(vault, workdir, transcript, stray):
    """A token that may only manage support-bot's entries: admin tools answer `forbidden`."""
    from contextlib import AsyncExitStack

    _, write_token = vault.issue("secrets:write:support-bot/*")
    token_file = os.path.join(workdir, "write.token")
    with open(token_file, "w", encoding="utf-8") as f:
        f.write(write_token + "\n")
    os.chmod(token_file, 0o600)
    with open(os.path.join(workdir, "mcp-write.log"), "w", encoding="utf-8") as log:
        async with AsyncExitStack() as stack:
            s = await session_of(mcp_server(vault, token_file, log), stack, stray)
            await s.initialize()
            entries = transcript.add(await s.call_tool("list_entries", {"agent": "support-bot"}))
            assert not entries.is_error, entries
            for tool in ("list_tokens", "read_audit", "list_agents"):
                denied = transcript.add(await s.call_tool(tool, {}))
                assert denied.is_error and "forbidden" in text_of(denied), denied
    transcript.assert_free_of([write_token, SECRET, OTHER_SECRET], "a value or token")


def main():
    with tempfile.TemporaryDirectory(prefix="agent-vault-mcp-") as workdir:
        vault = Vault(workdir)
        try:
            vault.cli(["secrets", "set", "support-bot", "OPENAI_API_KEY", "--stdin"], SECRET)
            vault.cli(["secrets", "set", "support-bot", "STRIPE_KEY", "--stdin"], OTHER_SECRET)
            transcript = Transcript()
            stray = []
            asyncio.run(admin_session(vault, workdir, transcript, stray))
            asyncio.run(write_token_session(vault, workdir, transcript, stray))
            assert not stray, f"stdout carried something that is not an MCP message: {stray}"
            log = "".join(vault.log)
            for needle in [SECRET, OTHER_SECRET, SENT_BY_MISTAKE]:
                assert needle not in log, "a value in agent-vault's log (-vvv)"
            # The refused value never reached the store; the secrets are there encrypted only.
            for name in os.listdir(vault.data):
                if name.startswith("vault.db"):
                    with open(os.path.join(vault.data, name), "rb") as f:
                        stored = f.read()
                    for needle in [SECRET, OTHER_SECRET, SENT_BY_MISTAKE]:
                        assert needle.encode() not in stored, f"a value in plaintext in {name}"
        finally:
            vault.stop()
    print(f"mcp_test: {len(transcript.texts)} MCP answers checked")
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
