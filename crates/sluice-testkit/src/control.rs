//! The `/_test/*` control API (no auth): the HTTP face of the [`crate::CioTestServer`] methods,
//! for scripts in other languages. Control calls are not recorded.
//!
//! | call | body | effect |
//! |---|---|---|
//! | `GET /_test/requests` | | JSON array of recorded requests |
//! | `GET /_test/accepted` | | JSON array of accepted ops |
//! | `GET /_test/duplicates` | | JSON array of duplicate event ids |
//! | `POST /_test/responses` | `[{"status":500,"retry_after":2,"body":"…"}]` | queue scripted answers |
//! | `POST /_test/chaos` | `{"seed":1,"server_error_rate":0.2,"rate_limit_rate":0.1,"retry_after_secs":1}` | seeded failures |
//! | `POST /_test/delay` | `{"ms":200}` | latency for track requests |
//! | `POST /_test/credentials` | `{"site_id":"…","api_key":"…"}` | rotate credentials |
//! | `POST /_test/rate` | `{"max_rps":100}` or `{"max_rps":null}` | change the rate cap |
//! | `POST /_test/clear` | | forget records, dedupe memory, queued answers, stats |
//! | `GET /_test/stats` | | counters and event latency, see [`crate::CioTestServer::stats`] |
//! | `POST /_test/stats/reset` | | zero the stats (the dedupe memory stays) |

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::server::{lock, Reply, Shared};
use crate::{Chaos, Scripted};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptedSpec {
    status: u16,
    #[serde(default)]
    retry_after: Option<u64>,
    #[serde(default)]
    body: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DelaySpec {
    ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsSpec {
    site_id: String,
    api_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateSpec {
    max_rps: Option<u32>,
}

fn parse<T: DeserializeOwned>(body: Option<&[u8]>) -> Result<T, Reply> {
    let body = body.ok_or_else(|| bad_request("body too large".into()))?;
    serde_json::from_slice(body).map_err(|e| bad_request(format!("invalid body: {e}")))
}

fn bad_request(message: String) -> Reply {
    Reply::json(StatusCode::BAD_REQUEST, &json!({ "error": message }))
}

fn done() -> Reply {
    Reply::json(StatusCode::OK, &json!({}))
}

fn to_json<T: serde::Serialize>(value: &T) -> Reply {
    match serde_json::to_value(value) {
        Ok(value) => Reply::json(StatusCode::OK, &value),
        Err(e) => Reply::json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({ "error": e.to_string() }),
        ),
    }
}

pub(crate) fn handle(
    shared: &Shared,
    method: &Method,
    command: &str,
    body: Option<&[u8]>,
) -> Reply {
    match run(shared, method.as_str(), command, body) {
        Ok(reply) | Err(reply) => reply,
    }
}

fn run(shared: &Shared, method: &str, command: &str, body: Option<&[u8]>) -> Result<Reply, Reply> {
    Ok(match (method, command) {
        ("GET", "requests") => to_json(&lock(shared).requests()),
        ("GET", "accepted") => {
            Reply::json(StatusCode::OK, &Value::Array(lock(shared).accepted_ops()))
        }
        ("GET", "duplicates") => to_json(&lock(shared).duplicate_event_ids()),
        ("POST", "responses") => {
            let specs: Vec<ScriptedSpec> = parse(body)?;
            if let Some(bad) = specs
                .iter()
                .find(|s| StatusCode::from_u16(s.status).is_err())
            {
                return Err(bad_request(format!("invalid status {}", bad.status)));
            }
            lock(shared).push_responses(specs.into_iter().map(|s| Scripted::Status {
                status: s.status,
                retry_after: s.retry_after,
                body: s.body,
            }));
            done()
        }
        ("POST", "chaos") => {
            let chaos: Chaos = parse(body)?;
            let rate_ok = |r: f64| r.is_finite() && (0.0..=1.0).contains(&r);
            if !rate_ok(chaos.server_error_rate)
                || !rate_ok(chaos.rate_limit_rate)
                || chaos.server_error_rate + chaos.rate_limit_rate > 1.0
            {
                return Err(bad_request(
                    "rates must be in [0, 1] and sum to at most 1".into(),
                ));
            }
            lock(shared).set_chaos(chaos);
            done()
        }
        ("POST", "delay") => {
            let spec: DelaySpec = parse(body)?;
            lock(shared).set_delay(Duration::from_millis(spec.ms));
            done()
        }
        ("POST", "credentials") => {
            let spec: CredentialsSpec = parse(body)?;
            lock(shared).set_credentials(&spec.site_id, &spec.api_key);
            done()
        }
        ("POST", "rate") => {
            let spec: RateSpec = parse(body)?;
            lock(shared).set_max_requests_per_second(spec.max_rps);
            done()
        }
        ("POST", "clear") => {
            lock(shared).clear();
            done()
        }
        ("GET", "stats") => Reply::json(StatusCode::OK, &lock(shared).stats()),
        ("POST", "stats/reset") => {
            lock(shared).reset_stats();
            done()
        }
        _ => Reply::json(
            StatusCode::NOT_FOUND,
            &json!({ "error": format!("no such control call: {method} /_test/{command}") }),
        ),
    })
}
