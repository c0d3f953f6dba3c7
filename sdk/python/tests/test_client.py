"""The Python SDK against a real agent-vault (see conftest.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import agent_vault
from agent_vault import (
    Client,
    ConfigurationError,
    Forbidden,
    InvalidScope,
    NotAReadToken,
    NotFound,
    SecretValue,
    SyncClient,
    TransportError,
    Unauthorized,
)

from conftest import REPO, binary, clean_env


async def test_get_secret_reads_one_value_with_the_token_from_the_variable(vault, monkeypatch):
    vault.set("py-bot", "OPENAI_API_KEY", "sk-python-value-v1-0001")
    vault.set("py-bot", "OPENAI_API_KEY", "sk-python-value-v2-0002")
    monkeypatch.setenv("AGENT_VAULT_ADDR", vault.addr)
    monkeypatch.setenv("AGENT_VAULT_AGENT_TOKEN", vault.issue("secrets:read:py-bot/*"))
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    async with Client() as client:
        secret = await client.get_secret("OPENAI_API_KEY")
    assert secret.value.reveal() == "sk-python-value-v2-0002"
    assert secret.value.get_secret_value() == "sk-python-value-v2-0002"
    assert (secret.key, secret.version, secret.agent, secret.kind, secret.origin) == (
        "OPENAI_API_KEY",
        2,
        "py-bot",
        "secret",
        "agent",
    )
    assert before <= secret.accessed_at <= datetime.now(timezone.utc) + timedelta(seconds=1)
    # Printing, formatting or logging the object never shows the value.
    for shown in (repr(secret), str(secret), str(secret.value), f"{secret.value}", repr(secret.value)):
        assert "sk-python-value" not in shown, shown
        assert "****" in shown
    with pytest.raises(TypeError):
        pickle.dumps(secret.value)
    with pytest.raises(TypeError):
        hash(secret.value)
    assert secret.value == SecretValue("sk-python-value-v2-0002") != SecretValue("other")
    # The read is audited by key name, never with the value.
    records = vault.wait_audit(
        "py-bot",
        lambda r: r["action"] == "runtime.read" and r["keys"] == ["OPENAI_API_KEY"] and r["outcome"] == "ok",
    )
    assert "sk-python-value" not in repr(records)


async def test_token_file_variable_is_read_at_each_call(vault, monkeypatch, tmp_path):
    vault.set("py-file", "K1", "file-token-value-0001")
    token_file = tmp_path / "token"
    token_file.write_text("not-a-token\n")
    monkeypatch.setenv("AGENT_VAULT_AGENT_TOKEN_FILE", str(token_file))
    async with Client(vault.addr) as client:
        with pytest.raises(Unauthorized) as raised:
            await client.get_secret("K1")
        assert raised.value.code == "unauthorized" and raised.value.status == 401
        # The file rotated under a running client: the next call uses the new token.
        token_file.write_text(vault.issue("secrets:read:py-file/*") + "\n")
        assert (await client.get_secret("K1")).value.reveal() == "file-token-value-0001"


async def test_set_secret_then_get_secret_sees_the_new_version(vault):
    admin = Client(vault.addr, vault.admin)
    first = await admin.set_secret("py-set", "DB_PASSWORD", "db-password-value-0001", description="the db")
    assert (first.created, first.changed, first.version) == (True, True, 1)
    assert "db-password-value" not in repr(first)
    assert first.entry["preview"] == "****0001"
    second = await admin.set_secret("py-set", "DB_PASSWORD", SecretValue("db-password-value-0002"))
    assert (second.created, second.version) == (False, 2)
    plain = await admin.set_secret("py-set", "REGION", "eu-west-1", kind="plain")
    assert plain.entry["kind"] == "plain"
    await admin.aclose()
    reader = Client(vault.addr, vault.issue("secrets:read:py-set/*"))
    got = await reader.get_secret("DB_PASSWORD", agent="py-set")
    assert (got.value.reveal(), got.version) == ("db-password-value-0002", 2)
    everything = await reader.get_secrets()
    assert sorted(everything) == ["DB_PASSWORD", "REGION"]
    assert everything["REGION"].value.reveal() == "eu-west-1"
    assert everything["DB_PASSWORD"].version == 2
    await reader.aclose()
    assert "db-password-value" not in vault.log()


async def test_issue_token_and_request_token(vault):
    vault.set("py-tok", "API_KEY", "issued-token-value-0001")
    async with Client(vault.addr, vault.admin) as admin:
        issued = await admin.issue_token("secrets:read:py-tok/*", ttl="1h", description="sdk test")
        also = await admin.request_token(["secrets:read:py-tok/API_*"], ttl=600)
    assert issued.token.reveal().startswith("avt_")
    assert issued.token.reveal() not in repr(issued)
    assert issued.scopes == ["secrets:read:py-tok/*"] and issued.description == "sdk test"
    in_an_hour = datetime.now(timezone.utc) + timedelta(hours=1)
    assert abs((issued.expires_at - in_an_hour).total_seconds()) < 60
    assert abs((also.expires_at - datetime.now(timezone.utc)).total_seconds() - 600) < 60
    for token in (issued.token, also.token):
        async with Client(vault.addr, token.reveal()) as reader:
            assert (await reader.get_secret("API_KEY")).value.reveal() == "issued-token-value-0001"


async def test_errors_are_typed_by_the_apis_codes(vault):
    vault.set("py-err", "STRIPE_KEY", "typed-error-value-0001")
    vault.set("py-err", "OTHER", "typed-error-value-0002")
    reader = Client(vault.addr, vault.issue("secrets:read:py-err/STRIPE_*"))
    admin = Client(vault.addr, vault.admin)
    try:
        # A management token never reads a value.
        with pytest.raises(NotAReadToken) as raised:
            await admin.get_secret("STRIPE_KEY", agent="py-err")
        assert isinstance(raised.value, Forbidden) and raised.value.status == 403
        # Outside the token's scope; in scope but missing.
        with pytest.raises(Forbidden) as raised:
            await reader.get_secret("OTHER")
        assert type(raised.value) is Forbidden and "OTHER" in str(raised.value)
        with pytest.raises(NotFound) as raised:
            await reader.get_secret("STRIPE_MISSING")
        assert raised.value.code == "not_found" and "STRIPE_MISSING" in str(raised.value)
        # A read token cannot write; a bad scope is refused by name.
        with pytest.raises(Forbidden):
            await reader.set_secret("py-err", "STRIPE_KEY", "overwrite-attempt-0003")
        with pytest.raises(InvalidScope) as raised:
            await admin.issue_token("secrets:read:py-err")
        assert raised.value.status == 400
        with pytest.raises(agent_vault.DangerousName):
            await admin.set_secret("py-err", "LD_PRELOAD", "/tmp/x.so")
        with pytest.raises(agent_vault.EmptyValue):
            await admin.set_secret("py-err", "BLANK", "  ")
        async with Client(vault.addr, "avt_bogus_token") as bogus:
            with pytest.raises(Unauthorized) as unauthorized:
                await bogus.get_secret("STRIPE_KEY")
        assert "avt_bogus_token" not in str(unauthorized.value)
    finally:
        await reader.aclose()
        await admin.aclose()
    assert (await _read(vault, "py-err/STRIPE_KEY")) == "typed-error-value-0001"


async def _read(vault, path: str) -> str:
    agent, key = path.split("/")
    async with Client(vault.addr, vault.issue(f"secrets:read:{agent}/*")) as c:
        return (await c.get_secret(key)).value.reveal()


async def test_a_burst_of_reads_waits_in_the_client_not_in_httpxs_pool(vault):
    """300 reads gathered at once: queued in httpx's own pool they crawled (~25 reads/s with
    a pool of 100 on the debug build) and the late ones failed with PoolTimeout once they
    had waited `timeout` (1 s here); now at most `max_in_flight` are sent at a time, the
    rest wait in the client, and every one answers."""
    vault.set("py-burst", "K", "burst-value-000000001")
    async with Client(vault.addr, vault.issue("secrets:read:py-burst/*"), timeout=1) as client:
        got = await asyncio.gather(*(client.get_secret("K") for _ in range(300)))
    assert {s.value.reveal() for s in got} == {"burst-value-000000001"}


def test_configuration_errors_say_what_to_set(monkeypatch):
    with pytest.raises(ConfigurationError) as raised:
        Client("http://127.0.0.1:8377")
    assert "AGENT_VAULT_AGENT_TOKEN" in str(raised.value)
    with pytest.raises(ConfigurationError) as raised:
        SyncClient("http://vault.example:8377", "avt_x_y")
    assert "allow_insecure_http" in str(raised.value)
    SyncClient("http://vault.example:8377", "avt_x_y", allow_insecure_http=True).close()
    SyncClient("https://vault.example:8377", "avt_x_y").close()
    with pytest.raises(ConfigurationError):
        Client("ftp://127.0.0.1", "avt_x_y")
    monkeypatch.setenv("AGENT_VAULT_AGENT_TOKEN_FILE", "/nonexistent/token")
    client = SyncClient("http://[::1]:1")
    with pytest.raises(ConfigurationError) as raised:
        client.get_secret("K")
    assert "/nonexistent/token" in str(raised.value)


def test_unreachable_store_is_a_transport_error():
    with SyncClient("http://127.0.0.1:9", "avt_x_y", timeout=5) as client:
        with pytest.raises(TransportError) as raised:
            client.get_secret("K")
    assert "127.0.0.1:9" in str(raised.value) and "avt_x_y" not in str(raised.value)


def test_sync_client(vault):
    vault.set("py-sync", "K", "sync-client-value-0001")
    with SyncClient(vault.addr, vault.admin) as admin:
        issued = admin.request_token("secrets:read:py-sync/*", ttl=60)
        admin.set_secret("py-sync", "K", "sync-client-value-0002")
    with SyncClient(vault.addr, issued.token.reveal()) as reader:
        got = reader.get_secret("K")
        assert (got.value.reveal(), got.version) == ("sync-client-value-0002", 2)
        with pytest.raises(NotFound):
            reader.get_secret("MISSING")


def test_an_agent_started_by_agent_run_reads_at_call_time(vault, tmp_path):
    """agent-run passes AGENT_VAULT_AGENT_TOKEN to its child (it removes the operator's
    AGENT_VAULT_TOKEN), so the child reads at call time with the SDK."""
    vault.set("py-child", "OPENAI_API_KEY", "child-reads-value-0001")
    token = vault.issue("secrets:read:py-child/*")
    child = (
        "import asyncio, agent_vault\n"
        "async def main():\n"
        "    async with agent_vault.Client() as v:\n"
        "        s = await v.get_secret('OPENAI_API_KEY')\n"
        "        print(s.version, len(s.value), s.value.reveal() == 'child-reads-value-0001', s)\n"
        "asyncio.run(main())\n"
    )
    env = clean_env()
    env.update(
        AGENT_VAULT_ADDR=vault.addr,
        AGENT_VAULT_AGENT_TOKEN=token,
        AGENT_VAULT_TOKEN=vault.admin,  # the operator's admin token: never reaches the child
        PYTHONPATH=str(Path(agent_vault.__file__).parents[1]),
    )
    out = subprocess.run(
        [binary("AGENT_RUN_BIN", "agent-run"), "--", sys.executable, "-c", child],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    version, length, matches, shown = out.stdout.split(" ", 3)
    assert (version, length, matches) == ("1", "22", "True"), out.stdout
    assert "child-reads-value" not in shown
    # With the admin token instead (what the child would have if agent-run passed it), the
    # read would be refused: the child really used the agent's token.
    env["AGENT_VAULT_AGENT_TOKEN"] = vault.admin
    out = subprocess.run(
        [binary("AGENT_RUN_BIN", "agent-run"), "--", sys.executable, "-c", child],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "not_a_read_token" in out.stderr, out.stderr


def test_logging_a_secret_shows_no_value(vault, caplog):
    vault.set("py-log", "K", "logged-value-00000001")
    with SyncClient(vault.addr, vault.issue("secrets:read:py-log/*")) as c:
        secret = c.get_secret("K")
    logging.getLogger("test").warning("got %s / %r / %s", secret, secret, secret.value)
    assert "logged-value" not in caplog.text and "****" in caplog.text


async def test_agent_secret_store_code_runs_unchanged(vault, monkeypatch):
    """Issue 14: code written for Agent Secret Store (path=, tier=, tags=, scope=,
    ttl_seconds=, token.value) runs as it is, apart from the import and the constructor."""
    monkeypatch.setenv("AGENT_VAULT_ADDR", vault.addr)
    monkeypatch.setenv("AGENT_VAULT_AGENT_TOKEN", vault.admin)
    async with Client() as admin_vault:
        result = await admin_vault.set_secret(
            path="production/openai/api-key",
            value="sk-ass-compat-value-0001",
            tier="sensitive",
            description="OpenAI key",
            tags={"team": "ml"},
        )
        token = await admin_vault.request_token(
            scope="secrets:read:production/openai/*",
            ttl_seconds=3600,
            description="ml agent",
        )
    assert (result.created, result.version) == (True, 1)
    assert result.entry["agent"] == "production/openai" and result.entry["key"] == "api-key"
    assert (result.tier, result.tags) == ("sensitive", {"team": "ml"})
    assert token.value is token.token and str(token.value) == "****"
    assert "avt_" not in repr(token)
    in_an_hour = datetime.now(timezone.utc) + timedelta(hours=1)
    assert abs((token.expires_at - in_an_hour).total_seconds()) < 60
    async with Client(vault.addr, token.value.reveal()) as agent_vault_:
        secret = await agent_vault_.get_secret("production/openai/api-key")
    assert secret.agent == "production/openai" and secret.key == "api-key"
    assert (secret.value.reveal(), secret.version) == ("sk-ass-compat-value-0001", 1)
    assert secret.accessed_at is not None
    with SyncClient(vault.addr, vault.admin) as admin:
        again = admin.set_secret(path="production/openai/api-key", value="sk-ass-compat-value-0002")
        assert (again.version, again.tier, again.tags) == (2, "sensitive", {"team": "ml"})
        also = admin.issue_token("secrets:read:production/openai/*", ttl_seconds=600)
        assert also.value.reveal().startswith("avt_")


async def test_set_secret_takes_a_path_or_agent_and_key_never_both(vault):
    async with Client(vault.addr, vault.admin) as admin:
        with pytest.raises(TypeError, match="path="):
            await admin.set_secret("prod", "K", "v", path="prod/K")
        with pytest.raises(TypeError, match="agent= and key="):
            await admin.set_secret(value="v")
        with pytest.raises(ConfigurationError, match="AGENT/KEY"):
            await admin.set_secret(path="no-slash", value="v")
        with pytest.raises(TypeError, match="ttl_seconds"):
            await admin.issue_token("secrets:read:x/*", ttl=60, ttl_seconds=60)
