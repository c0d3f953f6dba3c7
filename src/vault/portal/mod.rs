//! The web portal at `/ui`: the operator's page for agents, secrets, tokens and audit, served
//! by agent-vault itself from assets embedded at compile time (one HTML page, one script,
//! one stylesheet; no build step, no CDN).
//!
//! The page trades a token for a session (`session`) and then calls the JSON API under
//! `/v1` with the session cookie, so every portal action runs through the same `service`
//! calls, rules and audit records as the CLI's. The few endpoints of its own, under
//! `/ui/api`, are sign-in, the session, sign-out, the agents overview, the live rotation
//! marks (`delivery`) and the `.env` import
//! (the file is parsed here, by the CLI's own `dotenv` reader). No value is ever
//! sent to the browser: the API answers with masked previews, and the page sends a value
//! only in a request body.
//!
//! Every response under `/ui` carries a strict Content-Security-Policy (no inline script or
//! style), `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`, `Cache-Control:
//! no-store` and `X-Content-Type-Options: nosniff`.

pub mod session;

use axum::extract::{FromRequestParts, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::api::{ApiError, JsonBody, RemoteAddr, P};
use super::error::Error;
use super::service::{Ctx, Owner, Vault};
use super::tokens::{Caller, Scope};
use crate::protocol::wire::{ImportEntry, ImportRequest};
use session::SessionInfo;
pub use session::Sessions;

/// Whether the store serves TLS (an `Extension` set by [`install`]): the session cookie is
/// `Secure` then.
#[derive(Debug, Clone, Copy, Default)]
pub struct Transport {
    pub tls: bool,
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Give the whole router (API and portal) what the portal needs on every request: the one
/// session store, and whether connections are TLS. Called once by `vault::run_with`.
pub fn install(router: Router, tls: bool) -> Router {
    router
        .layer(Extension(Sessions::default()))
        .layer(Extension(Transport { tls }))
}

/// The portal's routes (merged into the API's router in `api::router`).
pub fn router() -> Router<Vault> {
    Router::new()
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/app.js", get(app_js))
        .route("/ui/app.css", get(app_css))
        .route(
            "/ui/api/session",
            get(session_info).post(sign_in).delete(sign_out),
        )
        .route("/ui/api/agents", get(agents))
        .route("/ui/api/agents/{agent}/import", post(import_dotenv))
        .route("/ui/api/agents/{agent}/delivery", get(delivery))
        .layer(axum::middleware::map_response(security_headers))
}

/// The headers every portal response carries.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// A request of a signed-in portal session (cookie required, CSRF checked on changes).
struct PortalSession(SessionInfo, Sessions);

impl FromRequestParts<Vault> for PortalSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, vault: &Vault) -> Result<Self, ApiError> {
        let sessions = sessions_of(parts)?;
        match sessions.from_parts(parts, vault) {
            Some(Ok(info)) => Ok(PortalSession(info, sessions)),
            Some(Err(err)) => Err(err.into()),
            None => Err(Error::Unauthorized("no portal session; sign in").into()),
        }
    }
}

fn sessions_of(parts: &Parts) -> Result<Sessions, ApiError> {
    parts
        .extensions
        .get::<Sessions>()
        .cloned()
        .ok_or_else(|| Error::Internal("portal sessions not installed".into()).into())
}

/// What the page learns about its session: never the token, never a value.
#[derive(Serialize)]
struct SessionView {
    token_id: String,
    admin: bool,
    /// The scopes the session may use (the token's admin and write scopes).
    scopes: Vec<String>,
    csrf: String,
}

fn view(caller: &Caller, csrf: String) -> SessionView {
    SessionView {
        token_id: caller.token_id.clone(),
        admin: caller.is_admin(),
        scopes: caller
            .scopes
            .iter()
            .filter_map(|scope| match scope {
                Scope::Admin => Some("admin".to_string()),
                Scope::Write { agent, pattern } => Some(format!("secrets:write:{agent}/{pattern}")),
                Scope::Read { .. } => None,
            })
            .collect(),
        csrf,
    }
}

#[derive(Deserialize)]
struct SignIn {
    token: SecretString,
}

/// `POST /ui/api/session {"token": "avt_…"}`: a JSON body only, so a cross-site form can
/// not post it (a JSON content type needs a CORS preflight, which this server never grants).
async fn sign_in(
    State(vault): State<Vault>,
    Extension(sessions): Extension<Sessions>,
    transport: Option<Extension<Transport>>,
    remote: Option<Extension<RemoteAddr>>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<SignIn>,
) -> Result<Response, ApiError> {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json {
        return Err(
            Error::InvalidRequest("sign-in needs Content-Type: application/json".into()).into(),
        );
    }
    let remote = remote.map(|Extension(addr)| addr.0.to_string());
    let caller = vault.portal_sign_in(&req.token, remote).await?;
    drop(req);
    let new = sessions.create(&caller)?;
    let secure = transport.is_some_and(|Extension(t)| t.tls);
    let mut cookie = HeaderValue::from_str(&session::set_cookie(&new.id, secure))
        .map_err(|_| Error::Internal("session cookie is not a header value".into()))?;
    // The id is a credential: keep it out of any header dump.
    cookie.set_sensitive(true);
    let mut response = Json(view(&caller, new.csrf)).into_response();
    response.headers_mut().insert(SET_COOKIE, cookie);
    Ok(response)
}

/// `GET /ui/api/session`: the page reloaded; who is signed in, and the CSRF token.
async fn session_info(PortalSession(info, _): PortalSession) -> Json<SessionView> {
    Json(view(&info.caller, info.csrf.clone()))
}

/// `DELETE /ui/api/session`: sign out (ends the session on the server, clears the cookie).
async fn sign_out(
    transport: Option<Extension<Transport>>,
    PortalSession(info, sessions): PortalSession,
) -> Response {
    sessions.remove(&info);
    let secure = transport.is_some_and(|Extension(t)| t.tls);
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&session::clear_cookie(secure)) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

/// `GET /ui/api/agents`: the agents the session manages, with entry counts.
async fn agents(
    State(vault): State<Vault>,
    remote: Option<Extension<RemoteAddr>>,
    PortalSession(info, _): PortalSession,
) -> Result<Response, ApiError> {
    let ctx = Ctx {
        caller: info.caller,
        remote: remote.map(|Extension(addr)| addr.0.to_string()),
    };
    #[derive(Serialize)]
    struct Agents {
        agents: Vec<super::service::AgentOverview>,
    }
    let agents = vault.agents_overview(&ctx).await?;
    Ok(Json(Agents { agents }).into_response())
}

/// The caller of an API request made with a portal session's cookie instead of a bearer
/// token (`api::Auth`): `None` when the request has no session cookie.
pub fn session_caller(parts: &Parts, vault: &Vault) -> Option<Result<Caller, Error>> {
    let sessions = parts.extensions.get::<Sessions>()?;
    Some(sessions.from_parts(parts, vault)?.map(|info| info.caller))
}

/// `POST /ui/api/agents/{agent}/import`: a `.env` file's text, read by the one `dotenv`
/// reader the CLI's `secrets import` uses (same grammar, no `$` substitution), then imported
/// by the same service call with the same options: all or nothing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DotenvImport {
    content: SecretString,
    #[serde(default)]
    plain: bool,
    #[serde(default)]
    plain_keys: Vec<String>,
    #[serde(default)]
    overwrite: bool,
    #[serde(default)]
    allow_dangerous_name: bool,
}

async fn import_dotenv(
    State(vault): State<Vault>,
    remote: Option<Extension<RemoteAddr>>,
    PortalSession(info, _): PortalSession,
    P(agent): P<String>,
    JsonBody(req): JsonBody<DotenvImport>,
) -> Result<Response, ApiError> {
    use secrecy::ExposeSecret;
    let entries = crate::dotenv::parse(req.content.expose_secret().as_bytes())
        .map_err(|err| Error::InvalidRequest(format!("the .env file is not valid: {err}")))?;
    drop(req.content);
    let request = ImportRequest {
        entries: entries
            .into_iter()
            .map(|entry| ImportEntry {
                key: entry.name,
                value: entry.value,
            })
            .collect(),
        plain: req.plain,
        plain_keys: req.plain_keys,
        overwrite: req.overwrite,
        allow_dangerous_name: req.allow_dangerous_name,
        tier: None,
        tags: None,
    };
    let ctx = Ctx {
        caller: info.caller,
        remote: remote.map(|Extension(addr)| addr.0.to_string()),
    };
    let summary = vault.import(&ctx, Owner::Agent(agent), request).await?;
    Ok(Json(summary).into_response())
}

/// `GET /ui/api/agents/{agent}/delivery`: per entry, whether a launcher has read its
/// current value (the page polls it after a change to show the rotation reaching launchers).
async fn delivery(
    State(vault): State<Vault>,
    remote: Option<Extension<RemoteAddr>>,
    PortalSession(info, _): PortalSession,
    P(agent): P<String>,
) -> Result<Response, ApiError> {
    let ctx = Ctx {
        caller: info.caller,
        remote: remote.map(|Extension(addr)| addr.0.to_string()),
    };
    #[derive(Serialize)]
    struct Delivery {
        agent: String,
        entries: Vec<super::service::EntryDelivery>,
    }
    let entries = vault.entry_delivery(&ctx, agent.clone()).await?;
    Ok(Json(Delivery { agent, entries }).into_response())
}
