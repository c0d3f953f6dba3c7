//! Probes and Prometheus metrics of agent-vault (issue 15): `/healthz`, `/readyz` and
//! `/metrics` answer without a token, the exposition parses with the Prometheus project's own
//! OpenMetrics parser (Python `prometheus_client`), its numbers move with what the server
//! does, and it names no agent, key or token and carries no value.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::vault::{start_vault, VaultServer};
use crate::common::wait_until;

/// One sample of the exposition: metric name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Value,
    value: f64,
}

/// Scrape `/metrics` (no token) and parse it with `prometheus_client`'s OpenMetrics parser,
/// which refuses anything malformed. Returns the raw text and the samples.
fn scrape(vault: &VaultServer) -> (String, Vec<Sample>) {
    let resp = reqwest::blocking::get(vault.url("/metrics")).expect("GET /metrics");
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = resp.text().expect("body");
    let script = "import sys, json\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        out = [{'name': s.name, 'labels': s.labels, 'value': s.value}\n\
               for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]\n\
        print(json.dumps(out))\n";
    let mut python = std::process::Command::new("python3");
    python.args(["-c", script]);
    let out = crate::common::run(&mut python, Some(text.as_bytes()));
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the exposition (or is missing: pip install \
         prometheus-client): {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Vec<Value> = serde_json::from_slice(&out.stdout).expect("parser output");
    let samples = parsed
        .into_iter()
        .map(|s| Sample {
            name: s["name"].as_str().expect("name").to_string(),
            labels: s["labels"].clone(),
            value: s["value"].as_f64().expect("value"),
        })
        .collect();
    (text, samples)
}

/// The value of the sample named `name` whose labels include `labels` (0 if absent).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels[*k] == *v))
        .map(|s| s.value)
        .sum()
}

fn runtime_reads(samples: &[Sample]) -> f64 {
    value(
        samples,
        "agent_vault_http_requests_total",
        &[
            ("route", "/v1/runtime/secrets"),
            ("method", "GET"),
            ("status", "200"),
        ],
    )
}

#[test]
fn probes_answer_without_a_token() {
    let vault = start_vault();
    let client = reqwest::blocking::Client::new();
    let health: Value = client
        .get(vault.url("/healthz"))
        .send()
        .expect("GET /healthz")
        .json()
        .expect("JSON");
    assert_eq!(health, json!({"status": "ok"}));
    let resp = client
        .get(vault.url("/readyz"))
        .send()
        .expect("GET /readyz");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.json::<Value>().expect("JSON"),
        json!({"status": "ready"})
    );
}

#[test]
fn metrics_move_with_requests_waiters_rotations_and_token_failures() {
    let vault = start_vault();
    vault.set("metrics-bot", "METRICS_KEY_NAME", "metrics-secret-value-7q");
    let (token_id, reader) = vault.issue(&["secrets:read:metrics-bot/*"], None);
    let (_, before) = scrape(&vault);

    // A run-time read counts once under its route template, and is timed.
    let read = vault.get_json("/v1/runtime/secrets", &reader);
    assert_eq!(read["secrets"][0]["value"], "metrics-secret-value-7q");
    // A bad token counts as a token failure.
    let (status, _) = vault.get("/v1/runtime/secrets", "avt_not_a_real_token");
    assert_eq!(status, 401);
    let (_, after) = scrape(&vault);
    assert_eq!(runtime_reads(&after), runtime_reads(&before) + 1.0);
    assert_eq!(
        value(&after, "agent_vault_token_failures_total", &[]),
        value(&before, "agent_vault_token_failures_total", &[]) + 1.0
    );
    assert!(
        value(
            &after,
            "agent_vault_http_request_duration_seconds_count",
            &[("route", "/v1/runtime/secrets"), ("method", "GET")]
        ) >= 1.0
    );
    assert!(value(&after, "agent_vault_db_size_bytes", &[]) > 0.0);

    // A long-poll waiter shows in the gauge while it waits; a change wakes it and counts as
    // a rotation.
    let rev = vault.get_json("/v1/runtime/revision", &reader)["revision"]
        .as_u64()
        .expect("revision");
    let url = vault.url(&format!("/v1/runtime/revision?since={rev}&wait=60"));
    let reader2 = reader.clone();
    let waiter = std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(90))
            .build()
            .expect("client")
            .get(url)
            .bearer_auth(reader2)
            .send()
            .map(|r| r.status().as_u16())
    });
    wait_until(
        Duration::from_secs(20),
        "the waiter shows in the gauge",
        || value(&scrape(&vault).1, "agent_vault_longpoll_waiters", &[]) == 1.0,
    );
    let rotations = value(&scrape(&vault).1, "agent_vault_rotations_total", &[]);
    vault.set("metrics-bot", "METRICS_KEY_NAME", "metrics-secret-value-8r");
    assert_eq!(waiter.join().expect("waiter").expect("answer"), 200);
    let (text, end) = scrape(&vault);
    assert_eq!(value(&end, "agent_vault_longpoll_waiters", &[]), 0.0);
    assert_eq!(
        value(&end, "agent_vault_rotations_total", &[]),
        rotations + 1.0
    );

    // Without a token, so without a name: no agent, key, token id or value anywhere.
    for secret in [
        "metrics-bot",
        "METRICS_KEY_NAME",
        "metrics-secret-value",
        token_id.as_str(),
        "avt_",
    ] {
        assert!(!text.contains(secret), "/metrics shows {secret}:\n{text}");
    }
}
