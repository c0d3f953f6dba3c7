/**
 * agent-vault for agents that read their secrets at call time.
 *
 * ```ts
 * import { Client } from "agent-vault";
 * const vault = new Client();                     // AGENT_VAULT_AGENT_TOKEN, AGENT_VAULT_ADDR
 * const key = await vault.getSecret("OPENAI_API_KEY");
 * console.log(key);                               // value: SecretValue('****'), version: 3, …
 * callOpenAI(key.value.reveal());
 * ```
 */

export {
  ADDRESS_VARIABLE,
  Client,
  DEFAULT_ADDRESS,
  ENDPOINTS,
  splitPath,
  TOKEN_FILE_VARIABLE,
  TOKEN_VARIABLE,
} from "./client.js";
export type { ClientOptions, IssueTokenOptions, SetSecretByPath, SetSecretOptions } from "./client.js";
export * from "./errors.js";
export { SecretValue } from "./secret.js";
export type { EntryMeta, IssuedToken, Secret, SetResult, Tier } from "./secret.js";
