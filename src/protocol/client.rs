//! The one blocking HTTP client of the store API, used by the admin CLI (one method per
//! management endpoint) and by agent-run's store source (`get` with a header it builds from
//! its own token buffer). Shared here: the transport rules (`transport`), the request
//! building (path segments, the `Authorization` header composed per request in a wiped
//! buffer and marked sensitive) and the error-code handling (only a well-formed code is
//! kept). Owns no rules: the server decides everything.
//!
//! The store source's long-poll does not go through here (see `source::store_poll`): it
//! keeps a single copy of the token in agent-run's memory, which reqwest cannot.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroizing;

use super::transport::http_client_builder;
use super::wire::{
    AgentList, Approval, ApprovalList, ApprovalQuery, AuditList, AuditQuery, ErrorBody, Health,
    ImportRequest, ImportSummary, IssuedToken, ListQuery, PutResponse, PutSecretRequest,
    RollbackRequest, RollbackResponse, SecretList, SecretMeta, TokenList, TokenRequest, VarList,
    VersionList,
};

/// What can go wrong talking to a store. Carries addresses, paths, statuses and error
/// codes; never a token or a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid server address {addr:?}: {reason}")]
    Address { addr: String, reason: String },
    #[error(
        "refusing plain http to {host}, which is not a loopback address: the token and \
         values would cross the network in clear; use https, or --allow-insecure-http if \
         the network is trusted"
    )]
    InsecureHttp { host: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
    #[error("the token contains invalid characters")]
    BadToken,
    #[error("HTTP request to {url} failed: {source}")]
    Http {
        url: String,
        /// Stored `without_url()`: reqwest's message repeats the URL, and with the chain
        /// printed the server's address appeared three times.
        #[source]
        source: reqwest::Error,
    },
    /// A TLS problem retrying cannot fix (see `protocol::tls`): the message names the fix.
    #[error("cannot connect to {url}: {problem}")]
    Tls {
        url: String,
        problem: super::tls::TlsProblem,
    },
    /// An error answer. `message` is the server's text: the admin CLI shows it, agent-run
    /// never does (the answer may echo a request that carried its token).
    #[error("{message} (HTTP {status}, {code})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("internal error: encoding request: {0}")]
    Encode(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed request: its TLS problem if it has one that cannot heal, else the HTTP error
/// (without the URL, which the message names once).
fn http_error(url: String, source: reqwest::Error) -> Error {
    let problem = if url.starts_with("https://") {
        super::tls::diagnose(&source)
    } else {
        super::tls::diagnose_plain(&source)
    };
    match problem {
        Some(problem) => Error::Tls { url, problem },
        None => Error::Http {
            url,
            source: source.without_url(),
        },
    }
}

/// Default per-request timeout of the admin CLI (long polls add their wait on top).
const TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to one agent-vault server.
pub struct Client {
    base: String,
    /// The admin CLI's token; `None` for callers that pass a header per request.
    token: Option<SecretString>,
    http: reqwest::blocking::Client,
}

/// How a [`Client`] reaches the server.
pub struct Transport<'a> {
    /// `--proxy`: used only for non-loopback servers.
    pub proxy: Option<&'a reqwest::Url>,
    /// Extra trusted CAs (PEM bundle).
    pub ca_pem: Option<&'a [u8]>,
    pub timeout: Duration,
    pub connect_timeout: Option<Duration>,
    /// Keep idle connections. Off for run-time reads: an idle connection would keep a
    /// response body (values) in its read buffer.
    pub pooled: bool,
}

/// Percent-encode one path segment (names are validated by the server; this only keeps a
/// stray `/` or `?` from changing which endpoint is called).
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The `Authorization: Bearer` value for one request, composed in a buffer sized once and
/// wiped, marked sensitive so no HTTP layer prints it. `None` when the token holds
/// characters a header cannot carry.
pub fn bearer(token: &str) -> Option<HeaderValue> {
    let mut text = Zeroizing::new(Vec::with_capacity(7 + token.len()));
    text.extend_from_slice(b"Bearer ");
    text.extend_from_slice(token.as_bytes());
    let mut value = HeaderValue::from_bytes(&text).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// An agent-vault error code (`forbidden`, `not_found`): short lowercase words. Anything
/// else in the `code` field is not shown.
pub fn well_formed_code(code: &str) -> bool {
    (1..=40).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// The well-formed error code of an error answer's body, if it has one.
pub fn error_code(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|b| b.error.code)
        .filter(|code| well_formed_code(code))
}

/// The approval request id of an `approval_required` / `approval_denied` answer: lower-case
/// hex of at most 32 digits, or nothing (anything else could be an echo of the request).
pub fn approval_id(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.error.approval_id)
        .filter(|id| {
            (1..=32).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

impl Client {
    /// The admin CLI's client: `addr` is a base URL such as `http://127.0.0.1:8377`;
    /// `ca_cert` adds a PEM root for servers with a private CA or self-signed certificate.
    pub fn new(addr: &str, token: Option<SecretString>, ca_cert: Option<&Path>) -> Result<Client> {
        let pem = match ca_cert {
            Some(path) => Some(std::fs::read(path).map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?),
            None => None,
        };
        let transport = Transport {
            proxy: None,
            ca_pem: pem.as_deref(),
            timeout: TIMEOUT,
            connect_timeout: None,
            pooled: true,
        };
        let mut client = Client::with_transport(addr, &transport)?;
        client.token = token;
        Ok(client)
    }

    /// A client without a token of its own: each request carries the header its caller
    /// built (agent-run's store source).
    pub fn with_transport(addr: &str, transport: &Transport<'_>) -> Result<Client> {
        let mut builder = http_client_builder(transport.proxy, transport.ca_pem)
            .map_err(Error::Setup)?
            .timeout(transport.timeout);
        if let Some(connect) = transport.connect_timeout {
            builder = builder.connect_timeout(connect);
        }
        if !transport.pooled {
            builder = builder.pool_max_idle_per_host(0);
        }
        let http = builder.build().map_err(|source| Error::Http {
            url: addr.to_string(),
            source,
        })?;
        Ok(Client {
            base: addr.trim_end_matches('/').to_string(),
            token: None,
            http,
        })
    }

    /// `GET path_and_query` with the caller's `auth` header, bounded by `timeout` when
    /// given. The answer is returned whatever its status (see [`error_code`]).
    pub fn get(
        &self,
        path_and_query: &str,
        auth: HeaderValue,
        timeout: Option<Duration>,
    ) -> Result<Response> {
        let url = format!("{}{}", self.base, path_and_query);
        let mut request = self.http.get(&url).header(AUTHORIZATION, auth);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        request.send().map_err(|source| http_error(url, source))
    }

    fn request(&self, method: Method, path: &str) -> Result<RequestBuilder> {
        let mut builder = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = &self.token {
            let value = bearer(token.expose_secret()).ok_or(Error::BadToken)?;
            builder = builder.header(AUTHORIZATION, value);
        }
        Ok(builder)
    }

    fn execute(&self, builder: RequestBuilder, path: &str) -> Result<Response> {
        let url = format!("{}{}", self.base, path);
        let response = builder.send().map_err(|source| http_error(url, source))?;
        let status = response.status();
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            return Ok(response);
        }
        let text = Zeroizing::new(response.bytes().map(|b| b.to_vec()).unwrap_or_default());
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&text) {
            Ok(body) if well_formed_code(&body.error.code) => (body.error.code, body.error.message),
            _ => (
                "http_error".to_string(),
                format!("unexpected answer from {path}"),
            ),
        };
        Err(Error::Api {
            status: status.as_u16(),
            code,
            message,
        })
    }

    fn json<T: DeserializeOwned>(&self, builder: RequestBuilder, path: &str) -> Result<T> {
        let response = self.execute(builder, path)?;
        let url = format!("{}{}", self.base, path);
        response.json::<T>().map_err(|source| Error::Http {
            url,
            source: source.without_url(),
        })
    }

    fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.json(self.request(Method::GET, path)?, path)
    }

    fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let bytes = zeroize::Zeroizing::new(
            serde_json::to_vec(body).map_err(|err| Error::Encode(err.to_string()))?,
        );
        let builder = self
            .request(method, path)?
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(bytes.to_vec());
        self.json(builder, path)
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.execute(self.request(Method::DELETE, path)?, path)
            .map(drop)
    }

    pub fn health(&self) -> Result<Health> {
        self.get_json("/v1/health")
    }

    pub fn put_secret(
        &self,
        agent: &str,
        key: &str,
        req: &PutSecretRequest,
    ) -> Result<PutResponse> {
        let path = format!("/v1/agents/{}/secrets/{}", segment(agent), segment(key));
        self.send_json(Method::PUT, &path, req)
    }

    pub fn list_agents(&self) -> Result<AgentList> {
        self.get_json("/v1/agents")
    }

    pub fn list_secrets(&self, agent: &str, query: &ListQuery) -> Result<SecretList> {
        let path = format!("/v1/agents/{}/secrets", segment(agent));
        let builder = self.request(Method::GET, &path)?.query(query);
        self.json(builder, &path)
    }

    pub fn describe_secret(&self, agent: &str, key: &str) -> Result<SecretMeta> {
        self.get_json(&format!(
            "/v1/agents/{}/secrets/{}",
            segment(agent),
            segment(key)
        ))
    }

    pub fn delete_secret(&self, agent: &str, key: &str) -> Result<()> {
        self.delete(&format!(
            "/v1/agents/{}/secrets/{}",
            segment(agent),
            segment(key)
        ))
    }

    pub fn secret_versions(&self, agent: &str, key: &str) -> Result<VersionList> {
        self.get_json(&format!(
            "/v1/agents/{}/secrets/{}/versions",
            segment(agent),
            segment(key)
        ))
    }

    pub fn rollback_secret(
        &self,
        agent: &str,
        key: &str,
        to: Option<i64>,
    ) -> Result<RollbackResponse> {
        let path = format!(
            "/v1/agents/{}/secrets/{}/rollback",
            segment(agent),
            segment(key)
        );
        self.send_json(Method::POST, &path, &RollbackRequest { to })
    }

    pub fn import(&self, agent: &str, req: &ImportRequest) -> Result<ImportSummary> {
        self.send_json(
            Method::POST,
            &format!("/v1/agents/{}/import", segment(agent)),
            req,
        )
    }

    /// `vars import`: the same all-or-nothing import, into the project variables.
    pub fn import_vars(&self, req: &ImportRequest) -> Result<ImportSummary> {
        self.send_json(Method::POST, "/v1/vars", req)
    }

    pub fn put_var(&self, key: &str, req: &PutSecretRequest) -> Result<PutResponse> {
        self.send_json(Method::PUT, &format!("/v1/vars/{}", segment(key)), req)
    }

    pub fn list_vars(&self, query: &ListQuery) -> Result<VarList> {
        let path = "/v1/vars";
        let builder = self.request(Method::GET, path)?.query(query);
        self.json(builder, path)
    }

    pub fn describe_var(&self, key: &str) -> Result<SecretMeta> {
        self.get_json(&format!("/v1/vars/{}", segment(key)))
    }

    pub fn delete_var(&self, key: &str) -> Result<()> {
        self.delete(&format!("/v1/vars/{}", segment(key)))
    }

    pub fn issue_token(&self, req: &TokenRequest) -> Result<IssuedToken> {
        self.send_json(Method::POST, "/v1/tokens", req)
    }

    pub fn list_tokens(&self) -> Result<TokenList> {
        self.get_json("/v1/tokens")
    }

    pub fn revoke_token(&self, id: &str) -> Result<()> {
        self.delete(&format!("/v1/tokens/{}", segment(id)))
    }

    pub fn list_approvals(&self, query: &ApprovalQuery) -> Result<ApprovalList> {
        let path = "/v1/approvals";
        let builder = self.request(Method::GET, path)?.query(query);
        self.json(builder, path)
    }

    /// `approve` true approves, false denies.
    pub fn decide_approval(&self, id: &str, approve: bool) -> Result<Approval> {
        let verb = if approve { "approve" } else { "deny" };
        let path = format!("/v1/approvals/{}/{verb}", segment(id));
        self.send_json(Method::POST, &path, &serde_json::json!({}))
    }

    pub fn audit(&self, query: &AuditQuery) -> Result<AuditList> {
        let path = "/v1/audit";
        let builder = self.request(Method::GET, path)?.query(query);
        self.json(builder, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_codes_are_kept() {
        let body = |code: &str| format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#);
        assert_eq!(
            error_code(body("not_found").as_bytes()).as_deref(),
            Some("not_found")
        );
        for bad in ["", "Bearer avt_x", "a-b", &"x".repeat(41)] {
            assert_eq!(error_code(body(bad).as_bytes()), None, "{bad}");
        }
        assert_eq!(error_code(b"not json"), None);
    }

    #[test]
    fn the_header_is_sensitive() {
        let value = bearer("avt_abc").expect("a header value");
        assert!(value.is_sensitive());
        assert_eq!(value.to_str().ok(), Some("Bearer avt_abc"));
        assert!(bearer("bad\ntoken").is_none());
    }
}
