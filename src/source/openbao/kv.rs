//! KV v1/v2 reads: the mount and version of a path (detected once), the values, and the
//! state the watcher compares (KV v2 metadata; a keyed digest for KV v1).

use std::collections::{BTreeMap, HashMap};

use reqwest::Method;
use serde::Deserialize;
use tracing::{debug, warn};

use super::client::{Client, Reply, Session};
use super::value::KvValue;
use crate::source::digest::Digest;
use crate::source::{Error, Origin, Secret, SecretSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KvVersion {
    V1,
    V2,
}

#[derive(Debug, Clone)]
pub(super) struct KvMount {
    pub(super) version: KvVersion,
    /// The mount path with its trailing slash (`secret/`).
    pub(super) mount: String,
    /// The rest of the KV path below the mount (`agents/support-bot`).
    pub(super) rest: String,
}

impl KvMount {
    pub(super) fn data_path(&self) -> String {
        match self.version {
            KvVersion::V1 => format!("{}{}", self.mount, self.rest),
            KvVersion::V2 => format!("{}data/{}", self.mount, self.rest),
        }
    }

    pub(super) fn metadata_path(&self) -> String {
        format!("{}metadata/{}", self.mount, self.rest)
    }
}

impl Client {
    /// The mount under `kv_path` and its KV version, from `sys/internal/ui/mounts/<path>`
    /// (which the default policy allows); cached for the life of the process.
    pub(super) fn mount_of(&self, session: &mut Session, kv_path: &str) -> Result<KvMount, Error> {
        if let Some(mount) = session.mounts.get(kv_path) {
            return Ok(mount.clone());
        }
        let api_path = format!("sys/internal/ui/mounts/{kv_path}");
        let reply = self.authed(session, Method::GET, &api_path, kv_path)?;
        check_status(&reply, kv_path)?;
        #[derive(Deserialize)]
        struct Mounts {
            data: MountData,
        }
        #[derive(Deserialize)]
        struct MountData {
            path: String,
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            options: Option<HashMap<String, serde_json::Value>>,
        }
        let info: Mounts = reply.parse(kv_path)?;
        let data = info.data;
        if data.kind != "kv" && data.kind != "generic" {
            return Err(Error::Server {
                path: kv_path.to_owned(),
                status: reply.status,
                reason: format!("mount {} is a {:?} mount, not KV", data.path, data.kind),
            });
        }
        let version = match data
            .options
            .as_ref()
            .and_then(|o| o.get("version"))
            .and_then(|v| v.as_str())
        {
            Some("2") => KvVersion::V2,
            _ => KvVersion::V1,
        };
        let rest = kv_path
            .strip_prefix(data.path.as_str())
            .unwrap_or("")
            .trim_matches('/');
        if rest.is_empty() {
            return Err(Error::Server {
                path: kv_path.to_owned(),
                status: reply.status,
                reason: format!(
                    "this is the mount {} itself; give a secret's path inside it",
                    data.path
                ),
            });
        }
        let mount = KvMount {
            version,
            mount: data.path.clone(),
            rest: rest.to_owned(),
        };
        debug!(path = kv_path, mount = %mount.mount, version = ?version, "openbao kv mount detected");
        session.mounts.insert(kv_path.to_owned(), mount.clone());
        Ok(mount)
    }

    /// Reads one KV secret; every key becomes a secret.
    pub(super) fn read_kv(&self, session: &mut Session, kv_path: &str) -> Result<SecretSet, Error> {
        let mount = self.mount_of(session, kv_path)?;
        let reply = self.authed(session, Method::GET, &mount.data_path(), kv_path)?;
        if reply.status == 404 && session.known.contains(kv_path) {
            // Checked before the KV v2 case below, which needs the metadata of a version:
            // a secret deleted with all its versions has none.
            warn!(path = kv_path, "this openbao secret no longer exists (deleted with every version); it provides no secrets");
            return Ok(SecretSet::default());
        }
        let map = match mount.version {
            KvVersion::V1 => {
                check_status(&reply, kv_path)?;
                let read: Envelope<KvMap> = reply.parse(kv_path)?;
                read.data.unwrap_or_default()
            }
            KvVersion::V2 => {
                if reply.status == 404 {
                    // A soft-deleted or destroyed current version answers 404 with its
                    // metadata: the secret exists and is empty now.
                    if let Ok(Envelope {
                        data:
                            Some(KvV2 {
                                metadata: Some(meta),
                                ..
                            }),
                    }) = serde_json::from_slice::<Envelope<KvV2>>(&reply.body)
                    {
                        if meta.is_gone() {
                            session.known.insert(kv_path.to_owned());
                            session.fetched.insert(
                                kv_path.to_owned(),
                                PathState::Version {
                                    version: meta.version,
                                    gone: true,
                                },
                            );
                            warn!(path = kv_path, "the current version of this openbao secret is deleted or destroyed; it provides no secrets");
                            return Ok(SecretSet::default());
                        }
                    }
                }
                check_status(&reply, kv_path)?;
                let read: Envelope<KvV2> = reply.parse(kv_path)?;
                let (map, meta) = read
                    .data
                    .map(|d| (d.data.unwrap_or_default(), d.metadata))
                    .unwrap_or_default();
                // The version this read saw, as the metadata endpoint would name it (an
                // answer without one leaves the watcher to take its own baseline).
                match meta {
                    Some(meta) if meta.version > 0 => {
                        session.fetched.insert(
                            kv_path.to_owned(),
                            PathState::Version {
                                version: meta.version,
                                gone: meta.is_gone(),
                            },
                        );
                    }
                    _ => {
                        session.fetched.remove(kv_path);
                    }
                }
                map
            }
        };
        session.known.insert(kv_path.to_owned());
        let address = self.addresses[session.active].to_string();
        let mut set = SecretSet::default();
        for (key, value) in map {
            set.insert(
                key,
                Secret {
                    value: value.0,
                    origin: Origin::Vault {
                        address: address.clone(),
                        path: kv_path.to_owned(),
                    },
                },
            );
        }
        if mount.version == KvVersion::V1 {
            session.fetched.insert(
                kv_path.to_owned(),
                PathState::Digest(self.digest_key.digest_set(&set)),
            );
        }
        debug!(path = kv_path, keys = set.len(), version = ?mount.version, "openbao kv read");
        Ok(set)
    }

    /// What the watcher compares: KV v2 metadata, or a keyed digest of a KV v1 secret.
    pub(super) fn path_state(
        &self,
        session: &mut Session,
        kv_path: &str,
    ) -> Result<PathState, Error> {
        let mount = self.mount_of(session, kv_path)?;
        match mount.version {
            KvVersion::V2 => {
                // Errors name the metadata path: a policy may allow the values and not this.
                let meta_path = mount.metadata_path();
                let reply = self.authed(session, Method::GET, &meta_path, kv_path)?;
                if reply.status == 404 {
                    return Ok(PathState::Missing);
                }
                check_status(&reply, &meta_path)?;
                let meta: Envelope<KvMetadata> = reply.parse(kv_path)?;
                let meta = meta.data.ok_or_else(|| Error::Server {
                    path: kv_path.to_owned(),
                    status: reply.status,
                    reason: "metadata answer without data".to_owned(),
                })?;
                let current = meta.versions.get(&meta.current_version.to_string());
                Ok(PathState::Version {
                    version: meta.current_version,
                    gone: current.is_some_and(VersionMeta::is_gone),
                })
            }
            KvVersion::V1 => {
                let set = self.read_kv(session, kv_path)?;
                Ok(PathState::Digest(self.digest_key.digest_set(&set)))
            }
        }
    }
}

/// Maps the answers every KV call treats alike to errors; 200 passes.
pub(super) fn check_status(reply: &Reply, kv_path: &str) -> Result<(), Error> {
    match reply.status {
        200 => Ok(()),
        403 => Err(Error::Denied {
            path: kv_path.to_owned(),
            status: reply.status,
        }),
        404 => Err(Error::NotFound {
            path: kv_path.to_owned(),
        }),
        status => Err(Error::Server {
            path: kv_path.to_owned(),
            status,
            reason: reply.errors().to_owned(),
        }),
    }
}

/// `{"data": T}`, the envelope of every Vault answer.
#[derive(Deserialize)]
pub(super) struct Envelope<T> {
    pub(super) data: Option<T>,
}

pub(super) type KvMap = BTreeMap<String, KvValue>;

#[derive(Deserialize)]
pub(super) struct KvV2 {
    pub(super) data: Option<KvMap>,
    pub(super) metadata: Option<VersionMeta>,
}

#[derive(Deserialize)]
pub(super) struct KvMetadata {
    pub(super) current_version: u64,
    #[serde(default)]
    pub(super) versions: HashMap<String, VersionMeta>,
}

#[derive(Deserialize)]
pub(super) struct VersionMeta {
    /// Set in a data read's `metadata` (the version read); absent in the metadata
    /// endpoint's `versions` map, whose keys are the versions.
    #[serde(default)]
    pub(super) version: u64,
    #[serde(default)]
    pub(super) deletion_time: String,
    #[serde(default)]
    pub(super) destroyed: bool,
}

impl VersionMeta {
    pub(super) fn is_gone(&self) -> bool {
        self.destroyed || !self.deletion_time.is_empty()
    }
}

/// What one path looked like at the last poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PathState {
    /// KV v2: `current_version`, and whether that version is deleted or destroyed.
    Version { version: u64, gone: bool },
    /// KV v2 with no metadata at all (deleted with all its versions).
    Missing,
    /// KV v1: keyed digest of the keys and values.
    Digest(Digest),
}
