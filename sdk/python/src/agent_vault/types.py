"""What the calls return. A value or token is held in a :class:`SecretValue`, whose
``repr``/``str`` show ``****`` so that logging an object never prints it."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, List, Literal, Optional

_MASK = "****"

#: An entry's tier: ``critical`` reads need an approval (see docs/openapi.yaml).
Tier = Literal["standard", "sensitive", "critical"]


class SecretValue:
    """A value that prints as ``****``; :meth:`reveal` returns the text itself.

    Python strings are immutable and cannot be wiped: keep a revealed value only as long as
    the call that needs it, and drop the object afterwards."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        """The value in clear: call it where the value is used, nowhere else."""
        return self._value

    #: The name pydantic's ``SecretStr`` uses, for code that already calls it.
    get_secret_value = reveal

    def __repr__(self) -> str:
        return f"SecretValue('{_MASK}')"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, spec: str) -> str:
        return format(_MASK, spec)

    def __eq__(self, other: object) -> bool:
        # In constant time, as the store compares tokens.
        if isinstance(other, SecretValue):
            return hmac.compare_digest(self._value.encode(), other._value.encode())
        return NotImplemented

    # Not a dict key or set member: a hash is derived from the value.
    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        # Pickling would write the value to wherever the pickle goes.
        raise TypeError("a SecretValue is not picklable")

    def __len__(self) -> int:
        return len(self._value)


def parse_time(text: Optional[str]) -> Optional[datetime]:
    """The API's RFC 3339 times (UTC, ``Z``) as aware datetimes."""
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Secret:
    """One entry of a run-time read."""

    key: str
    value: SecretValue
    version: int
    #: When this read happened (the time its audit record carries); ``None`` in a set read.
    accessed_at: Optional[datetime]
    agent: str
    #: ``secret`` (write-only) or ``plain``.
    kind: str
    #: ``agent`` (its own entry) or ``project`` (a project variable).
    origin: str


@dataclass(frozen=True)
class IssuedToken:
    """A token as issued: the only time the store shows it."""

    id: str
    token: SecretValue
    scopes: List[str]
    description: str
    expires_at: Optional[datetime]

    @property
    def value(self) -> SecretValue:
        """The token (the same :class:`SecretValue` as :attr:`token`): Agent Secret Store's
        name for it."""
        return self.token


@dataclass(frozen=True)
class SetResult:
    """What a set did: ``created`` (the key is new), ``changed`` (a new version or
    description was written), and the entry's metadata (a secret only as a masked preview)."""

    created: bool
    changed: bool
    entry: Dict[str, Any] = field(repr=True)

    @property
    def version(self) -> int:
        return int(self.entry["version"])

    @property
    def tier(self) -> str:
        return str(self.entry["tier"])

    @property
    def tags(self) -> Dict[str, str]:
        return dict(self.entry["tags"])
