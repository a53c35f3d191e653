//! The HTTP server, its shared state, and the public handle.

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::rng::SplitMix64;
use crate::stats::Stats;
use crate::v1::V1Route;
use crate::validate::{
    is_ulid, serialized_len, ulid_time_ms, validate_op, OpError, MAX_BATCH_ITEM_BYTES,
    MAX_BATCH_REQUEST_BYTES, MAX_ENTITY_REQUEST_BYTES,
};
use crate::{auth, control, v1};

/// Bodies larger than this are not read at all (answered 400 "request too large").
const MAX_READ_BYTES: usize = 8 * 1024 * 1024;
const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// How the server is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CioOptions {
    /// Basic-auth user name.
    pub site_id: String,
    /// Basic-auth password (the Track API key).
    pub api_key: String,
    /// What `GET /api/v1/accounts/region` reports: `"us"` or `"eu"`.
    pub region: String,
    /// `None` (or `Some(0)`) = unlimited. Otherwise a token bucket of this many requests per
    /// second (burst = one second's worth) over the track endpoints; above it the server answers
    /// 429 with `Retry-After: 1`.
    pub max_requests_per_second: Option<u32>,
}

impl Default for CioOptions {
    fn default() -> Self {
        CioOptions {
            site_id: "SITE_ID_TEST".into(),
            api_key: "API_KEY_TEST".into(),
            region: "us".into(),
            max_requests_per_second: None,
        }
    }
}

/// A canned answer for the next track request (`/api/v1/*`, `/api/v2/*`, except
/// `accounts/region`), used instead of normal processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scripted {
    /// Answer `status`, with `Retry-After: <secs>` when given, and `body` (default
    /// `{"meta":{"error":"<reason phrase>"}}`). An invalid status code becomes 500.
    Status {
        status: u16,
        retry_after: Option<u64>,
        body: Option<String>,
    },
}

impl Scripted {
    /// `status` with the default body and no `Retry-After`.
    pub fn status(status: u16) -> Self {
        Scripted::Status {
            status,
            retry_after: None,
            body: None,
        }
    }

    /// 429 with `Retry-After: secs`.
    pub fn rate_limited(secs: u64) -> Self {
        Scripted::Status {
            status: 429,
            retry_after: Some(secs),
            body: None,
        }
    }
}

/// Random failures of track requests, reproducible from `seed`. Per request one draw `r` in
/// `[0, 1)`: `r < server_error_rate` → 500, 502 or 503 (picked at random); else
/// `r < server_error_rate + rate_limit_rate` → 429 with `Retry-After: retry_after_secs`.
/// Zero rates (the default) switch chaos off.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Chaos {
    pub seed: u64,
    pub server_error_rate: f64,
    pub rate_limit_rate: f64,
    pub retry_after_secs: u64,
}

/// One request as received and answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    /// The request target as received: percent-encoded, with `?query` if there was one.
    pub path: String,
    /// Header names are lowercase (as the HTTP stack delivers them), in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body as (lossy) UTF-8; empty when it exceeded the 8 MiB read cap.
    pub body: String,
    /// The status answered, or 0 while the request is still being answered.
    pub status: u16,
    pub response_body: String,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An operation the server accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedOp {
    /// `"v1"` or `"v2"`: which API it came in through.
    pub api: &'static str,
    /// The v2 op as sent, or for v1 the v2-shaped equivalent: `{"type":"person", "action":…,
    /// "identifiers":{…}, …}` where the path id becomes `{"cio_id"}` (for `cio_<x>`), `{"email"}`
    /// (contains `@`) or `{"id"}`; event `data` becomes `attributes`, a device's `id` becomes
    /// `token`, and `/push/events` / `/metrics` become `{"type":"delivery","action":"event"}`.
    pub op: Value,
    pub received_at: Instant,
}

impl AcceptedOp {
    /// The op's `action`.
    pub fn action(&self) -> Option<&str> {
        self.op.get("action").and_then(Value::as_str)
    }

    /// The event `id` (dedupe key), if the op has one.
    pub fn event_id(&self) -> Option<&str> {
        self.op.get("id").and_then(Value::as_str)
    }

    /// Whether the event `id` is a canonical ULID (`None` without an id). Non-ULID ids are
    /// accepted because Segment sends its messageIds.
    pub fn event_id_is_ulid(&self) -> Option<bool> {
        self.event_id().map(is_ulid)
    }
}

struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rps: u32) -> Option<Self> {
        (rps > 0).then(|| TokenBucket {
            rate: f64::from(rps),
            tokens: f64::from(rps),
            last: Instant::now(),
        })
    }

    fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Recorded {
    seq: u64,
    request: RecordedRequest,
}

/// Everything the server knows; one lock, never held across an await.
pub(crate) struct Inner {
    site_id: String,
    api_key: String,
    region: String,
    url: String,
    bucket: Option<TokenBucket>,
    scripted: VecDeque<Scripted>,
    chaos: Option<(Chaos, SplitMix64)>,
    delay: Duration,
    next_seq: u64,
    requests: Vec<Recorded>,
    accepted: Vec<AcceptedOp>,
    seen_event_ids: HashSet<String>,
    duplicates: Vec<String>,
    /// Off (bench mode): requests, accepted ops and duplicate ids are not kept, only counted.
    record: bool,
    stats: Stats,
}

pub(crate) type Shared = Arc<Mutex<Inner>>;

pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    fn new(options: CioOptions, url: String) -> Self {
        Inner {
            site_id: options.site_id,
            api_key: options.api_key,
            region: options.region,
            url,
            bucket: options.max_requests_per_second.and_then(TokenBucket::new),
            scripted: VecDeque::new(),
            chaos: None,
            delay: Duration::ZERO,
            next_seq: 0,
            requests: Vec::new(),
            accepted: Vec::new(),
            seen_event_ids: HashSet::new(),
            duplicates: Vec::new(),
            record: true,
            stats: Stats::new(),
        }
    }

    pub(crate) fn set_recording(&mut self, record: bool) {
        self.record = record;
    }

    pub(crate) fn stats(&self) -> Value {
        self.stats.to_json()
    }

    /// Zero the counters and the latency histogram; the dedupe memory stays.
    pub(crate) fn reset_stats(&mut self) {
        self.stats = Stats::new();
    }

    pub(crate) fn set_credentials(&mut self, site_id: &str, api_key: &str) {
        site_id.clone_into(&mut self.site_id);
        api_key.clone_into(&mut self.api_key);
    }

    pub(crate) fn push_responses(&mut self, responses: impl IntoIterator<Item = Scripted>) {
        self.scripted.extend(responses);
    }

    pub(crate) fn set_chaos(&mut self, chaos: Chaos) {
        self.chaos = Some((chaos, SplitMix64::new(chaos.seed)));
    }

    pub(crate) fn set_delay(&mut self, delay: Duration) {
        self.delay = delay;
    }

    pub(crate) fn set_max_requests_per_second(&mut self, rps: Option<u32>) {
        self.bucket = rps.and_then(TokenBucket::new);
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.iter().map(|r| r.request.clone()).collect()
    }

    pub(crate) fn accepted(&self) -> Vec<AcceptedOp> {
        self.accepted.clone()
    }

    pub(crate) fn accepted_ops(&self) -> Vec<Value> {
        self.accepted.iter().map(|a| a.op.clone()).collect()
    }

    pub(crate) fn duplicate_event_ids(&self) -> Vec<String> {
        self.duplicates.clone()
    }

    pub(crate) fn clear(&mut self) {
        self.requests.clear();
        self.accepted.clear();
        self.seen_event_ids.clear();
        self.duplicates.clear();
        self.scripted.clear();
        self.stats = Stats::new();
    }

    fn chaos_draw(&mut self) -> Option<Reply> {
        let (chaos, rng) = self.chaos.as_mut()?;
        let r = rng.next_f64();
        if r < chaos.server_error_rate {
            let status = match rng.next_u64() % 3 {
                0 => StatusCode::INTERNAL_SERVER_ERROR,
                1 => StatusCode::BAD_GATEWAY,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            Some(Reply::meta_error(status, None))
        } else if r < chaos.server_error_rate + chaos.rate_limit_rate {
            Some(Reply::meta_error(
                StatusCode::TOO_MANY_REQUESTS,
                Some(chaos.retry_after_secs),
            ))
        } else {
            None
        }
    }

    /// Accept `op` unless it is an event/page/screen whose `id` was accepted before.
    fn accept(&mut self, api: &'static str, op: Value, received_at: Instant) {
        let is_event = matches!(
            op.get("action").and_then(Value::as_str),
            Some("event" | "page" | "screen")
        );
        if is_event {
            if let Some(id) = op.get("id").and_then(Value::as_str) {
                if !self.seen_event_ids.insert(id.to_owned()) {
                    self.stats.duplicate_ids += 1;
                    if self.record {
                        self.duplicates.push(id.to_owned());
                    }
                    return;
                }
                if let Some(sent_ms) = ulid_time_ms(id) {
                    let now_ms = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                    self.stats.latency.record(now_ms.saturating_sub(sent_ms));
                }
            }
        }
        self.stats.accepted_ops += 1;
        if self.record {
            self.accepted.push(AcceptedOp {
                api,
                op,
                received_at,
            });
        }
    }
}

/// A response: always JSON.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: String,
    pub(crate) retry_after: Option<u64>,
}

impl Reply {
    pub(crate) fn json(status: StatusCode, body: &Value) -> Self {
        Reply {
            status,
            body: body.to_string(),
            retry_after: None,
        }
    }

    fn ok() -> Self {
        Reply {
            status: StatusCode::OK,
            body: "{}".into(),
            retry_after: None,
        }
    }

    fn meta_error(status: StatusCode, retry_after: Option<u64>) -> Self {
        let reason = status.canonical_reason().unwrap_or("Error");
        Reply {
            status,
            body: json!({"meta": {"error": reason}}).to_string(),
            retry_after,
        }
    }

    fn unauthorized() -> Self {
        Reply::json(
            StatusCode::UNAUTHORIZED,
            &json!({"meta": {"error": "Unauthorized request"}}),
        )
    }

    fn scripted(scripted: Scripted) -> Self {
        let Scripted::Status {
            status,
            retry_after,
            body,
        } = scripted;
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut reply = Reply::meta_error(status, retry_after);
        if let Some(body) = body {
            reply.body = body;
        }
        reply
    }

    /// v2 whole-request error: `{"errors":[{"reason","field","message"}]}`.
    fn v2_error(status: StatusCode, error: &OpError) -> Self {
        Reply::json(status, &json!({ "errors": [error] }))
    }

    fn too_large(limit: usize) -> OpError {
        OpError::new(
            "request too large",
            "",
            format!("the request body exceeds {limit} bytes"),
        )
    }

    pub(crate) fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_CONTENT_TYPE),
        );
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// What a request addresses.
enum Route<'a> {
    Region,
    AuthCheck,
    V2Batch,
    V2Entity,
    V1(V1Route<'a>),
    UnknownApi,
    NotFound,
}

impl<'a> Route<'a> {
    fn parse(method: &Method, path: &'a str) -> Self {
        let method = method.as_str();
        if path == "/auth" && method == "GET" {
            return Route::AuthCheck;
        }
        let Some(rest) = path.strip_prefix("/api/") else {
            return Route::NotFound;
        };
        let segments: Vec<&'a str> = rest.split('/').collect();
        match (method, segments.as_slice()) {
            ("GET", ["v1", "accounts", "region"]) => Route::Region,
            ("POST", ["v2", "batch"]) => Route::V2Batch,
            ("POST", ["v2", "entity"]) => Route::V2Entity,
            (_, ["v1" | "v2", ..]) => {
                V1Route::parse(method, &segments).map_or(Route::UnknownApi, Route::V1)
            }
            _ => Route::NotFound,
        }
    }

    /// Subject to delay, scripted responses, chaos and the rate cap.
    fn is_track(&self) -> bool {
        matches!(
            self,
            Route::V2Batch | Route::V2Entity | Route::V1(_) | Route::UnknownApi
        )
    }

    fn needs_auth(&self) -> bool {
        match self {
            Route::V1(route) => route.needs_auth(),
            Route::NotFound => false,
            _ => true,
        }
    }
}

/// The running server. Dropping it stops the server abruptly; [`CioTestServer::shutdown`] stops
/// it gracefully.
pub struct CioTestServer {
    addr: SocketAddr,
    url: String,
    shared: Shared,
    shutdown_tx: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for CioTestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CioTestServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl CioTestServer {
    /// Start on `127.0.0.1:0` (a free port).
    pub async fn start(options: CioOptions) -> std::io::Result<CioTestServer> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), options).await
    }

    /// Start on `addr`.
    pub async fn start_on(addr: SocketAddr, options: CioOptions) -> std::io::Result<CioTestServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let url_ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let url = format!("http://{}", SocketAddr::new(url_ip, addr.port()));
        let shared: Shared = Arc::new(Mutex::new(Inner::new(options, url.clone())));
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = shutdown_rx.await;
                })
                .await;
        });
        Ok(CioTestServer {
            addr,
            url,
            shared,
            shutdown_tx: Some(shutdown_tx),
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the track URL root (append `/api/v1/...` or `/api/v2/...`).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Replace the accepted credentials; the old ones get 401 from now on.
    pub fn set_credentials(&self, site_id: &str, api_key: &str) {
        lock(&self.shared).set_credentials(site_id, api_key);
    }

    /// Queue canned answers (FIFO) for the next track requests.
    pub fn push_responses(&self, responses: impl IntoIterator<Item = Scripted>) {
        lock(&self.shared).push_responses(responses);
    }

    /// Turn on (or, with zero rates, off) seeded random failures. Restarts the generator.
    pub fn set_chaos(&self, chaos: Chaos) {
        lock(&self.shared).set_chaos(chaos);
    }

    /// Every track request waits this long before it is answered (zero = no wait).
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.shared).set_delay(delay);
    }

    /// Change the rate cap (see [`CioOptions::max_requests_per_second`]); starts a full bucket.
    pub fn set_max_requests_per_second(&self, rps: Option<u32>) {
        lock(&self.shared).set_max_requests_per_second(rps);
    }

    /// Bench mode when `false`: request bodies, accepted ops and duplicate ids are no longer
    /// kept (so [`requests`](Self::requests), [`accepted`](Self::accepted) and
    /// [`duplicate_event_ids`](Self::duplicate_event_ids) stay empty and memory stays flat);
    /// validation, event-id dedupe and [`stats`](Self::stats) go on. On by default.
    pub fn set_recording(&self, record: bool) {
        lock(&self.shared).set_recording(record);
    }

    /// Counters since the start (or the last reset), as served by `GET /_test/stats`:
    /// `{"requests", "accepted_ops", "duplicate_ids", "status_counts": {"200": n, …},
    /// "latency_ms": {"count", "mean", "p50", "p90", "p99", "max"}}`. The latency of an
    /// accepted event op whose `id` is a ULID is the server's wall clock minus the ULID's time
    /// part, in ms (exact below 60 s, to the second below 1 h).
    pub fn stats(&self) -> Value {
        lock(&self.shared).stats()
    }

    /// Zero the [`stats`](Self::stats); the dedupe memory is kept.
    pub fn reset_stats(&self) {
        lock(&self.shared).reset_stats();
    }

    /// Every request (except `/_test/*` control calls), in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared).requests()
    }

    /// Every accepted op, in acceptance order, without event-id duplicates.
    pub fn accepted(&self) -> Vec<AcceptedOp> {
        lock(&self.shared).accepted()
    }

    /// Event ids received again after they had been accepted, once per repeat.
    pub fn duplicate_event_ids(&self) -> Vec<String> {
        lock(&self.shared).duplicate_event_ids()
    }

    /// Forget recorded requests, accepted ops, dedupe memory, queued scripted responses and
    /// stats. Credentials, chaos, delay, the rate cap and recording stay as they are.
    pub fn clear(&self) {
        lock(&self.shared).clear();
    }

    /// Stop accepting connections, let in-flight requests finish (at most 5 s), and return.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for CioTestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_READ_BYTES).await.ok();
    let path = parts.uri.path();
    if let Some(command) = path.strip_prefix("/_test/") {
        return control::handle(&shared, &parts.method, command, body.as_deref()).into_response();
    }
    let received_at = Instant::now();
    let seq = {
        let mut inner = lock(&shared);
        let seq = inner.next_seq;
        inner.next_seq += 1;
        if inner.record {
            inner.requests.push(Recorded {
                seq,
                request: RecordedRequest {
                    method: parts.method.as_str().to_owned(),
                    path: parts
                        .uri
                        .path_and_query()
                        .map_or(path, |pq| pq.as_str())
                        .to_owned(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.as_str().to_owned(),
                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                            )
                        })
                        .collect(),
                    body: body
                        .as_deref()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default(),
                    status: 0,
                    response_body: String::new(),
                },
            });
        }
        seq
    };
    let reply = process(
        &shared,
        &parts.method,
        path,
        &parts.headers,
        body.as_deref(),
        received_at,
    )
    .await;
    {
        let mut inner = lock(&shared);
        inner.stats.answered(reply.status.as_u16());
        if let Some(recorded) = inner.requests.iter_mut().rev().find(|r| r.seq == seq) {
            recorded.request.status = reply.status.as_u16();
            recorded.request.response_body.clone_from(&reply.body);
        }
    }
    reply.into_response()
}

async fn process(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: Option<&[u8]>,
    received_at: Instant,
) -> Reply {
    let route = Route::parse(method, path);
    if route.is_track() {
        let delay = lock(shared).delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
    {
        let mut inner = lock(shared);
        if route.is_track() {
            if let Some(scripted) = inner.scripted.pop_front() {
                return Reply::scripted(scripted);
            }
            if let Some(reply) = inner.chaos_draw() {
                return reply;
            }
        }
        if route.needs_auth() {
            let authorization = headers
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes);
            if !auth::is_authorized(authorization, &inner.site_id, &inner.api_key) {
                return Reply::unauthorized();
            }
        }
        if route.is_track() {
            if let Some(bucket) = inner.bucket.as_mut() {
                if !bucket.try_take(Instant::now()) {
                    return Reply::meta_error(StatusCode::TOO_MANY_REQUESTS, Some(1));
                }
            }
        }
    }
    match route {
        Route::Region => {
            let inner = lock(shared);
            Reply::json(
                StatusCode::OK,
                &json!({"url": inner.url, "region": inner.region, "environment_id": 1}),
            )
        }
        Route::AuthCheck => Reply::ok(),
        Route::V2Batch => v2_batch(shared, body, received_at),
        Route::V2Entity => v2_entity(shared, body, received_at),
        Route::V1(route) => {
            let Some(body) = body else {
                return Reply::json(
                    StatusCode::BAD_REQUEST,
                    &json!({"meta": {"errors": ["request too large"]}}),
                );
            };
            match v1::to_op(route, body) {
                Ok(op) => {
                    lock(shared).accept("v1", op, received_at);
                    Reply::ok()
                }
                Err(e) => Reply {
                    status: StatusCode::BAD_REQUEST,
                    body: e.body(),
                    retry_after: None,
                },
            }
        }
        Route::UnknownApi | Route::NotFound => Reply::json(
            StatusCode::NOT_FOUND,
            &json!({"meta": {"error": format!("no such endpoint: {method} {path}")}}),
        ),
    }
}

/// Parse a v2 body, or describe why it is not JSON / not an object.
fn parse_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, OpError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(OpError::new(
            "invalid",
            "",
            "the request body must be a JSON object",
        )),
        Err(e) => Err(OpError::new(
            "malformed json",
            "",
            format!("the request body is not valid JSON: {e}"),
        )),
    }
}

fn v2_batch(shared: &Shared, body: Option<&[u8]>, received_at: Instant) -> Reply {
    let body = match body {
        Some(body) if body.len() <= MAX_BATCH_REQUEST_BYTES => body,
        _ => {
            return Reply::v2_error(
                StatusCode::BAD_REQUEST,
                &Reply::too_large(MAX_BATCH_REQUEST_BYTES),
            )
        }
    };
    let mut request = match parse_object(body) {
        Ok(request) => request,
        Err(e) => return Reply::v2_error(StatusCode::BAD_REQUEST, &e),
    };
    let items = match request.remove("batch") {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => {
            let e = OpError::new(
                "required",
                "batch",
                "batch (an array of operations) is required",
            );
            return Reply::v2_error(StatusCode::BAD_REQUEST, &e);
        }
        Some(_) => {
            let e = OpError::new("invalid", "batch", "batch must be an array of operations");
            return Reply::v2_error(StatusCode::BAD_REQUEST, &e);
        }
    };
    let mut errors = Vec::new();
    let mut valid = Vec::with_capacity(items.len());
    for (index, op) in items.into_iter().enumerate() {
        match validate_op(&op).and_then(|()| check_item_size(&op)) {
            Ok(()) => valid.push(op),
            Err(e) => errors.push(json!({
                "batch_index": index,
                "reason": e.reason,
                "field": e.field,
                "message": e.message,
            })),
        }
    }
    {
        let mut inner = lock(shared);
        for op in valid {
            inner.accept("v2", op, received_at);
        }
    }
    if errors.is_empty() {
        Reply::ok()
    } else {
        Reply::json(StatusCode::MULTI_STATUS, &json!({ "errors": errors }))
    }
}

fn check_item_size(op: &Value) -> Result<(), OpError> {
    let len = serialized_len(op);
    if len > MAX_BATCH_ITEM_BYTES {
        Err(OpError::new(
            "item too large",
            "",
            format!("the operation is {len} bytes; the limit is {MAX_BATCH_ITEM_BYTES}"),
        ))
    } else {
        Ok(())
    }
}

fn v2_entity(shared: &Shared, body: Option<&[u8]>, received_at: Instant) -> Reply {
    let body = match body {
        Some(body) if body.len() <= MAX_ENTITY_REQUEST_BYTES => body,
        _ => {
            return Reply::v2_error(
                StatusCode::BAD_REQUEST,
                &Reply::too_large(MAX_ENTITY_REQUEST_BYTES),
            )
        }
    };
    let op = match parse_object(body) {
        Ok(op) => Value::Object(op),
        Err(e) => return Reply::v2_error(StatusCode::BAD_REQUEST, &e),
    };
    match validate_op(&op) {
        Ok(()) => {
            lock(shared).accept("v2", op, received_at);
            Reply::ok()
        }
        Err(e) => Reply::v2_error(StatusCode::BAD_REQUEST, &e),
    }
}
