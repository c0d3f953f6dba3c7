/**
 * Values and tokens as the calls return them: a `SecretValue` prints as `****` through
 * `String()`, template literals, `JSON.stringify` and `console.log`, so logging an object
 * never shows it; `reveal()` gives the text where it is used.
 */

const MASK = "****";

export class SecretValue {
  // An ES private field: not enumerable, not shown by util.inspect, not copied by spread.
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  /** The value in clear: call it where the value is used, nowhere else. */
  reveal(): string {
    return this.#value;
  }

  get length(): number {
    return this.#value.length;
  }

  toString(): string {
    return MASK;
  }

  toJSON(): string {
    return MASK;
  }

  [Symbol.toPrimitive](): string {
    return MASK;
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `SecretValue('${MASK}')`;
  }
}

/** An entry's tier: `critical` reads need an approval (see docs/openapi.yaml). */
export type Tier = "standard" | "sensitive" | "critical";

/** One entry of a run-time read. */
export interface Secret {
  readonly key: string;
  readonly value: SecretValue;
  readonly version: number;
  /** When this read happened (the time its audit record carries); null in a set read. */
  readonly accessedAt: Date | null;
  readonly agent: string;
  /** `secret` (write-only) or `plain`. */
  readonly kind: "secret" | "plain";
  /** `agent` (its own entry) or `project` (a project variable). */
  readonly origin: "agent" | "project";
}

/** A token as issued: the only time the store shows it. */
export interface IssuedToken {
  readonly id: string;
  readonly token: SecretValue;
  readonly scopes: string[];
  readonly description: string;
  readonly expiresAt: Date | null;
  /** The same as `token`: Agent Secret Store's name for it. */
  readonly value: SecretValue;
}

/** Metadata of an entry as the management calls show it (a secret only as a preview). */
export interface EntryMeta {
  agent?: string;
  key: string;
  kind: "secret" | "plain";
  tier: Tier;
  tags: Record<string, string>;
  description: string;
  version: number;
  created_at: string;
  updated_at: string;
  last_read_at: string | null;
  preview: string;
  value?: string;
}

/** What a set did: `created` (the key is new), `changed` (a new version or description). */
export interface SetResult {
  readonly created: boolean;
  readonly changed: boolean;
  readonly entry: EntryMeta;
}
