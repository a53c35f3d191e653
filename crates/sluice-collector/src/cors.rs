//! CORS for browsers: every `/v1/*` answer (errors included) lets the page read it, and the
//! rate-limit headers are exposed so analytics.js can honour them.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const ALLOWED_HEADERS: &str = "Content-Type, Authorization, X-Retry-Count";
const EXPOSED_HEADERS: &str = "Retry-After, X-RateLimit-Reset";

pub fn add_cors_headers(origin: Option<&HeaderValue>, response: &mut Response) {
    let headers = response.headers_mut();
    if headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        return; // already granted (a preflight)
    }
    match origin {
        Some(origin) => {
            // Echo the origin so requests made with credentials work too.
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        None => {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
    }
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED_HEADERS),
    );
}

pub fn preflight(origin: Option<&HeaderValue>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOWED_HEADERS),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    add_cors_headers(origin, &mut response);
    response
}
