//! The agents' run-time reads and long-polls: wake-ups, scopes, bounds on waiters, and
//! slow or greedy clients that must not starve the others.

use std::io::Write as _;
use std::time::{Duration, Instant};

use crate::common::vault::{assert_no_values, error_code, json, start_vault, start_vault_with};
use crate::common::wait_until;
use serde_json::{json, Value};

#[test]
fn long_poll_wakes_on_rotation_and_not_for_another_agent() {
    let vault = start_vault();
    vault.set("agent-a", "TOKEN_A", "a-value-0000000");
    vault.set("agent-b", "TOKEN_B", "b-value-0000000");
    let (_, reader) = vault.issue(&["secrets:read:agent-a/*"], None);
    let rev = vault.get_json("/v1/runtime/revision?agent=agent-a", &reader)["revision"]
        .as_u64()
        .expect("revision");
    // Already newer: immediate answer.
    let t = Instant::now();
    let now = vault.get_json(
        &format!("/v1/runtime/revision?since={}&wait=30", rev - 1),
        &reader,
    );
    assert_eq!(now["revision"], rev);
    assert!(t.elapsed() < Duration::from_secs(2));

    std::thread::scope(|s| {
        // A change to agent-b must not wake a waiter on agent-a: it answers 304 at its timeout.
        let quiet = s.spawn(|| {
            let t = Instant::now();
            let (status, body) =
                vault.get(&format!("/v1/runtime/revision?since={rev}&wait=2"), &reader);
            (status, body, t.elapsed(), Instant::now())
        });
        // A rotation of agent-a wakes this one within milliseconds.
        let waker = s.spawn(|| {
            let (status, body) =
                vault.get(&format!("/v1/runtime/secrets?since={rev}&wait=30"), &reader);
            (status, body, Instant::now())
        });
        vault.set("agent-b", "TOKEN_B", "b-value-1111111");
        let b_done = Instant::now();
        let (status, body, elapsed, quiet_end) = quiet.join().expect("quiet waiter");
        assert_eq!(status, 304, "{body}");
        assert!(body.is_empty());
        assert!(elapsed >= Duration::from_millis(1900), "{elapsed:?}");
        assert!(quiet_end > b_done);
        // The other waiter is still waiting after 2 s: rotate agent-a now.
        let rotated = Instant::now();
        vault.set("agent-a", "TOKEN_A", "a-value-1111111");
        let (status, body, answered) = waker.join().expect("waker");
        assert_eq!(status, 200, "{body}");
        let latency = answered.duration_since(rotated);
        assert!(
            latency < Duration::from_millis(1000),
            "wake-up took {latency:?}"
        );
        let read = json(&body);
        assert_ne!(read["revision"].as_u64().expect("revision"), rev);
        assert_eq!(read["secrets"][0]["value"], "a-value-1111111");
    });

    // A project-wide change does wake agent-a's waiters.
    let rev = vault.get_json("/v1/runtime/revision", &reader)["revision"]
        .as_u64()
        .expect("revision");
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            vault.get(
                &format!("/v1/runtime/revision?since={rev}&wait=30"),
                &reader,
            )
        });
        vault.put("/v1/vars/SHARED", &vault.admin, json!({"value": "shared"}));
        let (status, body) = waiter.join().expect("waiter");
        assert_eq!(status, 200, "{body}");
    });
}

#[test]
fn waiters_are_bounded() {
    let vault = start_vault_with(&["--max-waiters", "1"]);
    vault.set("bot", "K", "v-000000000");
    let (_, reader) = vault.issue(&["secrets:read:bot/*"], None);
    let rev = vault.get_json("/v1/runtime/revision", &reader)["revision"]
        .as_u64()
        .expect("revision");
    // Two waiters at once with room for one: whichever arrives second is turned away at once,
    // the other waits until the rotation.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..2 {
            let tx = tx.clone();
            let (vault, reader) = (&vault, &reader);
            s.spawn(move || {
                let (status, body) =
                    vault.get(&format!("/v1/runtime/revision?since={rev}&wait=30"), reader);
                let _ = tx.send((status, error_code_or_empty(&body)));
            });
        }
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("one waiter answers");
        assert_eq!(first, (503, "too_many_waiters".to_string()));
        vault.set("bot", "K", "v-111111111");
        let second = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the other waiter answers");
        assert_eq!(second.0, 200);
    });
}

fn error_code_or_empty(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn runtime_agent_may_be_omitted_only_for_single_agent_tokens() {
    let vault = start_vault();
    vault.set("one", "K", "value-one-000");
    let (_, single) = vault.issue(&["secrets:read:one/*"], None);
    let (_, double) = vault.issue(&["secrets:read:one/*", "secrets:read:two/*"], None);
    assert_eq!(
        vault.get_json("/v1/runtime/secrets", &single)["agent"],
        "one"
    );
    let (status, body) = vault.get("/v1/runtime/secrets", &double);
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "invalid_request")
    );
    assert_eq!(vault.get("/v1/runtime/secrets?agent=one", &double).0, 200);
}

/// Issue 10 item 2: a long-poll already waiting when its token was revoked answered with
/// every value (one written after the revocation) and was audited `runtime.read ok`.
#[test]
fn issue_10_revocation_and_expiry_cut_open_long_polls() {
    let vault = start_vault();
    vault.set("bot", "K", "before-revoke-value-01");
    let (id, reader) = vault.issue(&["secrets:read:bot/*"], None);
    let after_revoke = "written-after-revoke-02";
    let waiting = |id: &str| {
        vault
            .log()
            .lines()
            .any(|line| line.contains("waiting for a change") && line.contains(id))
    };
    let long_poll = |token: &str| {
        let rev = vault.get_json("/v1/runtime/revision", token)["revision"]
            .as_u64()
            .expect("revision");
        vault.get(&format!("/v1/runtime/secrets?since={rev}&wait=60"), token)
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let (tx, long_poll, reader) = (tx.clone(), &long_poll, &reader);
        s.spawn(move || tx.send(long_poll(reader)).expect("send"));
        wait_until(Duration::from_secs(20), "the long-poll to wait", || {
            waiting(&id)
        });
        let (status, body) = vault.delete(&format!("/v1/tokens/{id}"), &vault.admin);
        assert_eq!(status, 204, "{body}");
        // The waiter answers now, before anything else happens; with the old code it waited
        // on, and the write below woke it with every value.
        let answer = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                vault.set("bot", "K", after_revoke);
                rx.recv().expect("the waiter answers")
            });
        assert_eq!(answer.0, 401, "{}", answer.1);
        assert_eq!(error_code(&answer.1), "unauthorized");
        assert_no_values("answer to a revoked waiter", &answer.1, &[after_revoke]);
    });
    vault.set("bot", "K", after_revoke);
    assert_eq!(vault.get("/v1/runtime/secrets", &reader).0, 401);
    let audit = vault.get_json("/v1/audit?agent=bot", &vault.admin);
    let records = audit["records"].as_array().expect("records");
    assert!(
        !records.iter().any(|r| r["token_id"] == id.as_str()
            && r["action"] == "runtime.read"
            && r["outcome"] == "ok"),
        "a revoked token's read was audited as ok: {audit}"
    );
    assert!(records.iter().any(|r| r["token_id"] == id.as_str()
        && r["action"] == "runtime.read"
        && r["outcome"] == "denied"));

    // An expiring token's waiter gets 401 at the expiry, not at the end of its wait.
    let (short_id, short) = vault.issue(&["secrets:read:bot/*"], Some(json!("3s")));
    std::thread::scope(|s| {
        let (tx, long_poll, short) = (tx.clone(), &long_poll, &short);
        s.spawn(move || tx.send(long_poll(short)).expect("send"));
        let answer = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                vault.set("bot", "K", "wake-the-old-code-03");
                rx.recv().expect("the waiter answers")
            });
        assert_eq!(answer.0, 401, "{}", answer.1);
    });
    assert!(waiting(&short_id), "the expiring token's request did wait");
}

/// Issue 10 item 9: the revision was one global counter, so a `STRIPE_*` reader was woken
/// by (and could count) writes to other keys and other agents.
#[test]
fn issue_10_waiters_see_only_changes_inside_their_scope() {
    let vault = start_vault();
    vault.set("bot", "STRIPE_KEY", "stripe-value-00001");
    vault.set("bot", "OPENAI_API_KEY", "openai-value-00001");
    let (_, stripe) = vault.issue(&["secrets:read:bot/STRIPE_*"], None);
    let rev = || {
        vault.get_json("/v1/runtime/revision", &stripe)["revision"]
            .as_u64()
            .expect("revision")
    };
    let before = rev();
    vault.set("bot", "OPENAI_API_KEY", "openai-value-00002");
    vault.set("other-agent", "STRIPE_KEY", "other-value-000001");
    assert_eq!(rev(), before, "writes outside the scope are invisible");
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            vault.get(
                &format!("/v1/runtime/revision?since={before}&wait=2"),
                &stripe,
            )
        });
        vault.set("bot", "OPENAI_API_KEY", "openai-value-00003");
        let (status, body) = waiter.join().expect("waiter");
        assert_eq!(status, 304, "woken by a write outside its scope: {body}");
    });
    // A write inside the scope wakes it, and both run-time answers agree on the revision.
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            vault.get(
                &format!("/v1/runtime/secrets?since={before}&wait=60"),
                &stripe,
            )
        });
        vault.set("bot", "STRIPE_KEY", "stripe-value-00002");
        let (status, body) = waiter.join().expect("waiter");
        assert_eq!(status, 200, "{body}");
        let read = json(&body);
        assert_ne!(read["revision"].as_u64(), Some(before));
        assert_eq!(read["revision"].as_u64(), Some(rev()));
        assert_eq!(read["secrets"][0]["value"], "stripe-value-00002");
    });
}

/// Opens `count` connections from `source` (a loopback address other than 127.0.0.1) to
/// `addr` and sends each half a request head, as a slowloris does.
fn slowloris(source: &str, addr: &str, count: usize) -> Vec<std::net::TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let target: std::net::SocketAddr = addr
        .trim_start_matches("http://")
        .parse()
        .expect("server address");
    let source: std::net::SocketAddr = format!("{source}:0").parse().expect("source");
    rt.block_on(async {
        let mut streams = Vec::new();
        for _ in 0..count {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind(source)
                .expect("bind the attacker's source address");
            let stream = socket.connect(target).await.expect("connect");
            let stream = stream.into_std().expect("std stream");
            stream.set_nonblocking(false).expect("blocking");
            (&stream)
                .write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .expect("half a head");
            streams.push(stream);
        }
        streams
    })
}

/// Issue 10 item 6: sockets that send half a request filled every connection slot, and
/// `/v1/health` timed out until the header timeout. Now one address holds at most a quarter
/// of the slots while sending heads; everyone else is served.
#[test]
fn issue_10_a_slowloris_from_one_address_leaves_others_served() {
    use std::io::Read;
    let vault = start_vault_with(&["--max-connections", "40"]);
    // More half-open connections than there are slots, from 127.0.0.2.
    let attack = slowloris("127.0.0.2", &vault.addr, 60);
    // Another client (127.0.0.1) is served at once (the old server only after its 30 s
    // header timeout; the client gives up after 10 s).
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    for _ in 0..3 {
        let resp = client
            .get(vault.url("/v1/health"))
            .send()
            .expect("health is served during the attack");
        assert_eq!(resp.status().as_u16(), 200);
    }
    assert_eq!(vault.get("/v1/tokens", &vault.admin).0, 200);
    // And the attack ends by itself: every attacking socket is closed by the server within
    // its head timeout (a slot or a queue place is no lease).
    for (i, mut stream) in attack.into_iter().enumerate() {
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut buf = [0u8; 256];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) => {
                    assert!(
                        !matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ),
                        "attacking socket {i} still open"
                    );
                    break;
                }
            }
        }
    }
}

/// Issue 10 item 6, the other half: long-poll waiters have sent their request, so a fleet
/// behind one address is not limited by the head bound: 1,000 waiters from 127.0.0.1.
#[test]
fn issue_10_a_thousand_waiters_from_one_address_stay_served() {
    use std::io::{Read, Write};
    let vault = start_vault();
    vault.set("fleet", "K", "fleet-value-0000001");
    let (id, reader) = vault.issue(&["secrets:read:fleet/*"], None);
    let rev = vault.get_json("/v1/runtime/revision", &reader)["revision"]
        .as_u64()
        .expect("revision");
    let target = vault.addr.trim_start_matches("http://").to_string();
    let request = format!(
        "GET /v1/runtime/revision?since={rev}&wait=120 HTTP/1.1\r\nHost: {target}\r\n\
         Authorization: Bearer {reader}\r\n\r\n"
    );
    let mut waiters = Vec::new();
    for _ in 0..1000 {
        let mut stream = std::net::TcpStream::connect(&target).expect("connect");
        stream.write_all(request.as_bytes()).expect("request");
        waiters.push(stream);
    }
    wait_until(Duration::from_secs(120), "1,000 waiters waiting", || {
        vault
            .log()
            .lines()
            .filter(|l| l.contains("waiting for a change") && l.contains(&id))
            .count()
            >= 1000
    });
    vault.set("fleet", "K", "fleet-value-0000002");
    for (i, stream) in waiters.iter_mut().enumerate() {
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut head = [0u8; 12];
        stream
            .read_exact(&mut head)
            .unwrap_or_else(|e| panic!("waiter {i} got no answer: {e}"));
        assert_eq!(&head, b"HTTP/1.1 200", "waiter {i}");
    }
}

/// Issue 14 item 4: the run-time read of one entry (what the SDKs call) answers its value,
/// version and `accessed_at`, is audited like the set read, and obeys the same rules: the
/// token's read scopes, the project variable under the agent's own entry, no value for an
/// admin or write token (the same answer as the set read gives them), 404 for a key in scope
/// that does not exist, 403 (before any lookup) for one outside the scopes.
#[test]
fn issue_14_one_entry_read_obeys_the_set_reads_rules() {
    let vault = start_vault();
    let admin = vault.admin.as_str();
    vault.set("bot", "STRIPE_KEY", "stripe-value-v1-0001");
    vault.set("bot", "STRIPE_KEY", "stripe-value-v2-0002");
    vault.set("bot", "OTHER_KEY", "other-value-000003");
    vault.put(
        "/v1/vars/SHARED_URL",
        admin,
        json!({"value": "https://shared.example", "kind": "plain"}),
    );
    let (reader_id, reader) = vault.issue(
        &["secrets:read:bot/STRIPE_*", "secrets:read:bot/SHARED_*"],
        None,
    );

    let read = vault.get_json("/v1/runtime/secrets/STRIPE_KEY", &reader);
    assert_eq!(read["agent"], "bot");
    assert_eq!(read["key"], "STRIPE_KEY");
    assert_eq!(read["value"], "stripe-value-v2-0002");
    assert_eq!(read["version"], 2);
    assert_eq!(read["kind"], "secret");
    assert_eq!(read["origin"], "agent");
    let accessed_at = read["accessed_at"]
        .as_str()
        .expect("accessed_at")
        .to_string();
    humantime::parse_rfc3339(&accessed_at).expect("accessed_at is RFC 3339");
    // The entry's "last read at" (written with the audit record, in the background) is the
    // time the answer gave.
    wait_until(Duration::from_secs(10), "STRIPE_KEY's last_read_at", || {
        vault.get_json("/v1/agents/bot/secrets/STRIPE_KEY", admin)["last_read_at"]
            == accessed_at.as_str()
    });
    // The set read says the same, version included.
    let set = vault.get_json("/v1/runtime/secrets", &reader);
    let in_set = set["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .find(|s| s["name"] == "STRIPE_KEY")
        .expect("STRIPE_KEY in the set read")
        .clone();
    assert_eq!(
        (&in_set["value"], &in_set["version"]),
        (&read["value"], &read["version"])
    );
    // `?agent=` as the set read has it; a project variable the scope matches.
    let shared = vault.get_json("/v1/runtime/secrets/SHARED_URL?agent=bot", &reader);
    assert_eq!(
        (&shared["value"], &shared["origin"], &shared["kind"]),
        (
            &json!("https://shared.example"),
            &json!("project"),
            &json!("plain")
        )
    );

    let expect = |path: &str, token: &str, want: (u16, &str)| {
        let (status, body) = vault.get(path, token);
        assert_eq!(
            (status, error_code(&body).as_str()),
            want,
            "GET {path}: {body}"
        );
        assert_no_values(path, &body, &["stripe-value", "other-value"]);
        body
    };
    // Outside the scopes: refused, and the key named (it exists; so does the answer for one
    // that does not, below, so the answer says nothing of existence).
    let body = expect("/v1/runtime/secrets/OTHER_KEY", &reader, (403, "forbidden"));
    assert!(body.contains("OTHER_KEY"), "{body}");
    expect(
        "/v1/runtime/secrets/NO_SUCH_OTHER",
        &reader,
        (403, "forbidden"),
    );
    // In scope, absent: 404 with a stable code, naming the key.
    let body = expect(
        "/v1/runtime/secrets/STRIPE_MISSING",
        &reader,
        (404, "not_found"),
    );
    assert!(body.contains("STRIPE_MISSING"), "{body}");
    expect("/v1/runtime/secrets/a%20b", &reader, (400, "invalid_name"));
    expect(
        "/v1/runtime/secrets/STRIPE_KEY?since=1",
        &reader,
        (400, "invalid_query"),
    );
    // Another agent than the token reads.
    expect(
        "/v1/runtime/secrets/STRIPE_KEY?agent=other",
        &reader,
        (403, "forbidden"),
    );

    // A management token never reads a value: the same answer as the set read gives it.
    let (_, writer) = vault.issue(&["secrets:write:bot/*"], None);
    for token in [admin, writer.as_str()] {
        let (set_status, set_body) = vault.get("/v1/runtime/secrets?agent=bot", token);
        let one = expect(
            "/v1/runtime/secrets/STRIPE_KEY?agent=bot",
            token,
            (set_status, error_code(&set_body).as_str()),
        );
        assert_eq!(set_status, 403, "{set_body}");
        assert_eq!(error_code(&one), "not_a_read_token", "{one}");
    }

    // A revoked token reads nothing.
    let (status, body) = vault.delete(&format!("/v1/tokens/{reader_id}"), admin);
    assert_eq!(status, 204, "{body}");
    expect(
        "/v1/runtime/secrets/STRIPE_KEY",
        &reader,
        (401, "unauthorized"),
    );

    // Audited like the set read: one `runtime.read` record naming the key, at the time the
    // answer gave; the denial and the miss too, by key name.
    let records = || {
        vault.get_json("/v1/audit?agent=bot", admin)["records"]
            .as_array()
            .expect("records")
            .clone()
    };
    let found = |outcome: &str, key: &str| {
        records().into_iter().any(|r| {
            r["token_id"] == reader_id.as_str()
                && r["action"] == "runtime.read"
                && r["outcome"] == outcome
                && r["keys"] == json!([key])
        })
    };
    wait_until(Duration::from_secs(10), "the read's audit records", || {
        found("ok", "STRIPE_KEY")
            && found("denied", "OTHER_KEY")
            && found("not_found", "STRIPE_MISSING")
    });
    assert!(
        records()
            .iter()
            .any(|r| r["keys"] == json!(["STRIPE_KEY"]) && r["at"] == accessed_at.as_str()),
        "no record at {accessed_at}"
    );
    let meta = vault.get_json("/v1/agents/bot/secrets/OTHER_KEY", admin);
    assert_eq!(
        meta["last_read_at"],
        Value::Null,
        "OTHER_KEY was never read"
    );
    // /metrics counts the reads under the route template, never a key's name.
    let metrics = vault.call("GET", "/metrics", None, None).1;
    assert!(
        metrics.contains(r#"route="/v1/runtime/secrets/{key}""#),
        "{metrics}"
    );
    assert!(!metrics.contains("STRIPE_KEY"), "{metrics}");
    vault.assert_not_stored_or_logged(&[
        "stripe-value-v1-0001",
        "stripe-value-v2-0002",
        "other-value-000003",
    ]);
}
