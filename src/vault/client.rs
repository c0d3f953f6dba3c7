//! Blocking HTTP client of the store API, used by the admin CLI (and usable by any sync
//! program). One method per endpoint; error answers become [`Error::Api`] with the server's
//! stable code and message. Owns no rules: the server decides everything.

use std::path::Path;
use std::time::Duration;

use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::model::{
    AuditList, AuditQuery, ErrorBody, Health, ImportRequest, ImportSummary, IssuedToken,
    PutResponse, PutSecretRequest, RollbackRequest, RollbackResponse, SecretList, SecretMeta,
    TokenList, TokenRequest, VarList, VersionList,
};
use super::{Error, Result};

/// Default per-request timeout (long polls add their wait on top).
const TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to one agent-vault server.
pub struct Client {
    base: String,
    token: Option<SecretString>,
    http: reqwest::blocking::Client,
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

/// The transport rule of `serve` and agent-run, for the admin CLI: `https://` anywhere,
/// `http://` only to a loopback host (127.0.0.0/8, `::1`, `localhost`) unless
/// `allow_insecure_http`. Decided from the address alone, before any connection, so a
/// refused command sends nothing (no token, no value).
pub fn check_transport(addr: &str, allow_insecure_http: bool) -> Result<()> {
    let url = reqwest::Url::parse(addr)
        .map_err(|e| Error::InvalidRequest(format!("invalid server address {addr:?}: {e}")))?;
    let host = url.host_str().unwrap_or("");
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback(host) => Ok(()),
        "http" => Err(Error::InvalidRequest(format!(
            "refusing plain http to {host}, which is not a loopback address: the token and \
             values would cross the network in clear; use https, or --allow-insecure-http if \
             the network is trusted"
        ))),
        other => Err(Error::InvalidRequest(format!(
            "invalid server address {addr:?}: scheme {other:?} is not http or https"
        ))),
    }
}

/// `localhost`, 127.0.0.0/8 or `[::1]` (as `Url::host_str` writes hosts).
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

impl Client {
    /// `addr` is a base URL such as `http://127.0.0.1:8377`; `ca_cert` adds a PEM root for
    /// servers with a private CA or self-signed certificate.
    pub fn new(addr: &str, token: Option<SecretString>, ca_cert: Option<&Path>) -> Result<Client> {
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(TIMEOUT)
            .use_rustls_tls();
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path).map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|source| Error::Http {
                url: path.display().to_string(),
                source,
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|source| Error::Http {
            url: addr.to_string(),
            source,
        })?;
        Ok(Client {
            base: addr.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    fn request(&self, method: Method, path: &str) -> Result<RequestBuilder> {
        let mut builder = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = &self.token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                .map_err(|_| {
                    Error::InvalidRequest("the token contains invalid characters".into())
                })?;
            value.set_sensitive(true);
            builder = builder.header(AUTHORIZATION, value);
        }
        Ok(builder)
    }

    fn execute(&self, builder: RequestBuilder, path: &str) -> Result<Response> {
        let url = format!("{}{}", self.base, path);
        let response = builder
            .send()
            .map_err(|source| Error::Http { url, source })?;
        let status = response.status();
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            return Ok(response);
        }
        let text = response.text().unwrap_or_default();
        let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => (body.error.code, body.error.message),
            Err(_) => (
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
        response
            .json::<T>()
            .map_err(|source| Error::Http { url, source })
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.json(self.request(Method::GET, path)?, path)
    }

    fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let bytes = zeroize::Zeroizing::new(
            serde_json::to_vec(body)
                .map_err(|err| Error::Internal(format!("encoding request: {err}")))?,
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
        self.get("/v1/health")
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

    pub fn list_secrets(&self, agent: &str, values: bool) -> Result<SecretList> {
        self.get(&format!(
            "/v1/agents/{}/secrets?values={values}",
            segment(agent)
        ))
    }

    pub fn describe_secret(&self, agent: &str, key: &str) -> Result<SecretMeta> {
        self.get(&format!(
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
        self.get(&format!(
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

    pub fn put_var(&self, key: &str, req: &PutSecretRequest) -> Result<PutResponse> {
        self.send_json(Method::PUT, &format!("/v1/vars/{}", segment(key)), req)
    }

    pub fn list_vars(&self, values: bool) -> Result<VarList> {
        self.get(&format!("/v1/vars?values={values}"))
    }

    pub fn describe_var(&self, key: &str) -> Result<SecretMeta> {
        self.get(&format!("/v1/vars/{}", segment(key)))
    }

    pub fn delete_var(&self, key: &str) -> Result<()> {
        self.delete(&format!("/v1/vars/{}", segment(key)))
    }

    pub fn issue_token(&self, req: &TokenRequest) -> Result<IssuedToken> {
        self.send_json(Method::POST, "/v1/tokens", req)
    }

    pub fn list_tokens(&self) -> Result<TokenList> {
        self.get("/v1/tokens")
    }

    pub fn revoke_token(&self, id: &str) -> Result<()> {
        self.delete(&format!("/v1/tokens/{}", segment(id)))
    }

    pub fn audit(&self, query: &AuditQuery) -> Result<AuditList> {
        let path = "/v1/audit";
        let builder = self.request(Method::GET, path)?.query(query);
        self.json(builder, path)
    }
}

#[cfg(test)]
mod tests {
    use super::check_transport;

    #[test]
    fn plain_http_only_to_loopback_unless_allowed() {
        for ok in [
            "https://vault.internal:8377",
            "http://127.0.0.1:8377",
            "http://127.8.9.10:1",
            "http://[::1]:8377",
            "http://localhost:8377",
        ] {
            assert!(check_transport(ok, false).is_ok(), "{ok}");
        }
        for refused in [
            "http://10.255.255.1:9",
            "http://localhost.invalid:1",
            "http://[2001:db8::1]:80",
            "http://0.0.0.0:8377",
        ] {
            assert!(check_transport(refused, false).is_err(), "{refused}");
            assert!(check_transport(refused, true).is_ok(), "{refused}");
        }
        assert!(check_transport("ftp://127.0.0.1", true).is_err());
        assert!(check_transport("not a url", true).is_err());
    }
}
