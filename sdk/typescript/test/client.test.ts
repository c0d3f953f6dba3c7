/** The TypeScript SDK against a real agent-vault (see vault.ts); `node --test dist/test/`. */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, test } from "node:test";
import { inspect } from "node:util";

import {
  AgentVaultError,
  Client,
  ConfigurationError,
  DangerousName,
  EmptyValue,
  Forbidden,
  InvalidScope,
  NotAReadToken,
  NotFound,
  SecretValue,
  TransportError,
  Unauthorized,
} from "../src/index.js";
import { REPO, Vault, binary, cleanEnv } from "./vault.js";

let vault: Vault;

before(async () => {
  vault = await Vault.start();
});

after(async () => {
  await vault?.stop();
});

beforeEach(() => {
  // Each test sets the variables it means; none comes from the shell running the tests.
  for (const name of Object.keys(process.env)) {
    if ((name.startsWith("AGENT_VAULT_") || name.startsWith("AGENT_RUN_")) && !name.endsWith("_BIN")) {
      delete process.env[name];
    }
  }
});

test("getSecret reads one value with the token from AGENT_VAULT_AGENT_TOKEN", async () => {
  await vault.set("ts-bot", "OPENAI_API_KEY", "sk-ts-value-v1-0001");
  await vault.set("ts-bot", "OPENAI_API_KEY", "sk-ts-value-v2-0002");
  process.env.AGENT_VAULT_ADDR = vault.addr;
  process.env.AGENT_VAULT_AGENT_TOKEN = await vault.issue("secrets:read:ts-bot/*");
  const started = Date.now();
  const secret = await new Client().getSecret("OPENAI_API_KEY");
  assert.equal(secret.value.reveal(), "sk-ts-value-v2-0002");
  assert.deepEqual(
    [secret.key, secret.version, secret.agent, secret.kind, secret.origin],
    ["OPENAI_API_KEY", 2, "ts-bot", "secret", "agent"],
  );
  assert.ok(secret.accessedAt instanceof Date);
  assert.ok(Math.abs(secret.accessedAt.getTime() - started) < 5_000, String(secret.accessedAt));
  // Printing, formatting or serializing never shows the value.
  for (const shown of [
    inspect(secret),
    JSON.stringify(secret),
    String(secret.value),
    `${secret.value}`,
    secret.value + "",
    inspect(new Client()),
  ]) {
    assert.ok(!shown.includes("sk-ts-value"), shown);
  }
  assert.match(inspect(secret), /SecretValue\('\*\*\*\*'\)/);
  assert.equal(secret.value.length, 19);
  const records = await vault.waitAudit(
    "ts-bot",
    (r) => r.action === "runtime.read" && r.outcome === "ok" && r.keys.join() === "OPENAI_API_KEY",
  );
  assert.ok(!JSON.stringify(records).includes("sk-ts-value"));
});

test("the token file is read at each call", async () => {
  await vault.set("ts-file", "K1", "ts-file-token-value-01");
  const file = join(mkdtempSync(join(tmpdir(), "ts-token-")), "token");
  writeFileSync(file, "not-a-token\n");
  process.env.AGENT_VAULT_AGENT_TOKEN_FILE = file;
  const client = new Client({ address: vault.addr });
  await assert.rejects(client.getSecret("K1"), (err: unknown) => {
    assert.ok(err instanceof Unauthorized);
    assert.equal(err.code, "unauthorized");
    assert.equal(err.status, 401);
    return true;
  });
  writeFileSync(file, (await vault.issue("secrets:read:ts-file/*")) + "\n");
  assert.equal((await client.getSecret("K1")).value.reveal(), "ts-file-token-value-01");
});

test("setSecret then getSecret sees the new version; getSecrets reads the set", async () => {
  const admin = new Client({ address: vault.addr, token: vault.admin });
  const first = await admin.setSecret("ts-set", "DB_PASSWORD", "ts-db-password-0001", { description: "the db" });
  assert.deepEqual([first.created, first.changed, first.entry.version], [true, true, 1]);
  assert.equal(first.entry.preview, "****0001");
  assert.ok(!JSON.stringify(first).includes("ts-db-password"));
  const second = await admin.setSecret("ts-set", "DB_PASSWORD", new SecretValue("ts-db-password-0002"));
  assert.deepEqual([second.created, second.entry.version], [false, 2]);
  const plain = await admin.setSecret("ts-set", "REGION", "eu-west-1", { kind: "plain" });
  assert.equal(plain.entry.kind, "plain");
  const reader = new Client({ address: vault.addr, token: await vault.issue("secrets:read:ts-set/*") });
  const got = await reader.getSecret("DB_PASSWORD", { agent: "ts-set" });
  assert.deepEqual([got.value.reveal(), got.version], ["ts-db-password-0002", 2]);
  const all = await reader.getSecrets();
  assert.deepEqual(Object.keys(all).sort(), ["DB_PASSWORD", "REGION"]);
  assert.equal(all.REGION.value.reveal(), "eu-west-1");
  assert.equal(all.DB_PASSWORD.version, 2);
  assert.ok(!vault.log.includes("ts-db-password"));
});

test("issueToken and requestToken", async () => {
  await vault.set("ts-tok", "API_KEY", "ts-issued-token-value-1");
  const admin = new Client({ address: vault.addr, token: vault.admin });
  const issued = await admin.issueToken("secrets:read:ts-tok/*", { ttl: "1h", description: "sdk test" });
  const also = await admin.requestToken(["secrets:read:ts-tok/API_*"], { ttl: 600 });
  assert.ok(issued.token.reveal().startsWith("avt_"));
  assert.ok(!inspect(issued).includes(issued.token.reveal()));
  assert.ok(!JSON.stringify(issued).includes(issued.token.reveal()));
  assert.deepEqual(issued.scopes, ["secrets:read:ts-tok/*"]);
  assert.equal(issued.description, "sdk test");
  assert.ok(Math.abs(issued.expiresAt!.getTime() - (Date.now() + 3_600_000)) < 60_000);
  assert.ok(Math.abs(also.expiresAt!.getTime() - (Date.now() + 600_000)) < 60_000);
  for (const token of [issued.token, also.token]) {
    const reader = new Client({ address: vault.addr, token: token.reveal() });
    assert.equal((await reader.getSecret("API_KEY")).value.reveal(), "ts-issued-token-value-1");
  }
});

test("errors are typed by the API's codes", async () => {
  await vault.set("ts-err", "STRIPE_KEY", "ts-typed-error-value-1");
  await vault.set("ts-err", "OTHER", "ts-typed-error-value-2");
  const reader = new Client({ address: vault.addr, token: await vault.issue("secrets:read:ts-err/STRIPE_*") });
  const admin = new Client({ address: vault.addr, token: vault.admin });
  const check = async (call: Promise<unknown>, cls: new (...args: any[]) => AgentVaultError, status: number, names?: string) => {
    await assert.rejects(call, (err: any) => {
      assert.ok(err instanceof cls, `${err?.name}: ${err?.message}`);
      assert.equal(err.status, status);
      if (names) assert.ok(err.message.includes(names), err.message);
      assert.ok(!err.message.includes("ts-typed-error-value"), err.message);
      return true;
    });
  };
  // A management token never reads a value.
  await check(admin.getSecret("STRIPE_KEY", { agent: "ts-err" }), NotAReadToken, 403);
  await assert.rejects(admin.getSecret("STRIPE_KEY", { agent: "ts-err" }), Forbidden);
  await check(reader.getSecret("OTHER"), Forbidden, 403, "OTHER");
  await check(reader.getSecret("STRIPE_MISSING"), NotFound, 404, "STRIPE_MISSING");
  await check(reader.setSecret("ts-err", "STRIPE_KEY", "overwrite-attempt-3"), Forbidden, 403);
  await check(admin.issueToken("secrets:read:ts-err"), InvalidScope, 400);
  await check(admin.setSecret("ts-err", "LD_PRELOAD", "/tmp/x.so"), DangerousName, 400, "LD_PRELOAD");
  await check(admin.setSecret("ts-err", "BLANK", "  "), EmptyValue, 400, "BLANK");
  await check(new Client({ address: vault.addr, token: "avt_bogus_token" }).getSecret("K"), Unauthorized, 401);
  assert.equal((await new Client({
    address: vault.addr,
    token: await vault.issue("secrets:read:ts-err/*"),
  }).getSecret("STRIPE_KEY")).value.reveal(), "ts-typed-error-value-1");
});

test("configuration errors say what to set", async () => {
  assert.throws(() => new Client({ address: "http://127.0.0.1:8377" }), (err: any) => {
    assert.ok(err instanceof ConfigurationError);
    assert.match(err.message, /AGENT_VAULT_AGENT_TOKEN/);
    return true;
  });
  assert.throws(() => new Client({ address: "http://vault.example:8377", token: "avt_x_y" }), /allowInsecureHttp/);
  new Client({ address: "http://vault.example:8377", token: "avt_x_y", allowInsecureHttp: true });
  new Client({ address: "https://vault.example:8377", token: "avt_x_y" });
  new Client({ address: "http://[::1]:8377", token: "avt_x_y" });
  assert.throws(() => new Client({ address: "ftp://127.0.0.1", token: "avt_x_y" }), ConfigurationError);
  process.env.AGENT_VAULT_AGENT_TOKEN_FILE = "/nonexistent/token";
  await assert.rejects(new Client({ address: vault.addr }).getSecret("K"), (err: any) => {
    assert.ok(err instanceof ConfigurationError);
    assert.match(err.message, /\/nonexistent\/token/);
    return true;
  });
});

test("an unreachable store is a TransportError that shows no token", async () => {
  const client = new Client({ address: "http://127.0.0.1:9", token: "avt_x_y", timeoutMs: 5_000 });
  await assert.rejects(client.getSecret("K"), (err: any) => {
    assert.ok(err instanceof TransportError);
    assert.match(err.message, /127\.0\.0\.1:9/);
    assert.ok(!err.message.includes("avt_x_y"));
    return true;
  });
});

test("an agent started by agent-run reads at call time with AGENT_VAULT_AGENT_TOKEN", async () => {
  await vault.set("ts-child", "OPENAI_API_KEY", "ts-child-reads-value-1");
  const index = join(REPO, "sdk", "typescript", "dist", "src", "index.js");
  const child =
    `const { Client } = await import(${JSON.stringify(index)});` +
    `const s = await new Client().getSecret("OPENAI_API_KEY");` +
    `console.log(s.version, s.value.reveal() === "ts-child-reads-value-1", String(s.value));`;
  const run = (token: string) =>
    spawnSync(binary("AGENT_RUN_BIN", "agent-run"), ["--", process.execPath, "--input-type=module", "-e", child], {
      env: {
        ...cleanEnv(),
        AGENT_VAULT_ADDR: vault.addr,
        AGENT_VAULT_AGENT_TOKEN: token,
        AGENT_VAULT_TOKEN: vault.admin, // the operator's admin token: never reaches the child
      },
      encoding: "utf8",
      timeout: 60_000,
    });
  const out = run(await vault.issue("secrets:read:ts-child/*"));
  assert.equal(out.status, 0, out.stderr);
  assert.equal(out.stdout.trim(), "1 true ****");
  // With the admin token as the agent's, the read is refused: the child used the agent's token.
  const refused = run(vault.admin);
  assert.notEqual(refused.status, 0);
  assert.match(refused.stderr, /not_a_read_token/);
});

test("Agent Secret Store code runs unchanged: setSecret({ path, tier, tags }), getSecret(path), ttlSeconds, token.value", async () => {
  process.env.AGENT_VAULT_ADDR = vault.addr;
  process.env.AGENT_VAULT_AGENT_TOKEN = vault.admin;
  const admin = new Client();
  const result = await admin.setSecret({
    path: "production/openai/api-key",
    value: "sk-ts-ass-compat-0001",
    tier: "sensitive",
    description: "OpenAI key",
    tags: { team: "ml" },
  });
  assert.equal(result.created, true);
  assert.equal(result.entry.agent, "production/openai");
  assert.equal(result.entry.key, "api-key");
  assert.equal(result.entry.tier, "sensitive");
  assert.deepEqual(result.entry.tags, { team: "ml" });
  const token = await admin.requestToken("secrets:read:production/openai/*", { ttlSeconds: 3600, description: "ml" });
  assert.equal(token.value, token.token);
  assert.equal(String(token.value), "****");
  assert.ok(Math.abs(token.expiresAt!.getTime() - (Date.now() + 3_600_000)) < 60_000);
  const reader = new Client({ address: vault.addr, token: token.value.reveal() });
  const secret = await reader.getSecret("production/openai/api-key");
  assert.equal(secret.agent, "production/openai");
  assert.equal(secret.key, "api-key");
  assert.equal(secret.value.reveal(), "sk-ts-ass-compat-0001");
  assert.equal(secret.version, 1);
  assert.ok(secret.accessedAt instanceof Date);
  const again = await admin.setSecret("production/openai", "api-key", "sk-ts-ass-compat-0002");
  assert.equal(again.entry.version, 2);
  assert.equal(again.entry.tier, "sensitive");
  await assert.rejects(() => admin.setSecret({ path: "no-slash", value: "v" }), ConfigurationError);
  await assert.rejects(
    () => admin.issueToken("secrets:read:x/*", { ttl: 60, ttlSeconds: 60 }),
    (err: Error) => err instanceof TypeError && /ttlSeconds/.test(err.message),
  );
});
