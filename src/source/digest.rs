//! The one keyed digest of the launcher: BLAKE3 keyed with a random per-process key, so a
//! digest kept to notice a change (of the child's environment in the supervisor, of a KV v1
//! secret in the OpenBao watcher) says nothing about a value to anyone without the key —
//! unkeyed, a digest of a short or guessable value could be brute-forced from memory.

use std::fmt;

use secrecy::ExposeSecret;
use zeroize::Zeroize;

use super::SecretSet;

/// A random per-process key for [`Digest`]s; wiped on drop.
pub struct DigestKey([u8; 32]);

impl DigestKey {
    pub fn random() -> DigestKey {
        let mut key = [0u8; 32];
        // Without kernel randomness nothing else in a secret store is safe either.
        getrandom::fill(&mut key).expect("the kernel's random source is unavailable");
        DigestKey(key)
    }

    /// The digest of what `feed` writes into the keyed hasher; the hasher's state (which
    /// holds the last input block) is wiped before it is dropped.
    pub fn digest(&self, feed: impl FnOnce(&mut blake3::Hasher)) -> Digest {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        feed(&mut hasher);
        let digest = Digest(*hasher.finalize().as_bytes());
        hasher.zeroize();
        digest
    }

    /// The digest of a secret set's names and values, length-prefixed so `A=bc` and
    /// `Ab=c` differ.
    pub fn digest_set(&self, set: &SecretSet) -> Digest {
        self.digest(|hasher| {
            for (name, secret) in set.iter() {
                let value = secret.value.expose_secret().as_bytes();
                hasher.update(&(name.len() as u64).to_le_bytes());
                hasher.update(name.as_bytes());
                hasher.update(&(value.len() as u64).to_le_bytes());
                hasher.update(value);
            }
        })
    }
}

impl Drop for DigestKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// A keyed digest: equal digests mean equal input under the same key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Digest([u8; 32]);

impl Digest {
    /// A short label for logs: enough to tell inputs apart, nothing about values.
    pub fn fingerprint(&self) -> String {
        self.0[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use secrecy::SecretString;

    use super::*;
    use crate::source::{Origin, Secret};

    #[test]
    fn set_digest_depends_on_key_and_value_boundaries() {
        let key = DigestKey::random();
        let set = |pairs: &[(&str, &str)]| {
            let mut s = SecretSet::default();
            for (k, v) in pairs {
                s.insert(
                    k.to_string(),
                    Secret {
                        value: SecretString::from(*v),
                        origin: Origin::SecretsDir {
                            path: PathBuf::new(),
                        },
                    },
                );
            }
            s
        };
        assert_eq!(
            key.digest_set(&set(&[("A", "bc")])),
            key.digest_set(&set(&[("A", "bc")]))
        );
        assert_ne!(
            key.digest_set(&set(&[("A", "bc")])),
            key.digest_set(&set(&[("Ab", "c")]))
        );
        assert_ne!(
            key.digest_set(&set(&[("A", "bc")])),
            DigestKey::random().digest_set(&set(&[("A", "bc")]))
        );
    }
}
