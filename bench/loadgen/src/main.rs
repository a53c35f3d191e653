//! `sluice-loadgen`: a closed-loop HTTP/1.1 load generator for sluice.
//!
//! N keep-alive connections, one task each; every task sends a request,
//! waits for the full response, records the latency and sends the next one.
//! With `--rate` the requests are paced instead (open loop): request k is due
//! at start + k × batch / rate, whichever connection is free takes it.
//! Only loopback targets are accepted, and every run is bounded both in time
//! (warm-up + duration, plus a short grace for in-flight requests) and in
//! request count (`--max-requests`).

mod hist;
mod payload;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::hist::Histogram;
use crate::payload::{PayloadBuilder, Rng};

/// Requests still in flight when the measurement window closes get this much
/// longer to finish (they are not counted, but their errors are).
const GRACE: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
const MAX_CONNECTIONS: usize = 4096;
const MAX_BATCH: usize = 10_000;
const MAX_EVENT_BYTES: usize = 1 << 20;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// POST /v1/batch with `--batch-size` events per request.
    Batch,
    /// POST /v1/t with one track event per request.
    Single,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Batch => "batch",
            Mode::Single => "single",
        }
    }
}

/// Closed-loop HTTP/1.1 load generator for sluice (loopback targets only).
#[derive(Parser, Debug)]
#[command(name = "sluice-loadgen", version)]
struct Args {
    /// Base URL of the collector; only http://127.0.0.1, http://localhost
    /// and http://[::1] are accepted.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,

    /// Source write key, sent as `Authorization: Basic base64(KEY + ":")`.
    #[arg(long, env = "SLUICE_WRITE_KEY", hide_env_values = true)]
    write_key: String,

    /// Request shape.
    #[arg(long, value_enum, default_value_t = Mode::Batch)]
    mode: Mode,

    /// Events per request in batch mode (ignored in single mode).
    #[arg(long, default_value_t = 100)]
    batch_size: usize,

    /// Approximate serialized size of each event; `properties.pad` is sized
    /// to reach it.
    #[arg(long, default_value_t = 600)]
    event_bytes: usize,

    /// Concurrent keep-alive connections (one closed-loop task each).
    #[arg(long, default_value_t = 64)]
    connections: usize,

    /// Warm-up period excluded from the statistics (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    warmup: Duration,

    /// Measurement period after the warm-up.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,

    /// Hard bound on the number of requests sent (warm-up included).
    #[arg(long, default_value_t = 20_000_000)]
    max_requests: u64,

    /// Per-request timeout; a timed-out request counts as an error.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,

    /// Tokio worker threads (default: CPUs available to this process, so
    /// `taskset -c 1` gives one).
    #[arg(long)]
    threads: Option<usize>,

    /// Open-loop pacing: send requests on a fixed schedule adding up to this
    /// many events per second (over all connections, warm-up included)
    /// instead of as fast as responses come back. Latency is then measured
    /// from each request's scheduled time, so a slow server shows up as
    /// latency rather than as fewer requests (have enough --connections).
    #[arg(long, value_name = "EVENTS_PER_SEC")]
    rate: Option<f64>,

    /// Progress line interval on stderr (0 disables).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    progress: Duration,
}

/// Parses `10s`, `1.5s`, `500ms`, `2m`, `1h`; a bare number means seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (try 10s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        u => return Err(format!("unknown duration unit {u:?} in {s:?}")),
    };
    if !secs.is_finite() || secs < 0.0 || secs > MAX_DURATION.as_secs_f64() {
        return Err(format!("duration {s:?} out of range (0..=24h)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A validated loopback target.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    addr: SocketAddr,
    /// Host header value.
    authority: String,
    /// Path prefix without trailing slash ("" for the root).
    base_path: String,
}

fn parse_target(url: &str) -> Result<Target> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("invalid --url {url:?}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => bail!("--url scheme {other:?} not supported (only plain http)"),
        None => bail!("--url {url:?} needs a scheme, e.g. http://127.0.0.1:8080"),
    }
    let authority = uri
        .authority()
        .context("--url has no host")?
        .as_str()
        .to_owned();
    if authority.contains('@') {
        bail!("--url must not contain credentials");
    }
    let host = uri.host().context("--url has no host")?;
    let ip: IpAddr = match host.to_ascii_lowercase().as_str() {
        "127.0.0.1" | "localhost" => Ipv4Addr::LOCALHOST.into(),
        "[::1]" | "::1" => Ipv6Addr::LOCALHOST.into(),
        other => bail!(
            "refusing to send load to {other:?}: only 127.0.0.1, localhost and [::1] are allowed"
        ),
    };
    if uri.query().is_some() {
        bail!("--url must not have a query string");
    }
    let port = uri.port_u16().unwrap_or(80);
    Ok(Target {
        addr: SocketAddr::new(ip, port),
        authority,
        base_path: uri.path().trim_end_matches('/').to_owned(),
    })
}

fn basic_auth(write_key: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{write_key}:"));
    format!("Basic {encoded}")
}

/// Everything the connection tasks share (read-only apart from atomics).
struct Shared {
    target: Target,
    path: String,
    auth: HeaderValue,
    host: HeaderValue,
    mode: Mode,
    events_per_request: usize,
    payload: PayloadBuilder,
    start: Instant,
    /// With `--rate`: time between two scheduled requests.
    pace: Option<f64>,
    measure_start: Instant,
    end: Instant,
    timeout: Duration,
    max_requests: u64,
    issued: AtomicU64,
    hit_max: AtomicBool,
    // Live counters, for progress lines only.
    live_ok: AtomicU64,
    live_errors: AtomicU64,
    live_non_2xx: AtomicU64,
}

#[derive(Default)]
struct ConnStats {
    hist: Histogram,
    /// 2xx responses completed inside the measurement window.
    ok: u64,
    events: u64,
    request_bytes: u64,
    /// Over the whole run (warm-up, window and grace).
    errors: BTreeMap<&'static str, u64>,
    non_2xx: BTreeMap<u16, u64>,
    warmup_failures: u64,
    first_non_2xx_body: Option<(u16, String)>,
    first_error: Option<String>,
    reconnects: u64,
    last_completion: Option<Instant>,
}

impl ConnStats {
    fn merge(&mut self, o: ConnStats) {
        self.hist.merge(&o.hist);
        self.ok += o.ok;
        self.events += o.events;
        self.request_bytes += o.request_bytes;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in o.non_2xx {
            *self.non_2xx.entry(k).or_default() += v;
        }
        self.warmup_failures += o.warmup_failures;
        if self.first_non_2xx_body.is_none() {
            self.first_non_2xx_body = o.first_non_2xx_body;
        }
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.reconnects += o.reconnects;
        self.last_completion = match (self.last_completion, o.last_completion) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    fn error(&mut self, sh: &Shared, kind: &'static str, detail: String, at: Instant) {
        *self.errors.entry(kind).or_default() += 1;
        if at < sh.measure_start {
            self.warmup_failures += 1;
        }
        if self.first_error.is_none() {
            self.first_error = Some(format!("{kind}: {detail}"));
        }
        sh.live_errors.fetch_add(1, Relaxed);
    }
}

async fn connect(sh: &Shared) -> Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(sh.target.addr))
        .await
        .context("connect timed out")??;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the peer closes.
        let _ = conn.await;
    });
    Ok(sender)
}

enum Outcome {
    Status(u16, Bytes),
    Failed(&'static str, String),
}

async fn send_one(sender: &mut SendRequest<Full<Bytes>>, req: Request<Full<Bytes>>) -> Outcome {
    if let Err(e) = sender.ready().await {
        return Outcome::Failed("connection", chain(&e));
    }
    let resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => return Outcome::Failed("request", chain(&e)),
    };
    let status = resp.status().as_u16();
    match resp.into_body().collect().await {
        Ok(body) => Outcome::Status(status, body.to_bytes()),
        Err(e) => Outcome::Failed("response-body", chain(&e)),
    }
}

/// An error and its sources, `outer: inner: ...` (hyper's own Display is terse).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        out.push_str(": ");
        out.push_str(&inner.to_string());
        cur = inner.source();
    }
    out
}

async fn run_connection(sh: Arc<Shared>) -> ConnStats {
    let mut st = ConnStats::default();
    let mut rng = Rng::from_os();
    let mut seq = 0u64;
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut connected_before = false;

    loop {
        let now = Instant::now();
        if now >= sh.end {
            break;
        }
        let slot = sh.issued.fetch_add(1, Relaxed);
        if slot >= sh.max_requests {
            sh.hit_max.store(true, Relaxed);
            break;
        }
        let scheduled = match sh.pace {
            Some(pace) => {
                let due = sh.start + Duration::from_secs_f64(slot as f64 * pace);
                if due >= sh.end {
                    break;
                }
                tokio::time::sleep_until(due).await;
                Some(due)
            }
            None => None,
        };
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            match connect(&sh).await {
                Ok(s) => {
                    if connected_before {
                        st.reconnects += 1;
                    }
                    connected_before = true;
                    sender = Some(s);
                }
                Err(e) => {
                    st.error(&sh, "connect", format!("{e:#}"), now);
                    let pause = Duration::from_millis(100).min(sh.end - Instant::now().min(sh.end));
                    tokio::time::sleep(pause).await;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };

        let body = match sh.mode {
            Mode::Batch => sh.payload.batch(&mut rng, sh.events_per_request, &mut seq),
            Mode::Single => sh.payload.single(&mut rng, &mut seq),
        };
        let body_len = body.len() as u64;
        let req = Request::builder()
            .method(Method::POST)
            .uri(sh.path.as_str())
            .header(HOST, sh.host.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, sh.auth.clone())
            .header(
                USER_AGENT,
                concat!("sluice-loadgen/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))
            .expect("static request parts are valid");

        let sent = Instant::now();
        // Paced: latency counts from the scheduled time (no coordinated omission).
        let t0 = scheduled.map_or(sent, |due| due.min(sent));
        let deadline = (sent + sh.timeout).min(sh.end + GRACE);
        let outcome = match tokio::time::timeout_at(deadline, send_one(s, req)).await {
            Ok(o) => o,
            Err(_) => Outcome::Failed(
                "timeout",
                format!("no response within {:?}", deadline - sent),
            ),
        };
        let t1 = Instant::now();
        let in_window = t1 >= sh.measure_start && t1 <= sh.end;

        match outcome {
            Outcome::Status(code, _) if (200..300).contains(&code) => {
                sh.live_ok.fetch_add(1, Relaxed);
                if in_window {
                    st.ok += 1;
                    st.events += sh.events_per_request as u64;
                    st.request_bytes += body_len;
                    st.hist
                        .record(u64::try_from((t1 - t0).as_nanos()).unwrap_or(u64::MAX));
                    st.last_completion = Some(t1);
                }
            }
            Outcome::Status(code, body) => {
                sh.live_non_2xx.fetch_add(1, Relaxed);
                *st.non_2xx.entry(code).or_default() += 1;
                if t1 < sh.measure_start {
                    st.warmup_failures += 1;
                }
                if st.first_non_2xx_body.is_none() {
                    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                    st.first_non_2xx_body = Some((code, text));
                }
            }
            Outcome::Failed(kind, detail) => {
                st.error(&sh, kind, detail, t1);
                // The connection state is unknown: start a fresh one.
                sender = None;
            }
        }
    }
    st
}

fn ms(nanos: u64) -> f64 {
    (nanos as f64 / 1e6 * 1000.0).round() / 1000.0
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice-loadgen: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> Result<ExitCode> {
    let target = parse_target(&args.url)?;
    if args.connections == 0 || args.connections > MAX_CONNECTIONS {
        bail!("--connections must be in 1..={MAX_CONNECTIONS}");
    }
    if args.batch_size == 0 || args.batch_size > MAX_BATCH {
        bail!("--batch-size must be in 1..={MAX_BATCH}");
    }
    if args.event_bytes > MAX_EVENT_BYTES {
        bail!("--event-bytes must be at most {MAX_EVENT_BYTES}");
    }
    if args.duration.is_zero() {
        bail!("--duration must be positive");
    }
    if args.max_requests == 0 {
        bail!("--max-requests must be at least 1");
    }
    if args.timeout.is_zero() {
        bail!("--timeout must be positive");
    }
    if args.write_key.is_empty() {
        bail!("--write-key must not be empty");
    }
    if let Some(rate) = args.rate {
        if !rate.is_finite() || rate <= 0.0 || rate > 1e9 {
            bail!("--rate must be a positive number of events per second");
        }
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("building tokio runtime")?;
    rt.block_on(run_async(args, target, threads))
}

async fn run_async(args: Args, target: Target, threads: usize) -> Result<ExitCode> {
    let (endpoint, events_per_request) = match args.mode {
        Mode::Batch => ("/v1/batch", args.batch_size),
        Mode::Single => ("/v1/t", 1),
    };
    let path = format!("{}{endpoint}", target.base_path);
    let auth = HeaderValue::from_str(&basic_auth(&args.write_key))
        .context("--write-key yields an invalid header")?;
    let host = HeaderValue::from_str(&target.authority).context("invalid host")?;

    // Fail fast (and clearly) when nothing listens there.
    TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("cannot connect to {}", target.addr))?;

    let approx_body = events_per_request * args.event_bytes.max(300);
    if approx_body > 512_000 {
        eprintln!(
            "sluice-loadgen: warning: ~{approx_body} B request bodies exceed Segment's 500 KB \
             batch limit; expect 4xx responses"
        );
    }
    eprintln!(
        "sluice-loadgen: {} POST http://{}{} connections={} batch_size={} event_bytes~{} \
         warmup={:?} duration={:?} max_requests={} threads={} rate={}",
        args.mode.as_str(),
        target.authority,
        path,
        args.connections,
        events_per_request,
        args.event_bytes,
        args.warmup,
        args.duration,
        args.max_requests,
        threads,
        args.rate
            .map_or_else(|| "closed-loop".to_owned(), |r| format!("{r} events/s")),
    );

    let start = Instant::now();
    let measure_start = start + args.warmup;
    let sh = Arc::new(Shared {
        target,
        path,
        auth,
        host,
        mode: args.mode,
        events_per_request,
        payload: PayloadBuilder::new(args.event_bytes),
        start,
        pace: args.rate.map(|rate| events_per_request as f64 / rate),
        measure_start,
        end: measure_start + args.duration,
        timeout: args.timeout,
        max_requests: args.max_requests,
        issued: AtomicU64::new(0),
        hit_max: AtomicBool::new(false),
        live_ok: AtomicU64::new(0),
        live_errors: AtomicU64::new(0),
        live_non_2xx: AtomicU64::new(0),
    });

    let progress = (!args.progress.is_zero()).then(|| {
        let sh = sh.clone();
        let every = args.progress;
        tokio::spawn(async move {
            let mut last = 0u64;
            let mut tick = tokio::time::interval_at(start + every, every);
            loop {
                let now = tick.tick().await;
                let ok = sh.live_ok.load(Relaxed);
                eprintln!(
                    "[{:>7.1}s] {:<7} ok={} ({:.0} req/s) errors={} non_2xx={}",
                    (now - start).as_secs_f64(),
                    if now < sh.measure_start {
                        "warmup"
                    } else if now <= sh.end {
                        "measure"
                    } else {
                        "drain"
                    },
                    ok,
                    (ok - last) as f64 / every.as_secs_f64(),
                    sh.live_errors.load(Relaxed),
                    sh.live_non_2xx.load(Relaxed),
                );
                last = ok;
            }
        })
    });

    let tasks: Vec<_> = (0..args.connections)
        .map(|_| tokio::spawn(run_connection(sh.clone())))
        .collect();
    let mut total = ConnStats::default();
    for t in tasks {
        total.merge(t.await.context("connection task panicked")?);
    }
    if let Some(p) = progress {
        p.abort();
    }

    let hit_max = sh.hit_max.load(Relaxed);
    // With --max-requests the window may end early: measure up to the last
    // counted completion instead of the nominal end.
    let window = if hit_max {
        total.last_completion.map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(measure_start)
        })
    } else {
        args.duration
    };
    let secs = window.as_secs_f64();
    let rate = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let errors: u64 = total.errors.values().sum();
    let non_2xx: u64 = total.non_2xx.values().sum();
    let h = &total.hist;

    let summary = Summary {
        mode: args.mode.as_str(),
        connections: args.connections,
        batch_size: events_per_request,
        requests: total.ok,
        events: total.events,
        errors,
        non_2xx,
        duration_s: secs,
        requests_per_s: rate(total.ok),
        events_per_s: rate(total.events),
        p50: h.quantile(0.50),
        p90: h.quantile(0.90),
        p99: h.quantile(0.99),
        p999: h.quantile(0.999),
        max: h.max(),
        event_bytes: args.event_bytes,
        warmup_s: args.warmup.as_secs_f64(),
        reconnects: total.reconnects,
        rate: args.rate,
    };

    println!("sluice-loadgen summary");
    println!(
        "  target        {} {}",
        args.mode.as_str(),
        args.url.trim_end_matches('/')
    );
    println!(
        "  shape         {} connections, {} event(s)/request, ~{} B/event",
        args.connections, events_per_request, args.event_bytes
    );
    if let Some(rate) = args.rate {
        println!(
            "  pacing        open loop, {rate} events/s scheduled ({:.1} req/s); latency from the \
             scheduled time",
            rate / events_per_request as f64
        );
    }
    println!(
        "  window        {:.2} s measured after {:.2} s warm-up{}",
        secs,
        args.warmup.as_secs_f64(),
        if hit_max {
            " (stopped early by --max-requests)"
        } else {
            ""
        }
    );
    println!(
        "  requests      {} ok  ({:.1} req/s)",
        summary.requests, summary.requests_per_s
    );
    println!(
        "  events        {}  ({:.1} events/s, {:.2} MB/s request bodies)",
        summary.events,
        summary.events_per_s,
        rate(total.request_bytes) / 1e6
    );
    println!(
        "  latency ms    min {:.3}  mean {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        ms(h.min()),
        h.mean() / 1e6,
        ms(summary.p50),
        ms(summary.p90),
        ms(summary.p99),
        ms(summary.p999),
        ms(summary.max)
    );
    println!("  reconnects    {}", total.reconnects);
    println!(
        "  errors        {errors}{}",
        fmt_map(total.errors.iter().map(|(k, v)| (k.to_string(), *v)))
    );
    println!(
        "  non-2xx       {non_2xx}{}",
        fmt_map(total.non_2xx.iter().map(|(k, v)| (k.to_string(), *v)))
    );
    if let Some(e) = &total.first_error {
        println!("  first error   {e}");
    }
    if let Some((code, body)) = &total.first_non_2xx_body {
        println!("  first non-2xx {code}: {}", body.trim());
    }

    let failed = errors > 0 || non_2xx > 0;
    let empty = summary.requests == 0;
    if failed {
        println!(
            "  WARNING: run had {errors} error(s) and {non_2xx} non-2xx response(s) \
             ({} during warm-up); figures are not clean",
            total.warmup_failures
        );
    }
    if empty {
        println!("  WARNING: no successful request completed inside the measurement window");
    }
    println!("{}", summary.json());
    Ok(if failed || empty {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn fmt_map(it: impl Iterator<Item = (String, u64)>) -> String {
    let parts: Vec<String> = it.map(|(k, v)| format!("{k}: {v}")).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("  ({})", parts.join(", "))
    }
}

struct Summary {
    mode: &'static str,
    connections: usize,
    batch_size: usize,
    requests: u64,
    events: u64,
    errors: u64,
    non_2xx: u64,
    duration_s: f64,
    requests_per_s: f64,
    events_per_s: f64,
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
    event_bytes: usize,
    warmup_s: f64,
    reconnects: u64,
    /// `--rate` (events/s), if paced.
    rate: Option<f64>,
}

impl Summary {
    /// The machine-readable result line (stable keys; extra keys may be added).
    fn json(&self) -> String {
        serde_json::json!({
            "mode": self.mode,
            "connections": self.connections,
            "batch_size": self.batch_size,
            "requests": self.requests,
            "events": self.events,
            "errors": self.errors,
            "non_2xx": self.non_2xx,
            "duration_s": (self.duration_s * 1000.0).round() / 1000.0,
            "requests_per_s": round2(self.requests_per_s),
            "events_per_s": round2(self.events_per_s),
            "p50_ms": ms(self.p50),
            "p90_ms": ms(self.p90),
            "p99_ms": ms(self.p99),
            "p999_ms": ms(self.p999),
            "max_ms": ms(self.max),
            "event_bytes": self.event_bytes,
            "warmup_s": round2(self.warmup_s),
            "reconnects": self.reconnects,
            "rate": self.rate,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("25h").is_err());
        assert!(parse_duration("abc").is_err());
    }

    #[test]
    fn targets_are_loopback_only() {
        let t = parse_target("http://127.0.0.1:8080").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.base_path, "");
        let t = parse_target("http://localhost:9000/prefix/").unwrap();
        assert_eq!(t.addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(t.base_path, "/prefix");
        let t = parse_target("http://[::1]:81").unwrap();
        assert_eq!(t.addr, "[::1]:81".parse().unwrap());
        assert_eq!(parse_target("http://LOCALHOST").unwrap().addr.port(), 80);

        for bad in [
            "http://10.0.0.1:8080",
            "http://example.com",
            "http://127.0.0.2:8080",
            "http://localhost.example.com",
            "https://127.0.0.1:8443",
            "127.0.0.1:8080",
            "http://user@127.0.0.1:8080",
            "http://127.0.0.1:8080/?q=1",
        ] {
            assert!(parse_target(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn basic_auth_header() {
        // base64("key:")
        assert_eq!(basic_auth("key"), "Basic a2V5Og==");
        assert_eq!(basic_auth("wk_abc123"), "Basic d2tfYWJjMTIzOg==");
    }

    #[test]
    fn summary_json_has_the_documented_keys() {
        let s = Summary {
            mode: "batch",
            connections: 64,
            batch_size: 100,
            requests: 10,
            events: 1000,
            errors: 0,
            non_2xx: 1,
            duration_s: 1.0,
            requests_per_s: 10.0,
            events_per_s: 1000.0,
            p50: 1_500_000,
            p90: 2_000_000,
            p99: 2_500_000,
            p999: 3_000_000,
            max: 3_100_000,
            event_bytes: 600,
            warmup_s: 10.0,
            reconnects: 0,
            rate: None,
        };
        let v: serde_json::Value = serde_json::from_str(&s.json()).unwrap();
        for k in [
            "mode",
            "connections",
            "batch_size",
            "requests",
            "events",
            "errors",
            "non_2xx",
            "duration_s",
            "requests_per_s",
            "events_per_s",
            "p50_ms",
            "p99_ms",
            "p999_ms",
            "max_ms",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["p50_ms"], 1.5);
        assert_eq!(v["mode"], "batch");
    }
}
