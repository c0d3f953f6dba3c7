"""agent-vault for agents that read their secrets at call time.

>>> from agent_vault import Client
>>> async with Client() as vault:          # AGENT_VAULT_AGENT_TOKEN, AGENT_VAULT_ADDR
...     key = await vault.get_secret("OPENAI_API_KEY")
...     use(key.value.reveal())

See ``client`` for where the address and token come from, ``errors`` for the exceptions.
"""

from .client import (
    ADDRESS_VARIABLE,
    CA_CERT_VARIABLE,
    DEFAULT_ADDRESS,
    ENDPOINTS,
    TOKEN_FILE_VARIABLE,
    TOKEN_VARIABLE,
    Client,
    SyncClient,
)
from .errors import *  # noqa: F401,F403 (the exception classes are part of the API)
from .errors import __all__ as _error_names
from .types import IssuedToken, Secret, SecretValue, SetResult, Tier

AsyncClient = Client

__all__ = [
    "ADDRESS_VARIABLE",
    "CA_CERT_VARIABLE",
    "DEFAULT_ADDRESS",
    "ENDPOINTS",
    "TOKEN_FILE_VARIABLE",
    "TOKEN_VARIABLE",
    "AsyncClient",
    "Client",
    "IssuedToken",
    "Secret",
    "SecretValue",
    "SetResult",
    "SyncClient",
    "Tier",
] + list(_error_names)
