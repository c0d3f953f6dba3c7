//! `agent-vault secrets …`: one agent's secrets and plain variables (set, update, list,
//! describe, delete, versions, rollback, import).

use std::path::Path;

use secrecy::SecretString;

use super::flags::{ConnectArgs, ImportArgs, LabelArgs, SecretsCommand, SetArgs, ValueArgs};
use super::output::{print_entries, print_entry, print_json, print_table, report_put};
use super::{connect, read_value, value_given, Error, Result};
use crate::protocol::wire::{
    ImportEntry, ImportRequest, ImportSummary, Kind, ListQuery, PutResponse, PutSecretRequest,
    SecretMeta, Tags, Tier,
};
use crate::protocol::{self, Client};

/// `secrets set` and `vars set`: read the value, send it with `put`, report the outcome.
pub(super) fn set(
    set: SetArgs,
    key: &str,
    what: &str,
    put: impl FnOnce(&Client, &PutSecretRequest) -> Result<PutResponse, protocol::Error>,
) -> Result<()> {
    let (tags, tier) = labels(&set.labels)?;
    let client = connect(&set.connect)?;
    let value = read_value(&set.value, key)?;
    let response = put(
        &client,
        &PutSecretRequest {
            allow_dangerous_name: set.allow_dangerous_name,
            allow_empty_value: set.allow_empty_value,
            tags,
            tier,
            ..put_request(Some(value), set.description, Some(set.plain))
        },
    )?;
    report_put(set.connect.json, what, &response)
}

/// The request of `set` and `update` (`plain`: `None` keeps the kind).
pub(super) fn put_request(
    value: Option<SecretString>,
    description: Option<String>,
    plain: Option<bool>,
) -> PutSecretRequest {
    PutSecretRequest {
        value,
        description,
        kind: plain.map(|plain| if plain { Kind::Plain } else { Kind::Secret }),
        tags: None,
        untag: Vec::new(),
        tier: None,
        allow_dangerous_name: false,
        allow_empty_value: false,
    }
}

/// `--tag NAME=VALUE…` and `--tier` as the request carries them (`None`: not given). The
/// store validates names and values; here only the `=` is required.
pub(super) fn labels(args: &LabelArgs) -> Result<(Option<Tags>, Option<Tier>)> {
    let mut tags = Tags::new();
    for tag in &args.tags {
        let (name, value) = tag.split_once('=').ok_or_else(|| {
            Error::Usage(format!(
                "--tag {tag}: expected NAME=VALUE (e.g. --tag team=ml)"
            ))
        })?;
        tags.insert(name.to_string(), value.to_string());
    }
    let tier = args.tier.as_deref().and_then(Tier::parse);
    Ok(((!tags.is_empty()).then_some(tags), tier))
}

/// `--tag NAME=VALUE` / `--tag NAME` filters as the list query's `tag=NAME:VALUE,NAME`.
pub(super) fn tag_filter(tags: &[String]) -> Option<String> {
    (!tags.is_empty()).then(|| {
        tags.iter()
            .map(|tag| tag.replacen('=', ":", 1))
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// Parse a .env file with agent-run's own literal reader (no `$` substitution), through the
/// same safe file read. Errors name the file, line, column and reason, never the line's
/// text (it may hold a value). A key given twice keeps its last value, as a shell would.
fn read_env_file(path: &Path) -> Result<Vec<ImportEntry>> {
    // The launcher's one dotenv reader, so both read a file the same way.
    use crate::{dotenv, secret_file::Checks};
    let entries = dotenv::read_file(path, &Checks::default())?;
    Ok(entries
        .into_iter()
        .map(|entry| ImportEntry {
            key: entry.name,
            value: entry.value,
        })
        .collect())
}

pub(super) fn run(cmd: SecretsCommand) -> Result<()> {
    match cmd {
        SecretsCommand::Set { agent, key, set } => {
            let what = format!("{agent}/{key}");
            self::set(set, &key, &what, |client, req| {
                client.put_secret(&agent, &key, req)
            })
        }
        SecretsCommand::Update {
            agent,
            key,
            value,
            description,
            labels: l,
            connect: c,
        } => update(
            Update {
                key: &key,
                what: &format!("{agent}/{key}"),
                value: &value,
                description,
                labels: &l,
                connect: &c,
            },
            |client| client.describe_secret(&agent, &key),
            |client, req| client.put_secret(&agent, &key, req),
        ),
        SecretsCommand::Tag {
            agent,
            key,
            labels: l,
            untag,
            connect: c,
        } => {
            let (tags, tier) = labels(&l)?;
            if tags.is_none() && tier.is_none() && untag.is_empty() {
                return Err(Error::Usage(
                    "secrets tag: give at least one --tag NAME=VALUE, --untag NAME or --tier"
                        .into(),
                ));
            }
            let client = connect(&c)?;
            // Only an existing entry is tagged: without a value the store refuses to create.
            let request = PutSecretRequest {
                tags,
                untag,
                tier,
                ..put_request(None, None, None)
            };
            let response = client.put_secret(&agent, &key, &request)?;
            if c.json {
                return print_json(&response);
            }
            print_entry(&response.secret);
            Ok(())
        }
        SecretsCommand::List {
            agent,
            values,
            tags,
            connect: c,
        } => {
            let query = ListQuery {
                values: Some(values),
                tag: tag_filter(&tags),
            };
            let list = connect(&c)?.list_secrets(&agent, &query)?;
            if c.json {
                return print_json(&list);
            }
            print_entries(&list.secrets);
            Ok(())
        }
        SecretsCommand::Describe {
            agent,
            key,
            connect: c,
        } => {
            let entry = connect(&c)?.describe_secret(&agent, &key)?;
            if c.json {
                return print_json(&entry);
            }
            print_entry(&entry);
            Ok(())
        }
        SecretsCommand::Delete {
            agent,
            key,
            connect: c,
        } => {
            connect(&c)?.delete_secret(&agent, &key)?;
            if c.json {
                return print_json(&serde_json::json!({"deleted": key}));
            }
            println!("deleted {agent}/{key}");
            Ok(())
        }
        SecretsCommand::Versions {
            agent,
            key,
            connect: c,
        } => {
            let list = connect(&c)?.secret_versions(&agent, &key)?;
            if c.json {
                return print_json(&list);
            }
            let rows = list
                .versions
                .iter()
                .map(|v| {
                    vec![
                        v.version.to_string(),
                        v.kind.as_str().to_string(),
                        v.created_at.clone(),
                        if v.current { "*".into() } else { String::new() },
                    ]
                })
                .collect();
            print_table(&["VERSION", "KIND", "CREATED", "CURRENT"], rows);
            Ok(())
        }
        SecretsCommand::Rollback {
            agent,
            key,
            to,
            connect: c,
        } => {
            let response = connect(&c)?.rollback_secret(&agent, &key, to)?;
            if c.json {
                return print_json(&response);
            }
            println!(
                "rolled back {agent}/{key} to the value of version {} (now version {})",
                response.rolled_back_to, response.secret.version
            );
            Ok(())
        }
        SecretsCommand::Import {
            agent,
            import: args,
        } => import(args, |client, req| client.import(&agent, req)),
    }
}

/// What `update` changes, for `secrets update` and `vars update`.
pub(super) struct Update<'a> {
    pub key: &'a str,
    pub what: &'a str,
    pub value: &'a ValueArgs,
    pub description: Option<String>,
    pub labels: &'a LabelArgs,
    pub connect: &'a ConnectArgs,
}

/// `secrets update` and `vars update`: the entry must exist (fail clearly instead of
/// creating a new one); with only `--description` the value is kept.
pub(super) fn update(
    args: Update<'_>,
    describe: impl FnOnce(&Client) -> Result<SecretMeta, protocol::Error>,
    put: impl FnOnce(&Client, &PutSecretRequest) -> Result<PutResponse, protocol::Error>,
) -> Result<()> {
    let (tags, tier) = labels(args.labels)?;
    let client = connect(args.connect)?;
    describe(&client)?;
    // Only metadata given (description, tags, tier): the value is kept.
    let metadata_only = args.description.is_some() || tags.is_some() || tier.is_some();
    let new_value = if !value_given(args.value) && metadata_only {
        None
    } else {
        Some(read_value(args.value, args.key)?)
    };
    let request = PutSecretRequest {
        tags,
        tier,
        ..put_request(new_value, args.description, None)
    };
    let response = put(&client, &request)?;
    report_put(args.connect.json, args.what, &response)
}

/// `secrets import` and `vars import`: read the file (a malformed line is an error naming
/// the file and its line number, before anything is sent), import all or nothing, and
/// print what was created, skipped and overwritten.
pub(super) fn import(
    args: ImportArgs,
    send: impl FnOnce(&Client, &ImportRequest) -> Result<ImportSummary, protocol::Error>,
) -> Result<()> {
    let (tags, tier) = labels(&args.labels)?;
    let entries = read_env_file(&args.file)?;
    let client = connect(&args.connect)?;
    let summary = send(
        &client,
        &ImportRequest {
            entries,
            plain: args.plain,
            plain_keys: args.plain_keys,
            overwrite: args.overwrite,
            allow_dangerous_name: args.allow_dangerous_name,
            tier,
            tags,
        },
    )?;
    if args.connect.json {
        return print_json(&summary);
    }
    let names = |list: &[String]| {
        if list.is_empty() {
            "-".to_string()
        } else {
            list.join(", ")
        }
    };
    println!(
        "created ({}): {}",
        summary.created.len(),
        names(&summary.created)
    );
    println!(
        "skipped ({}): {}",
        summary.skipped.len(),
        names(&summary.skipped)
    );
    println!(
        "overwritten ({}): {}",
        summary.overwritten.len(),
        names(&summary.overwritten)
    );
    Ok(())
}
