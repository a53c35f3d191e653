//! Reading a request body within the limits: the wire size is capped while reading, and a
//! compressed body is inflated into a buffer that may not grow past the limit, so a gzip bomb
//! costs at most the limit in memory.

use crate::error::ApiError;
use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::io::Read;

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body exceeds the limit of {limit} bytes (after decompression)"),
    )
}

/// Checks the content type: JSON is accepted as `application/json` or `text/plain` (browsers and
/// Kotlin send the latter), with any parameters, or with no header at all.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" | "text/plain" | "" => Ok(()),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("content type `{other}` is not accepted; send JSON as application/json or text/plain"),
        )),
    }
}

/// Reads the whole body (at most `limit` bytes on the wire) and decodes `Content-Encoding`.
pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if length > limit as u64 {
            return Err(too_large(limit));
        }
    }
    let wire = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large(limit)),
        Err(e) => {
            return Err(ApiError::bad_request(
                "body_read_failed",
                format!("the request body could not be read: {e}"),
            ))
        }
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" => Ok(wire),
        "gzip" | "x-gzip" => inflate(flate2::read::MultiGzDecoder::new(&wire[..]), limit, "gzip"),
        "deflate" => {
            // HTTP's "deflate" is zlib-wrapped, but some clients send raw deflate.
            inflate(flate2::read::ZlibDecoder::new(&wire[..]), limit, "deflate").or_else(|_| {
                inflate(
                    flate2::read::DeflateDecoder::new(&wire[..]),
                    limit,
                    "deflate",
                )
            })
        }
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            format!("content encoding `{other}` is not supported; use gzip, deflate or none"),
        )),
    }
}

fn inflate(decoder: impl Read, limit: usize, name: &str) -> Result<Bytes, ApiError> {
    let mut out = Vec::new();
    // One byte past the limit tells "exactly at the limit" from "over it".
    match decoder.take(limit as u64 + 1).read_to_end(&mut out) {
        Ok(_) if out.len() > limit => Err(too_large(limit)),
        Ok(_) => Ok(Bytes::from(out)),
        Err(e) => Err(ApiError::bad_request(
            "invalid_encoding",
            format!("the body is not valid {name}: {e}"),
        )),
    }
}
