/**
 * Typed errors: one class per stable error code of the API.
 *
 * The store answers every error as `{"error": {"code": "...", "message": "..."}}`; the codes
 * are listed in `docs/openapi.yaml` and never change meaning, so code may branch on the
 * class (`err instanceof NotFound`). Messages name keys, agents and token ids, never a value
 * or a token.
 */

/** Base of every error this package throws. */
export class AgentVaultError extends Error {
  /** The API's stable error code (undefined when the answer had none). */
  readonly code?: string;
  /** The HTTP status of the answer, if there was one. */
  readonly status?: number;

  constructor(message: string, options: { status?: number; code?: string } = {}) {
    super(message);
    this.name = new.target.name;
    this.status = options.status;
    this.code = options.code;
  }
}

/** The client cannot be used as set up (no token, plain HTTP off loopback, …). */
export class ConfigurationError extends AgentVaultError {}
/** The store could not be reached, or its answer was not the API's. */
export class TransportError extends AgentVaultError {}
/** An error answer of the API (a subclass per known code). */
export class ApiError extends AgentVaultError {}

/** The request was refused as invalid (HTTP 400/413); nothing changed. */
export class BadRequest extends ApiError {}
export class InvalidName extends BadRequest {}
/** The name changes how a program starts (`PATH`, `LD_*`…): `allowDangerousName` if meant. */
export class DangerousName extends BadRequest {}
/** An empty or whitespace-only value: `allowEmptyValue` if meant. */
export class EmptyValue extends BadRequest {}
export class InvalidValue extends BadRequest {}
export class ValueTooLarge extends BadRequest {}
export class InvalidRequest extends BadRequest {}
export class InvalidScope extends BadRequest {}
/** A read scope for an agent without entries: `allowEmpty` issues it anyway. */
export class UnknownAgent extends BadRequest {}
/** The token reads several agents (several scopes, or `PREFIX/**`): name one with `agent`. */
export class AgentRequired extends BadRequest {}
export class InvalidTag extends BadRequest {}
export class InvalidQuery extends BadRequest {}
export class BadJson extends BadRequest {}
export class BadBody extends BadRequest {}
export class BodyTooLarge extends BadRequest {}
/** Missing, malformed, unknown, expired or revoked token (HTTP 401). */
export class Unauthorized extends ApiError {}
/** The token's scopes do not allow the call (HTTP 403). */
export class Forbidden extends ApiError {}
/**
 * A value read with a token that reads no agent (an admin or write token): issue a
 * `secrets:read:AGENT/PATTERN` token for the agent instead.
 */
export class NotAReadToken extends Forbidden {}
/**
 * The token's scope covers a critical entry: it reads nothing until an admin other than its
 * issuer approves its request (`agent-vault approvals approve ID`).
 */
export class ApprovalRequired extends Forbidden {}
/** The token's approval request was denied: it reads nothing. */
export class ApprovalDenied extends Forbidden {}
/** An approval decided by the token's own issuer: another admin must decide it. */
export class SelfApproval extends Forbidden {}
export class NotFound extends ApiError {}
export class Conflict extends ApiError {}
/** The store cannot answer now (HTTP 503); retry later. */
export class Unavailable extends ApiError {}
export class TooManyWaiters extends Unavailable {}
export class ShuttingDown extends Unavailable {}
export class NotReady extends Unavailable {}
export class InternalError extends ApiError {}

type ApiErrorClass = new (message: string, options?: { status?: number; code?: string }) => ApiError;

/**
 * Every stable code of the API and the class thrown for it (checked against
 * `docs/openapi.yaml` by `sdk/tests/test_openapi_contract.py`).
 */
export const ERROR_CLASSES: Readonly<Record<string, ApiErrorClass>> = Object.freeze({
  invalid_name: InvalidName,
  dangerous_name: DangerousName,
  empty_value: EmptyValue,
  invalid_value: InvalidValue,
  value_too_large: ValueTooLarge,
  invalid_request: InvalidRequest,
  invalid_scope: InvalidScope,
  unknown_agent: UnknownAgent,
  agent_required: AgentRequired,
  invalid_tag: InvalidTag,
  invalid_query: InvalidQuery,
  bad_json: BadJson,
  bad_body: BadBody,
  body_too_large: BodyTooLarge,
  unauthorized: Unauthorized,
  forbidden: Forbidden,
  not_a_read_token: NotAReadToken,
  approval_required: ApprovalRequired,
  approval_denied: ApprovalDenied,
  self_approval: SelfApproval,
  not_found: NotFound,
  conflict: Conflict,
  too_many_waiters: TooManyWaiters,
  shutting_down: ShuttingDown,
  not_ready: NotReady,
  internal: InternalError,
});

/** The error for an error answer: by its code, else by its status. */
export function errorFor(status: number, code: string | undefined, message: string): ApiError {
  let cls: ApiErrorClass | undefined = code ? ERROR_CLASSES[code] : undefined;
  if (!cls) {
    if (status === 401) cls = Unauthorized;
    else if (status === 403) cls = Forbidden;
    else if (status === 404) cls = NotFound;
    else if (status === 503) cls = Unavailable;
    else if (status >= 400 && status < 500) cls = BadRequest;
    else cls = ApiError;
  }
  const shown = code ? `${message} [${code}] (HTTP ${status})` : `${message} (HTTP ${status})`;
  return new cls(shown, { status, code });
}
