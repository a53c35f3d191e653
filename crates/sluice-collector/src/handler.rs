//! Routing and the request pipeline: method and path → timeout → content type → body →
//! parse → write key → rate limit → durable append → answer.

use crate::auth::{write_key_from_header, HeaderKey};
use crate::body::{check_content_type, read_body};
use crate::cors::{add_cors_headers, preflight};
use crate::error::{ApiError, RejectedItem};
use crate::net::{client_ip, TrustedProxies};
use crate::rate_limit::RateLimiter;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
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
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            request_timeout: Duration::from_secs(30),
            trusted_proxies: TrustedProxies::default(),
            default_rate_limit_per_second: None,
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

/// The `/v1/*` routes. Every answer, errors included, carries CORS headers.
pub fn routes(collector: Arc<Collector>) -> Router {
    Router::new()
        .route("/v1", any(handle))
        .route("/v1/", any(handle))
        .route("/v1/{*path}", any(handle))
        .with_state(collector)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Single(EventType),
    Batch,
    Import,
    Metrics,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Self> {
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
        }
    }
}

async fn handle(State(collector): State<Arc<Collector>>, request: Request) -> Response {
    // CORS needs only the Origin; keep it rather than a copy of every header.
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response = if request.method() == Method::OPTIONS {
        preflight(origin.as_ref())
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
    add_cors_headers(origin.as_ref(), &mut response);
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
            Err(e) => {
                tracing::error!(error = %e, "write key lookup failed");
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "sources cannot be read right now; retry",
                )
                .retry_after(5))
            }
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
