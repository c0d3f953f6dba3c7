//! `agent-run --check`: what the child would get, for an operator to audit — each injected
//! name with its source, kind and a masked preview, and the revisions read. Starts nothing.

use std::fmt::Write;

use secrecy::ExposeSecret;
use serde::Serialize;

use crate::launcher::env::{EnvBlock, InjectedFrom, Summary};
use crate::source::{Kind, SecretSet};

/// One variable the child would receive from a secret or a mapping.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    /// The secret it comes from (differs from `name` for `--env KEY=@SECRET`).
    pub secret: Option<String>,
    /// The secrets an `--env KEY='… @{SECRET} …'` value references, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    pub kind: &'static str,
    pub source: String,
    pub preview: String,
}

/// The store's masked preview (one rule everywhere: `protocol::preview`); plain
/// configuration is shown as it is.
pub fn preview(value: &str, kind: Kind) -> String {
    match kind {
        Kind::Plain => value.to_owned(),
        Kind::Secret => crate::protocol::preview(value),
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Secret => "secret",
        Kind::Plain => "plain",
    }
}

/// The rows of what `env::compose` injected (its [`Summary`], so `--check` lists, and
/// refuses, exactly what a run would), with each value's masked preview from `secrets`,
/// or for a composed value from the composed `block` (the one place it exists).
pub fn rows(summary: &Summary, secrets: &SecretSet, block: &EnvBlock) -> Vec<Row> {
    let mut rows: Vec<Row> = summary
        .variables
        .iter()
        .map(|variable| match &variable.from {
            InjectedFrom::Literal => Row {
                name: variable.name.clone(),
                secret: None,
                references: Vec::new(),
                kind: "literal",
                source: "--env".into(),
                preview: "(literal)".into(),
            },
            InjectedFrom::Secret(secret_name) => match secrets.get(secret_name) {
                Some(secret) => Row {
                    name: variable.name.clone(),
                    secret: Some(secret_name.clone()),
                    references: Vec::new(),
                    kind: kind_name(secret.origin.kind()),
                    source: secret.origin.to_string(),
                    preview: preview(secret.value.expose_secret(), secret.origin.kind()),
                },
                // compose injected it from `secrets`, so it is there; shown as missing
                // rather than trusted blindly.
                None => missing_row(&variable.name, secret_name),
            },
            InjectedFrom::Missing(secret_name) => missing_row(&variable.name, secret_name),
            InjectedFrom::Composed(references) => composed_row(
                &variable.name,
                references,
                secrets,
                block.var(&variable.name).and_then(|v| v.to_str()),
            ),
        })
        .collect();
    // A source's key that `--preserve-env` left to the inherited variable: listed, so the
    // audit shows the child does not get the source's value; the inherited value is not
    // previewed (it may be a credential of the caller's own).
    rows.extend(summary.preserved.iter().map(|name| Row {
        name: name.clone(),
        secret: None,
        references: Vec::new(),
        kind: "inherited",
        source: "inherited (--preserve-env)".into(),
        preview: "-".into(),
    }));
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

/// A composed value is a secret if any value it references is one (a plain one is shown
/// whole, as plain configuration is).
fn composed_row(
    name: &str,
    references: &[String],
    secrets: &SecretSet,
    value: Option<&str>,
) -> Row {
    let secret = references.iter().any(|r| {
        secrets
            .get(r)
            .is_none_or(|s| s.origin.kind() == Kind::Secret)
    });
    let kind = if secret { Kind::Secret } else { Kind::Plain };
    Row {
        name: name.to_owned(),
        secret: None,
        references: references.to_vec(),
        kind: kind_name(kind),
        source: crate::launcher::env::composed_origin(references),
        preview: value.map_or_else(|| "****".into(), |v| preview(v, kind)),
    }
}

fn missing_row(name: &str, secret_name: &str) -> Row {
    Row {
        name: name.to_owned(),
        secret: Some(secret_name.to_owned()),
        references: Vec::new(),
        kind: "missing",
        source: "-".into(),
        preview: "-".into(),
    }
}

/// A table for people.
pub fn render_table(rows: &[Row], revisions: &[String]) -> String {
    let names: Vec<String> = rows
        .iter()
        .map(|row| match &row.secret {
            Some(secret) if *secret != row.name => format!("{} (=@{secret})", row.name),
            _ => row.name.clone(),
        })
        .collect();
    let width =
        |cells: Vec<usize>, title: &str| cells.into_iter().max().unwrap_or(0).max(title.len());
    let wn = width(names.iter().map(String::len).collect(), "NAME");
    let wk = width(rows.iter().map(|r| r.kind.len()).collect(), "KIND");
    let ws = width(rows.iter().map(|r| r.source.len()).collect(), "SOURCE");
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:wn$}  {:wk$}  {:ws$}  PREVIEW",
        "NAME", "KIND", "SOURCE"
    );
    for (row, name) in rows.iter().zip(&names) {
        let _ = writeln!(
            out,
            "{name:wn$}  {:wk$}  {:ws$}  {}",
            row.kind, row.source, row.preview
        );
    }
    let _ = writeln!(
        out,
        "{} variable(s); read: {}",
        rows.len(),
        if revisions.is_empty() {
            "-".into()
        } else {
            revisions.join(", ")
        }
    );
    out
}

/// JSON for scripts.
pub fn render_json(rows: &[Row], revisions: &[String]) -> String {
    serde_json::json!({ "variables": rows, "revisions": revisions }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_mask_secrets_by_length() {
        assert_eq!(preview("sk-live-abcdefgh1234", Kind::Secret), "****1234");
        assert_eq!(preview("short-value", Kind::Secret), "****ue");
        assert_eq!(preview("", Kind::Secret), "****");
        assert_eq!(preview("eu-west-1", Kind::Plain), "eu-west-1");
    }
}
