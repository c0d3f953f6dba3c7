/**
 * The client, on Node's global `fetch` (Node >= 18). Every call goes through `ENDPOINTS`,
 * so the API paths this package uses are listed in one place
 * (`sdk/tests/test_openapi_contract.py` checks them against `docs/openapi.yaml`).
 *
 * Where the settings come from, first found wins:
 * - address: `options.address`, `AGENT_VAULT_ADDR`, `http://127.0.0.1:8377`;
 * - token: `options.token`, `options.tokenFile`, `AGENT_VAULT_AGENT_TOKEN`,
 *   `AGENT_VAULT_AGENT_TOKEN_FILE` (its first line, read again at each call so a rotated
 *   file is picked up). Both variables are meant for the agent: agent-run passes them to its
 *   child and removes `AGENT_VAULT_TOKEN`, the operator's admin token.
 * - a private CA: Node's own `NODE_EXTRA_CA_CERTS=ca.pem` (global `fetch` takes no CA option).
 *
 * Plain `http://` is refused off loopback (the token would cross the network in clear)
 * unless `allowInsecureHttp`, the same rule as agent-run's and the admin CLI's.
 */

import { readFileSync } from "node:fs";
import { isIP } from "node:net";

import { ConfigurationError, TransportError, errorFor } from "./errors.js";
import { EntryMeta, IssuedToken, Secret, SecretValue, SetResult, Tier } from "./secret.js";

export const DEFAULT_ADDRESS = "http://127.0.0.1:8377";
export const TOKEN_VARIABLE = "AGENT_VAULT_AGENT_TOKEN";
export const TOKEN_FILE_VARIABLE = "AGENT_VAULT_AGENT_TOKEN_FILE";
export const ADDRESS_VARIABLE = "AGENT_VAULT_ADDR";

/** Every call of the API this package makes: name → [method, path template]. */
export const ENDPOINTS = Object.freeze({
  getSecret: ["GET", "/v1/runtime/secrets/{key}"],
  getSecrets: ["GET", "/v1/runtime/secrets"],
  setSecret: ["PUT", "/v1/agents/{agent}/secrets/{key}"],
  issueToken: ["POST", "/v1/tokens"],
} as const);

type Endpoint = keyof typeof ENDPOINTS;

export interface ClientOptions {
  /** Base URL of agent-vault (default `AGENT_VAULT_ADDR`, else `http://127.0.0.1:8377`). */
  address?: string;
  /** A read token for `getSecret`, a write or admin token for the management calls. */
  token?: string;
  /** A file whose first line is the token, read at each call. */
  tokenFile?: string;
  /** Per-call timeout in milliseconds (default 30 000). */
  timeoutMs?: number;
  /** Allow plain `http://` to a host that is not loopback. */
  allowInsecureHttp?: boolean;
}

export interface SetSecretOptions {
  description?: string;
  kind?: "secret" | "plain";
  /** Default `standard` on create; kept on update. */
  tier?: Tier;
  /** Added or replaced by name (16 at most per entry). */
  tags?: Record<string, string>;
  allowDangerousName?: boolean;
  allowEmptyValue?: boolean;
}

/**
 * `setSecret`'s one-object form (Agent Secret Store's): `path` is `"AGENT/KEY"`, split at
 * the last `/`, as `"production/openai/api-key"`.
 */
export interface SetSecretByPath extends SetSecretOptions {
  path: string;
  value?: string | SecretValue;
}

export interface IssueTokenOptions {
  /** Seconds, or a duration such as `"1h"`; omitted: the store's default. */
  ttl?: number | string;
  /** The same as `ttl` in seconds (Agent Secret Store's name); not with `ttl`. */
  ttlSeconds?: number;
  description?: string;
  allowEmpty?: boolean;
}

function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "");
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  if (isIP(host) === 6) return host === "::1" || host === "0:0:0:0:0:0:0:1";
  return false;
}

/**
 * `"production/openai/api-key"` → agent `"production/openai"`, key `"api-key"`: split at
 * the last `/`, since a key never contains one and an agent name may.
 */
export function splitPath(path: string): [agent: string, key: string] {
  const at = path.lastIndexOf("/");
  if (at <= 0 || at === path.length - 1) {
    throw new ConfigurationError(`path ${JSON.stringify(path)} is not AGENT/KEY (such as "production/openai/api-key")`);
  }
  return [path.slice(0, at), path.slice(at + 1)];
}

function time(text: string | null | undefined): Date | null {
  return text == null ? null : new Date(text);
}

interface RuntimeEntryWire {
  agent: string;
  key: string;
  value: string;
  version: number;
  kind: "secret" | "plain";
  origin: "agent" | "project";
  accessed_at: string;
}

interface RuntimeSecretsWire {
  agent: string;
  secrets: { name: string; value: string; version?: number; kind: "secret" | "plain"; origin: "agent" | "project" }[];
}

export class Client {
  readonly address: string;
  readonly #token?: SecretValue;
  readonly #tokenFile?: string;
  readonly #timeoutMs: number;

  constructor(options: ClientOptions = {}) {
    const env = process.env;
    this.address = (options.address ?? env[ADDRESS_VARIABLE] ?? DEFAULT_ADDRESS).replace(/\/+$/, "");
    let url: URL;
    try {
      url = new URL(this.address);
    } catch {
      throw new ConfigurationError(
        `agent-vault address ${JSON.stringify(this.address)} is not a URL; pass address or set ${ADDRESS_VARIABLE}`,
      );
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new ConfigurationError(
        `agent-vault address ${JSON.stringify(this.address)} is not http:// or https://; pass address or set ${ADDRESS_VARIABLE}`,
      );
    }
    if (url.protocol === "http:" && !options.allowInsecureHttp && !isLoopback(url.hostname)) {
      throw new ConfigurationError(
        `plain http:// to ${url.hostname}, which is not loopback, would send the token in clear; ` +
          "use https:// (agent-vault tls generate), or pass allowInsecureHttp on a network you trust",
      );
    }
    if (options.token) {
      this.#token = new SecretValue(options.token);
    } else if (options.tokenFile) {
      this.#tokenFile = options.tokenFile;
    } else if (env[TOKEN_VARIABLE]) {
      this.#token = new SecretValue(env[TOKEN_VARIABLE]!.trim());
    } else if (env[TOKEN_FILE_VARIABLE]) {
      this.#tokenFile = env[TOKEN_FILE_VARIABLE];
    } else {
      throw new ConfigurationError(
        `no agent-vault token: set ${TOKEN_VARIABLE} (or ${TOKEN_FILE_VARIABLE}, a file holding it), or pass token`,
      );
    }
    this.#timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** Shown by console.log: the address, never the token. */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `Client { address: '${this.address}' }`;
  }

  #currentToken(): string {
    if (this.#token) return this.#token.reveal();
    const file = this.#tokenFile!;
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? "error";
      throw new ConfigurationError(`cannot read the token file ${file} (${code}); check ${TOKEN_FILE_VARIABLE}`);
    }
    const first = text.split(/\r?\n/, 1)[0].trim();
    if (!first) throw new ConfigurationError(`the token file ${file} is empty`);
    return first;
  }

  async #call(
    endpoint: Endpoint,
    names: Record<string, string>,
    query: Record<string, string | undefined> = {},
    body?: unknown,
  ): Promise<any> {
    const [method, template] = ENDPOINTS[endpoint];
    // Names are percent-encoded whole (an agent name's `/` too), as the API expects.
    const path = template.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(names[name]));
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, v);
    const search = params.toString();
    const url = this.address + path + (search ? `?${search}` : "");
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers: {
          Authorization: `Bearer ${this.#currentToken()}`,
          Accept: "application/json",
          ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.#timeoutMs),
        redirect: "error",
      });
    } catch (err) {
      if (err instanceof ConfigurationError) throw err;
      const kind = (err as Error)?.name ?? "error";
      throw new TransportError(`${method} ${path} to ${this.address} failed: ${kind}`);
    }
    const text = await response.text();
    let data: any = undefined;
    try {
      data = text ? JSON.parse(text) : undefined;
    } catch {
      data = undefined;
    }
    if (response.ok) {
      if (data === undefined) {
        throw new TransportError(
          `${method} ${path}: the answer is not JSON (HTTP ${response.status}); is ${this.address} an agent-vault?`,
          { status: response.status },
        );
      }
      return data;
    }
    const detail = data?.error;
    if (detail && typeof detail.code === "string") {
      throw errorFor(response.status, detail.code, String(detail.message ?? ""));
    }
    throw errorFor(
      response.status,
      undefined,
      `${method} ${path}: no API error body; is ${this.address} an agent-vault?`,
    );
  }

  /**
   * One value (`GET /v1/runtime/secrets/{key}`): the agent's own entry, else the project
   * variable of that name. `agent` is needed only when the token reads several agents.
   */
  async getSecret(key: string, options: { agent?: string } = {}): Promise<Secret> {
    let agent = options.agent;
    // A key never contains "/": "production/openai/api-key" is a path.
    if (agent === undefined && key.includes("/")) [agent, key] = splitPath(key);
    const data: RuntimeEntryWire = await this.#call("getSecret", { key }, { agent });
    return Object.freeze({
      key: data.key,
      value: new SecretValue(data.value),
      version: data.version,
      accessedAt: time(data.accessed_at),
      agent: data.agent,
      kind: data.kind,
      origin: data.origin,
    });
  }

  /** Every value the token may read, by key (`GET /v1/runtime/secrets`). */
  async getSecrets(options: { agent?: string } = {}): Promise<Record<string, Secret>> {
    const data: RuntimeSecretsWire = await this.#call("getSecrets", {}, { agent: options.agent });
    const out: Record<string, Secret> = {};
    for (const s of data.secrets) {
      out[s.name] = Object.freeze({
        key: s.name,
        value: new SecretValue(s.value),
        version: s.version ?? 0,
        accessedAt: null,
        agent: data.agent,
        kind: s.kind,
        origin: s.origin,
      });
    }
    return out;
  }

  /**
   * Create or update an agent's entry (a write or admin token). Every write of a value is a
   * new version; `kind: "plain"` stores readable configuration. `value` undefined changes
   * the description or kind alone. Or one object with `path: "AGENT/KEY"` and `value`
   * (Agent Secret Store's form). `tier` defaults to `standard` on create and is kept on update.
   */
  async setSecret(
    agent: string,
    key: string,
    value: string | SecretValue | undefined,
    options?: SetSecretOptions,
  ): Promise<SetResult>;
  async setSecret(byPath: SetSecretByPath): Promise<SetResult>;
  async setSecret(
    first: string | SetSecretByPath,
    second?: string,
    third?: string | SecretValue,
    fourth: SetSecretOptions = {},
  ): Promise<SetResult> {
    let agent: string, key: string, value: string | SecretValue | undefined, options: SetSecretOptions;
    if (typeof first === "string") {
      if (typeof second !== "string") throw new TypeError("setSecret: give agent and key, or { path, value }");
      [agent, key, value, options] = [first, second, third, fourth];
    } else {
      if (second !== undefined) throw new TypeError("setSecret: give either { path, value } or agent and key, not both");
      [agent, key] = splitPath(first.path);
      [value, options] = [first.value, first];
    }
    const body: Record<string, unknown> = {};
    if (value !== undefined) body.value = value instanceof SecretValue ? value.reveal() : value;
    if (options.description !== undefined) body.description = options.description;
    if (options.kind !== undefined) body.kind = options.kind;
    if (options.tier !== undefined) body.tier = options.tier;
    if (options.tags !== undefined) body.tags = { ...options.tags };
    if (options.allowDangerousName) body.allow_dangerous_name = true;
    if (options.allowEmptyValue) body.allow_empty_value = true;
    const data: { created: boolean; changed: boolean; secret: EntryMeta } = await this.#call(
      "setSecret",
      { agent, key },
      {},
      body,
    );
    return Object.freeze({ created: data.created, changed: data.changed, entry: data.secret });
  }

  /**
   * Issue a scoped token (admin token): `scope` such as `"secrets:read:bot/*"` (or several),
   * `ttl` in seconds or as `"1h"` (`ttlSeconds`: the same in seconds).
   */
  async issueToken(scope: string | string[], options: IssueTokenOptions = {}): Promise<IssuedToken> {
    const body: Record<string, unknown> = { scopes: Array.isArray(scope) ? scope : [scope] };
    if (options.ttl !== undefined && options.ttlSeconds !== undefined) {
      throw new TypeError("issueToken: give ttl or ttlSeconds, not both");
    }
    if (options.ttl !== undefined) body.ttl = options.ttl;
    if (options.ttlSeconds !== undefined) body.ttl = options.ttlSeconds;
    if (options.description !== undefined) body.description = options.description;
    if (options.allowEmpty) body.allow_empty = true;
    const data = await this.#call("issueToken", {}, {}, body);
    const token = new SecretValue(data.token as string);
    return Object.freeze({
      id: data.id as string,
      token,
      value: token,
      scopes: data.scopes as string[],
      description: data.description as string,
      expiresAt: time(data.expires_at),
    });
  }

  /** The same as `issueToken` (the name other platforms' SDKs use). */
  requestToken(scope: string | string[], options: IssueTokenOptions = {}): Promise<IssuedToken> {
    return this.issueToken(scope, options);
  }
}
