//! Unit tests of the OpenBao client's pure parts (no server: tests/openbao.rs has those).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::auth::{login_body, Token};
use super::client::{is_standby, server_errors, Reply, MAX_ERROR_TEXT};
use super::kv::{check_status, Envelope, KvMap};
use super::watch::jittered;

fn values(json: &str) -> BTreeMap<String, String> {
    let map: KvMap = serde_json::from_str(json).unwrap();
    map.into_iter()
        .map(|(k, v)| (k, v.0.expose_secret().to_owned()))
        .collect()
}

#[test]
fn kv_values_of_every_json_type() {
    let v = values(
        r#"{"s":"text \"q\" \u00e9","n":42,"neg":-7,"f":1.5,"b":true,"z":null,
            "o":{"a":[1,"x"],"b":{"c":false}},"a":[1,2]}"#,
    );
    assert_eq!(v["s"], "text \"q\" é");
    assert_eq!(v["n"], "42");
    assert_eq!(v["neg"], "-7");
    assert_eq!(v["f"], "1.5");
    assert_eq!(v["b"], "true");
    assert_eq!(v["z"], "");
    assert_eq!(v["o"], r#"{"a":[1,"x"],"b":{"c":false}}"#);
    assert_eq!(v["a"], "[1,2]");
}

#[test]
fn login_body_is_escaped_json() {
    let body = login_body(&[("role", "r\"1"), ("jwt", "a.b.c")]);
    assert_eq!(&body[..], br#"{"jwt":"a.b.c","role":"r\"1"}"#);
    assert!(body.capacity() >= body.len());
}

#[test]
fn token_schedule_renews_at_two_thirds_and_notices_the_max_ttl() {
    let mut token = Token::new(SecretString::from("t"), Duration::from_secs(30), true);
    let now = Instant::now();
    let due = token.due.unwrap().saturating_duration_since(now);
    assert!(due <= Duration::from_secs(20) && due > Duration::from_secs(19));
    assert!(!token.capped);
    token.granted(Duration::from_secs(30), now);
    assert!(!token.capped);
    token.granted(Duration::from_secs(12), now);
    assert!(token.capped, "a shorter grant means the max TTL is near");
    let root = Token::new(SecretString::from("t"), Duration::ZERO, false);
    assert!(root.due.is_none() && !root.expired(now));
}

#[test]
fn standby_answers_move_to_the_next_address() {
    let reply =
        |status, body: &str| Reply::new(status, Zeroizing::new(body.as_bytes().to_vec()), &[]);
    for status in [503, 429, 472, 473, 307] {
        assert!(is_standby(&reply(status, "")));
    }
    assert!(is_standby(&reply(
        500,
        r#"{"errors":["local node not active but active cluster node not found"]}"#
    )));
    assert!(!is_standby(&reply(500, r#"{"errors":["internal error"]}"#)));
    assert!(is_standby(&reply(
        400,
        r#"{"errors":["Waiting for the primary to upgrade from non-versioned to versioned data. This backend will be unavailable for a brief period and will resume service when the primary is finished."]}"#
    )));
    assert!(!is_standby(&reply(400, r#"{"errors":["invalid path"]}"#)));
    assert!(!is_standby(&reply(
        403,
        r#"{"errors":["permission denied"]}"#
    )));
}

#[test]
fn status_errors_name_the_path_and_no_body() {
    let reply = Reply::new(
        403,
        Zeroizing::new(br#"{"errors":["permission denied"]}"#.to_vec()),
        &[],
    );
    let e = check_status(&reply, "secret/agents/b")
        .unwrap_err()
        .to_string();
    assert!(e.contains("secret/agents/b") && e.contains("403"), "{e}");
    assert!(e.contains("not allowed to read"), "{e}");
}

#[test]
fn server_error_texts_lose_what_was_sent() {
    let body = br#"{"errors":["invalid role_id rid-1 secret_id sid:2\nforged line","hvs.CAESIJ0123456789abcdefghij and a b"]}"#;
    let text = server_errors(body, &["rid-1", "sid:2"]);
    assert!(!text.contains("rid-1") && !text.contains("sid:2"), "{text}");
    assert!(!text.contains("hvs.CAES") && !text.contains('\n'), "{text}");
    assert!(text.contains("invalid role_id [redacted]"), "{text}");
    assert_eq!(server_errors(b"not json", &[]), "no error message");
    let long = format!(r#"{{"errors":["{}"]}}"#, "word ".repeat(200));
    assert!(server_errors(long.as_bytes(), &[]).len() <= MAX_ERROR_TEXT + 3);
}

#[test]
fn poll_jitter_stays_within_ten_percent() {
    let base = Duration::from_secs(5);
    for _ in 0..200 {
        let d = jittered(base);
        assert!(d >= Duration::from_millis(4500) && d <= Duration::from_millis(5500));
    }
}

#[test]
fn malformed_bodies_give_position_not_content() {
    let reply = Reply::new(
        200,
        Zeroizing::new(br#"{"data":"s3cr3t-in-the-wrong-place"}"#.to_vec()),
        &[],
    );
    let e = reply
        .parse::<Envelope<KvMap>>("secret/a")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("secret/a") && e.contains("column"), "{e}");
    assert!(!e.contains("s3cr3t"), "{e}");
}
