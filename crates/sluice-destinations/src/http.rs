//! HTTP plumbing shared by the destinations: classifying a response and reading Retry-After.

use crate::{DeliveryError, DeliveryReport, ItemError, Op};
use sluice_core::text::cut;
use std::time::Duration;

/// Bodies kept in the delivery log are cut here.
pub const MAX_LOGGED_BODY: usize = 64 * 1024;

/// `{"batch":[op,…]}` from already-serialised operations (Customer.io's and the webhook's body).
pub fn batch_body(ops: &[&Op]) -> String {
    let mut body =
        String::with_capacity(12 + ops.iter().map(|op| op.json.len() + 1).sum::<usize>());
    body.push_str("{\"batch\":[");
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&op.json);
    }
    body.push_str("]}");
    body
}

/// What came back for a request that got an answer.
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// The response body, or why it could not be read.
    pub body: Result<String, reqwest::Error>,
}

/// Sends `body` with `request`; a request that got no answer is a retryable report.
pub async fn send(request: reqwest::RequestBuilder, body: &str) -> Result<Answer, DeliveryReport> {
    match request.body(body.to_owned()).send().await {
        Ok(response) => Ok(Answer {
            status: response.status().as_u16(),
            retry_after: retry_after(response.headers()),
            body: response.text().await,
        }),
        Err(error) => Err(transport_failure(body.to_owned(), &error)),
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or_default())
}

/// The classification every HTTP destination shares: 2xx delivered, 401/403 unauthorized,
/// 400/404/405/410/413/415/422 refused, anything else (408, 429, 5xx, unknown) retryable.
pub fn classify_status(
    status: u16,
    retry_after: Option<Duration>,
    body: &str,
) -> Result<Vec<ItemError>, DeliveryError> {
    let reason = || format!("HTTP {status}: {}", cut(body, 500));
    match status {
        200..=299 => Ok(Vec::new()),
        401 | 403 => Err(DeliveryError::Unauthorized { reason: reason() }),
        400 | 404 | 405 | 410 | 413 | 415 | 422 => {
            Err(DeliveryError::Permanent { reason: reason() })
        }
        _ => Err(DeliveryError::Retryable {
            retry_after,
            reason: reason(),
        }),
    }
}

/// A report for a request that got no response.
pub fn transport_failure(request_body: String, error: &reqwest::Error) -> DeliveryReport {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    DeliveryReport {
        request_body,
        status: None,
        response_body: String::new(),
        result: Err(DeliveryError::Retryable {
            retry_after: None,
            reason: format!("request {kind}: {}", without_url(error)),
        }),
    }
}

/// The error text without the URL (which may hold a token in a webhook's query string).
pub fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify_status(200, None, "{}"), Ok(vec![]));
        assert!(matches!(
            classify_status(401, None, ""),
            Err(DeliveryError::Unauthorized { .. })
        ));
        assert!(matches!(
            classify_status(403, None, ""),
            Err(DeliveryError::Unauthorized { .. })
        ));
        assert!(
            matches!(classify_status(400, None, "bad"), Err(DeliveryError::Permanent { reason }) if reason.contains("bad"))
        );
        let wait = Some(Duration::from_secs(3));
        assert_eq!(
            classify_status(429, wait, ""),
            Err(DeliveryError::Retryable {
                retry_after: wait,
                reason: "HTTP 429: ".into()
            })
        );
        for status in [408, 500, 502, 503, 504, 302] {
            assert!(
                matches!(
                    classify_status(status, None, ""),
                    Err(DeliveryError::Retryable { .. })
                ),
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            retry_after(&headers),
            Some(Duration::ZERO),
            "a past date means now"
        );
        headers.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }
}
