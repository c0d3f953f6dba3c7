//! Secrets and variables: create/update, list, describe, delete, versions, rollback and
//! import. Every change is one transaction that bumps the owner's state (see `runtime`)
//! and appends its audit record; values are decrypted only inside `spawn_blocking`.

use super::validate::{parse_tag_filter, validate_tag_count, validate_tag_name, validate_tags};
use super::{
    bump, format_ms, is_blank, now_ms, record, validate_description, validate_key,
    validate_not_blank, validate_not_dangerous, validate_owner_name, validate_value, Ctx, Owner,
    Vault,
};
use crate::protocol::wire::{
    preview, ImportRequest, ImportSummary, Kind, PutResponse, PutSecretRequest, RollbackResponse,
    SecretMeta, Tags, Tier, VersionList, VersionMeta,
};
use crate::vault::audit as audit_log;
use crate::vault::crypto::{Aad, MasterKey};
use crate::vault::db;
use crate::vault::db::{EntryRow, VersionRow, PROJECT};
use crate::vault::error::{Error, Result};
use secrecy::{ExposeSecret, SecretString};
use tracing::info;

pub(super) fn meta(entry: &EntryRow, value: &SecretString, show_plain: bool) -> SecretMeta {
    let exposed = value.expose_secret();
    SecretMeta {
        agent: (entry.owner != PROJECT).then(|| entry.owner.clone()),
        key: entry.key.clone(),
        kind: entry.kind,
        tier: entry.tier,
        tags: entry.tags.clone(),
        description: entry.description.clone(),
        version: entry.version,
        created_at: format_ms(entry.created_at),
        updated_at: format_ms(entry.updated_at),
        last_read_at: entry.last_read_at.map(format_ms),
        preview: preview(exposed),
        // Plain entries are readable configuration by definition; secrets never leave here.
        value: (show_plain && entry.kind == Kind::Plain).then(|| exposed.to_string()),
    }
}

/// Decrypt the current value of an entry.
pub(super) fn current_value(
    tx: &rusqlite::Transaction<'_>,
    master: &MasterKey,
    entry: &EntryRow,
) -> Result<SecretString> {
    let row = db::get_version(tx, &entry.owner, &entry.key, entry.version)?.ok_or_else(|| {
        Error::Internal(format!(
            "{}/{} has no stored version {}",
            entry.owner, entry.key, entry.version
        ))
    })?;
    open_version(master, &entry.owner, &entry.key, &row)
}

pub(super) fn open_version(
    master: &MasterKey,
    owner: &str,
    key: &str,
    row: &VersionRow,
) -> Result<SecretString> {
    master.open(
        &Aad {
            owner,
            key,
            version: row.version,
        },
        &row.sealed,
    )
}

/// Encrypt and store `value` as `version` of `owner/key`, then prune old versions.
#[allow(clippy::too_many_arguments)]
pub(super) fn store_version(
    tx: &rusqlite::Transaction<'_>,
    master: &MasterKey,
    keep: u32,
    owner: &str,
    key: &str,
    version: i64,
    kind: Kind,
    value: &SecretString,
    now: i64,
) -> Result<()> {
    let sealed = master.seal(
        &Aad {
            owner,
            key,
            version,
        },
        value.expose_secret().as_bytes(),
    )?;
    db::insert_version(
        tx,
        owner,
        key,
        &VersionRow {
            version,
            kind,
            created_at: now,
            sealed,
        },
    )?;
    db::prune_versions(tx, owner, key, keep)
}

impl Vault {
    /// Create or update one entry.
    pub async fn put(
        &self,
        ctx: &Ctx,
        owner: Owner,
        key: String,
        req: PutSecretRequest,
    ) -> Result<PutResponse> {
        validate_owner_name(&owner)?;
        validate_key(&key)?;
        if let Some(value) = &req.value {
            validate_value(&key, value)?;
            validate_not_blank(&key, value, req.allow_empty_value)?;
        }
        if let Some(description) = &req.description {
            validate_description(description)?;
        }
        if let Some(tags) = &req.tags {
            validate_tags(tags)?;
        }
        for name in &req.untag {
            validate_tag_name(name)?;
        }
        self.require_manage(ctx, "set", &owner, Some(&key)).await?;
        let is_admin = ctx.caller.is_admin();
        let master = self.inner.master.clone();
        let keep = self.inner.keep_versions;
        let owner_name = owner.name().to_string();
        let ctx2 = ctx.clone();
        let owner2 = owner.clone();
        let key2 = key.clone();
        let (response, seq) = self
            .inner
            .db
            .write(move |tx| {
                let now = now_ms();
                let (owner, key) = (&owner_name, &key2);
                let existing = db::get_entry(tx, owner, key)?;
                let (entry, value, created, content_changed, tags_changed, tier_changed) =
                    match existing {
                        None => {
                            validate_not_dangerous(key, req.allow_dangerous_name)?;
                            // Without a value this is an update of something that does not exist.
                            let value = req.value.ok_or_else(|| {
                                Error::NotFound(format!(
                                    "entry {key} (a value is required to create it)"
                                ))
                            })?;
                            let kind = req.kind.unwrap_or(Kind::Secret);
                            let tags = retag(&Tags::new(), req.tags.as_ref(), &req.untag)?;
                            store_version(tx, &master, keep, owner, key, 1, kind, &value, now)?;
                            let entry = EntryRow {
                                owner: owner.clone(),
                                key: key.clone(),
                                kind,
                                description: req.description.unwrap_or_default(),
                                version: 1,
                                created_at: now,
                                updated_at: now,
                                last_read_at: None,
                                tags,
                                tier: req.tier.unwrap_or_default(),
                            };
                            db::upsert_entry(tx, &entry)?;
                            (entry, value, true, true, false, false)
                        }
                        Some(mut entry) => {
                            let kind = req.kind.unwrap_or(entry.kind);
                            if entry.kind == Kind::Secret
                                && kind == Kind::Plain
                                && req.value.is_none()
                            {
                                // A plain entry is shown in clear: turning a secret into one
                                // without replacing its value would read it back.
                                return Err(Error::InvalidRequest(format!(
                                    "{key} is a secret; making it plain needs a new value"
                                )));
                            }
                            let mut changed = false;
                            // Every write of a value is a new version, even of the same bytes:
                            // "unchanged" would confirm a guessed value to a write-only caller.
                            let value = match req.value {
                                Some(value) => {
                                    Self::new_version(
                                        tx, &master, keep, owner, key, &mut entry, kind, &value,
                                        now,
                                    )?;
                                    changed = true;
                                    value
                                }
                                None => {
                                    let current = current_value(tx, &master, &entry)?;
                                    if kind != entry.kind {
                                        Self::new_version(
                                            tx, &master, keep, owner, key, &mut entry, kind,
                                            &current, now,
                                        )?;
                                        changed = true;
                                    }
                                    current
                                }
                            };
                            if let Some(description) = req.description {
                                if description != entry.description {
                                    entry.description = description;
                                    changed = true;
                                }
                            }
                            let tags = retag(&entry.tags, req.tags.as_ref(), &req.untag)?;
                            let tags_changed = tags != entry.tags;
                            entry.tags = tags;
                            let tier = req.tier.unwrap_or(entry.tier);
                            if entry.tier == Tier::Critical && tier != Tier::Critical && !is_admin {
                                // A write token could otherwise open a critical entry to every
                                // reader without an approval.
                                return Err(Error::Forbidden(format!(
                                    "{key} is critical; only an admin token may lower its tier"
                                )));
                            }
                            let tier_changed = tier != entry.tier;
                            entry.tier = tier;
                            if changed || tags_changed || tier_changed {
                                entry.updated_at = now;
                                db::upsert_entry(tx, &entry)?;
                            }
                            (entry, value, false, changed, tags_changed, tier_changed)
                        }
                    };
                let changed = content_changed || tags_changed || tier_changed;
                let seq = if changed {
                    Some(bump(tx, owner)?)
                } else {
                    None
                };
                let action = if created { "create" } else { "update" };
                // A change of tags or tier alone has its own record; names only, no values.
                if created || content_changed || !(tags_changed || tier_changed) {
                    audit_log::write(tx, &record(&ctx2, action, &owner2, vec![key.clone()], "ok"))?;
                }
                if tags_changed {
                    audit_log::write(
                        tx,
                        &record(&ctx2, "entry.tags", &owner2, vec![key.clone()], "ok"),
                    )?;
                }
                if tier_changed {
                    audit_log::write(
                        tx,
                        &record(&ctx2, "entry.tier", &owner2, vec![key.clone()], "ok"),
                    )?;
                }
                Ok((
                    PutResponse {
                        created,
                        changed,
                        secret: meta(&entry, &value, true),
                    },
                    seq.map(|state| (state, entry.version)),
                ))
            })
            .await?;
        if let Some((state, version)) = seq {
            let seq = state.seq;
            self.publish(owner.name(), state);
            info!(token_id = %ctx.caller.token_id, agent = owner.agent().unwrap_or("-"), key = %key, version, seq, "entry written");
        }
        Ok(response)
    }

    /// Store `value` as the next version of `entry` with `kind` (the entry row itself is
    /// written by the caller).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new_version(
        tx: &rusqlite::Transaction<'_>,
        master: &MasterKey,
        keep: u32,
        owner: &str,
        key: &str,
        entry: &mut EntryRow,
        kind: Kind,
        value: &SecretString,
        now: i64,
    ) -> Result<()> {
        entry.version += 1;
        entry.kind = kind;
        store_version(
            tx,
            master,
            keep,
            owner,
            key,
            entry.version,
            kind,
            value,
            now,
        )
    }

    /// Metadata of every entry of `owner` (filtered to the keys a scoped token manages).
    pub async fn list(
        &self,
        ctx: &Ctx,
        owner: Owner,
        show_plain: bool,
        tag_filter: Option<&str>,
    ) -> Result<Vec<SecretMeta>> {
        validate_owner_name(&owner)?;
        let filter = tag_filter.map(parse_tag_filter).transpose()?;
        self.require_manage(ctx, "list", &owner, None).await?;
        let master = self.inner.master.clone();
        let caller = ctx.caller.clone();
        let owner_name = owner.name().to_string();
        let owner2 = owner.clone();
        self.inner
            .db
            .read(move |tx| {
                let mut out = Vec::new();
                for entry in db::list_entries(tx, &owner_name)? {
                    if let Owner::Agent(agent) = &owner2 {
                        if !caller.can_write(agent, &entry.key) {
                            continue;
                        }
                    }
                    let wanted = filter.iter().flatten().all(|(name, value)| {
                        entry
                            .tags
                            .get(name)
                            .is_some_and(|have| value.as_ref().is_none_or(|want| want == have))
                    });
                    if !wanted {
                        continue;
                    }
                    let value = current_value(tx, &master, &entry)?;
                    out.push(meta(&entry, &value, show_plain));
                }
                Ok(out)
            })
            .await
    }

    /// Metadata of one entry (plain values in clear).
    pub async fn describe(&self, ctx: &Ctx, owner: Owner, key: String) -> Result<SecretMeta> {
        validate_owner_name(&owner)?;
        validate_key(&key)?;
        self.require_manage(ctx, "describe", &owner, Some(&key))
            .await?;
        let master = self.inner.master.clone();
        let owner_name = owner.name().to_string();
        self.inner
            .db
            .read(move |tx| {
                let entry = db::get_entry(tx, &owner_name, &key)?
                    .ok_or_else(|| Error::NotFound(format!("entry {key}")))?;
                let value = current_value(tx, &master, &entry)?;
                Ok(meta(&entry, &value, true))
            })
            .await
    }

    /// Delete an entry and all its versions.
    pub async fn delete(&self, ctx: &Ctx, owner: Owner, key: String) -> Result<()> {
        validate_owner_name(&owner)?;
        validate_key(&key)?;
        self.require_manage(ctx, "delete", &owner, Some(&key))
            .await?;
        let owner_name = owner.name().to_string();
        let (ctx2, owner2, key2) = (ctx.clone(), owner.clone(), key.clone());
        let state = self
            .inner
            .db
            .write(move |tx| {
                if !db::delete_entry(tx, &owner_name, &key2)? {
                    return Err(Error::NotFound(format!("entry {key2}")));
                }
                let seq = bump(tx, &owner_name)?;
                audit_log::write(
                    tx,
                    &record(&ctx2, "delete", &owner2, vec![key2.clone()], "ok"),
                )?;
                Ok(seq)
            })
            .await?;
        let seq = state.seq;
        self.publish(owner.name(), state);
        info!(token_id = %ctx.caller.token_id, agent = owner.agent().unwrap_or("-"), key = %key, seq, "entry deleted");
        Ok(())
    }

    /// Metadata of the kept versions of one entry, newest first.
    pub async fn versions(&self, ctx: &Ctx, owner: Owner, key: String) -> Result<VersionList> {
        validate_owner_name(&owner)?;
        validate_key(&key)?;
        self.require_manage(ctx, "list versions", &owner, Some(&key))
            .await?;
        let owner_name = owner.name().to_string();
        let agent = owner.agent().map(str::to_string);
        self.inner
            .db
            .read(move |tx| {
                let entry = db::get_entry(tx, &owner_name, &key)?
                    .ok_or_else(|| Error::NotFound(format!("entry {key}")))?;
                let versions = db::list_versions(tx, &owner_name, &key)?
                    .into_iter()
                    .map(|row| VersionMeta {
                        version: row.version,
                        kind: row.kind,
                        created_at: format_ms(row.created_at),
                        current: row.version == entry.version,
                    })
                    .collect();
                Ok(VersionList {
                    agent,
                    key,
                    versions,
                })
            })
            .await
    }

    /// Make a new version holding the value of `to` (default: the newest kept version older
    /// than the current one).
    pub async fn rollback(
        &self,
        ctx: &Ctx,
        owner: Owner,
        key: String,
        to: Option<i64>,
    ) -> Result<RollbackResponse> {
        validate_owner_name(&owner)?;
        validate_key(&key)?;
        self.require_manage(ctx, "rollback", &owner, Some(&key))
            .await?;
        let master = self.inner.master.clone();
        let keep = self.inner.keep_versions;
        let owner_name = owner.name().to_string();
        let (ctx2, owner2, key2) = (ctx.clone(), owner.clone(), key.clone());
        let (response, state) =
            self.inner
                .db
                .write(move |tx| {
                    let now = now_ms();
                    let key = &key2;
                    let mut entry = db::get_entry(tx, &owner_name, key)?
                        .ok_or_else(|| Error::NotFound(format!("entry {key}")))?;
                    let target = match to {
                        Some(version) => db::get_version(tx, &owner_name, key, version)?
                            .ok_or_else(|| {
                                Error::NotFound(format!(
                                    "version {version} of {key} (not kept or never existed)"
                                ))
                            })?,
                        None => db::list_versions(tx, &owner_name, key)?
                            .into_iter()
                            .find(|row| row.version < entry.version)
                            .ok_or_else(|| {
                                Error::NotFound(format!("an earlier kept version of {key}"))
                            })?,
                    };
                    let value = open_version(&master, &owner_name, key, &target)?;
                    // A rollback never turns a secret into a plain (readable) entry.
                    let kind = match entry.kind {
                        Kind::Secret => Kind::Secret,
                        Kind::Plain => target.kind,
                    };
                    Self::new_version(
                        tx,
                        &master,
                        keep,
                        &owner_name,
                        key,
                        &mut entry,
                        kind,
                        &value,
                        now,
                    )?;
                    entry.updated_at = now;
                    db::upsert_entry(tx, &entry)?;
                    let seq = bump(tx, &owner_name)?;
                    audit_log::write(
                        tx,
                        &record(&ctx2, "rollback", &owner2, vec![key.clone()], "ok"),
                    )?;
                    Ok((
                        RollbackResponse {
                            rolled_back_to: target.version,
                            secret: meta(&entry, &value, true),
                        },
                        seq,
                    ))
                })
                .await?;
        let seq = state.seq;
        self.publish(owner.name(), state);
        info!(token_id = %ctx.caller.token_id, agent = owner.agent().unwrap_or("-"), key = %key,
            version = response.secret.version, from = response.rolled_back_to, seq, "entry rolled back");
        Ok(response)
    }

    /// Import many entries in one transaction: everything or nothing.
    pub async fn import(
        &self,
        ctx: &Ctx,
        owner: Owner,
        req: ImportRequest,
    ) -> Result<ImportSummary> {
        validate_owner_name(&owner)?;
        let mut req = req;
        for entry in &req.entries {
            validate_key(&entry.key)?;
            validate_not_dangerous(&entry.key, req.allow_dangerous_name)?;
            validate_value(&entry.key, &entry.value)?;
        }
        // A key given twice keeps its last value, as when a shell sources the file.
        let mut deduped: Vec<crate::protocol::wire::ImportEntry> =
            Vec::with_capacity(req.entries.len());
        for entry in std::mem::take(&mut req.entries) {
            match deduped.iter_mut().find(|e| e.key == entry.key) {
                Some(existing) => *existing = entry,
                None => deduped.push(entry),
            }
        }
        req.entries = deduped;
        for key in &req.plain_keys {
            validate_key(key)?;
        }
        if let Some(tags) = &req.tags {
            validate_tags(tags)?;
        }
        let is_admin = ctx.caller.is_admin();
        for entry in &req.entries {
            self.require_manage(ctx, "import", &owner, Some(&entry.key))
                .await?;
        }
        if req.entries.is_empty() {
            self.require_manage(ctx, "import", &owner, None).await?;
        }
        let master = self.inner.master.clone();
        let keep = self.inner.keep_versions;
        let owner_name = owner.name().to_string();
        let (ctx2, owner2) = (ctx.clone(), owner.clone());
        let (summary, seq) = self
            .inner
            .db
            .write(move |tx| {
                let now = now_ms();
                let mut summary = ImportSummary::default();
                for item in &req.entries {
                    let key = &item.key;
                    if is_blank(&item.value) {
                        summary.skipped.push(key.clone());
                        continue;
                    }
                    let kind = if req.plain || req.plain_keys.contains(key) {
                        Kind::Plain
                    } else {
                        Kind::Secret
                    };
                    match db::get_entry(tx, &owner_name, key)? {
                        None => {
                            store_version(
                                tx,
                                &master,
                                keep,
                                &owner_name,
                                key,
                                1,
                                kind,
                                &item.value,
                                now,
                            )?;
                            db::upsert_entry(
                                tx,
                                &EntryRow {
                                    owner: owner_name.clone(),
                                    key: key.clone(),
                                    kind,
                                    description: String::new(),
                                    version: 1,
                                    created_at: now,
                                    updated_at: now,
                                    last_read_at: None,
                                    tags: req.tags.clone().unwrap_or_default(),
                                    tier: req.tier.unwrap_or_default(),
                                },
                            )?;
                            summary.created.push(key.clone());
                        }
                        Some(_) if !req.overwrite => summary.skipped.push(key.clone()),
                        Some(mut entry) => {
                            if let Some(tier) = req.tier {
                                if entry.tier == Tier::Critical
                                    && tier != Tier::Critical
                                    && !is_admin
                                {
                                    return Err(Error::Forbidden(format!(
                                        "{key} is critical; only an admin token may lower its tier"
                                    )));
                                }
                                entry.tier = tier;
                            }
                            if let Some(tags) = &req.tags {
                                entry.tags = retag(&entry.tags, Some(tags), &[])?;
                            }
                            // Overwriting is always a new version, whatever the value (see put).
                            Self::new_version(
                                tx,
                                &master,
                                keep,
                                &owner_name,
                                key,
                                &mut entry,
                                kind,
                                &item.value,
                                now,
                            )?;
                            entry.updated_at = now;
                            db::upsert_entry(tx, &entry)?;
                            summary.overwritten.push(key.clone());
                        }
                    }
                }
                let changed: Vec<String> = summary
                    .created
                    .iter()
                    .chain(&summary.overwritten)
                    .cloned()
                    .collect();
                let seq = if changed.is_empty() {
                    None
                } else {
                    Some(bump(tx, &owner_name)?)
                };
                audit_log::write(tx, &record(&ctx2, "import", &owner2, changed, "ok"))?;
                Ok((summary, seq))
            })
            .await?;
        if let Some(state) = seq {
            self.publish(owner.name(), state);
        }
        info!(token_id = %ctx.caller.token_id, agent = owner.agent().unwrap_or("-"),
            created = summary.created.len(), skipped = summary.skipped.len(),
            overwritten = summary.overwritten.len(), "import done");
        Ok(summary)
    }
}

/// `current` with `set` added (replacing same-named tags) and `remove` taken away; refused
/// past the most tags an entry may carry.
fn retag(current: &Tags, set: Option<&Tags>, remove: &[String]) -> Result<Tags> {
    let mut tags = current.clone();
    if let Some(set) = set {
        tags.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    for name in remove {
        tags.remove(name);
    }
    validate_tag_count(&tags)?;
    Ok(tags)
}
