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

/// Keyed digests of each variable of one environment, by name: enough to say which names a
/// change added, removed or changed (a log line names them), never anything about a value.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NamedDigests(std::collections::BTreeMap<String, Digest>);

/// What differs between two [`NamedDigests`], by name, each list sorted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl NamedDigests {
    pub fn insert(&mut self, name: String, digest: Digest) {
        self.0.insert(name, digest);
    }

    /// The names `newer` added, removed or changed relative to `self`.
    pub fn diff(&self, newer: &NamedDigests) -> Changes {
        let mut changes = Changes::default();
        for (name, digest) in &newer.0 {
            match self.0.get(name) {
                None => changes.added.push(name.clone()),
                Some(old) if old != digest => changes.changed.push(name.clone()),
                Some(_) => {}
            }
        }
        changes.removed = self
            .0
            .keys()
            .filter(|name| !newer.0.contains_key(*name))
            .cloned()
            .collect();
        changes
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use secrecy::SecretString;

    use super::*;
    use crate::source::{Origin, Secret};

    #[test]
    fn named_digests_tell_added_removed_and_changed_names() {
        let key = DigestKey::random();
        let d = |v: &str| {
            key.digest(|h| {
                h.update(v.as_bytes());
            })
        };
        let mut old = NamedDigests::default();
        old.insert("A".into(), d("1"));
        old.insert("B".into(), d("2"));
        old.insert("C".into(), d("3"));
        let mut new = NamedDigests::default();
        new.insert("A".into(), d("1"));
        new.insert("B".into(), d("two"));
        new.insert("D".into(), d("4"));
        let changes = old.diff(&new);
        assert_eq!(changes.added, ["D"]);
        assert_eq!(changes.removed, ["C"]);
        assert_eq!(changes.changed, ["B"]);
        assert_eq!(new.diff(&new), Changes::default());
    }

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
