//! What browsers and mobile SDKs fetch besides the event endpoints: the settings document that
//! points analytics-next, analytics-swift and analytics-kotlin at this server (and nowhere
//! else), the first-party `/sluice.js`, and the footer snippet that loads it.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::io::Write;
use std::sync::OnceLock;

/// The first-party analytics script, compiled in.
pub const SLUICE_JS: &str = include_str!("../assets/sluice.js");
const SNIPPET_TEMPLATE: &str = include_str!("../assets/snippet.html");

/// Where browsers reach this server: `scheme` and `host[:port][/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicBase {
    pub scheme: String,
    pub host: String,
}

impl PublicBase {
    /// From the configured public URL, else from the request's `Host` (with `https` when
    /// sluice terminates TLS itself).
    pub fn resolve(public_url: Option<&str>, tls: bool, headers: &HeaderMap) -> Self {
        if let Some((scheme, host)) = public_url.and_then(|url| url.split_once("://")) {
            return Self {
                scheme: scheme.to_ascii_lowercase(),
                host: host.trim_end_matches('/').to_owned(),
            };
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            })
            .unwrap_or("127.0.0.1")
            .to_owned();
        Self {
            scheme: if tls { "https" } else { "http" }.into(),
            host,
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }
}

/// The settings document for a write key (`GET /v1/projects/{key}/settings`): only the
/// Segment.io integration, pointed here; metrics pointed here too with a sample rate of 0,
/// so nothing leaves for Segment's servers.
pub fn settings(write_key: &str, base: &PublicBase) -> Response {
    let api_host = format!("{}/v1", base.host);
    let enabled = json!({"__default": {"enabled": true}});
    let body = json!({
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": base.scheme,
                "unbundledIntegrations": [],
                "addBundledMetadata": true,
                "maybeBundledConfigIds": {},
                "versionSettings": {"version": "4.4.7", "componentTypes": ["browser", "ios", "android"]}
            }
        },
        "plan": {"track": enabled, "identify": enabled, "group": enabled},
        "metrics": {"sampleRate": 0, "host": api_host},
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "legacyVideoPluginsEnabled": false,
        "remotePlugins": [],
        "edgeFunction": {},
        "analyticsNextEnabled": true
    });
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Short: a rotated key must stop being served soon.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    response
}

fn gzipped_script() -> &'static [u8] {
    static GZIPPED: OnceLock<Vec<u8>> = OnceLock::new();
    GZIPPED.get_or_init(|| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        // Writing to a Vec cannot fail.
        let _ = encoder.write_all(SLUICE_JS.as_bytes());
        encoder.finish().unwrap_or_default()
    })
}

/// `GET /sluice.js`, gzipped for clients that take it.
pub fn script(request_headers: &HeaderMap) -> Response {
    let gzip = request_headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let mut response = if gzip {
        let mut response = gzipped_script().into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        response
    } else {
        SLUICE_JS.into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// The footer snippet for a source: paste it before `</body>`.
pub fn snippet(base_url: &str, write_key: &str) -> String {
    SNIPPET_TEMPLATE
        .replace("{{HOST}}", base_url.trim_end_matches('/'))
        .replace("{{WRITE_KEY}}", write_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_base_comes_from_config_else_the_host_header() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::HOST,
            HeaderValue::from_static("collect.shop.test:8443"),
        );
        let configured = PublicBase::resolve(Some("https://t.shop.test/sluice/"), false, &headers);
        assert_eq!(configured.url(), "https://t.shop.test/sluice");
        assert_eq!(
            PublicBase::resolve(None, true, &headers).url(),
            "https://collect.shop.test:8443"
        );
        headers.insert(header::HOST, HeaderValue::from_static("evil.test/<script>"));
        assert_eq!(
            PublicBase::resolve(None, false, &headers).url(),
            "http://127.0.0.1"
        );
    }

    #[test]
    fn the_script_fits_in_6_kb_gzipped_and_the_snippet_is_filled_in() {
        assert!(
            gzipped_script().len() <= 6 * 1024,
            "{} bytes gzipped",
            gzipped_script().len()
        );
        let snippet = snippet("https://t.shop.test/", "KEY123");
        assert!(
            snippet.contains("https://t.shop.test/sluice.js"),
            "{snippet}"
        );
        assert!(snippet.contains("KEY123"));
        assert!(!snippet.contains("{{"));
    }
}
