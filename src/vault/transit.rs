//! The master key kept by OpenBao Transit (issue 15): `--master-key
//! openbao-transit://HOST:PORT/MOUNT/KEY[?tls=off]`. `init` draws a random master key, has
//! Transit encrypt it, and keeps only Transit's ciphertext (`vault:v1:…`) in
//! `DATA_DIR/master.key.transit`; every start asks Transit to decrypt it again. Nothing on
//! local disk opens the store without the OpenBao cluster and a token it accepts, and the
//! decrypted key goes straight into `crypto::MasterKey`, so the envelope, the key check,
//! rekey and backup work as with any other key.
//!
//! This module owns the URL form, the token (`--master-key-token-file`, else `BAO_TOKEN` /
//! `VAULT_TOKEN`, taken out of the environment at start), the wrapped-key file and the two
//! Transit calls. It knows nothing of the database: whether the key opens the store is
//! `service`'s check.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::crypto::KEY_LEN;
use super::error::{Error, Result};

/// The URL scheme of a Transit master key.
pub const SCHEME: &str = "openbao-transit://";
/// The wrapped master key in the data directory: Transit's ciphertext, not secret alone.
pub const WRAPPED_FILE: &str = "master.key.transit";
/// A rekey's new wrapped key, written before its transaction commits and renamed over
/// [`WRAPPED_FILE`] after it (see `service::rekey`).
pub const WRAPPED_NEW_FILE: &str = "master.key.transit.new";
/// OpenBao's default port, when the URL names none.
const DEFAULT_PORT: u16 = 8200;
/// The variables the token may come from, OpenBao's then Vault's name.
pub const TOKEN_VARIABLES: [&str; 2] = ["BAO_TOKEN", "VAULT_TOKEN"];
/// The variables naming an extra CA for OpenBao's TLS (as the `bao` CLI reads them).
const CA_VARIABLES: [&str; 2] = ["BAO_CACERT", "VAULT_CACERT"];
/// A start should not hang on a silent address: connecting is short, a reply may be slower
/// (a busy cluster, a standby forwarding).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A wrapped-key file holds a comment line and a ciphertext of about 90 characters.
const MAX_WRAPPED_FILE_BYTES: usize = 4096;

/// `BAO_TOKEN` / `VAULT_TOKEN` as [`take_env_token`] found them, after they left the
/// environment.
static ENV_TOKEN: OnceLock<Option<SecretString>> = OnceLock::new();

/// Reads `BAO_TOKEN` (else `VAULT_TOKEN`) once and wipes both values from this process's
/// environment strings, as `crypto::take_env_key` does for the master key: the token that
/// unwraps the master key must not stay readable in `/proc/PID/environ`. Called first thing
/// in `main`, while this is the only thread.
pub fn take_env_token() {
    let mut token = None;
    for name in TOKEN_VARIABLES {
        if let Some(value) = std::env::var(name).ok().map(Zeroizing::new) {
            let value = value.trim();
            if token.is_none() && !value.is_empty() {
                token = Some(SecretString::from(value));
            }
            crate::sys::scrub_env_value(name);
        }
    }
    let _ = ENV_TOKEN.set(token);
}

/// The OpenBao token from the environment: the one [`take_env_token`] kept, or (when it was
/// never called, e.g. in a library user) the variables as they are now. Also `migrate
/// openbao`'s token.
pub fn env_token() -> Option<SecretString> {
    if let Some(kept) = ENV_TOKEN.get() {
        return kept.clone();
    }
    TOKEN_VARIABLES.iter().find_map(|name| {
        let value = Zeroizing::new(std::env::var(name).ok()?);
        let value = value.trim();
        (!value.is_empty()).then(|| SecretString::from(value))
    })
}

/// A Transit key as the flag names it, and how to authenticate to it. No secret inside: the
/// token is read only when a call is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitKey {
    /// `https://HOST:PORT` (or `http://` on loopback with `?tls=off`).
    address: String,
    mount: String,
    name: String,
    /// `--master-key-token-file`; `None`: `BAO_TOKEN`, then `VAULT_TOKEN`.
    pub token_file: Option<PathBuf>,
}

impl TransitKey {
    /// Parses `openbao-transit://HOST[:PORT]/MOUNT/KEY[?tls=off|on]`: https unless
    /// `tls=off`, which is accepted for a loopback host only (`protocol::transport`'s rule:
    /// a token and a master key never cross a network in clear). MOUNT may have several
    /// segments (`ops/transit`); KEY is the last one. The error says what form is expected.
    pub fn parse(text: &str) -> std::result::Result<TransitKey, String> {
        let form = "expected openbao-transit://HOST:PORT/MOUNT/KEY (add ?tls=off for plain \
                    http to a loopback OpenBao)";
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or_else(|| format!("{text:?} does not start with {SCHEME}: {form}"))?;
        let url = reqwest::Url::parse(&format!("https://{rest}"))
            .map_err(|e| format!("{text:?} is not a valid URL ({e}): {form}"))?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{text:?} names no host: {form}"))?;
        if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{text:?}: no user, password or #fragment belongs in the URL (the token comes \
                 from --master-key-token-file or BAO_TOKEN): {form}"
            ));
        }
        let mut tls = true;
        for (name, value) in url.query_pairs() {
            match (name.as_ref(), value.as_ref()) {
                ("tls", "off" | "false" | "0") => tls = false,
                ("tls", "on" | "true" | "1") => tls = true,
                _ => {
                    return Err(format!(
                        "{text:?}: unknown setting {name}={value} (only tls=on|off): {form}"
                    ))
                }
            }
        }
        let segments: Vec<&str> = url
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        let Some((name, mount)) = segments.split_last().filter(|(_, m)| !m.is_empty()) else {
            return Err(format!("{text:?} names no mount and key: {form}"));
        };
        let scheme = if tls { "https" } else { "http" };
        let port = url.port().unwrap_or(DEFAULT_PORT);
        let address = format!("{scheme}://{host}:{port}");
        crate::protocol::transport::check_transport(&address, false).map_err(|_| {
            format!(
                "{text:?}: tls=off is allowed to a loopback OpenBao only (the token and the \
                 master key would cross the network in clear); drop ?tls=off to use https"
            )
        })?;
        Ok(TransitKey {
            address,
            mount: mount.join("/"),
            name: (*name).to_owned(),
            token_file: None,
        })
    }

    fn token(&self) -> Result<SecretString> {
        if let Some(path) = &self.token_file {
            let bytes = crate::secret_file::read_credential(path).map_err(|e| {
                self.error(format!(
                    "reading the OpenBao token (--master-key-token-file): {e}"
                ))
            })?;
            let text = std::str::from_utf8(&bytes).map_err(|_| {
                self.error(format!(
                    "the token file {} is not UTF-8",
                    crate::secret_file::Shown(path)
                ))
            })?;
            return Ok(SecretString::from(text.lines().next().unwrap_or("").trim()));
        }
        env_token().ok_or_else(|| {
            self.error(
                "no OpenBao token: pass --master-key-token-file \
                 (AGENT_VAULT_MASTER_KEY_TOKEN_FILE) or set BAO_TOKEN"
                    .to_owned(),
            )
        })
    }

    /// The refusal, naming this key (never the token nor the master key).
    fn error(&self, reason: String) -> Error {
        Error::MasterKey {
            source_name: format!("the master key wrapped by OpenBao Transit {self}"),
            reason,
        }
    }

    /// Draws a new random master key and has Transit encrypt it. Returns the key and the
    /// ciphertext to keep with [`write_wrapped`].
    pub fn seal_new(&self) -> Result<(Zeroizing<[u8; KEY_LEN]>, String)> {
        let key = super::crypto::random_array::<KEY_LEN>()?;
        // The key's base64 goes into one buffer sized up front (no reallocation leaves a copy
        // behind), wiped on drop.
        const HEAD: &[u8] = br#"{"plaintext":""#;
        const TAIL: &[u8] = br#""}"#;
        let encoded_len = KEY_LEN.div_ceil(3) * 4;
        let mut body = Zeroizing::new(vec![0u8; HEAD.len() + encoded_len + TAIL.len()]);
        body[..HEAD.len()].copy_from_slice(HEAD);
        base64::engine::general_purpose::STANDARD
            .encode_slice(
                key.as_ref(),
                &mut body[HEAD.len()..HEAD.len() + encoded_len],
            )
            .map_err(|e| Error::Internal(format!("encoding a Transit request: {e}")))?;
        body[HEAD.len() + encoded_len..].copy_from_slice(TAIL);
        let reply: EncryptReply = self.call("encrypt", body)?;
        if !reply.data.ciphertext.starts_with("vault:") {
            return Err(self.error("Transit answered without a ciphertext".to_owned()));
        }
        Ok((key, reply.data.ciphertext))
    }

    /// Has Transit decrypt a wrapped master key.
    pub fn unseal(&self, ciphertext: &str) -> Result<Zeroizing<[u8; KEY_LEN]>> {
        let body = Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({ "ciphertext": ciphertext }))
                .map_err(|e| Error::Internal(format!("encoding a Transit request: {e}")))?,
        );
        let reply: DecryptReply = self.call("decrypt", body)?;
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(reply.data.plaintext.expose_secret())
                .map_err(|_| self.error("Transit's plaintext is not base64".to_owned()))?,
        );
        if decoded.len() != KEY_LEN {
            return Err(self.error(format!(
                "Transit's plaintext is {} bytes, not a 32-byte master key (was {} written \
                 by agent-vault init?)",
                decoded.len(),
                WRAPPED_FILE
            )));
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&decoded);
        Ok(key)
    }

    /// One Transit call (`POST /v1/MOUNT/OP/KEY`). Runs on a thread of its own: reqwest's
    /// blocking client may not be used (nor dropped) on a tokio worker, and `init`, `serve`
    /// and `rekey` open the store inside a runtime.
    fn call<T: serde::de::DeserializeOwned + Send>(
        &self,
        op: &str,
        body: Zeroizing<Vec<u8>>,
    ) -> Result<T> {
        let token = self.token()?;
        let url = format!(
            "{}/v1/{}/{op}/{}",
            self.address,
            self.mount,
            urlencode(&self.name)
        );
        std::thread::scope(|scope| {
            scope
                .spawn(|| self.call_blocking(&url, op, &token, body))
                .join()
                .unwrap_or_else(|_| Err(Error::Internal("the Transit call panicked".into())))
        })
    }

    fn call_blocking<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        op: &str,
        token: &SecretString,
        body: Zeroizing<Vec<u8>>,
    ) -> Result<T> {
        let ca = match CA_VARIABLES
            .iter()
            .find_map(|name| std::env::var_os(name).filter(|v| !v.is_empty()))
        {
            Some(path) => Some(std::fs::read(&path).map_err(|e| {
                self.error(format!(
                    "reading the CA certificate {} (BAO_CACERT): {e}",
                    Path::new(&path).display()
                ))
            })?),
            None => None,
        };
        let client = crate::protocol::transport::http_client_builder(None, ca.as_deref())
            .map_err(|e| self.error(e))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| self.error(format!("building the HTTP client: {e}")))?;
        let mut header = reqwest::header::HeaderValue::from_str(token.expose_secret())
            .map_err(|_| self.error("the OpenBao token is not a valid header value".into()))?;
        header.set_sensitive(true);
        let response = client
            .post(url)
            .header("X-Vault-Token", header)
            .header("Content-Type", "application/json")
            .body(body.to_vec())
            .send()
            .map_err(|e| self.error(self.unreachable(&e)))?;
        let status = response.status();
        let body = response.bytes();
        // Go's TLS listener answers plain HTTP with a bare `400 Bad Request` whose body
        // reqwest cannot read ("Client sent an HTTP request to an HTTPS server").
        if self.address.starts_with("http://")
            && status.as_u16() == 400
            && body.as_ref().map_or(true, |b| contains(b, b"HTTPS server"))
        {
            return Err(self.error(format!(
                "OpenBao at {} speaks TLS; drop ?tls=off from the URL",
                self.address
            )));
        }
        let bytes = Zeroizing::new(
            body.map_err(|e| self.error(format!("reading Transit's answer: {e}")))?
                .to_vec(),
        );
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|_| {
                self.error(format!("Transit's {op} answer is not what was expected"))
            });
        }
        let detail = server_errors(&bytes);
        let path = format!("{}/{op}/{}", self.mount, self.name);
        Err(self.error(match status.as_u16() {
            403 => format!(
                "OpenBao refused the token (HTTP 403: {detail}); give a token (--master-key-token-file \
                 or BAO_TOKEN) whose policy allows update on {path}"
            ),
            503 => format!("OpenBao is sealed or unavailable (HTTP 503: {detail}); unseal it"),
            400 | 404 => format!(
                "Transit refused to {op} with key {:?} at mount {:?} (HTTP {}: {detail}); check \
                 the mount and key name (`bao read {}/keys/{}`)",
                self.name,
                self.mount,
                status.as_u16(),
                self.mount,
                self.name
            ),
            other => format!("Transit answered HTTP {other} to {path}: {detail}"),
        }))
    }
}

impl TransitKey {
    /// Why a request got no answer, with the fix: a TLS mismatch named as such (the URL's
    /// `tls` setting, `BAO_CACERT`), anything else as an unreachable OpenBao.
    fn unreachable(&self, error: &reqwest::Error) -> String {
        use crate::protocol::tls::{diagnose, diagnose_plain, TlsProblem};
        let at = &self.address;
        match diagnose(error).or_else(|| diagnose_plain(error)) {
            Some(TlsProblem::NotTls) => format!(
                "OpenBao at {at} does not speak TLS; add ?tls=off to the URL (allowed for a \
                 loopback OpenBao only) or give OpenBao a TLS listener"
            ),
            Some(TlsProblem::SpeaksTls) => {
                format!("OpenBao at {at} speaks TLS; drop ?tls=off from the URL")
            }
            Some(TlsProblem::UnknownIssuer) => format!(
                "OpenBao's certificate at {at} is not signed by a CA trusted here; set \
                 BAO_CACERT to the CA certificate (PEM) that signed it"
            ),
            Some(problem) => format!("TLS to OpenBao at {at} failed: {problem}"),
            None => format!(
                "cannot reach OpenBao at {at} ({}); start or unseal OpenBao, or check the \
                 address",
                causes(error)
            ),
        }
    }
}

impl std::str::FromStr for TransitKey {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<TransitKey, String> {
        TransitKey::parse(text)
    }
}

/// The URL in its canonical form: what the refusals name, and what `master.key.transit`
/// records.
impl std::fmt::Display for TransitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (plain, host) = match self.address.strip_prefix("http://") {
            Some(host) => (true, host),
            None => (false, self.address.trim_start_matches("https://")),
        };
        write!(f, "{SCHEME}{host}/{}/{}", self.mount, self.name)?;
        if plain {
            f.write_str("?tls=off")?;
        }
        Ok(())
    }
}

#[derive(serde::Deserialize)]
struct EncryptReply {
    data: EncryptData,
}
#[derive(serde::Deserialize)]
struct EncryptData {
    ciphertext: String,
}
#[derive(serde::Deserialize)]
struct DecryptReply {
    data: DecryptData,
}
/// The decrypted master key (base64) goes straight into a `SecretString`.
#[derive(serde::Deserialize)]
struct DecryptData {
    plaintext: SecretString,
}

/// OpenBao's `{"errors":[…]}` texts, joined, control characters dropped and cut short: they
/// describe the request (never a plaintext), but come from a server.
fn server_errors(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<String>,
    }
    let text = serde_json::from_slice::<Errors>(body)
        .map(|e| e.errors.join("; "))
        .unwrap_or_default();
    // "1 error occurred:\n\t* permission denied\n\n" on one line, control characters gone.
    let text: String = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect();
    if text.is_empty() {
        "no error text".to_owned()
    } else {
        text
    }
}

/// An error and its causes, `: `-separated (reqwest's own text says only "error sending
/// request"; the cause says "connection refused" or which TLS check failed).
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = e.source();
    }
    text
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A key name as one path segment.
fn urlencode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Writes the wrapped key to `path` (0600, a new file, synced): a comment naming the
/// Transit key, then the ciphertext.
pub fn write_wrapped(path: &Path, key: &TransitKey, ciphertext: &str) -> Result<()> {
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err)?;
    writeln!(
        file,
        "# agent-vault master key, wrapped by OpenBao Transit {key}\n{ciphertext}"
    )
    .map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

/// The ciphertext in a wrapped-key file, and the Transit key its comment names.
pub fn read_wrapped(path: &Path) -> std::io::Result<(String, Option<String>)> {
    let text = std::fs::read_to_string(path)?;
    if text.len() > MAX_WRAPPED_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "too large for a wrapped key",
        ));
    }
    let named = text.lines().find_map(|line| {
        line.strip_prefix("# agent-vault master key, wrapped by OpenBao Transit ")
            .map(|s| s.trim().to_owned())
    });
    let ciphertext = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "holds no ciphertext")
        })?;
    Ok((ciphertext.to_owned(), named))
}

/// Loads the master key wrapped in `path` through `key`: the file read, Transit asked to
/// decrypt. When Transit refuses and the file names another Transit key, the refusal says so.
pub fn load(key: &TransitKey, path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>> {
    let shown = crate::secret_file::Shown(path);
    let (ciphertext, named) = read_wrapped(path).map_err(|e| {
        key.error(if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{shown} does not exist: no key wrapped by Transit is kept there (`init \
                 --master-key` writes it into a data directory, `backup` beside a backup; \
                 `rekey --new-master-key` moves a store to Transit)"
            )
        } else {
            format!("reading {shown}: {e}")
        })
    })?;
    key.unseal(&ciphertext).map_err(|err| match (err, named) {
        (
            Error::MasterKey {
                source_name,
                reason,
            },
            Some(named),
        ) if named != key.to_string() => Error::MasterKey {
            source_name,
            reason: format!("{reason} ({shown} was wrapped by {named})"),
        },
        (err, _) => err,
    })
}

#[cfg(test)]
mod tests {
    use super::TransitKey;

    #[test]
    fn parses_the_url_forms() {
        let key = TransitKey::parse("openbao-transit://bao.internal/transit/agent-vault")
            .expect("https by default");
        assert_eq!(key.address, "https://bao.internal:8200");
        assert_eq!(
            (key.mount.as_str(), key.name.as_str()),
            ("transit", "agent-vault")
        );
        assert_eq!(
            key.to_string(),
            "openbao-transit://bao.internal:8200/transit/agent-vault"
        );
        let key = TransitKey::parse("openbao-transit://127.0.0.1:8201/ops/transit/k1?tls=off")
            .expect("plain http on loopback");
        assert_eq!(key.address, "http://127.0.0.1:8201");
        assert_eq!(key.mount, "ops/transit");
        assert_eq!(
            key.to_string(),
            "openbao-transit://127.0.0.1:8201/ops/transit/k1?tls=off"
        );
    }

    #[test]
    fn refuses_plain_http_off_loopback_and_malformed_urls() {
        for bad in [
            "openbao-transit://10.0.0.5:8200/transit/k?tls=off",
            "openbao-transit://bao.internal:8200/transit",
            "openbao-transit://bao.internal:8200/",
            "https://bao.internal:8200/transit/k",
            "openbao-transit://bao.internal/transit/k?cert=x",
            "openbao-transit://user:pw@bao.internal/transit/k",
        ] {
            assert!(TransitKey::parse(bad).is_err(), "{bad}");
        }
    }
}
