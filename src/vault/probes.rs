//! Liveness and readiness probes (issue 15), for Kubernetes, systemd watchdogs and load
//! balancers: served without a token, answering nothing about the store's content.
//!
//! `/healthz`: the process answers HTTP (liveness: restart it if not). `/readyz`: the
//! database is open and takes the write lock, and the server is not shutting down
//! (readiness: send it traffic only if so). Both answer `{"status": …}`; a not-ready server
//! answers 503 with the error code `not_ready`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tracing::warn;

use super::service::Vault;
use crate::protocol::wire::{code, ErrorBody, ErrorDetail, Health};

/// `GET /healthz`.
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// `GET /readyz`.
pub async fn readyz(State(vault): State<Vault>) -> Response {
    match vault.ready().await {
        Ok(()) => Json(Health {
            status: "ready".into(),
        })
        .into_response(),
        Err(reason) => {
            warn!(%reason, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(ErrorBody {
                    error: ErrorDetail {
                        code: code::NOT_READY.to_string(),
                        message: format!("not ready: {reason}"),
                        approval_id: None,
                    },
                }),
            )
                .into_response()
        }
    }
}
