//! Load generator for `benches/vault.sh`: drives one running agent-vault over loopback.
//!
//! ```text
//! vault_load reads   ADDR READ_TOKEN CONCURRENCY SECONDS [TARGET [LABEL]]
//! vault_load waiters ADDR READ_TOKEN ADMIN_TOKEN SERVER_PID WAITERS
//! vault_load writes  ADDR ADMIN_TOKEN CONCURRENCY COUNT
//! vault_load seed    ADDR ADMIN_TOKEN AGENTS ENTRIES
//! ```
//! `reads` TARGET is `agent-vault` (default: `GET /v1/runtime/secrets` with a bearer token,
//! one run-time read of the agent's set, what agent-run does) or `openbao:<mount>/data/<path>`
//! (`GET /v1/<mount>/data/<path>` with `X-Vault-Token`, one KV v2 read, what agent-run's
//! OpenBao source does), so the same generator, concurrency and connection pool measure both
//! servers. `seed` fills the store with ENTRIES filler secrets spread over AGENTS agents
//! (`seed-NNNN`) through the bulk import endpoint, 4 imports in flight.
//! Each prints one CSV line on stdout:
//! `case,n,mean_ms,sd_ms,p50_ms,p99_ms,per_second,extra` (extra: RSS for `waiters`).
//! Not a test: no assertions, just numbers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn stats(mut samples: Vec<f64>) -> (f64, f64, f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0, 0.0, 0.0);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let sd = (samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    let pct = |p: f64| samples[((n * p).ceil() as usize).clamp(1, samples.len()) - 1];
    (mean, sd, pct(0.50), pct(0.99))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

async fn reads(
    addr: String,
    token: String,
    concurrency: usize,
    seconds: u64,
    target: String,
    label: String,
) -> Result<(), BoxError> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    // Same client, same loop; only the URL and the header carrying the token differ.
    let (url, header) = match target.strip_prefix("openbao:") {
        Some(path) => (format!("{addr}/v1/{path}"), "X-Vault-Token"),
        None => (format!("{addr}/v1/runtime/secrets"), "Authorization"),
    };
    let token = if header == "Authorization" {
        format!("Bearer {token}")
    } else {
        token
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let samples = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let failed = failed.clone();
        let (client, url, token, samples) =
            (client.clone(), url.clone(), token.clone(), samples.clone());
        let header = header.to_string();
        tasks.push(tokio::spawn(async move {
            let mut local = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let resp = client.get(&url).header(&header, &token).send().await;
                match resp {
                    Ok(r) if r.status().is_success() => {
                        // A read counts once its whole body arrived.
                        if r.bytes().await.is_ok() {
                            local.push(t.elapsed().as_secs_f64() * 1000.0);
                        }
                    }
                    _ => {
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
            samples.lock().await.extend(local);
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let samples = std::mem::take(&mut *samples.lock().await);
    let count = samples.len();
    let (mean, sd, p50, p99) = stats(samples);
    let failed = failed.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "{label}_c{concurrency},{count},{mean:.3},{sd:.3},{p50:.3},{p99:.3},{:.0},failed={failed}",
        count as f64 / elapsed
    );
    Ok(())
}

async fn waiters(
    addr: String,
    token: String,
    admin: String,
    pid: u32,
    count: usize,
) -> Result<(), BoxError> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(count + 8)
        .build()?;
    // The waiters come from 16 loopback addresses (a fleet of hosts, not one): the server
    // bounds the connections of ONE address that are still sending their request head, so a
    // burst of 10,000 from a single address would be shed by design.
    let mut fleet = Vec::new();
    for i in 0..16u8 {
        fleet.push(
            reqwest::Client::builder()
                .pool_max_idle_per_host(count / 16 + 8)
                .local_address(std::net::IpAddr::from([127, 0, 0, 1 + i]))
                .build()?,
        );
    }
    let revision: serde_json::Value = client
        .get(format!("{addr}/v1/runtime/revision"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let since = revision["revision"].as_u64().unwrap_or(0);
    let rss_before = rss_kib(pid);
    let fds_before = open_fds(pid);
    let url = format!("{addr}/v1/runtime/revision?since={since}&wait=120");
    let mut tasks = Vec::new();
    for i in 0..count {
        let (client, url, token) = (fleet[i % fleet.len()].clone(), url.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let resp = client.get(&url).bearer_auth(&token).send().await;
            let done = Instant::now();
            match resp {
                Ok(r) if r.status().as_u16() == 200 => Some(done),
                _ => None,
            }
        }));
        // Connect in bursts of 500, as a fleet coming up would, not 10,000 SYNs at once.
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Every waiter is connected once the server holds at least that many sockets (a
    // baseline would be skewed by keep-alive sockets of the previous phase still closing).
    let connect_deadline = Instant::now() + Duration::from_secs(60);
    while open_fds(pid) < fds_before + count && Instant::now() < connect_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the last requests reach their wait (they are parsed right after accept).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_after = rss_kib(pid);
    let rotated = Instant::now();
    let value = format!("rotated-{}", rotated.elapsed().as_nanos());
    client
        .put(format!("{addr}/v1/agents/bench/secrets/ROTATE_ME"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({ "value": value }))
        .send()
        .await?
        .error_for_status()?;
    let mut samples = Vec::new();
    let mut failed = 0;
    for task in tasks {
        match task.await? {
            Some(done) => {
                samples.push(done.saturating_duration_since(rotated).as_secs_f64() * 1000.0)
            }
            None => failed += 1,
        }
    }
    let answered = samples.len();
    let all = samples.iter().cloned().fold(0.0, f64::max);
    let (mean, sd, p50, p99) = stats(samples);
    println!(
        "wake_{count}_waiters,{answered},{mean:.3},{sd:.3},{p50:.3},{p99:.3},,rss_before_kib={rss_before} rss_after_kib={rss_after} all_answered_ms={all:.1} failed={failed}"
    );
    Ok(())
}

async fn writes(
    addr: String,
    admin: String,
    concurrency: usize,
    count: usize,
) -> Result<(), BoxError> {
    let client = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, addr, admin, next, samples) = (
            client.clone(),
            addr.clone(),
            admin.clone(),
            next.clone(),
            samples.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut local = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let t = Instant::now();
                let resp = client
                    .put(format!(
                        "{addr}/v1/agents/bench-writes/secrets/KEY_{}",
                        i % 100
                    ))
                    .bearer_auth(&admin)
                    .json(&serde_json::json!({ "value": format!("write-bench-value-{i}") }))
                    .send()
                    .await;
                if resp.map(|r| r.status().is_success()).unwrap_or(false) {
                    local.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
            samples.lock().await.extend(local);
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let samples = std::mem::take(&mut *samples.lock().await);
    let done = samples.len();
    let (mean, sd, p50, p99) = stats(samples);
    println!(
        "writes_c{concurrency},{done},{mean:.3},{sd:.3},{p50:.3},{p99:.3},{:.0},",
        done as f64 / elapsed
    );
    Ok(())
}

async fn seed(addr: String, admin: String, agents: usize, entries: usize) -> Result<(), BoxError> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, addr, admin, next) =
            (client.clone(), addr.clone(), admin.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let a = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if a >= agents {
                    return Ok::<(), BoxError>(());
                }
                // Agent a gets entries / agents entries, the first entries % agents one more.
                let n = entries / agents + usize::from(a < entries % agents);
                if n == 0 {
                    continue;
                }
                let list: Vec<_> = (0..n)
                    .map(|k| serde_json::json!({"key": format!("FILL_{k}"), "value": format!("filler-{a}-{k}-xxxxxxxxxxxxxxxxxxxxxxxx")}))
                    .collect();
                client
                    .post(format!("{addr}/v1/agents/seed-{a:04}/import"))
                    .bearer_auth(&admin)
                    .json(&serde_json::json!({ "entries": list }))
                    .send()
                    .await?
                    .error_for_status()?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "seed_{entries},{entries},,,,,{:.0},agents={agents} seconds={elapsed:.2}",
        entries as f64 / elapsed
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .ok_or("missing argument; see the module doc")
    };
    match args.first().map(String::as_str) {
        Some("reads") => {
            let target = arg(5).unwrap_or_else(|_| "agent-vault".into());
            let label = arg(6).unwrap_or_else(|_| "reads".into());
            reads(
                arg(1)?,
                arg(2)?,
                arg(3)?.parse()?,
                arg(4)?.parse()?,
                target,
                label,
            )
            .await
        }
        Some("seed") => seed(arg(1)?, arg(2)?, arg(3)?.parse()?, arg(4)?.parse()?).await,
        Some("waiters") => {
            waiters(
                arg(1)?,
                arg(2)?,
                arg(3)?,
                arg(4)?.parse()?,
                arg(5)?.parse()?,
            )
            .await
        }
        Some("writes") => writes(arg(1)?, arg(2)?, arg(3)?.parse()?, arg(4)?.parse()?).await,
        _ => Err("usage: vault_load reads|waiters|writes|seed ...".into()),
    }
}
