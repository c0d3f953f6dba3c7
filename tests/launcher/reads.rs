//! Issue 13 item 3: every start read the store's values twice (the first fetch, then a
//! re-check ~50 ms later when the watchers started). The store's watcher long-polls from the
//! revision the fetch saw, so it already reports any change made in between: one
//! `runtime.read` per start and one per change, counted in the store's own audit trail.

use std::time::Duration;

use serde_json::json;

use crate::common::openbao::Bao;
use crate::common::vault::{start_vault, VaultServer};
use crate::common::{agent_run, env_log_child, lines_starting, wait_until, Dir, Mode};

const LONG: Duration = Duration::from_secs(20);

/// The `runtime.read` records of `agent` in the audit trail, through the admin CLI.
fn runtime_reads(vault: &VaultServer, agent: &str) -> usize {
    let out = vault.cli_run(&["audit", "--agent", agent, "--json"], None);
    assert!(out.status.success(), "audit failed: {out:?}");
    let audit: serde_json::Value = serde_json::from_slice(&out.stdout).expect("audit JSON");
    audit["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["action"] == "runtime.read")
        .count()
}

/// Long-polls the store has seen start waiting (its `-vvv` log), i.e. agent-run's watcher
/// is in place: the old re-check was asked for at the same moment.
fn polls_waiting(vault: &VaultServer) -> usize {
    vault.log().matches("waiting for a change").count()
}

fn value_starts(log: &str) -> Vec<String> {
    lines_starting(log, "start")
        .iter()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("API_KEY=")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn issue_13_one_runtime_read_per_start_and_one_per_change() {
    let vault = start_vault();
    vault.set("reads-bot", "API_KEY", "first-value-0001");
    let (_, token) = vault.issue(&["secrets:read:reads-bot/*"], Some(json!("1h")));
    let dir = Dir::new("reads");
    let mut args: Vec<String> = vec!["--store".into(), vault.addr.clone(), "-vvv".into()];
    args.extend(env_log_child(&dir.join("child.log"), &["API_KEY"]));
    let mut run = agent_run(Mode::Plain, args)
        .env("AGENT_RUN_TOKEN", &token)
        .start(&dir);

    wait_until(LONG, "the first child", || {
        value_starts(&dir.read("child.log")).len() == 1
    });
    wait_until(LONG, "agent-run's watcher to long-poll", || {
        polls_waiting(&vault) >= 1
    });
    // Whatever agent-run read at start is done once the change below has been acted on
    // (the fetcher reads in order), so the count after it is exact.
    let out = vault.cli_run(
        &["secrets", "set", "reads-bot", "API_KEY", "--stdin"],
        Some(b"second-value-0002"),
    );
    assert!(out.status.success(), "secrets set failed: {out:?}");
    wait_until(LONG, "the restart with the new value", || {
        value_starts(&dir.read("child.log")).len() == 2
    });
    assert_eq!(
        runtime_reads(&vault, "reads-bot"),
        2,
        "one read for the start and one for the change; agent-run's log:\n{}",
        run.stderr()
    );
    assert_eq!(
        value_starts(&dir.read("child.log")),
        ["API_KEY=first-value-0001", "API_KEY=second-value-0002"]
    );
    run.stop();
}

/// The same on the OpenBao source (KV v2): the watcher's baseline is the version the fetch
/// read, so no re-check follows the start. Counted in agent-run's own debug log (one
/// `openbao kv read` line per read of a path's values): OpenBao's dev server keeps no audit
/// trail unless configured with a file (and `bao audit enable` is refused by OpenBao 2.x).
#[test]
fn issue_13_one_openbao_read_per_start_and_one_per_change() {
    let dir = Dir::new("reads-openbao");
    let bao = Bao::dev(&dir);
    bao.put(
        "secret",
        "agents/reads",
        json!({"API_KEY": "first-value-0001"}),
    );
    let mut args: Vec<String> = [
        "--store",
        &bao.store(),
        "--path",
        "secret/agents/reads",
        "--poll-interval",
        "200ms",
        "-vvv",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(env_log_child(&dir.join("child.log"), &["API_KEY"]));
    let mut run = agent_run(Mode::Plain, args)
        .env("BAO_TOKEN", &bao.token)
        .start(&dir);
    let reads = |stderr: String| stderr.matches("openbao kv read").count();

    wait_until(LONG, "the first child", || {
        value_starts(&dir.read("child.log")).len() == 1
    });
    // The old re-check came right after the watcher started; several polls later it has
    // long happened if it is still there.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        reads(run.stderr()),
        1,
        "one read for the start:\n{}",
        run.stderr()
    );

    bao.put(
        "secret",
        "agents/reads",
        json!({"API_KEY": "second-value-0002"}),
    );
    wait_until(LONG, "the restart with the new value", || {
        value_starts(&dir.read("child.log")).len() == 2
    });
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        reads(run.stderr()),
        2,
        "one more for the change:\n{}",
        run.stderr()
    );
    assert_eq!(
        value_starts(&dir.read("child.log")),
        ["API_KEY=first-value-0001", "API_KEY=second-value-0002"]
    );
    run.stop();
}
