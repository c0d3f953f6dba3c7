"""The clients: :class:`Client` (async) and :class:`SyncClient`, over one request builder.

Every call goes through :data:`ENDPOINTS`, so the API paths this package uses are listed in
one place (``sdk/tests/test_openapi_contract.py`` checks them against ``docs/openapi.yaml``).

Where the settings come from, first found wins:

- address: the ``address`` argument, ``AGENT_VAULT_ADDR``, ``http://127.0.0.1:8377``;
- token: the ``token`` argument, ``token_file``, ``AGENT_VAULT_AGENT_TOKEN``,
  ``AGENT_VAULT_AGENT_TOKEN_FILE`` (its first line, read again at each call so a rotated
  file is picked up). These two variables are meant for the agent (agent-run passes them to
  its child; it removes ``AGENT_VAULT_TOKEN``, the operator's admin token);
- extra CA certificate: ``ca_cert``, ``AGENT_VAULT_CA_CERT``.

Plain ``http://`` is refused off loopback (the token would cross the network in clear),
unless ``allow_insecure_http=True``; the same rule as agent-run's and the admin CLI's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import ssl
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import quote, urlsplit

import httpx

from .errors import ConfigurationError, TransportError, error_for
from .types import IssuedToken, Secret, SecretValue, SetResult, Tier, parse_time

DEFAULT_ADDRESS = "http://127.0.0.1:8377"
TOKEN_VARIABLE = "AGENT_VAULT_AGENT_TOKEN"
TOKEN_FILE_VARIABLE = "AGENT_VAULT_AGENT_TOKEN_FILE"
ADDRESS_VARIABLE = "AGENT_VAULT_ADDR"
CA_CERT_VARIABLE = "AGENT_VAULT_CA_CERT"

#: Every call of the API this package makes: name → (method, path template).
ENDPOINTS: Dict[str, Tuple[str, str]] = {
    "get_secret": ("GET", "/v1/runtime/secrets/{key}"),
    "get_secrets": ("GET", "/v1/runtime/secrets"),
    "set_secret": ("PUT", "/v1/agents/{agent}/secrets/{key}"),
    "issue_token": ("POST", "/v1/tokens"),
}

Ttl = Union[int, str, None]


def split_path(path: str) -> Tuple[str, str]:
    """``"production/openai/api-key"`` → agent ``"production/openai"``, key ``"api-key"``.

    Split at the last ``/``: a key never contains one, an agent name may (Agent Secret
    Store's paths name the agent's folders, then the key)."""
    agent, sep, key = path.rpartition("/")
    if not sep or not agent or not key:
        raise ConfigurationError(
            f"path {path!r} is not AGENT/KEY (such as \"production/openai/api-key\")"
        )
    return agent, key


def _agent_key(agent: Optional[str], key: Optional[str], path: Optional[str]) -> Tuple[str, str]:
    """The agent and key of a set: either ``agent`` and ``key``, or ``path``, never both."""
    if path is not None:
        if agent is not None or key is not None:
            raise TypeError("set_secret: give either path= or agent= and key=, not both")
        return split_path(path)
    if agent is None or key is None:
        raise TypeError("set_secret: give agent= and key=, or path= (\"AGENT/KEY\")")
    return agent, key


def _ttl(ttl: Ttl, ttl_seconds: Optional[int]) -> Ttl:
    """``ttl_seconds`` is Agent Secret Store's name for ``ttl``."""
    if ttl_seconds is not None:
        if ttl is not None:
            raise TypeError("issue_token: give ttl= or ttl_seconds=, not both")
        return ttl_seconds
    return ttl


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Request:
    """One call, built without I/O: method, URL, query, JSON body."""

    __slots__ = ("method", "path", "params", "body")

    def __init__(self, endpoint: str, names: Mapping[str, str], params=None, body=None):
        method, template = ENDPOINTS[endpoint]
        # Names are percent-encoded whole (an agent name's `/` too), as the API expects.
        self.method = method
        self.path = template.format(**{k: quote(v, safe="") for k, v in names.items()})
        self.params = {k: v for k, v in (params or {}).items() if v is not None}
        self.body = body


class _Core:
    """Settings and the parts shared by both clients: requests and answers."""

    def __init__(
        self,
        address: Optional[str],
        token: Optional[str],
        token_file: Optional[Union[str, os.PathLike]],
        ca_cert: Optional[Union[str, os.PathLike]],
        allow_insecure_http: bool,
    ):
        self.address = (address or os.environ.get(ADDRESS_VARIABLE) or DEFAULT_ADDRESS).rstrip("/")
        url = urlsplit(self.address)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigurationError(
                f"agent-vault address {self.address!r} is not an http:// or https:// URL; "
                f"pass address= or set {ADDRESS_VARIABLE}"
            )
        if url.scheme == "http" and not allow_insecure_http and not _is_loopback(url.hostname):
            raise ConfigurationError(
                f"plain http:// to {url.hostname}, which is not loopback, would send the token "
                "in clear; use https:// (agent-vault tls generate), or pass "
                "allow_insecure_http=True on a network you trust"
            )
        self._token = SecretValue(token) if token else None
        file = token_file
        if self._token is None and file is None:
            env_token = os.environ.get(TOKEN_VARIABLE)
            if env_token:
                self._token = SecretValue(env_token.strip())
            elif os.environ.get(TOKEN_FILE_VARIABLE):
                file = os.environ[TOKEN_FILE_VARIABLE]
        self._token_file = Path(file) if file is not None else None
        if self._token is None and self._token_file is None:
            raise ConfigurationError(
                f"no agent-vault token: set {TOKEN_VARIABLE} (or {TOKEN_FILE_VARIABLE}, a file "
                "holding it), or pass token="
            )
        ca = ca_cert if ca_cert is not None else os.environ.get(CA_CERT_VARIABLE)
        self.verify: Union[bool, ssl.SSLContext] = True
        if ca:
            self.verify = ssl.create_default_context(cafile=os.fspath(ca))

    def token(self) -> SecretValue:
        if self._token is not None:
            return self._token
        assert self._token_file is not None
        try:
            lines = self._token_file.read_text().splitlines()
        except OSError as err:
            raise ConfigurationError(
                f"cannot read the token file {self._token_file}: {err.strerror}; "
                f"check {TOKEN_FILE_VARIABLE}"
            ) from None
        first = lines[0].strip() if lines else ""
        if not first:
            raise ConfigurationError(f"the token file {self._token_file} is empty")
        return SecretValue(first)

    def headers(self, request: _Request) -> Dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token().reveal()}", "Accept": "application/json"}
        if request.body is not None:
            headers["Content-Type"] = "application/json"
        return headers

    def check(self, request: _Request, response: httpx.Response) -> Any:
        """The answer's JSON, or the typed error of an error answer."""
        try:
            data = response.json() if response.content else None
        except ValueError:
            data = None
        if response.is_success:
            if data is None:
                raise TransportError(
                    f"{request.method} {request.path}: the answer is not JSON "
                    f"(HTTP {response.status_code}); is {self.address} an agent-vault?",
                    status=response.status_code,
                )
            return data
        detail = data.get("error") if isinstance(data, dict) else None
        if isinstance(detail, dict) and isinstance(detail.get("code"), str):
            raise error_for(response.status_code, detail["code"], str(detail.get("message", "")))
        raise error_for(
            response.status_code,
            None,
            f"{request.method} {request.path}: HTTP {response.status_code} without the API's "
            f"error body; is {self.address} an agent-vault?",
        )

    # Requests and answers of each call.

    @staticmethod
    def get_secret_request(key: str, agent: Optional[str]) -> _Request:
        if agent is None and "/" in key:
            # A key never contains "/": "production/openai/api-key" is a path.
            agent, key = split_path(key)
        return _Request("get_secret", {"key": key}, params={"agent": agent})

    @staticmethod
    def get_secret_answer(data: Dict[str, Any]) -> Secret:
        return Secret(
            key=data["key"],
            value=SecretValue(data["value"]),
            version=int(data["version"]),
            accessed_at=parse_time(data["accessed_at"]),
            agent=data["agent"],
            kind=data["kind"],
            origin=data["origin"],
        )

    @staticmethod
    def get_secrets_request(agent: Optional[str]) -> _Request:
        return _Request("get_secrets", {}, params={"agent": agent})

    @staticmethod
    def get_secrets_answer(data: Dict[str, Any]) -> Dict[str, Secret]:
        return {
            s["name"]: Secret(
                key=s["name"],
                value=SecretValue(s["value"]),
                version=int(s.get("version", 0)),
                accessed_at=None,
                agent=data["agent"],
                kind=s["kind"],
                origin=s["origin"],
            )
            for s in data["secrets"]
        }

    @staticmethod
    def set_secret_request(
        agent: str,
        key: str,
        value: Optional[Union[str, SecretValue]],
        description: Optional[str],
        kind: Optional[str],
        allow_dangerous_name: bool,
        allow_empty_value: bool,
        tier: Optional[Tier] = None,
        tags: Optional[Mapping[str, str]] = None,
    ) -> _Request:
        body: Dict[str, Any] = {}
        if value is not None:
            body["value"] = value.reveal() if isinstance(value, SecretValue) else value
        if description is not None:
            body["description"] = description
        if kind is not None:
            body["kind"] = kind
        if tier is not None:
            body["tier"] = tier
        if tags is not None:
            body["tags"] = dict(tags)
        if allow_dangerous_name:
            body["allow_dangerous_name"] = True
        if allow_empty_value:
            body["allow_empty_value"] = True
        return _Request("set_secret", {"agent": agent, "key": key}, body=body)

    @staticmethod
    def set_secret_answer(data: Dict[str, Any]) -> SetResult:
        return SetResult(created=data["created"], changed=data["changed"], entry=data["secret"])

    @staticmethod
    def issue_token_request(
        scopes: Union[str, Sequence[str]],
        ttl: Ttl,
        description: Optional[str],
        allow_empty: bool,
    ) -> _Request:
        body: Dict[str, Any] = {"scopes": [scopes] if isinstance(scopes, str) else list(scopes)}
        if ttl is not None:
            body["ttl"] = ttl
        if description is not None:
            body["description"] = description
        if allow_empty:
            body["allow_empty"] = True
        return _Request("issue_token", {}, body=body)

    @staticmethod
    def issue_token_answer(data: Dict[str, Any]) -> IssuedToken:
        return IssuedToken(
            id=data["id"],
            token=SecretValue(data["token"]),
            scopes=list(data["scopes"]),
            description=data["description"],
            expires_at=parse_time(data["expires_at"]),
        )


def _content(request: _Request) -> Optional[bytes]:
    return None if request.body is None else json.dumps(request.body).encode()


class Client:
    """The async client: ``async with Client() as vault: secret = await vault.get_secret("K")``.

    ``token`` is a read token (``secrets:read:AGENT/PATTERN``) for :meth:`get_secret`, a
    write or admin token for :meth:`set_secret` and :meth:`issue_token`."""

    def __init__(
        self,
        address: Optional[str] = None,
        token: Optional[str] = None,
        *,
        token_file: Optional[Union[str, os.PathLike]] = None,
        ca_cert: Optional[Union[str, os.PathLike]] = None,
        timeout: float = 30.0,
        allow_insecure_http: bool = False,
        max_in_flight: int = 8,
    ):
        self._core = _Core(address, token, token_file, ca_cert, allow_insecure_http)
        self._http = httpx.AsyncClient(
            base_url=self._core.address,
            verify=self._core.verify,
            timeout=timeout,
            trust_env=False,  # no proxy from the environment: the token goes to the store only
            limits=httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight),
        )
        # Calls beyond `max_in_flight` wait here rather than in httpx's pool, whose waiting
        # queue slows every call down as it grows (500 gathered reads: ~80/s through the pool
        # queue, ~300/s through this semaphore) and times out after `timeout` (PoolTimeout).
        # Made on first use: a semaphore belongs to the event loop it first waits in.
        self._max_in_flight = max_in_flight
        self._slots: Optional[asyncio.Semaphore] = None

    @property
    def address(self) -> str:
        return self._core.address

    def __repr__(self) -> str:
        return f"Client(address={self._core.address!r})"

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, request: _Request) -> Any:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_in_flight)
        async with self._slots:
            return await self._send_now(request)

    async def _send_now(self, request: _Request) -> Any:
        try:
            response = await self._http.request(
                request.method,
                request.path,
                params=request.params,
                content=_content(request),
                headers=self._core.headers(request),
            )
        except httpx.HTTPError as err:
            raise TransportError(
                f"{request.method} {request.path} to {self._core.address} failed: "
                f"{type(err).__name__}"
            ) from None
        return self._core.check(request, response)

    async def get_secret(self, key: str, agent: Optional[str] = None) -> Secret:
        """One value (``GET /v1/runtime/secrets/{key}``): the agent's own entry, else the
        project variable of that name. ``agent`` is needed only when the token reads several."""
        data = await self._send(_Core.get_secret_request(key, agent))
        return _Core.get_secret_answer(data)

    async def get_secrets(self, agent: Optional[str] = None) -> Dict[str, Secret]:
        """Every value the token may read, by key (``GET /v1/runtime/secrets``)."""
        data = await self._send(_Core.get_secrets_request(agent))
        return _Core.get_secrets_answer(data)

    async def set_secret(
        self,
        agent: Optional[str] = None,
        key: Optional[str] = None,
        value: Optional[Union[str, SecretValue]] = None,
        *,
        path: Optional[str] = None,
        description: Optional[str] = None,
        kind: Optional[str] = None,
        tier: Optional[Tier] = None,
        tags: Optional[Mapping[str, str]] = None,
        allow_dangerous_name: bool = False,
        allow_empty_value: bool = False,
    ) -> SetResult:
        """Create or update an agent's entry (a write or admin token). Every write of a value
        is a new version; ``kind="plain"`` stores readable configuration. ``path="AGENT/KEY"``
        (split at the last ``/``) stands for ``agent`` and ``key``; ``tier`` defaults to
        ``standard`` on create and is kept on update; ``tags`` are added or replaced by name."""
        agent, key = _agent_key(agent, key, path)
        data = await self._send(
            _Core.set_secret_request(
                agent,
                key,
                value,
                description,
                kind,
                allow_dangerous_name,
                allow_empty_value,
                tier,
                tags,
            )
        )
        return _Core.set_secret_answer(data)

    async def issue_token(
        self,
        scope: Union[str, Sequence[str]],
        ttl: Ttl = None,
        *,
        ttl_seconds: Optional[int] = None,
        description: Optional[str] = None,
        allow_empty: bool = False,
    ) -> IssuedToken:
        """Issue a scoped token (admin token): ``scope`` such as ``"secrets:read:bot/*"`` (or
        several), ``ttl`` in seconds or as ``"1h"`` (``ttl_seconds``: the same, by Agent Secret
        Store's name)."""
        data = await self._send(_Core.issue_token_request(scope, _ttl(ttl, ttl_seconds), description, allow_empty))
        return _Core.issue_token_answer(data)

    request_token = issue_token


class SyncClient:
    """The same calls, blocking: ``with SyncClient() as vault: vault.get_secret("K")``."""

    def __init__(
        self,
        address: Optional[str] = None,
        token: Optional[str] = None,
        *,
        token_file: Optional[Union[str, os.PathLike]] = None,
        ca_cert: Optional[Union[str, os.PathLike]] = None,
        timeout: float = 30.0,
        allow_insecure_http: bool = False,
    ):
        self._core = _Core(address, token, token_file, ca_cert, allow_insecure_http)
        self._http = httpx.Client(
            base_url=self._core.address,
            verify=self._core.verify,
            timeout=timeout,
            trust_env=False,
        )

    @property
    def address(self) -> str:
        return self._core.address

    def __repr__(self) -> str:
        return f"SyncClient(address={self._core.address!r})"

    def __enter__(self) -> "SyncClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, request: _Request) -> Any:
        try:
            response = self._http.request(
                request.method,
                request.path,
                params=request.params,
                content=_content(request),
                headers=self._core.headers(request),
            )
        except httpx.HTTPError as err:
            raise TransportError(
                f"{request.method} {request.path} to {self._core.address} failed: "
                f"{type(err).__name__}"
            ) from None
        return self._core.check(request, response)

    def get_secret(self, key: str, agent: Optional[str] = None) -> Secret:
        return _Core.get_secret_answer(self._send(_Core.get_secret_request(key, agent)))

    def get_secrets(self, agent: Optional[str] = None) -> Dict[str, Secret]:
        return _Core.get_secrets_answer(self._send(_Core.get_secrets_request(agent)))

    def set_secret(
        self,
        agent: Optional[str] = None,
        key: Optional[str] = None,
        value: Optional[Union[str, SecretValue]] = None,
        *,
        path: Optional[str] = None,
        description: Optional[str] = None,
        kind: Optional[str] = None,
        tier: Optional[Tier] = None,
        tags: Optional[Mapping[str, str]] = None,
        allow_dangerous_name: bool = False,
        allow_empty_value: bool = False,
    ) -> SetResult:
        agent, key = _agent_key(agent, key, path)
        return _Core.set_secret_answer(
            self._send(
                _Core.set_secret_request(
                    agent,
                    key,
                    value,
                    description,
                    kind,
                    allow_dangerous_name,
                    allow_empty_value,
                    tier,
                    tags,
                )
            )
        )

    def issue_token(
        self,
        scope: Union[str, Sequence[str]],
        ttl: Ttl = None,
        *,
        ttl_seconds: Optional[int] = None,
        description: Optional[str] = None,
        allow_empty: bool = False,
    ) -> IssuedToken:
        return _Core.issue_token_answer(
            self._send(_Core.issue_token_request(scope, _ttl(ttl, ttl_seconds), description, allow_empty))
        )

    request_token = issue_token
