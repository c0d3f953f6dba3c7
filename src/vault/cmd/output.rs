//! What admin commands print: JSON for scripts (`--json`), aligned tables for people.
//! Shows metadata and masked previews only; plain values only when the server sent them.

use crate::protocol::wire::{PutResponse, SecretMeta, Tags};

use super::Result;

pub(super) fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Left-aligned columns, header in capitals.
pub(super) fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

pub(super) fn or_dash(text: Option<&str>) -> String {
    text.filter(|t| !t.is_empty()).unwrap_or("-").to_string()
}

/// Tags as `name=value,name=value` (`-` without any).
pub(super) fn tags_text(tags: &Tags) -> String {
    let text = tags
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(",");
    or_dash(Some(&text))
}

pub(super) fn print_entries(entries: &[SecretMeta]) {
    let rows = entries
        .iter()
        .map(|e| {
            vec![
                e.key.clone(),
                e.kind.as_str().to_string(),
                e.version.to_string(),
                e.value.clone().unwrap_or_else(|| e.preview.clone()),
                e.created_at.clone(),
                e.updated_at.clone(),
                or_dash(e.last_read_at.as_deref()),
                e.tier.as_str().to_string(),
                tags_text(&e.tags),
                or_dash(Some(&e.description)),
            ]
        })
        .collect();
    print_table(
        &[
            "KEY",
            "KIND",
            "VERSION",
            "VALUE",
            "CREATED",
            "UPDATED",
            "LAST READ",
            "TIER",
            "TAGS",
            "DESCRIPTION",
        ],
        rows,
    );
}

pub(super) fn print_entry(e: &SecretMeta) {
    if let Some(agent) = &e.agent {
        println!("agent:        {agent}");
    }
    println!("key:          {}", e.key);
    println!("kind:         {}", e.kind.as_str());
    println!("version:      {}", e.version);
    match &e.value {
        Some(value) => println!("value:        {value}"),
        None => println!("preview:      {}", e.preview),
    }
    println!("tier:         {}", e.tier.as_str());
    println!("tags:         {}", tags_text(&e.tags));
    println!("description:  {}", or_dash(Some(&e.description)));
    println!("created:      {}", e.created_at);
    println!("updated:      {}", e.updated_at);
    println!("last read:    {}", or_dash(e.last_read_at.as_deref()));
}

/// One line for a create/update: created, updated or unchanged, and the version.
pub(super) fn report_put(json: bool, what: &str, response: &PutResponse) -> Result<()> {
    if json {
        return print_json(response);
    }
    let verb = match (response.created, response.changed) {
        (true, _) => "created",
        (false, true) => "updated",
        (false, false) => "unchanged",
    };
    println!("{verb} {what} (version {})", response.secret.version);
    Ok(())
}
