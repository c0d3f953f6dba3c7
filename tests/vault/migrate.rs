//! `agent-vault migrate openbao` (issue 15): offline, against a real `bao server -dev`; then
//! agent-run on the OpenBao source with the agent's own policy gets exactly the environment
//! it got from the store, and cannot read another agent's path.

use std::collections::BTreeMap;

use crate::common::openbao::{Bao, RaftCluster};
use crate::common::vault::{start_vault, vault_cmd};
use crate::common::{agent_run, run, Dir, Mode};

/// The `KEY=value` lines of `env` run by agent-run, for the keys in `keys`.
fn env_of(stdout: &str, keys: &[&str]) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(k, _)| keys.contains(k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn migrate_openbao_gives_each_agent_the_same_environment() {
    let dir = Dir::new("migrate-openbao");
    let bao = Bao::dev(&dir);
    migrate_and_compare(&dir, &bao, &bao);
}

/// The same against a three-node Raft cluster: written through the active node, read by
/// agent-run through a standby (which forwards to the active node).
#[test]
fn migrate_openbao_to_a_three_node_raft_cluster() {
    let dir = Dir::new("migrate-raft");
    let cluster = RaftCluster::start(&dir);
    let leader = cluster.leader();
    let standby = (leader + 1) % 3;
    // A new KV v2 mount takes a moment to finish its upgrade; wait for a first write.
    cluster.nodes[leader].put("secret", "warm-up", serde_json::json!({"ready": "yes"}));
    migrate_and_compare(&dir, &cluster.nodes[leader], &cluster.nodes[standby]);
}

/// A store with two agents and project variables; `migrate openbao` into `bao` (refused
/// while the server runs); then agent-run on `reader_node` with a token holding only the
/// agent's policy gets what it got from the store, and nothing of the other agent.
fn migrate_and_compare(dir: &Dir, bao: &Bao, reader_node: &Bao) {
    let mut vault = start_vault();
    vault.set("bot", "API_KEY", "sk-migrate-bot-0001");
    vault.set("bot", "API_KEY", "sk-migrate-bot-0002");
    vault.set("bot", "SHARED", "bot-own-wins");
    vault.set("other", "OTHER_KEY", "other-agent-value-9");
    // A hierarchical agent (issue 14) with a key that is not an environment name.
    vault.set("production%2Fopenai", "api-key", "sk-migrate-hier-0003");
    vault.put(
        "/v1/vars/SHARED",
        &vault.admin,
        serde_json::json!({"value": "project-value"}),
    );
    vault.put(
        "/v1/vars/PROJECT_URL",
        &vault.admin,
        serde_json::json!({"value": "https://project.example"}),
    );
    let (_, reader) = vault.issue(&["secrets:read:bot/*"], None);
    let keys = ["API_KEY", "SHARED", "PROJECT_URL", "OTHER_KEY"];
    let from_store = agent_run(Mode::Plain, ["--store", &vault.addr, "--", "/usr/bin/env"])
        .env("AGENT_RUN_TOKEN", &reader)
        .run(dir);
    from_store.assert_code(0);
    let expected = env_of(&from_store.stdout, &keys);
    assert_eq!(expected.len(), 3, "{expected:?}");

    let migrate = |vault_dir: &std::path::Path| {
        let mut cmd = vault_cmd();
        cmd.args(["migrate", "openbao", "--data-dir"])
            .arg(vault_dir)
            .args(["--address", &bao.addr, "--mount", "secret"])
            .env("BAO_TOKEN", &bao.token);
        run(&mut cmd, None)
    };
    // Offline only: refused while the server holds the data directory.
    let out = migrate(&vault.data_dir);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already served"),
        "{out:?}"
    );

    vault.kill9();
    let out = migrate(&vault.data_dir);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains(&format!(
            "agent-run --store openbao+{} --path secret/agents/bot",
            bao.addr
        )),
        "{stdout}"
    );
    for value in [
        "sk-migrate",
        "bot-own-wins",
        "project-value",
        "other-agent-value",
    ] {
        assert!(
            !stdout.contains(value) && !stderr.contains(value),
            "a value reached the terminal"
        );
    }

    // A token with only the agent's policy reads exactly the same environment.
    let created = bao.ok(
        reqwest::Method::POST,
        "auth/token/create",
        Some(serde_json::json!({"policies": ["agent-bot"]})),
    );
    let bot_token = created["auth"]["client_token"]
        .as_str()
        .expect("token")
        .to_string();
    let from_bao = agent_run(
        Mode::Plain,
        [
            "--store",
            &reader_node.store(),
            "--path",
            "secret/agents/bot",
            "--",
            "/usr/bin/env",
        ],
    )
    .env("BAO_TOKEN", &bot_token)
    .run(dir);
    from_bao.assert_code(0);
    assert_eq!(env_of(&from_bao.stdout, &keys), expected);

    // The policy is the agent's alone: another agent's path is refused.
    let refused = agent_run(
        Mode::Plain,
        [
            "--store",
            &bao.store(),
            "--path",
            "secret/agents/other",
            "--",
            "/usr/bin/env",
        ],
    )
    .env("BAO_TOKEN", &bot_token)
    .run(dir);
    refused.assert_code(125);
    assert!(!refused.stdout.contains("other-agent-value"));

    // The hierarchical agent: its path keeps the `/`, its policy name cannot (OpenBao's
    // policy names are one segment), and agent-run maps `api-key` to API_KEY as it does
    // from the store.
    assert!(
        stdout.contains(&format!(
            "agent-run --store openbao+{} --path secret/agents/production/openai",
            bao.addr
        )),
        "{stdout}"
    );
    let created = bao.ok(
        reqwest::Method::POST,
        "auth/token/create",
        Some(serde_json::json!({"policies": ["agent-production.openai"]})),
    );
    let hier_token = created["auth"]["client_token"]
        .as_str()
        .expect("token")
        .to_string();
    let from_bao = agent_run(
        Mode::Plain,
        [
            "--store",
            &reader_node.store(),
            "--path",
            "secret/agents/production/openai",
            "--",
            "/usr/bin/env",
        ],
    )
    .env("BAO_TOKEN", &hier_token)
    .run(dir);
    from_bao.assert_code(0);
    let got = env_of(&from_bao.stdout, &["API_KEY", "PROJECT_URL", "API_KEY_BOT"]);
    assert_eq!(
        got.get("API_KEY").map(String::as_str),
        Some("sk-migrate-hier-0003"),
        "{got:?}"
    );
    assert_eq!(
        got.get("PROJECT_URL").map(String::as_str),
        Some("https://project.example")
    );
    // ...and its policy reads nothing of `bot`.
    let refused = agent_run(
        Mode::Plain,
        [
            "--store",
            &bao.store(),
            "--path",
            "secret/agents/bot",
            "--",
            "/usr/bin/env",
        ],
    )
    .env("BAO_TOKEN", &hier_token)
    .run(dir);
    refused.assert_code(125);
}
