/**
 * A real agent-vault for the tests: `init` in a temporary directory, `serve` on a free
 * loopback port (`127.0.0.1:0`, the address read back from its log), stopped by `stop()`.
 * The binary is `AGENT_VAULT_BIN` when set (scripts/test-all.sh passes the release build),
 * else the repository's debug build (`cargo build` first).
 */

import { ChildProcess, execFileSync, spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/** The repository root (this file runs as sdk/typescript/dist/test/vault.js). */
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");

export function binary(variable: string, name: string): string {
  const path = process.env[variable] || join(REPO, "target", "debug", name);
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`${path} is missing: run \`cargo build\` in ${REPO}, or set ${variable}`);
  }
  return path;
}

/** The environment without AGENT_VAULT_* / AGENT_RUN_* settings (but the binaries). */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if ((k.startsWith("AGENT_VAULT_") || k.startsWith("AGENT_RUN_") || k === "RUST_LOG") && !k.endsWith("_BIN")) continue;
    env[k] = v;
  }
  return env;
}

export class Vault {
  readonly admin: string;
  addr = "";
  log = "";
  readonly #dir: string;
  readonly #child: ChildProcess;

  private constructor(dir: string, admin: string, child: ChildProcess) {
    this.#dir = dir;
    this.admin = admin;
    this.#child = child;
  }

  static async start(): Promise<Vault> {
    const bin = binary("AGENT_VAULT_BIN", "agent-vault");
    const dir = mkdtempSync(join(tmpdir(), "agent-vault-ts-"));
    const data = join(dir, "data");
    const env = cleanEnv();
    const admin = execFileSync(bin, ["init", "--data-dir", data], { env, encoding: "utf8" }).trim();
    if (!admin.startsWith("avt_")) throw new Error(`init printed no token: ${admin}`);
    const child = spawn(bin, ["serve", "--listen", "127.0.0.1:0", "--data-dir", data, "-vvv"], {
      env,
      stdio: ["ignore", "ignore", "pipe"],
    });
    const vault = new Vault(dir, admin, child);
    await new Promise<void>((ready, fail) => {
      const timer = setTimeout(() => fail(new Error(`agent-vault printed no address:\n${vault.log}`)), 30_000);
      child.on("exit", (code) => fail(new Error(`agent-vault exited (${code}):\n${vault.log}`)));
      createInterface({ input: child.stderr! }).on("line", (line) => {
        vault.log += line + "\n";
        const prefix = "agent-vault listening on ";
        if (!vault.addr && line.startsWith(prefix)) {
          vault.addr = line.slice(prefix.length).trim();
          clearTimeout(timer);
          ready();
        }
      });
    });
    return vault;
  }

  async stop(): Promise<void> {
    if (this.#child.exitCode === null) {
      const exited = new Promise((done) => this.#child.once("exit", done));
      this.#child.kill("SIGTERM");
      await exited;
    }
    rmSync(this.#dir, { recursive: true, force: true });
  }

  async call(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; data: any }> {
    const response = await fetch(this.addr + path, {
      method,
      headers: { Authorization: `Bearer ${token ?? this.admin}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, data: text ? JSON.parse(text) : undefined };
  }

  async set(agent: string, key: string, value: string): Promise<void> {
    const { status, data } = await this.call("PUT", `/v1/agents/${agent}/secrets/${key}`, { value });
    if (status !== 200 && status !== 201) throw new Error(`set ${agent}/${key}: ${status} ${JSON.stringify(data)}`);
  }

  async issue(...scopes: string[]): Promise<string> {
    const { status, data } = await this.call("POST", "/v1/tokens", { scopes, allow_empty: true });
    if (status !== 201) throw new Error(`issue: ${status} ${JSON.stringify(data)}`);
    return data.token;
  }

  /** Read records are written in the background: poll until one matches. */
  async waitAudit(agent: string, match: (r: any) => boolean): Promise<any[]> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const { data } = await this.call("GET", `/v1/audit?agent=${agent}`);
      if (data.records.some(match)) return data.records;
      if (Date.now() > deadline) throw new Error(`no matching audit record: ${JSON.stringify(data.records)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
