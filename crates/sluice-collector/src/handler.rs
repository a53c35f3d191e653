//! Routing and the request pipeline: method and path → timeout → content type → body →
//! parse → write key → rate limit → durable append → answer.

use crate::auth::{write_key_from_header, HeaderKey};
use crate::body::{check_content_type, read_body};
use crate::browser::{self, PublicBase};
use crate::cors::{add_cors_headers, preflight};
use crate::error::{ApiError, NoCorsGrant, RejectedItem};
use crate::net::{client_ip, TrustedProxies};
use crate::rate_limit::RateLimiter;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use serde::Serialize;
use sluice_core::{
    parse_batch, parse_single, Clock, EventType, IngestContext, Limits, ParsedRequest,
};
use sluice_log::{AppendRequest, EventLog, LogError};
use sluice_store::Store;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct CollectorConfig {
    pub limits: Limits,
    /// Longest a request may take from its first body byte to its answer.
    pub request_timeout: Duration,
    pub trusted_proxies: TrustedProxies,
    /// Requests per second per source when the source sets none; `None` = unlimited.
    pub default_rate_limit_per_second: Option<u32>,
    /// The URL browsers and apps reach sluice at (`https://collect.example.com`); `None`: taken
    /// from each request's `Host`.
    pub public_url: Option<String>,
    /// Whether sluice itself terminates TLS (the scheme of a `Host`-derived public URL).
    pub tls: bool,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            request_timeout: Duration::from_secs(30),
            trusted_proxies: TrustedProxies::default(),
            default_rate_limit_per_second: None,
            public_url: None,
            tls: false,
        }
    }
}

/// The collection service: shared by every `/v1/*` request.
pub struct Collector {
    log: Arc<dyn EventLog>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: CollectorConfig,
    limiter: RateLimiter,
}

impl Collector {
    pub fn new(
        log: Arc<dyn EventLog>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: CollectorConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            log,
            store,
            clock,
            config,
            limiter: RateLimiter::default(),
        })
    }
}

/// The `/v1/*` routes, the settings documents under `/projects/*` and `/sluice.js`. Every
/// answer, errors included, carries CORS headers, except to an origin its source refuses.
pub fn routes(collector: Arc<Collector>) -> Router {
    Router::new()
        .route("/v1", any(handle))
        .route("/v1/", any(handle))
        .route("/v1/{*path}", any(handle))
        .route("/projects/{*path}", any(handle))
        .route(
            "/sluice.js",
            get(|headers: HeaderMap| async move { browser::script(&headers) }),
        )
        .with_state(collector)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Single(EventType),
    Batch,
    Import,
    Metrics,
    /// `GET /v1/projects/{writeKey}/settings` (also without `/v1`, and the doubled
    /// `projects/projects` that misconfigured mobile apps ask for).
    Settings,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Self> {
        if settings_key(path).is_some() {
            return Some(Endpoint::Settings);
        }
        let segment = path.strip_prefix("/v1/")?.trim_end_matches('/');
        match segment {
            "batch" | "b" => Some(Endpoint::Batch),
            "import" => Some(Endpoint::Import),
            "m" => Some(Endpoint::Metrics),
            other => EventType::from_path(other).map(Endpoint::Single),
        }
    }

    /// A bounded metric label.
    fn label(self) -> &'static str {
        match self {
            Endpoint::Single(t) => t.as_str(),
            Endpoint::Batch => "batch",
            Endpoint::Import => "import",
            Endpoint::Metrics => "metrics",
            Endpoint::Settings => "settings",
        }
    }
}

/// A page whose origin its source does not allow is refused (403, no CORS grant).
fn check_origin(headers: &HeaderMap, source: &sluice_store::Source) -> Result<(), ApiError> {
    match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        Some(origin) if !source.allows_origin(origin) => Err(ApiError::origin_not_allowed(origin)),
        _ => Ok(()),
    }
}

/// The answer when sources cannot be read: retry soon.
fn sources_unavailable(error: sluice_store::StoreError) -> ApiError {
    tracing::error!(%error, "write key lookup failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "sources cannot be read right now; retry",
    )
    .retry_after(5)
}

/// The write key of a settings path, if `path` is one.
fn settings_key(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1").unwrap_or(path);
    let rest = rest.strip_prefix("/projects/")?;
    let rest = rest.strip_prefix("projects/").unwrap_or(rest);
    let (key, tail) = rest.split_once('/')?;
    let valid = !key.is_empty() && key.len() <= 200 && !key.contains(['%', ' ']);
    (valid && tail.trim_end_matches('/') == "settings").then_some(key)
}

async fn handle(State(collector): State<Arc<Collector>>, request: Request) -> Response {
    // CORS needs only the Origin; keep it rather than a copy of every header.
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response = if request.method() == Method::OPTIONS {
        collector.preflight(origin.as_ref()).await
    } else {
        let endpoint = Endpoint::from_path(request.uri().path());
        let label = endpoint.map_or("unknown", Endpoint::label);
        let response = match collector.dispatch(endpoint, request).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        };
        metrics::counter!("sluice_http_requests_total", "endpoint" => label, "status" => response.status().as_str().to_owned())
            .increment(1);
        response
    };
    if response.extensions().get::<NoCorsGrant>().is_none() {
        add_cors_headers(origin.as_ref(), &mut response);
    }
    response
}

#[derive(Serialize)]
struct Success {
    success: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rejected: Vec<RejectedItem>,
}

fn success(rejected: Vec<RejectedItem>) -> Response {
    let body = serde_json::to_vec(&Success {
        success: true,
        rejected,
    })
    .unwrap_or_default();
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl Collector {
    /// A preflight carries no credentials, so it is granted to any origin that some source
    /// allows; the request itself is then checked against its own source.
    async fn preflight(&self, origin: Option<&HeaderValue>) -> Response {
        let Some(origin) = origin.and_then(|o| o.to_str().ok()) else {
            return preflight(None);
        };
        match self.store.list_sources().await {
            Ok(sources)
                if sources.is_empty() || sources.iter().any(|s| s.allows_origin(origin)) =>
            {
                preflight(Some(
                    &HeaderValue::from_str(origin).unwrap_or(HeaderValue::from_static("null")),
                ))
            }
            Ok(_) => ApiError::origin_not_allowed(origin).into_response(),
            Err(error) => sources_unavailable(error).into_response(),
        }
    }

    /// `GET …/projects/{writeKey}/settings`.
    async fn settings(&self, request: Request) -> Result<Response, ApiError> {
        let (parts, _) = request.into_parts();
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "settings are read with GET",
            ));
        }
        let key = settings_key(parts.uri.path()).unwrap_or_default();
        let source = match self.store.source_by_write_key(key).await {
            Ok(Some(source)) => source,
            Ok(None) => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no source has this write key; copy it from the source in sluice",
                ))
            }
            Err(error) => return Err(sources_unavailable(error)),
        };
        check_origin(&parts.headers, &source)?;
        let base = PublicBase::resolve(
            self.config.public_url.as_deref(),
            self.config.tls,
            &parts.headers,
        );
        Ok(browser::settings(key, &base))
    }

    async fn dispatch(
        &self,
        endpoint: Option<Endpoint>,
        request: Request,
    ) -> Result<Response, ApiError> {
        let Some(endpoint) = endpoint else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "no collection endpoint at {}; use /v1/batch or /v1/{{identify,track,page,screen,group,alias}}",
                    request.uri().path()
                ),
            ));
        };
        if endpoint == Endpoint::Settings {
            return self.settings(request).await;
        }
        if request.method() != Method::POST {
            let mut error = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!(
                    "{} is not allowed here; send events with POST",
                    request.method()
                ),
            )
            .into_response();
            error
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
            return Ok(error);
        }
        match tokio::time::timeout(self.config.request_timeout, self.collect(endpoint, request))
            .await
        {
            Ok(result) => result,
            Err(_) => Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request took longer than {} s; send the body promptly and retry",
                    self.config.request_timeout.as_secs_f64()
                ),
            )),
        }
    }

    async fn collect(&self, endpoint: Endpoint, request: Request) -> Result<Response, ApiError> {
        let (parts, body) = request.into_parts();
        let limits = self.config.limits;
        check_content_type(&parts.headers)?;
        let bytes = read_body(body, &parts.headers, limits.max_request_bytes).await?;
        if endpoint == Endpoint::Metrics {
            // analytics-next's own telemetry: accepted and dropped.
            return Ok(success(Vec::new()));
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
        let ctx = IngestContext {
            received_at: self.clock.now(),
            client_ip: Some(client_ip(
                peer,
                &parts.headers,
                &self.config.trusted_proxies,
            )),
            limits,
        };
        let parsed = match endpoint {
            Endpoint::Single(event_type) => parse_single(event_type, &bytes, &ctx),
            _ => parse_batch(&bytes, &ctx),
        }
        .map_err(|e| ApiError::bad_request(e.code(), e.to_string()))?;

        let source = self.authenticate(&parts.headers, &parsed).await?;
        check_origin(&parts.headers, &source)?;
        if let Some(rate) = source
            .rate_limit_per_second
            .or(self.config.default_rate_limit_per_second)
        {
            if let Err(wait) = self.limiter.check(&source.id, rate, ctx.received_at) {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("this source may send {rate} requests per second; retry in {wait} s"),
                )
                .retry_after(wait));
            }
        }
        self.store_events(endpoint, source.id, ctx, parsed).await
    }

    async fn authenticate(
        &self,
        headers: &axum::http::HeaderMap,
        parsed: &ParsedRequest,
    ) -> Result<sluice_store::Source, ApiError> {
        let header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let key = match write_key_from_header(header) {
            HeaderKey::Key(key) => key,
            HeaderKey::Malformed => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_authorization",
                    "the Authorization header is not valid HTTP Basic with the write key as user name",
                ))
            }
            HeaderKey::Absent => parsed.body_write_key.clone().ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing_write_key",
                    "no write key: send it as the HTTP Basic user name or as `writeKey` in the body",
                )
            })?,
        };
        match self.store.source_by_write_key(&key).await {
            Ok(Some(source)) => Ok(source),
            Ok(None) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_write_key",
                "unknown write key; copy it from the source in sluice (`sluice source list`)",
            )),
            Err(error) => Err(sources_unavailable(error)),
        }
    }

    async fn store_events(
        &self,
        endpoint: Endpoint,
        source_id: String,
        ctx: IngestContext,
        parsed: ParsedRequest,
    ) -> Result<Response, ApiError> {
        let label = endpoint.label();
        if parsed.accepted.is_empty() && parsed.rejected.is_empty() {
            return Err(ApiError::bad_request(
                "empty_batch",
                "the batch holds no events",
            ));
        }
        let rejected: Vec<RejectedItem> = parsed
            .rejected
            .iter()
            .map(|r| RejectedItem {
                index: r.index,
                code: r.code,
                message: r.message.clone(),
            })
            .collect();
        let accepted_count = parsed.accepted.len();
        let rejected_count = rejected.len();
        let started = Instant::now();
        let outcome = self
            .log
            .append(AppendRequest {
                source_id,
                received_at: ctx.received_at,
                accepted: parsed.accepted,
                rejected: parsed.rejected,
            })
            .await;
        metrics::histogram!("sluice_log_append_seconds").record(started.elapsed().as_secs_f64());
        let outcome = outcome.map_err(|e| match e {
            LogError::Unavailable(_) | LogError::Closed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("{e}; nothing was stored, retry later"),
            )
            .retry_after(5),
            LogError::Storage(_) => {
                tracing::error!(error = %e, "log append failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the events could not be stored; nothing was kept, retry later",
                )
            }
        })?;
        let duplicates = outcome.duplicates();
        metrics::counter!("sluice_events_total", "endpoint" => label, "outcome" => "accepted")
            .increment((accepted_count - duplicates) as u64);
        metrics::counter!("sluice_events_total", "endpoint" => label, "outcome" => "duplicate")
            .increment(duplicates as u64);
        metrics::counter!("sluice_events_total", "endpoint" => label, "outcome" => "rejected")
            .increment(rejected_count as u64);

        if accepted_count == 0 {
            let (code, message) = match (endpoint, rejected.first()) {
                (Endpoint::Single(_), Some(only)) => (only.code, only.message.clone()),
                _ => (
                    "invalid_batch",
                    format!("all {rejected_count} events were rejected; see `rejected`"),
                ),
            };
            let mut error = ApiError::bad_request(code, message);
            error.rejected = rejected;
            return Err(error);
        }
        Ok(success(rejected))
    }
}
