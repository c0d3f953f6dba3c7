"""Typed errors: one exception class per stable error code of the API.

The store answers every error as ``{"error": {"code": "...", "message": "..."}}``; the codes
are listed in ``docs/openapi.yaml`` and never change meaning, so code may branch on the
class. Messages name keys, agents and token ids, never a value or a token.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

__all__ = [
    "AgentVaultError",
    "ConfigurationError",
    "TransportError",
    "ApiError",
    "BadRequest",
    "InvalidName",
    "DangerousName",
    "EmptyValue",
    "InvalidValue",
    "ValueTooLarge",
    "InvalidRequest",
    "InvalidScope",
    "UnknownAgent",
    "AgentRequired",
    "InvalidTag",
    "InvalidQuery",
    "BadJson",
    "BadBody",
    "BodyTooLarge",
    "Unauthorized",
    "Forbidden",
    "NotAReadToken",
    "ApprovalRequired",
    "ApprovalDenied",
    "SelfApproval",
    "NotFound",
    "Conflict",
    "Unavailable",
    "TooManyWaiters",
    "ShuttingDown",
    "NotReady",
    "InternalError",
    "ERROR_CLASSES",
    "error_for",
]


class AgentVaultError(Exception):
    """Base of every error this package raises."""

    #: The API's stable error code (``None`` when the answer had none).
    code: Optional[str] = None

    def __init__(self, message: str, *, status: Optional[int] = None, code: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.status = status
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        parts = [self.message]
        if self.code:
            parts.append(f"[{self.code}]")
        if self.status:
            parts.append(f"(HTTP {self.status})")
        return " ".join(parts)


class ConfigurationError(AgentVaultError):
    """The client cannot be used as set up (no token, plain HTTP off loopback, …)."""


class TransportError(AgentVaultError):
    """The store could not be reached, or its answer was not the API's."""


class ApiError(AgentVaultError):
    """An error answer of the API whose code this version does not know."""


# 400-class families.
class BadRequest(ApiError):
    """The request was refused as invalid (HTTP 400/413); nothing changed."""


class InvalidName(BadRequest):
    code = "invalid_name"


class DangerousName(BadRequest):
    """The name changes how a program starts (``PATH``, ``LD_*``…): pass
    ``allow_dangerous_name=True`` if that is really meant."""

    code = "dangerous_name"


class EmptyValue(BadRequest):
    """An empty or whitespace-only value: pass ``allow_empty_value=True`` if meant."""

    code = "empty_value"


class InvalidValue(BadRequest):
    code = "invalid_value"


class ValueTooLarge(BadRequest):
    code = "value_too_large"


class InvalidRequest(BadRequest):
    code = "invalid_request"


class InvalidScope(BadRequest):
    code = "invalid_scope"


class UnknownAgent(BadRequest):
    """A read scope for an agent without entries: ``allow_empty=True`` issues it anyway."""

    code = "unknown_agent"


class AgentRequired(BadRequest):
    """The token reads several agents (several scopes, or ``PREFIX/**``): name one with
    ``agent=``."""

    code = "agent_required"


class InvalidTag(BadRequest):
    code = "invalid_tag"


class InvalidQuery(BadRequest):
    code = "invalid_query"


class BadJson(BadRequest):
    code = "bad_json"


class BadBody(BadRequest):
    code = "bad_body"


class BodyTooLarge(BadRequest):
    code = "body_too_large"


class Unauthorized(ApiError):
    """Missing, malformed, unknown, expired or revoked token (HTTP 401)."""

    code = "unauthorized"


class Forbidden(ApiError):
    """The token's scopes do not allow the call (HTTP 403)."""

    code = "forbidden"


class NotAReadToken(Forbidden):
    """A value read with a token that reads no agent (an admin or write token): issue a
    ``secrets:read:AGENT/PATTERN`` token for the agent instead."""

    code = "not_a_read_token"


class ApprovalRequired(Forbidden):
    """The token's scope covers a critical entry: it reads nothing until an admin other than
    its issuer approves its request (``agent-vault approvals approve ID``)."""

    code = "approval_required"


class ApprovalDenied(Forbidden):
    """The token's approval request was denied: it reads nothing."""

    code = "approval_denied"


class SelfApproval(Forbidden):
    """An approval decided by the token's own issuer (or the token itself): another admin
    must decide it."""

    code = "self_approval"


class NotFound(ApiError):
    code = "not_found"


class Conflict(ApiError):
    code = "conflict"


class Unavailable(ApiError):
    """The store cannot answer now (HTTP 503); retry later."""


class TooManyWaiters(Unavailable):
    code = "too_many_waiters"


class ShuttingDown(Unavailable):
    code = "shutting_down"


class NotReady(Unavailable):
    code = "not_ready"


class InternalError(ApiError):
    code = "internal"


#: Every stable code of the API and the class raised for it (checked against
#: ``docs/openapi.yaml`` by ``sdk/tests/test_openapi_contract.py``).
ERROR_CLASSES: Dict[str, Type[ApiError]] = {
    cls.code: cls  # type: ignore[misc]
    for cls in (
        InvalidName,
        DangerousName,
        EmptyValue,
        InvalidValue,
        ValueTooLarge,
        InvalidRequest,
        InvalidScope,
        UnknownAgent,
        AgentRequired,
        InvalidTag,
        InvalidQuery,
        BadJson,
        BadBody,
        BodyTooLarge,
        Unauthorized,
        Forbidden,
        NotAReadToken,
        ApprovalRequired,
        ApprovalDenied,
        SelfApproval,
        NotFound,
        Conflict,
        TooManyWaiters,
        ShuttingDown,
        NotReady,
        InternalError,
    )
}


def error_for(status: int, code: Optional[str], message: str) -> ApiError:
    """The exception for an error answer: by its code, else by its status."""
    cls = ERROR_CLASSES.get(code or "")
    if cls is None:
        if status == 401:
            cls = Unauthorized
        elif status == 403:
            cls = Forbidden
        elif status == 404:
            cls = NotFound
        elif status == 503:
            cls = Unavailable
        elif 400 <= status < 500:
            cls = BadRequest
        else:
            cls = ApiError
    return cls(message, status=status, code=code)
