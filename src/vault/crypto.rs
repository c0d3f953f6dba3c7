//! Encryption at rest: the master key and the AES-256-GCM envelope around every value.
//!
//! Envelope: each stored value gets its own random 256-bit data key and nonce; the data key is
//! then encrypted ("wrapped") with the master key. Both encryptions use the same associated
//! data, `agent-vault/v1|OWNER|KEY|VERSION`, so a row copied onto another agent, key or
//! version fails authentication instead of decrypting to the wrong secret.
//!
//! This module owns key material and ciphertext formats only. It knows nothing of SQL (see
//! `db`) or of who may read what (see `service`). Plaintext lives in `Zeroizing` buffers sized
//! up front (so no reallocation leaves copies behind) and leaves as a `SecretString`.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::Aes256Gcm;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::error::{Error, Result};

/// Length of the master key and of every data key: AES-256.
pub const KEY_LEN: usize = 32;
/// AES-GCM standard nonce length.
const NONCE_LEN: usize = 12;
/// AES-GCM tag appended to every ciphertext.
const TAG_LEN: usize = 16;

/// Environment variable that can carry the master key (hex or base64) instead of the file.
pub const MASTER_KEY_ENV: &str = "AGENT_VAULT_MASTER_KEY";

/// `AGENT_VAULT_MASTER_KEY` as read by [`take_env_key`], after it left the environment.
static ENV_KEY: OnceLock<Option<SecretString>> = OnceLock::new();

/// Reads `AGENT_VAULT_MASTER_KEY` once and wipes its value from this process's environment
/// strings, so `/proc/PID/environ` (readable by the same user, and by root) no longer shows
/// the key that decrypts every value. Later loads use the value kept here. The binary calls
/// this first thing in `main`, before any thread exists (`sys::scrub_env_value`'s rule).
pub fn take_env_key() {
    let value = std::env::var(MASTER_KEY_ENV)
        .ok()
        .filter(|value| !value.is_empty())
        .map(SecretString::from);
    if value.is_some() {
        crate::sys::scrub_env_value(MASTER_KEY_ENV);
    }
    let _ = ENV_KEY.set(value);
}

/// Runs `f` with the environment's master key: the one [`take_env_key`] kept, or (when it was
/// never called, e.g. in a library user) the variable as it is now.
fn with_env_key<T>(f: impl FnOnce(Option<&str>) -> T) -> T {
    match ENV_KEY.get() {
        Some(kept) => f(kept.as_ref().map(|value| value.expose_secret())),
        None => {
            let value = std::env::var(MASTER_KEY_ENV).ok().map(Zeroizing::new);
            f(value
                .as_deref()
                .map(String::as_str)
                .filter(|v| !v.is_empty()))
        }
    }
}

/// A key file is 64 hex digits or 44 base64 characters and a newline; anything much larger
/// is not a key file and is refused before it is read.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// The systemd credential name the master key is read under (`LoadCredential=master-key:…`).
pub const CREDENTIAL_NAME: &str = "master-key";

/// Where the master key comes from, in this precedence (the first that applies wins):
/// `--master-key-file` (or `AGENT_VAULT_MASTER_KEY_FILE`), `AGENT_VAULT_MASTER_KEY`, the
/// systemd credential `$CREDENTIALS_DIRECTORY/master-key` when that file exists, and last
/// `DATA_DIR/master.key`. Its `Display` names the source, never the key, so a refusal says
/// which key was tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `--master-key-file PATH`.
    Flag(PathBuf),
    /// `AGENT_VAULT_MASTER_KEY`.
    Env,
    /// `$CREDENTIALS_DIRECTORY/master-key` (systemd `LoadCredential=`).
    Credential(PathBuf),
    /// `DATA_DIR/master.key`, the file `init` writes when no other source is given.
    DataDir(PathBuf),
    /// `--master-key openbao-transit://…`: the key Transit decrypts from `wrapped`
    /// (`DATA_DIR/master.key.transit`).
    Transit {
        key: super::transit::TransitKey,
        wrapped: PathBuf,
    },
}

impl KeySource {
    /// The source to use for a data directory, by the precedence above; `--master-key`
    /// (`transit`) is a flag like `--master-key-file` (clap lets only one of them through).
    pub fn resolve(
        flag: Option<&Path>,
        transit: Option<&super::transit::TransitKey>,
        data_dir: &Path,
    ) -> KeySource {
        if let Some(key) = transit {
            return KeySource::Transit {
                key: key.clone(),
                wrapped: data_dir.join(super::transit::WRAPPED_FILE),
            };
        }
        if let Some(path) = flag {
            return KeySource::Flag(path.to_path_buf());
        }
        if with_env_key(|value| value.is_some()) {
            return KeySource::Env;
        }
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) {
            let path = Path::new(&dir).join(CREDENTIAL_NAME);
            if path.exists() {
                return KeySource::Credential(path);
            }
        }
        KeySource::DataDir(data_dir.join(super::service::MASTER_KEY_FILE))
    }
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::secret_file::Shown;
        match self {
            KeySource::Flag(path) => {
                write!(f, "the master key from --master-key-file {}", Shown(path))
            }
            KeySource::Env => write!(f, "the master key from {MASTER_KEY_ENV}"),
            KeySource::Credential(path) => {
                write!(
                    f,
                    "the master key from the systemd credential {}",
                    Shown(path)
                )
            }
            KeySource::DataDir(path) => write!(f, "the master key file {}", Shown(path)),
            KeySource::Transit { key, .. } => {
                write!(f, "the master key wrapped by OpenBao Transit {key}")
            }
        }
    }
}

/// Associated data of the key check (`@` cannot start an owner name, so it never collides).
pub const KEY_CHECK_AAD: Aad<'static> = Aad {
    owner: "@key-check",
    key: "",
    version: 0,
};
/// The key check's plaintext: not secret, only known.
const KEY_CHECK_TEXT: &[u8] = b"agent-vault master key check v1";

/// The master key, kept only as a ready AES cipher (whose key schedule is wiped on drop by
/// aes-gcm's `zeroize` feature). Deliberately neither `Debug` nor `Clone`.
pub struct MasterKey {
    cipher: Aes256Gcm,
}

/// Associated data of one stored value: which owner (agent or the project), key and version.
pub struct Aad<'a> {
    pub owner: &'a str,
    pub key: &'a str,
    pub version: i64,
}

impl Aad<'_> {
    fn bytes(&self) -> Vec<u8> {
        format!(
            "agent-vault/v1|{}|{}|{}",
            self.owner, self.key, self.version
        )
        .into_bytes()
    }
}

/// One encrypted value as it is stored: no field is secret on its own.
#[derive(Clone)]
pub struct Sealed {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub key_nonce: Vec<u8>,
    pub wrapped_key: Vec<u8>,
}

fn random_bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>> {
    let mut buf = Zeroizing::new([0u8; N]);
    getrandom::fill(buf.as_mut()).map_err(|err| Error::Internal(format!("getrandom: {err}")))?;
    Ok(buf)
}

/// Random bytes for token secrets and ids, from the kernel.
pub fn random_array<const N: usize>() -> Result<Zeroizing<[u8; N]>> {
    random_bytes::<N>()
}

impl MasterKey {
    pub(crate) fn from_bytes(bytes: &[u8; KEY_LEN]) -> MasterKey {
        MasterKey {
            cipher: Aes256Gcm::new(bytes.into()),
        }
    }

    /// Create a new random master key and write it, hex encoded, to `path` with mode 0600.
    /// Refuses to overwrite an existing file: losing the old key loses every value.
    pub fn create_file(path: &Path) -> Result<MasterKey> {
        let key = random_bytes::<KEY_LEN>()?;
        let encoded = Zeroizing::new(hex::encode(key.as_ref()));
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
        file.write_all(encoded.as_bytes()).map_err(io_err)?;
        file.write_all(b"\n").map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        Ok(MasterKey::from_bytes(&key))
    }

    /// Load the key from where [`KeySource::resolve`] said it is.
    pub fn load(source: &KeySource) -> Result<MasterKey> {
        let name = source.to_string();
        match source {
            KeySource::Env => {
                with_env_key(|value| value.map(|value| MasterKey::parse(value, &name)))
                    .unwrap_or_else(|| {
                        Err(Error::MasterKey {
                            source_name: name.clone(),
                            reason: "the variable is not set".into(),
                        })
                    })
            }
            KeySource::Transit { key, wrapped } => {
                let bytes = super::transit::load(key, wrapped)?;
                Ok(MasterKey::from_bytes(&bytes))
            }
            KeySource::DataDir(path)
                if !path.exists() && path.with_file_name(super::transit::WRAPPED_FILE).exists() =>
            {
                let wrapped = path.with_file_name(super::transit::WRAPPED_FILE);
                let named = super::transit::read_wrapped(&wrapped)
                    .ok()
                    .and_then(|(_, named)| named)
                    .unwrap_or_else(|| "openbao-transit://HOST:PORT/MOUNT/KEY".to_owned());
                Err(Error::MasterKey {
                    source_name: name,
                    reason: format!(
                        "{} does not exist, and this store's key is wrapped by OpenBao \
                         Transit ({}): pass --master-key {named}",
                        crate::secret_file::Shown(path),
                        crate::secret_file::Shown(&wrapped)
                    ),
                })
            }
            KeySource::DataDir(path) if !path.exists() => Err(Error::MasterKey {
                source_name: name,
                reason: format!(
                    "{} does not exist; pass --master-key-file (AGENT_VAULT_MASTER_KEY_FILE), \
                     set {MASTER_KEY_ENV}, or give the systemd credential {CREDENTIAL_NAME}",
                    crate::secret_file::Shown(path)
                ),
            }),
            KeySource::Flag(path) | KeySource::Credential(path) | KeySource::DataDir(path) => {
                MasterKey::load_file(path, &name)
            }
        }
    }

    /// Re-wrap a stored value's data key under `new` (for `rekey`): the data key is opened
    /// with this key and sealed again with `new` under a fresh key nonce; the value's own
    /// nonce and ciphertext do not change. Fails if this key does not open it.
    pub fn rewrap(&self, new: &MasterKey, aad: &Aad<'_>, sealed: &Sealed) -> Result<Sealed> {
        let fail = || Error::Decrypt {
            owner: aad.owner.to_string(),
            key: aad.key.to_string(),
            version: aad.version,
        };
        if sealed.key_nonce.len() != NONCE_LEN {
            return Err(fail());
        }
        let aad_bytes = aad.bytes();
        let mut data_key = Zeroizing::new(Vec::with_capacity(KEY_LEN + TAG_LEN));
        data_key.extend_from_slice(&sealed.wrapped_key);
        self.cipher
            .decrypt_in_place(
                sealed.key_nonce.as_slice().into(),
                &aad_bytes,
                &mut *data_key,
            )
            .map_err(|_| fail())?;
        let key_nonce = random_bytes::<NONCE_LEN>()?;
        new.cipher
            .encrypt_in_place(key_nonce.as_ref().into(), &aad_bytes, &mut *data_key)
            .map_err(|_| Error::Encrypt)?;
        Ok(Sealed {
            nonce: sealed.nonce.clone(),
            ciphertext: sealed.ciphertext.clone(),
            key_nonce: key_nonce.to_vec(),
            wrapped_key: data_key.to_vec(),
        })
    }

    /// Seal the store's key check: a known plaintext under this key, kept in the database so
    /// a wrong key is refused at start even while the store holds no value yet.
    pub fn seal_check(&self) -> Result<Sealed> {
        self.seal(&KEY_CHECK_AAD, KEY_CHECK_TEXT)
    }

    /// Does this key open the store's key check?
    pub fn opens_check(&self, sealed: &Sealed) -> bool {
        self.open(&KEY_CHECK_AAD, sealed)
            .map(|text| text.expose_secret().as_bytes() == KEY_CHECK_TEXT)
            .unwrap_or(false)
    }

    /// Load a key file through `secret_file` (a regular file, size-capped, read into a wiped
    /// buffer; the credential rule: refused when anyone may write it, a warning when group
    /// may or another user owns it), refusing one that group or others can read (fail early,
    /// naming the fix, rather than run with a key anyone on the machine can copy). `name`
    /// says which key this is in errors ([`KeySource`]'s text).
    pub fn load_file(path: &Path, name: &str) -> Result<MasterKey> {
        let shown = crate::secret_file::Shown(path).to_string();
        let meta = std::fs::metadata(path).map_err(|source| Error::MasterKey {
            source_name: name.to_string(),
            reason: format!("cannot read it: {source}"),
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::MasterKey {
                source_name: name.to_string(),
                reason: format!(
                    "mode {mode:o} lets group or others read it; run `chmod 600 {shown}`"
                ),
            });
        }
        let bytes = crate::secret_file::read_with(
            path,
            MAX_KEY_FILE_BYTES,
            &crate::secret_file::Checks {
                refuse_world_writable: true,
                ..Default::default()
            },
        )
        .map_err(|err| Error::MasterKey {
            source_name: name.to_string(),
            reason: err.to_string(),
        })?;
        let text = std::str::from_utf8(&bytes).map_err(|_| Error::MasterKey {
            source_name: name.to_string(),
            reason: "not text: expected 64 hex digits or base64 of 32 bytes".into(),
        })?;
        MasterKey::parse(text, name)
    }

    /// Accept 64 hex digits or standard base64 of 32 bytes, surrounding whitespace ignored.
    pub fn parse(text: &str, source_name: &str) -> Result<MasterKey> {
        let text = text.trim();
        let bad = |reason: &str| Error::MasterKey {
            source_name: source_name.to_string(),
            reason: reason.to_string(),
        };
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if text.len() == 2 * KEY_LEN {
            hex::decode_to_slice(text, key.as_mut()).map_err(|_| bad("not valid hex"))?;
        } else {
            let decoded = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|_| bad("expected 64 hex digits or base64 of 32 bytes"))?,
            );
            if decoded.len() != KEY_LEN {
                return Err(bad("expected 32 bytes"));
            }
            key.copy_from_slice(&decoded);
        }
        Ok(MasterKey::from_bytes(&key))
    }

    /// Encrypt `plaintext` under a fresh data key, bound to `aad`.
    pub fn seal(&self, aad: &Aad<'_>, plaintext: &[u8]) -> Result<Sealed> {
        let aad_bytes = aad.bytes();
        let data_key = random_bytes::<KEY_LEN>()?;
        let nonce = random_bytes::<NONCE_LEN>()?;
        let key_nonce = random_bytes::<NONCE_LEN>()?;

        // Sized for the tag up front: encrypting in place never reallocates, so the plaintext
        // copy is overwritten by ciphertext rather than left behind in a freed buffer.
        let mut buf = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
        buf.extend_from_slice(plaintext);
        let cipher = Aes256Gcm::new(data_key.as_ref().into());
        cipher
            .encrypt_in_place(nonce.as_ref().into(), &aad_bytes, &mut *buf)
            .map_err(|_| Error::Encrypt)?;

        let mut wrapped = Zeroizing::new(Vec::with_capacity(KEY_LEN + TAG_LEN));
        wrapped.extend_from_slice(data_key.as_ref());
        self.cipher
            .encrypt_in_place(key_nonce.as_ref().into(), &aad_bytes, &mut *wrapped)
            .map_err(|_| Error::Encrypt)?;

        Ok(Sealed {
            nonce: nonce.to_vec(),
            ciphertext: buf.to_vec(),
            key_nonce: key_nonce.to_vec(),
            wrapped_key: wrapped.to_vec(),
        })
    }

    /// Decrypt a stored value. Fails if any of the row, the AAD or the master key is wrong.
    pub fn open(&self, aad: &Aad<'_>, sealed: &Sealed) -> Result<SecretString> {
        let fail = || Error::Decrypt {
            owner: aad.owner.to_string(),
            key: aad.key.to_string(),
            version: aad.version,
        };
        if sealed.nonce.len() != NONCE_LEN || sealed.key_nonce.len() != NONCE_LEN {
            return Err(fail());
        }
        let aad_bytes = aad.bytes();
        let mut data_key = Zeroizing::new(sealed.wrapped_key.clone());
        self.cipher
            .decrypt_in_place(
                sealed.key_nonce.as_slice().into(),
                &aad_bytes,
                &mut *data_key,
            )
            .map_err(|_| fail())?;
        if data_key.len() != KEY_LEN {
            return Err(fail());
        }
        let cipher = Aes256Gcm::new_from_slice(&data_key).map_err(|_| fail())?;
        let mut buf = Zeroizing::new(sealed.ciphertext.clone());
        cipher
            .decrypt_in_place(sealed.nonce.as_slice().into(), &aad_bytes, &mut *buf)
            .map_err(|_| fail())?;
        let text = std::str::from_utf8(&buf).map_err(|_| fail())?;
        // Box<str> of exact size: the SecretString owns the only remaining copy once `buf`
        // is wiped on drop.
        Ok(SecretString::from(Box::<str>::from(text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn key() -> MasterKey {
        MasterKey::parse(&"ab".repeat(32), "test").expect("64 hex digits is a valid key")
    }

    #[test]
    fn round_trip_and_aad_binding() {
        let key = key();
        let aad = Aad {
            owner: "bot",
            key: "K",
            version: 1,
        };
        let sealed = key.seal(&aad, b"sk_live_123").expect("seal");
        assert!(!sealed
            .ciphertext
            .windows(11)
            .any(|window| window == b"sk_live_123"));
        assert_eq!(
            key.open(&aad, &sealed).expect("open").expose_secret(),
            "sk_live_123"
        );
        for wrong in [
            Aad {
                owner: "other",
                key: "K",
                version: 1,
            },
            Aad {
                owner: "bot",
                key: "J",
                version: 1,
            },
            Aad {
                owner: "bot",
                key: "K",
                version: 2,
            },
        ] {
            assert!(key.open(&wrong, &sealed).is_err());
        }
        let other = MasterKey::parse(&"cd".repeat(32), "test").expect("valid key");
        assert!(other.open(&aad, &sealed).is_err());
    }

    #[test]
    fn parses_base64_and_rejects_garbage() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert!(MasterKey::parse(&b64, "env").is_ok());
        assert!(MasterKey::parse("short", "env").is_err());
        assert!(MasterKey::parse(&"zz".repeat(32), "env").is_err());
    }
}
