//! `agent-vault audit`: the audit trail, newest records last; with `--follow`, new records
//! as they are written, like `tail -f`: the server is polled once a second with the id of
//! the last record seen (`after`), so none is missed or shown twice. SIGINT and SIGTERM are
//! blocked before any thread exists and read from a signalfd, so Ctrl-C or a supervisor's
//! TERM ends the loop between polls with exit 0.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::flags::AuditArgs;
use super::output::{or_dash, print_json, print_table};
use super::{connect, Error, Result};
use crate::protocol::wire::{AuditEntry, AuditQuery};

/// Time between two polls of `--follow`.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);
/// Most records one poll of `--follow` fetches (more wait for the next poll, at once).
const FOLLOW_PAGE: u32 = 1000;

/// `--since 1h` / `30m` / `2d` means that long ago; anything else (RFC 3339, unix seconds)
/// goes to the server as written.
pub(super) fn since_to_absolute(since: &str) -> String {
    match humantime::parse_duration(since.trim()) {
        Ok(ago) => {
            humantime::format_rfc3339_seconds(std::time::SystemTime::now() - ago).to_string()
        }
        Err(_) => since.to_owned(),
    }
}

const HEADER: [&str; 7] = [
    "AT", "TOKEN", "ACTION", "AGENT", "KEYS", "REMOTE", "OUTCOME",
];

fn row(r: &AuditEntry) -> Vec<String> {
    vec![
        r.at.clone(),
        or_dash(r.token_id.as_deref()),
        r.action.clone(),
        or_dash(r.agent.as_deref()),
        if r.keys.is_empty() {
            "-".into()
        } else {
            r.keys.join(",")
        },
        or_dash(r.remote.as_deref()),
        r.outcome.clone(),
    ]
}

/// A followed record: one JSON object per line, or the table's columns at fixed widths
/// (the widths of a table cannot be known before the records arrive).
fn print_followed(records: &[AuditEntry], json: bool) -> Result<()> {
    for record in records {
        if json {
            println!("{}", serde_json::to_string(record)?);
        } else {
            let cells = row(record);
            println!(
                "{:<24}  {:<12}  {:<16}  {:<16}  {:<24}  {:<21}  {}",
                cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6]
            );
        }
    }
    Ok(())
}

pub(super) fn run(args: AuditArgs) -> Result<()> {
    if args.follow {
        return follow(args);
    }
    let list = connect(&args.connect)?.audit(&AuditQuery {
        agent: args.agent,
        since: args.since.as_deref().map(since_to_absolute),
        limit: Some(args.limit),
        after: None,
    })?;
    if args.connect.json {
        return print_json(&list);
    }
    print_table(&HEADER, list.records.iter().map(row).collect());
    Ok(())
}

/// `--follow`: the newest `--limit` records, then every new one until SIGINT or SIGTERM.
fn follow(args: AuditArgs) -> Result<()> {
    // Before the HTTP client starts its thread, so every thread has them blocked and the
    // signalfd sees them.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask.thread_block()
        .map_err(|e| Error::Failed(format!("blocking SIGINT and SIGTERM: {e}")))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| Error::Failed(format!("creating a signalfd: {e}")))?;

    let client = connect(&args.connect)?;
    let json = args.connect.json;
    let since = args.since.as_deref().map(since_to_absolute);
    let first = client.audit(&AuditQuery {
        agent: args.agent.clone(),
        since: since.clone(),
        limit: Some(args.limit),
        after: None,
    })?;
    if !json {
        print_table(&HEADER, Vec::new());
    }
    print_followed(&first.records, json)?;
    // Records matching the filters past the last one shown; with none shown, every match
    // of the same filters is new (there was none).
    let mut after = first.records.last().map_or(0, |r| r.id);
    loop {
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let ready = poll(
            &mut fds,
            PollTimeout::from(FOLLOW_INTERVAL.as_millis() as u16),
        )
        .map_err(|e| Error::Failed(format!("waiting between polls: {e}")))?;
        if ready > 0 {
            return Ok(());
        }
        loop {
            let page = client.audit(&AuditQuery {
                agent: args.agent.clone(),
                since: since.clone(),
                limit: Some(FOLLOW_PAGE),
                after: Some(after),
            })?;
            print_followed(&page.records, json)?;
            after = page.records.last().map_or(after, |r| r.id);
            if page.records.len() < FOLLOW_PAGE as usize {
                break;
            }
        }
    }
}
