//! The one error shape of `/v1/*`: `{"code","message"}` (old Python clients retry any 4xx whose
//! body lacks those two keys), plus optional per-event detail.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct RejectedItem {
    pub index: usize,
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds the client should wait (429, 503).
    pub retry_after: Option<u64>,
    pub rejected: Vec<RejectedItem>,
    /// The page's origin is refused: the answer carries no CORS grant.
    pub refuse_origin: bool,
}

/// Marks a response that must not grant CORS to the requesting origin.
#[derive(Debug, Clone, Copy)]
pub struct NoCorsGrant;

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "<[RejectedItem]>::is_empty")]
    rejected: &'a [RejectedItem],
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            rejected: Vec::new(),
            refuse_origin: false,
        }
    }

    /// A 403 for a page whose origin the source does not allow; no CORS grant.
    pub fn origin_not_allowed(origin: &str) -> Self {
        Self {
            refuse_origin: true,
            ..Self::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                format!(
                    "this source does not accept events from pages of {origin}; add the origin to the source's allowed_origins"
                ),
            )
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Body {
            code: self.code,
            message: &self.message,
            rejected: &self.rejected,
        })
        .unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.refuse_origin {
            response.extensions_mut().insert(NoCorsGrant);
        }
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            let value = HeaderValue::from(seconds);
            headers.insert(header::RETRY_AFTER, value.clone());
            headers.insert("x-ratelimit-reset", value);
        }
        response
    }
}
