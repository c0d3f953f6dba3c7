//! Prometheus metrics of agent-vault (issue 15): requests by route template and status, a
//! latency histogram, long-poll waiters, committed changes, token failures and the database
//! size, exposed at `GET /metrics` without a token.
//!
//! Served without a token, so nothing here may name an agent, a key or a token, let alone a
//! value: requests are labelled by axum's *route template* (`/v1/agents/{agent}/secrets`),
//! never the path a client sent, and every other metric is a bare number. The gauges that
//! mirror state (waiters, database size) are read when scraped rather than kept in step.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::service::Vault;

/// The content type of the OpenMetrics text format that `prometheus_client` writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A request's labels: the route template (not the path), the method and the status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

/// A latency observation's labels: the route template and the method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~65 s: run-time reads are sub-millisecond; long-polls last up to 300 s and
    // land in +Inf.
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// Every metric of one server. Cheap to share (`Arc`); each metric is atomic.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    waiters: Gauge,
    changes: Counter,
    token_failures: Counter,
    db_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("agent_vault");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let waiters = Gauge::default();
        let changes = Counter::default();
        let token_failures = Counter::default();
        let db_bytes = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (long-polls included), by route template and method",
            latency.clone(),
        );
        registry.register(
            "longpoll_waiters",
            "Long-poll requests waiting for a change now",
            waiters.clone(),
        );
        registry.register(
            "rotations",
            "Changes committed to entries (set, rollback, import, delete), each publishing a new revision",
            changes.clone(),
        );
        registry.register(
            "token_failures",
            "Requests refused because their token was missing, unknown, expired or revoked",
            token_failures.clone(),
        );
        registry.register(
            "db_size_bytes",
            "Size of vault.db and its write-ahead log on disk",
            db_bytes.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            waiters,
            changes,
            token_failures,
            db_bytes,
        }
    }

    /// One committed change (called by `service` after each publish).
    pub fn changed(&self) {
        self.changes.inc();
    }

    /// One request refused for its token.
    pub fn token_failed(&self) {
        self.token_failures.inc();
    }

    /// The exposition, with the scrape-time gauges set first.
    fn encode(&self, waiters: usize, db_bytes: u64) -> String {
        self.waiters.set(i64::try_from(waiters).unwrap_or(i64::MAX));
        self.db_bytes
            .set(i64::try_from(db_bytes).unwrap_or(i64::MAX));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Middleware: count and time every request by its route template.
pub async fn record(State(vault): State<Vault>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        // No route matched: the path a client made up must not become a label.
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(request).await;
    let metrics = vault.metrics();
    metrics
        .latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
            method: method.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// `GET /metrics`: the OpenMetrics text exposition; no token, no names, no values.
pub async fn scrape(State(vault): State<Vault>) -> Response {
    let metrics: Arc<Metrics> = vault.metrics();
    let text = metrics.encode(vault.waiting(), vault.db_size());
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
    response
}
