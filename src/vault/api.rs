//! HTTP surface: the axum router, the extractors (bearer auth, bounded JSON bodies, queries),
//! and [`ApiError`], the only thing that becomes an HTTP error status.
//!
//! Handlers are thin: extract, call one `Vault` method, wrap the answer. Rules live in
//! `service`. Error bodies are `{"error":{"code":"...","message":"..."}}` with stable codes;
//! messages name keys and agents, never values (serde's own messages can quote input, so
//! bad JSON is described by category and position only). Request bodies are wiped after
//! parsing when this process holds the only copy.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::header::{CACHE_CONTROL, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use tracing::{debug, error};
use zeroize::Zeroize;

use super::error::Error;
use super::service::{Ctx, Owner, Vault};
use crate::protocol::wire::{
    code, AuditQuery, ErrorBody, ErrorDetail, Health, ImportRequest, ListQuery, PutSecretRequest,
    RevisionResponse, RollbackRequest, RuntimeKeyQuery, RuntimeQuery, SecretList, TokenRequest,
    VarList,
};

/// Largest request body accepted (an import of many entries fits; one value is capped at
/// 64 KiB separately by `service`).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The peer address of the connection, inserted by `run` for audit records.
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub SocketAddr);

/// Everything a request can fail with.
#[derive(Debug)]
pub enum ApiError {
    Vault(Error),
    BadJson(String),
    BodyTooLarge,
    BadBody,
    BadQuery,
    BadPath,
    NoRoute,
}

impl From<Error> for ApiError {
    fn from(err: Error) -> ApiError {
        ApiError::Vault(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::Vault(err) => {
                let (status, code) = match &err {
                    Error::InvalidName { .. } => (StatusCode::BAD_REQUEST, code::INVALID_NAME),
                    Error::DangerousName { .. } => (StatusCode::BAD_REQUEST, code::DANGEROUS_NAME),
                    Error::EmptyValue { .. } => (StatusCode::BAD_REQUEST, code::EMPTY_VALUE),
                    Error::InvalidValue { .. } => (StatusCode::BAD_REQUEST, code::INVALID_VALUE),
                    Error::ValueTooLarge { .. } => {
                        (StatusCode::PAYLOAD_TOO_LARGE, code::VALUE_TOO_LARGE)
                    }
                    Error::InvalidRequest(_) => (StatusCode::BAD_REQUEST, code::INVALID_REQUEST),
                    Error::InvalidScope { .. } => (StatusCode::BAD_REQUEST, code::INVALID_SCOPE),
                    Error::UnknownAgent { .. } => (StatusCode::BAD_REQUEST, code::UNKNOWN_AGENT),
                    Error::NotFound(_) => (StatusCode::NOT_FOUND, code::NOT_FOUND),
                    Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, code::UNAUTHORIZED),
                    Error::Forbidden(_) => (StatusCode::FORBIDDEN, code::FORBIDDEN),
                    Error::NotAReadToken(_) => (StatusCode::FORBIDDEN, code::NOT_A_READ_TOKEN),
                    Error::Conflict(_) => (StatusCode::CONFLICT, code::CONFLICT),
                    Error::TooManyWaiters => {
                        (StatusCode::SERVICE_UNAVAILABLE, code::TOO_MANY_WAITERS)
                    }
                    Error::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, code::SHUTTING_DOWN),
                    _ => (StatusCode::INTERNAL_SERVER_ERROR, code::INTERNAL),
                };
                let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
                    // The detail (names only) goes to the log; clients get a generic line.
                    error!(error = %err, "request failed");
                    "internal error; see the server log".to_string()
                } else {
                    debug!(code, error = %err, "request rejected");
                    err.to_string()
                };
                (status, code, message)
            }
            ApiError::BadJson(detail) => (
                StatusCode::BAD_REQUEST,
                code::BAD_JSON,
                format!("request body is not valid JSON for this call: {detail}"),
            ),
            ApiError::BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                code::BODY_TOO_LARGE,
                format!("request body is larger than {MAX_BODY_BYTES} bytes"),
            ),
            ApiError::BadBody => (
                StatusCode::BAD_REQUEST,
                code::BAD_BODY,
                "request body could not be read".to_string(),
            ),
            ApiError::BadQuery => (
                StatusCode::BAD_REQUEST,
                code::INVALID_QUERY,
                "invalid query string for this call".to_string(),
            ),
            ApiError::BadPath => (
                StatusCode::BAD_REQUEST,
                code::INVALID_NAME,
                "path segments must be valid UTF-8 names".to_string(),
            ),
            ApiError::NoRoute => (
                StatusCode::NOT_FOUND,
                code::NOT_FOUND,
                "no such endpoint".to_string(),
            ),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The authenticated caller plus the peer address.
pub struct Auth(pub Ctx);

impl FromRequestParts<Vault> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, vault: &Vault) -> Result<Auth, ApiError> {
        let bearer = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| SecretString::from(token.trim()))
            });
        // Without a bearer token, a portal session's cookie (`portal::session`) may stand in;
        // it carries no read scope, and a change needs the session's CSRF header.
        let caller = match bearer {
            None => super::portal::session_caller(parts, vault),
            Some(_) => None,
        }
        .unwrap_or_else(|| vault.authenticate(bearer.as_ref()))
        .map_err(|err| {
            debug!(error = %err, "authentication failed");
            ApiError::Vault(err)
        })?;
        let remote = parts
            .extensions
            .get::<RemoteAddr>()
            .map(|addr| addr.0.to_string());
        Ok(Auth(Ctx { caller, remote }))
    }
}

/// A JSON body of at most [`MAX_BODY_BYTES`], parsed without echoing input in errors and
/// wiped afterwards.
pub struct JsonBody<T>(pub T);

/// Like [`JsonBody`], but an empty body reads as `{}` (for calls whose body is optional).
pub struct OptionalJsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Vault> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Vault) -> Result<JsonBody<T>, ApiError> {
        read_json(req, state, false).await.map(JsonBody)
    }
}

impl<T: DeserializeOwned> FromRequest<Vault> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Vault) -> Result<OptionalJsonBody<T>, ApiError> {
        read_json(req, state, true).await.map(OptionalJsonBody)
    }
}

async fn read_json<T: DeserializeOwned>(
    req: Request,
    state: &Vault,
    allow_empty: bool,
) -> Result<T, ApiError> {
    {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::BodyTooLarge
            } else {
                ApiError::BadBody
            }
        })?;
        let text: &[u8] = if allow_empty && bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        let parsed = serde_json::from_slice::<T>(text).map_err(|err| {
            let category = match err.classify() {
                serde_json::error::Category::Io => "unreadable",
                serde_json::error::Category::Syntax => "syntax error",
                serde_json::error::Category::Data => "wrong field names or types",
                serde_json::error::Category::Eof => "unexpected end of input",
            };
            ApiError::BadJson(format!(
                "{category} at line {} column {}",
                err.line(),
                err.column()
            ))
        });
        // Clear intermediates: wipe the body if no other handle (hyper's read buffer) shares it.
        if let Ok(mut owned) = bytes.try_into_mut() {
            owned.as_mut().zeroize();
        }
        parsed
    }
}

/// Query string extractor whose failures are JSON errors.
pub struct Q<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<Vault> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Vault) -> Result<Q<T>, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Q(value))
            .map_err(|_| ApiError::BadQuery)
    }
}

/// Path extractor whose failures are JSON errors.
pub struct P<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<Vault> for P<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Vault) -> Result<P<T>, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| P(value))
            .map_err(|_| ApiError::BadPath)
    }
}

/// One entry named by the path: `/v1/agents/{agent}/secrets/{key}…` (an agent's) or
/// `/v1/vars/{key}…` (the project's), so each entry call has one handler for both owners.
pub struct Entry {
    owner: Owner,
    key: String,
}

impl FromRequestParts<Vault> for Entry {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Vault) -> Result<Entry, ApiError> {
        #[derive(serde::Deserialize)]
        struct Names {
            agent: Option<String>,
            key: String,
        }
        let P(names) = P::<Names>::from_request_parts(parts, state).await?;
        Ok(Entry {
            owner: names.agent.map_or(Owner::Project, Owner::Agent),
            key: names.key,
        })
    }
}

type ApiResult = Result<Response, ApiError>;

/// Build the router over a store.
pub fn router(vault: Vault) -> Router {
    Router::new()
        // The web portal (`/ui`, `/ui/api/…`); `portal::install` adds its session store.
        .merge(super::portal::router())
        .route("/v1/health", get(health))
        .route("/v1/runtime/secrets", get(runtime_secrets))
        // Issue 14 item 4: one entry, for the SDKs that read at call time.
        .route("/v1/runtime/secrets/{key}", get(runtime_secret))
        .route("/v1/runtime/revision", get(runtime_revision))
        // Issue 13 item 2: the agents the store knows (admin).
        .route("/v1/agents", get(list_agents))
        .route("/v1/agents/{agent}/secrets", get(list_secrets))
        .route(
            "/v1/agents/{agent}/secrets/{key}",
            get(describe_entry).put(put_entry).delete(delete_entry),
        )
        .route(
            "/v1/agents/{agent}/secrets/{key}/versions",
            get(entry_versions),
        )
        .route(
            "/v1/agents/{agent}/secrets/{key}/rollback",
            post(rollback_entry),
        )
        .route("/v1/agents/{agent}/import", post(import))
        .route("/v1/vars", get(list_vars))
        .route(
            "/v1/vars/{key}",
            get(describe_entry).put(put_entry).delete(delete_entry),
        )
        .route("/v1/vars/{key}/versions", get(entry_versions))
        .route("/v1/vars/{key}/rollback", post(rollback_entry))
        .route("/v1/tokens", get(list_tokens).post(issue_token))
        .route("/v1/tokens/{id}", delete(revoke_token))
        .route("/v1/audit", get(audit))
        // Operations (issue 15): probes and metrics, without a token; no names, no values.
        .route("/healthz", get(super::probes::healthz))
        .route("/readyz", get(super::probes::readyz))
        .route("/metrics", get(super::metrics::scrape))
        .fallback(|| async { ApiError::NoRoute })
        .layer(axum::middleware::from_fn_with_state(
            vault.clone(),
            super::metrics::record,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(no_store))
        .with_state(vault)
}

/// Nothing this server answers may be cached by a proxy or client.
async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

fn wait_of(query: &RuntimeQuery) -> Duration {
    Duration::from_secs(query.wait.unwrap_or(0).min(300))
}

async fn runtime_secrets(
    State(vault): State<Vault>,
    Auth(ctx): Auth,
    Q(query): Q<RuntimeQuery>,
) -> ApiResult {
    let wait = wait_of(&query);
    match vault
        .runtime_secrets(&ctx, query.agent, query.since, wait)
        .await?
    {
        // The one response that carries values (serialized by `protocol::wire::expose_value`).
        Some(secrets) => Ok(Json(secrets).into_response()),
        None => Ok(StatusCode::NOT_MODIFIED.into_response()),
    }
}

async fn runtime_secret(
    State(vault): State<Vault>,
    Auth(ctx): Auth,
    P(key): P<String>,
    Q(query): Q<RuntimeKeyQuery>,
) -> ApiResult {
    let entry = vault.runtime_secret(&ctx, query.agent, key).await?;
    // Carries a value (serialized by `protocol::wire::expose_value`), as the set read does.
    Ok(Json(entry).into_response())
}

async fn runtime_revision(
    State(vault): State<Vault>,
    Auth(ctx): Auth,
    Q(query): Q<RuntimeQuery>,
) -> ApiResult {
    let wait = wait_of(&query);
    match vault
        .runtime_revision(&ctx, query.agent, query.since, wait)
        .await?
    {
        Some(revision) => Ok(Json(RevisionResponse { revision }).into_response()),
        None => Ok(StatusCode::NOT_MODIFIED.into_response()),
    }
}

async fn list_agents(State(vault): State<Vault>, Auth(ctx): Auth) -> ApiResult {
    Ok(Json(vault.list_agents(&ctx).await?).into_response())
}

async fn list_secrets(
    State(vault): State<Vault>,
    Auth(ctx): Auth,
    P(agent): P<String>,
    Q(query): Q<ListQuery>,
) -> ApiResult {
    let secrets = vault
        .list(
            &ctx,
            Owner::Agent(agent.clone()),
            query.values.unwrap_or(false),
        )
        .await?;
    Ok(Json(SecretList { agent, secrets }).into_response())
}

async fn describe_entry(State(vault): State<Vault>, Auth(ctx): Auth, entry: Entry) -> ApiResult {
    Ok(Json(vault.describe(&ctx, entry.owner, entry.key).await?).into_response())
}

async fn put_entry(
    State(vault): State<Vault>,
    Auth(ctx): Auth,
    entry: Entry,
    JsonBody(req): JsonBody<PutSecretRequest>,
) -> ApiResult {
    let response = vault.put(&ctx, entry.owner, entry.key, req).await?;
    let status = if response.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(response)).into_response())
}

async fn delete_entry(State(vault): State<Vault>, Auth(ctx): Auth, entry: Entry) -> ApiResult {
    vault.delete(&ctx, entry.owner, entry.key).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn entry_versions(State(vault): State<Vault>, Auth(ctx): Auth, entry: Entry) -> ApiResult {
    Ok(Json(vault.versions(&ctx, entry.owner, entry.key).await?).into_response())
}

async fn rollback_entry(
    State(vault): State<Vault>,
    Auth(ctx): Auth,
    entry: Entry,
    OptionalJsonBody(req): OptionalJsonBody<RollbackRequest>,
) -> ApiResult {
    Ok(Json(vault.rollback(&ctx, entry.owner, entry.key, req.to).await?).into_response())
}

async fn import(
    State(vault): State<Vault>,
    Auth(ctx): Auth,
    P(agent): P<String>,
    JsonBody(req): JsonBody<ImportRequest>,
) -> ApiResult {
    Ok(Json(vault.import(&ctx, Owner::Agent(agent), req).await?).into_response())
}

async fn list_vars(
    State(vault): State<Vault>,
    Auth(ctx): Auth,
    Q(query): Q<ListQuery>,
) -> ApiResult {
    let vars = vault
        .list(&ctx, Owner::Project, query.values.unwrap_or(false))
        .await?;
    Ok(Json(VarList { vars }).into_response())
}

async fn issue_token(
    State(vault): State<Vault>,
    Auth(ctx): Auth,
    JsonBody(req): JsonBody<TokenRequest>,
) -> ApiResult {
    let issued = vault.issue_token(&ctx, req).await?;
    Ok((StatusCode::CREATED, Json(issued)).into_response())
}

async fn list_tokens(State(vault): State<Vault>, Auth(ctx): Auth) -> ApiResult {
    Ok(Json(vault.list_tokens(&ctx).await?).into_response())
}

async fn revoke_token(State(vault): State<Vault>, Auth(ctx): Auth, P(id): P<String>) -> ApiResult {
    vault.revoke_token(&ctx, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn audit(State(vault): State<Vault>, Auth(ctx): Auth, Q(query): Q<AuditQuery>) -> ApiResult {
    Ok(Json(vault.audit(&ctx, query).await?).into_response())
}
