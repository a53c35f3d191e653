//! `/api/v1/*`: sources and the events that arrived.

use crate::error::{AdminError, ErrorBody};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sluice_log::{EventLog, RejectedEvent, StoredEvent};
use sluice_store::{NewSource, Source, SourceKind, SourceUpdate, Store};
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<dyn Store>,
    pub log: Arc<dyn EventLog>,
    pub admin_token: Arc<str>,
    pub router: sluice_router::Router,
    /// Where browsers reach sluice (for the snippet); `None`: the request's Host.
    pub public_url: Option<String>,
    pub tls: bool,
    /// Turns true when the server shuts down: live streams end so the drain is not held up.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Dashboard sessions.
    pub sessions: Arc<crate::sessions::Sessions>,
}

/// The admin API's routes and its OpenAPI description, built from the same handler list so
/// the document cannot drift from what is served.
pub fn api() -> (Router<AdminState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create_source, list_sources))
        .routes(routes!(show_source, update_source, delete_source))
        .routes(routes!(rotate_key))
        .routes(routes!(source_events))
        .routes(routes!(source_snippet))
        .routes(routes!(source_event_stream))
        .merge(crate::destinations::routes())
        .split_for_parts()
}

#[derive(OpenApi)]
#[openapi(
    info(title = "sluice admin API", description = "Sources, events, destinations, deliveries and dead letters. Send the admin token as `Authorization: Bearer <token>`, or the dashboard's session cookie plus `X-CSRF-Token` for writes."),
    modifiers(&AdminTokenAuth),
    security(("admin_token" = [])),
    tags((name = "sources"), (name = "destinations"))
)]
struct ApiDoc;

struct AdminTokenAuth;

impl utoipa::Modify for AdminTokenAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn routes(state: AdminState) -> Router {
    let (api, document) = api();
    let document = Arc::new(document);
    api.route(
        "/api/v1/openapi.json",
        get(move || std::future::ready(Json(document.as_ref().clone()))),
    )
    .fallback(|| async {
        AdminError::new(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint")
    })
    .layer(middleware::from_fn_with_state(state.clone(), require_admin))
    .with_state(state)
}

/// Compares in time independent of where the inputs differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_admin(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if presented
        .is_some_and(|token| constant_time_eq(token.as_bytes(), state.admin_token.as_bytes()))
    {
        return next.run(request).await;
    }
    // The dashboard's session cookie; anything but a read also needs the session's CSRF token.
    let session_csrf =
        crate::sessions::session_id(request.headers()).and_then(|id| state.sessions.csrf(&id));
    if let Some(csrf) = session_csrf {
        let reading = matches!(
            *request.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        );
        let sent = request
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if reading || constant_time_eq(sent.as_bytes(), csrf.as_bytes()) {
            return next.run(request).await;
        }
        return AdminError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "send the session's CSRF token in X-CSRF-Token",
        )
        .into_response();
    }
    AdminError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "send the admin token as `Authorization: Bearer <token>` (it is in DATA_DIR/admin-token)",
    )
    .into_response()
}

pub(crate) fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, AdminError> {
    body.map(|Json(value)| value).map_err(|e| {
        AdminError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not the expected JSON: {}", e.body_text()),
        )
    })
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateSource {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub rate_limit_per_second: Option<u32>,
    /// Browser origins allowed to send with the write key; absent or empty = any.
    pub allowed_origins: Option<Vec<String>>,
}

/// Origins are `scheme://host[:port]` (what browsers put in `Origin`), or `*`.
fn valid_origins(origins: Vec<String>) -> Result<Vec<String>, AdminError> {
    origins
        .into_iter()
        .map(|origin| {
            let origin = origin.trim().trim_end_matches('/').to_owned();
            let (scheme, rest) = origin.split_once("://").unwrap_or(("", ""));
            let well_formed = origin == "*"
                || (matches!(scheme, "http" | "https")
                    && !rest.is_empty()
                    && !rest.contains(['/', '?', '#', ' ', '@']));
            if well_formed {
                Ok(origin)
            } else {
                Err(AdminError::invalid(
                    "allowed_origins",
                    format!("`{origin}` is not an origin; write it as https://host[:port] (no path), or *"),
                ))
            }
        })
        .collect()
}

pub(crate) fn valid_name(name: Option<String>) -> Result<String, AdminError> {
    let name = name.unwrap_or_default().trim().to_owned();
    if name.is_empty() || name.len() > 100 {
        return Err(AdminError::invalid(
            "name",
            "`name` is required: 1 to 100 characters",
        ));
    }
    Ok(name)
}

fn valid_kind(kind: Option<String>) -> Result<SourceKind, AdminError> {
    match kind.as_deref() {
        None | Some("server") => Ok(SourceKind::Server),
        Some("web") => Ok(SourceKind::Web),
        Some("mobile") => Ok(SourceKind::Mobile),
        Some(_) => Err(AdminError::invalid(
            "kind",
            "`kind` must be one of web, server, mobile",
        )),
    }
}

#[utoipa::path(post, path = "/api/v1/sources", tag = "sources", request_body = CreateSource,
    responses((status = 201, body = Source), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn create_source(
    State(state): State<AdminState>,
    body: Result<Json<CreateSource>, JsonRejection>,
) -> Result<(StatusCode, Json<Source>), AdminError> {
    let source = create_source_record(&state, json_body(body)?).await?;
    Ok((StatusCode::CREATED, Json(source)))
}

/// Validates and stores a new source (API and dashboard).
pub(crate) async fn create_source_record(
    state: &AdminState,
    body: CreateSource,
) -> Result<Source, AdminError> {
    let new = NewSource {
        name: valid_name(body.name)?,
        kind: valid_kind(body.kind)?,
        rate_limit_per_second: body.rate_limit_per_second.filter(|r| *r > 0),
        allowed_origins: valid_origins(body.allowed_origins.unwrap_or_default())?,
    };
    let source = state.store.create_source(new).await?;
    tracing::info!(source_id = %source.id, name = %source.name, "source created");
    Ok(source)
}

#[derive(Serialize, utoipa::ToSchema)]
struct SourceList {
    sources: Vec<Source>,
}

#[utoipa::path(get, path = "/api/v1/sources", tag = "sources", responses((status = 200, body = SourceList), (status = 401, body = ErrorBody)))]
async fn list_sources(State(state): State<AdminState>) -> Result<Json<SourceList>, AdminError> {
    Ok(Json(SourceList {
        sources: state.store.list_sources().await?,
    }))
}

pub(crate) async fn find_source(state: &AdminState, id: &str) -> Result<Source, AdminError> {
    state.store.source(id).await?.ok_or_else(|| {
        AdminError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no source with id `{id}`"),
        )
    })
}

#[utoipa::path(get, path = "/api/v1/sources/{id}", tag = "sources", params(("id" = String, Path)),
    responses((status = 200, body = Source), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show_source(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<Source>, AdminError> {
    Ok(Json(find_source(&state, &id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateSource {
    name: Option<String>,
    /// `0` removes the limit.
    rate_limit_per_second: Option<u32>,
    /// `[]` allows any origin again.
    allowed_origins: Option<Vec<String>>,
}

#[utoipa::path(patch, path = "/api/v1/sources/{id}", tag = "sources", params(("id" = String, Path)), request_body = UpdateSource,
    responses((status = 200, body = Source), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update_source(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Result<Json<UpdateSource>, JsonRejection>,
) -> Result<Json<Source>, AdminError> {
    let body = json_body(body)?;
    let name = match body.name {
        Some(name) => Some(valid_name(Some(name))?),
        None => None,
    };
    let update = SourceUpdate {
        name,
        rate_limit_per_second: body
            .rate_limit_per_second
            .map(|r| Some(r).filter(|r| *r > 0)),
        allowed_origins: body.allowed_origins.map(valid_origins).transpose()?,
    };
    Ok(Json(state.store.update_source(&id, update).await?))
}

#[utoipa::path(delete, path = "/api/v1/sources/{id}", tag = "sources", params(("id" = String, Path)),
    responses((status = 204, description = "deleted; the write key stops working at once"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_source(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    state.store.delete_source(&id).await?;
    tracing::info!(source_id = %id, "source deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/sources/{id}/rotate-key", tag = "sources", params(("id" = String, Path)),
    responses((status = 200, body = Source, description = "the new write key; the old one stops working at once"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn rotate_key(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<Source>, AdminError> {
    let source = state.store.rotate_write_key(&id).await?;
    tracing::info!(source_id = %id, "write key rotated");
    Ok(Json(source))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    limit: Option<usize>,
    /// Only events with a sequence number above this one (for tailing).
    after: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct EventsPage {
    events: Vec<StoredEvent>,
    rejected: Vec<RejectedEvent>,
}

const MAX_EVENTS_PAGE: usize = 1000;

#[utoipa::path(get, path = "/api/v1/sources/{id}/events", tag = "sources", params(("id" = String, Path), EventsQuery),
    responses((status = 200, body = EventsPage, description = "newest first"), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn source_events(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventsPage>, AdminError> {
    let Query(query) = query.map_err(|e| AdminError::invalid("limit", e.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_EVENTS_PAGE {
        return Err(AdminError::invalid(
            "limit",
            format!("`limit` must be between 1 and {MAX_EVENTS_PAGE}"),
        ));
    }
    let source = find_source(&state, &id).await?;
    let events = state.log.recent(&source.id, limit, query.after).await?;
    let rejected = state.log.recent_rejected(&source.id, limit).await?;
    Ok(Json(EventsPage { events, rejected }))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Snippet {
    snippet: String,
    write_key: String,
    host: String,
}

/// The footer snippet for a website: it loads `/sluice.js` from this server.
#[utoipa::path(get, path = "/api/v1/sources/{id}/snippet", tag = "sources", params(("id" = String, Path)),
    responses((status = 200, body = Snippet, description = "the footer snippet for a website"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn source_snippet(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Json<Snippet>, AdminError> {
    let source = find_source(&state, &id).await?;
    let host = sluice_collector::browser::PublicBase::resolve(
        state.public_url.as_deref(),
        state.tls,
        &headers,
    )
    .url();
    Ok(Json(Snippet {
        snippet: sluice_collector::browser::snippet(&host, &source.write_key),
        write_key: source.write_key,
        host,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// Start after this seq (default: the newest event, so only new ones stream).
    after: Option<u64>,
}

/// The live debugger's feed: a source's new events as server-sent events (`event: event`,
/// `id: <seq>`, `data: <stored event>`), woken by the log on every append. A reconnecting
/// client resumes after its `Last-Event-ID`.
#[utoipa::path(get, path = "/api/v1/sources/{id}/events/stream", tag = "sources", params(("id" = String, Path), StreamQuery),
    responses((status = 200, content_type = "text/event-stream", description = "server-sent events: `event: event`, `id: <seq>`, `data: <stored event>`; resumes after `Last-Event-ID`"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn source_event_stream(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<
    axum::response::Sse<
        impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    AdminError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let Query(query) = query.map_err(|e| AdminError::invalid("after", e.body_text()))?;
    let source = find_source(&state, &id).await?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let after = match resume.or(query.after) {
        Some(after) => after,
        None => state.log.stats().await?.last_seq.unwrap_or(0),
    };
    struct Feed {
        log: Arc<dyn EventLog>,
        source_id: String,
        after: u64,
        appended: tokio::sync::watch::Receiver<u64>,
        shutdown: tokio::sync::watch::Receiver<bool>,
        ready: std::collections::VecDeque<StoredEvent>,
    }
    let feed = Feed {
        appended: state.log.appended(),
        shutdown: state.shutdown.clone(),
        log: state.log.clone(),
        source_id: source.id,
        after,
        ready: Default::default(),
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        loop {
            if let Some(event) = feed.ready.pop_front() {
                let data = serde_json::to_string(&event).unwrap_or_default();
                let sse = Event::default()
                    .event("event")
                    .id(event.seq.to_string())
                    .data(data);
                return Some((Ok(sse), feed));
            }
            match feed
                .log
                .recent(&feed.source_id, MAX_EVENTS_PAGE, Some(feed.after))
                .await
            {
                Ok(mut events) if !events.is_empty() => {
                    events.reverse(); // oldest first
                    feed.after = events.last().map_or(feed.after, |e| e.seq);
                    feed.ready.extend(events);
                    continue;
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "the event stream cannot read the log"),
            }
            // Wait for the next append (or poll now and then: a closed log wakes no one).
            if *feed.shutdown.borrow() {
                return None;
            }
            let log_closed = tokio::select! {
                changed = feed.appended.changed() => changed.is_err(),
                _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => false,
                _ = feed.shutdown.changed() => return None,
            };
            if log_closed {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
