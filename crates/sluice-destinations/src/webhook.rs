//! A generic webhook: batches of events POSTed as JSON to a URL, signed with HMAC-SHA256.
//!
//! Body: `{"batch":[{"seq","source_id","user_id","event"}…]}` where `event` is the stored
//! Segment event and `user_id` the identity sluice resolved for it. Header
//! `X-Sluice-Signature: sha256=<hex HMAC-SHA256(secret, body)>` lets the receiver check that
//! the body came from sluice unchanged.

use crate::http::{batch_body, classify_status, send};
use crate::{
    config_str, config_u64, required_str, BatchLimits, BuildContext, ConfigError, DeliveryEvent,
    DeliveryReport, Destination, DestinationKind, Mapped, Op,
};
use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "x-sluice-signature";

pub struct Webhook {
    url: String,
    secret: Option<String>,
    http: reqwest::Client,
    max_items: usize,
    requests_per_second: u32,
}

impl DestinationKind for Webhook {
    const KIND: &'static str = "webhook";
    const SECRET_FIELDS: &'static [&'static str] = &["secret"];
    const URL_FIELDS: &'static [&'static str] = &["url"];

    fn from_config(config: &Value, context: &BuildContext) -> Result<Self, ConfigError> {
        let url = required_str(config, "url")?;
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| ConfigError::new("url", format!("is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ConfigError::new(
                "url",
                "must be an http:// or https:// URL",
            ));
        }
        Ok(Self {
            url: url.to_owned(),
            secret: config_str(config, "secret").map(str::to_owned),
            http: context.http.clone(),
            max_items: config_u64(config, "batch_size")?.unwrap_or(100).min(10_000) as usize,
            requests_per_second: config_u64(config, "requests_per_second")?
                .unwrap_or(100)
                .min(u64::from(u32::MAX)) as u32,
        })
    }
}

/// The signature header value for a body.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[async_trait]
impl Destination for Webhook {
    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_items: self.max_items,
            max_request_bytes: 5 * 1024 * 1024,
            max_item_bytes: 1024 * 1024,
            requests_per_second: self.requests_per_second,
        }
    }

    fn map(&self, event: &DeliveryEvent<'_>) -> Mapped {
        let raw: &serde_json::value::RawValue = match serde_json::from_str(event.event.json()) {
            Ok(raw) => raw,
            Err(error) => {
                return Mapped::Reject {
                    reason: format!("the stored event is not JSON: {error}"),
                }
            }
        };
        let op = json!({
            "seq": event.seq,
            "source_id": event.source_id,
            "user_id": event.identity.user_id,
            "event": raw,
        });
        Mapped::Ops {
            ops: vec![Op::new(&op)],
            warnings: Vec::new(),
        }
    }

    async fn deliver(&self, ops: &[&Op]) -> DeliveryReport {
        let body = batch_body(ops);
        let mut request = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &self.secret {
            request = request.header(SIGNATURE_HEADER, signature(secret, body.as_bytes()));
        }
        let answer = match send(request, &body).await {
            Ok(answer) => answer,
            Err(report) => return report,
        };
        // The status decides; an unreadable body is shown as empty.
        let response_body = answer.body.unwrap_or_default();
        DeliveryReport {
            result: classify_status(answer.status, answer.retry_after, &response_body),
            request_body: body,
            status: Some(answer.status),
            response_body,
        }
    }

    async fn check_credentials(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
