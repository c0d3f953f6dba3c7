//! The last good secret set on disk (`--fallback PATH`), so an agent can start while its
//! store is unreachable.
//!
//! The file is AES-256-GCM encrypted with a key derived (HKDF-SHA256) from the launcher's
//! own token and bound to the store URL and agent: nothing on disk decrypts it without the
//! token, and a file copied to another agent or store does not open. It is written
//! atomically (temp file with mode 0600, fsync, rename, fsync of the directory), so a crash
//! leaves the old file or the new one, never half of one. A rotated token cannot open the
//! old file; the next successful fetch rewrites it.
//!
//! Every save seals a *generation* number into the file (authenticated with the values) and
//! writes it, afterwards, to `PATH.floor` (a plain number, mode 0600). A fallback file whose
//! generation is below the floor is refused: an old copy put back (from a backup, an image
//! layer, another host) would otherwise hand out secrets from before a rotation. The store's
//! revision cannot serve as that floor: it is an opaque digest of the token's scope,
//! compared for equality, never ordered. This guards against a file put back, not against
//! someone who can rewrite both files.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{Error, Kind};
use crate::secret_file;

const MAGIC: &[u8; 8] = b"ARFALL1\n";
/// Far above any real set (the store caps values and keys per agent), far below a size
/// that could hurt to read.
const MAX_FALLBACK_BYTES: u64 = 32 * 1024 * 1024;
const NONCE_LEN: usize = 12;

/// One entry as stored in the (encrypted) file.
#[derive(Serialize, Deserialize)]
pub struct StoredEntry {
    pub name: String,
    #[serde(serialize_with = "expose")]
    pub value: SecretString,
    pub kind: Kind,
    pub project: bool,
}

#[derive(Serialize, Deserialize)]
pub struct Snapshot {
    pub revision: u64,
    /// Set by [`Fallback::save`]: one more than the floor it found.
    #[serde(default)]
    pub generation: u64,
    pub agent: String,
    pub entries: Vec<StoredEntry>,
}

fn expose<S: serde::Serializer>(value: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value.expose_secret())
}

/// Where the file lives and the key that opens it.
pub struct Fallback {
    path: PathBuf,
    key: Zeroizing<[u8; 32]>,
    /// Associated data: the store and agent the snapshot belongs to.
    binding: Vec<u8>,
}

impl Fallback {
    pub fn new(path: PathBuf, token: &str, store_url: &str, agent: Option<&str>) -> Fallback {
        let binding = format!(
            "agent-run fallback v1\0{store_url}\0{}",
            agent.unwrap_or("")
        )
        .into_bytes();
        let mut key = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<sha2::Sha256>::new(Some(b"agent-run fallback v1"), token.as_bytes())
            .expand(&binding, key.as_mut())
            // 32 bytes is far below HKDF-SHA256's 8160-byte output limit.
            .expect("HKDF output length is valid");
        Fallback { path, key, binding }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `PATH.floor`: the generation of the newest file saved so far.
    fn floor_path(&self) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(".floor");
        PathBuf::from(name)
    }

    /// The generation floor, 0 when there is none yet.
    fn floor(&self) -> Result<u64, Error> {
        let path = self.floor_path();
        let bytes = match secret_file::read(&path, 64) {
            Ok(bytes) => bytes,
            Err(secret_file::Error::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(0)
            }
            Err(e) => return Err(e.into()),
        };
        std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| Error::Fallback {
                path: path.clone(),
                reason: "not a generation number".into(),
            })
    }

    /// Raises the floor to `generation`, atomically (called after the file itself is
    /// written: a crash in between leaves a file above the floor, which still opens).
    fn raise_floor(&self, generation: u64) -> Result<(), Error> {
        let text = format!("{generation}\n");
        write_atomically(&self.floor_path(), &[text.as_bytes()]).map_err(|e| Error::Fallback {
            path: self.floor_path(),
            reason: e.to_string(),
        })
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.key.as_ref()))
    }

    fn error(&self, reason: impl Into<String>) -> Error {
        Error::Fallback {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// Encrypts and atomically replaces the file, with the next generation number.
    pub fn save(&self, snapshot: &mut Snapshot) -> Result<(), Error> {
        // An unreadable floor is not a reason to lose the fallback: start above it anew.
        snapshot.generation = self.floor().unwrap_or(0) + 1;
        let plaintext =
            Zeroizing::new(serde_json::to_vec(snapshot).map_err(|e| self.error(e.to_string()))?);
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| self.error(e.to_string()))?;
        let ciphertext = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: &self.binding,
                },
            )
            .map_err(|_| self.error("encryption failed"))?;
        write_atomically(&self.path, &[MAGIC, &nonce, &ciphertext])
            .map_err(|e| self.error(e.to_string()))?;
        self.raise_floor(snapshot.generation)
    }

    /// Reads and decrypts the file; fails if it is missing, damaged, or sealed with another
    /// token, store or agent.
    pub fn load(&self) -> Result<Snapshot, Error> {
        // Non-blocking, regular files only, size-capped: a FIFO put in its place is refused
        // at once instead of hanging the launcher.
        let bytes = secret_file::read(&self.path, MAX_FALLBACK_BYTES).map_err(|e| match e {
            secret_file::Error::Read { source, .. } => self.error(source.to_string()),
            other => other.into(),
        })?;
        let body = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| self.error("not an agent-run fallback file"))?;
        if body.len() < NONCE_LEN {
            return Err(self.error("truncated"));
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let plaintext = Zeroizing::new(
            self.cipher()
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: &self.binding,
                    },
                )
                .map_err(|_| {
                    self.error(
                        "cannot decrypt it: written with another token, store or agent, or damaged",
                    )
                })?,
        );
        let snapshot: Snapshot = serde_json::from_slice(&plaintext)
            .map_err(|e| self.error(format!("damaged content: {e}")))?;
        let floor = self.floor()?;
        if snapshot.generation < floor {
            return Err(self.error(format!(
                "it is generation {}, older than generation {floor} already saved: an old copy \
                 was put back, refused (if you restored it on purpose, delete {})",
                snapshot.generation,
                self.floor_path().display()
            )));
        }
        Ok(snapshot)
    }
}

/// Writes `parts` to a temp file (mode 0600) next to `path`, syncs it, renames it over
/// `path` and syncs the directory: a crash leaves the old file or the new one.
fn write_atomically(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = path.to_path_buf().into_os_string();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn snapshot() -> Snapshot {
        Snapshot {
            revision: 7,
            generation: 0,
            agent: "bot".into(),
            entries: vec![StoredEntry {
                name: "K".into(),
                value: SecretString::from("s3cr3t-value"),
                kind: Kind::Secret,
                project: false,
            }],
        }
    }

    #[test]
    fn round_trip_mode_0600_and_no_plaintext_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fallback");
        let token = "avt_token";
        let fallback = Fallback::new(path.clone(), token, "http://127.0.0.1:1", Some("bot"));
        fallback.save(&mut snapshot()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.windows(6).any(|w| w == b"s3cr3t"));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let loaded = fallback.load().unwrap();
        assert_eq!(loaded.revision, 7);
        assert_eq!(loaded.entries[0].value.expose_secret(), "s3cr3t-value");
    }

    #[test]
    fn an_older_file_put_back_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fallback");
        let fallback = Fallback::new(path.clone(), "avt_token", "http://a", Some("bot"));
        fallback.save(&mut snapshot()).unwrap();
        let old = std::fs::read(&path).unwrap();
        // Store revisions are opaque: a newer set may well carry a smaller number.
        let mut newer = snapshot();
        newer.revision = 3;
        fallback.save(&mut newer).unwrap();
        assert_eq!(fallback.load().unwrap().revision, 3);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("fallback.floor")).unwrap(),
            "2\n"
        );
        std::fs::write(&path, &old).unwrap();
        let e = fallback.load().err().unwrap().to_string();
        assert!(
            e.contains("generation 1") && e.contains("generation 2"),
            "{e}"
        );
        // A later save opens again, whatever its store revision.
        fallback.save(&mut snapshot()).unwrap();
        assert_eq!(fallback.load().unwrap().revision, 7);
    }

    #[test]
    fn another_token_store_or_agent_cannot_open_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fallback");
        let token = "avt_token";
        Fallback::new(path.clone(), token, "http://a", Some("bot"))
            .save(&mut snapshot())
            .unwrap();
        let other_token = "avt_other";
        assert!(
            Fallback::new(path.clone(), other_token, "http://a", Some("bot"))
                .load()
                .is_err()
        );
        assert!(Fallback::new(path.clone(), token, "http://b", Some("bot"))
            .load()
            .is_err());
        assert!(Fallback::new(path, token, "http://a", Some("other"))
            .load()
            .is_err());
    }
}
