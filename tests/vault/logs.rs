//! Issue 13 item 7, agent-vault's side: `serve --log-format json` writes only JSON lines on
//! stderr (the "listening" notice and a fatal error too); run-time reads are logged at info
//! with agent, token id, key count and remote address, never a value; `audit --follow`
//! streams new records as they are written and ends on SIGTERM or SIGINT with exit 0.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::common::vault::{init_cmd, json as parse, serve_cmd, start_vault, vault_cmd};
use crate::common::{run, wait_until, Dir};

const LONG: Duration = Duration::from_secs(20);

type Lines = Arc<Mutex<Vec<String>>>;

/// Collects a pipe's lines in the background; the thread ends at the pipe's end.
fn collect(pipe: impl std::io::Read + Send + 'static) -> (Lines, std::thread::JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (lines, reader)
}

fn snapshot(lines: &Lines) -> Vec<String> {
    lines.lock().unwrap().clone()
}

fn stop(mut child: Child, signal: Signal) -> std::process::ExitStatus {
    kill(Pid::from_raw(child.id() as i32), signal).expect("signal");
    child.wait().expect("wait")
}

#[test]
fn serve_log_format_json_is_json_on_every_line_and_logs_reads_at_info() {
    let dir = Dir::new("json-logs");
    let data = dir.join("data");
    let admin = run(&mut init_cmd(&data), None);
    let admin = String::from_utf8_lossy(&admin.stdout).trim().to_owned();
    let mut serve = serve_cmd(&data, "127.0.0.1:0");
    serve
        .args(["--log-format", "json", "-v"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = serve.spawn().expect("serve");
    let (lines, collector) = collect(child.stderr.take().expect("piped"));
    let mut addr = String::new();
    wait_until(LONG, "the listening notice", || {
        addr = snapshot(&lines)
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find_map(|v| v["fields"]["address"].as_str().map(str::to_owned))
            .unwrap_or_default();
        !addr.is_empty()
    });

    let http = reqwest::blocking::Client::new();
    let status = http
        .put(format!("{addr}/v1/agents/log-bot/secrets/API_KEY"))
        .bearer_auth(&admin)
        .json(&json!({"value": "value-never-logged-7"}))
        .send()
        .expect("put")
        .status();
    assert_eq!(status, 201);
    let issued: Value = http
        .post(format!("{addr}/v1/tokens"))
        .bearer_auth(&admin)
        .json(&json!({"scopes": ["secrets:read:log-bot/*"]}))
        .send()
        .expect("issue")
        .json()
        .expect("JSON");
    let reader = issued["token"].as_str().expect("token");
    let read = http
        .get(format!("{addr}/v1/runtime/secrets"))
        .bearer_auth(reader)
        .send()
        .expect("read");
    assert_eq!(read.status(), 200);

    let mut logged = Value::Null;
    wait_until(LONG, "the run-time read's log line", || {
        logged = snapshot(&lines)
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["fields"]["message"] == "runtime read")
            .unwrap_or(Value::Null);
        !logged.is_null()
    });
    assert_eq!(logged["level"], "INFO", "{logged}");
    let fields = &logged["fields"];
    assert_eq!(fields["agent"], "log-bot", "{logged}");
    assert_eq!(fields["token_id"], issued["id"], "{logged}");
    assert_eq!(fields["keys"], 1, "{logged}");
    assert!(
        fields["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with("127.0.0.1:")),
        "{logged}"
    );

    assert!(stop(child, Signal::SIGTERM).success());
    collector.join().expect("the collector"); // every line read
    let all = snapshot(&lines);
    for line in &all {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not JSON: {line}"
        );
        assert!(!line.contains("value-never-logged-7"), "{line}");
    }
    assert!(
        all.iter().any(|l| l.contains("agent-vault stopped")),
        "{all:?}"
    );

    // A fatal error, and a refused flag, are JSON lines too.
    let mut fatal = serve_cmd(&dir.join("not-initialized"), "127.0.0.1:0");
    fatal.args(["--log-format", "json"]);
    let out = run(&mut fatal, None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let error = parse(lines[0]);
    assert_eq!(error["level"], "ERROR");
    assert!(
        error["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("agent-vault init")),
        "{error}"
    );
    let mut refused = vault_cmd();
    refused
        .env("AGENT_VAULT_LOG_FORMAT", "json")
        .args(["serve", "--bogus"]);
    let out = run(&mut refused, None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(parse(stderr.trim())["fields"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("--bogus")));
}

#[test]
fn audit_follow_streams_new_records_and_ends_on_a_signal_with_0() {
    let vault = start_vault();
    vault.set("follow-bot", "OLD_KEY", "value-follow-old");
    for (signal, json) in [(Signal::SIGTERM, true), (Signal::SIGINT, false)] {
        let mut cmd = vault.cli();
        cmd.args(["audit", "--follow", "--agent", "follow-bot"]);
        if json {
            cmd.arg("--json");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("audit --follow");
        let (lines, reader) = collect(child.stdout.take().expect("piped"));
        let has = |key: &str| snapshot(&lines).iter().any(|l| l.contains(key));
        wait_until(LONG, "the existing record", || has("OLD_KEY"));
        let key = if json { "NEW_JSON" } else { "NEW_TEXT" };
        vault.set("follow-bot", key, "value-follow-new");
        vault.set("other-bot", "ELSEWHERE", "value-follow-other");
        wait_until(LONG, "the new record", || has(key));
        let status = stop(child, signal);
        assert_eq!(status.code(), Some(0), "{signal:?}: {status:?}");
        reader.join().expect("the collector");
        let all = snapshot(&lines);
        assert!(!all.iter().any(|l| l.contains("ELSEWHERE")), "{all:?}");
        assert_eq!(
            all.iter().filter(|l| l.contains("OLD_KEY")).count(),
            1,
            "no record twice: {all:?}"
        );
        if json {
            let ids: Vec<i64> = all
                .iter()
                .map(|l| parse(l)["id"].as_i64().unwrap())
                .collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        } else {
            assert!(all[0].starts_with("AT"), "{all:?}");
        }
        for line in &all {
            assert!(!line.contains("value-follow"), "{line}");
        }
    }
}
