//! Write keys: HTTP Basic (user = key, with or without the trailing colon, standard or URL-safe
//! base64, padded or not) or `writeKey` in the body.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;

/// What the `Authorization` header says about the write key.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderKey {
    /// No Basic credentials (absent, or `Bearer` for OAuth users): use the body's key.
    Absent,
    Key(String),
    Malformed,
}

pub fn write_key_from_header(value: Option<&str>) -> HeaderKey {
    let Some(value) = value else {
        return HeaderKey::Absent;
    };
    let value = value.trim();
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return HeaderKey::Malformed;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return HeaderKey::Absent;
    }
    let encoded = encoded.trim();
    let decoded = [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(encoded).ok());
    let Some(text) = decoded.and_then(|bytes| String::from_utf8(bytes).ok()) else {
        return HeaderKey::Malformed;
    };
    let key = text.split_once(':').map_or(text.as_str(), |(user, _)| user);
    if key.is_empty() {
        HeaderKey::Malformed
    } else {
        HeaderKey::Key(key.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_basic_form_yields_the_key() {
        let key = "k?>~k"; // encodes to characters that differ between the two alphabets
        for credentials in [format!("{key}:"), key.to_owned()] {
            for engine in [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
                let header = format!("Basic {}", engine.encode(&credentials));
                assert_eq!(
                    write_key_from_header(Some(&header)),
                    HeaderKey::Key(key.into()),
                    "{header}"
                );
            }
        }
        assert_eq!(
            write_key_from_header(Some("basic V1JJVEVfS0VZX1RFU1Q6")),
            HeaderKey::Key("WRITE_KEY_TEST".into())
        );
    }

    #[test]
    fn bearer_and_absent_defer_to_the_body_and_garbage_is_malformed() {
        assert_eq!(write_key_from_header(None), HeaderKey::Absent);
        assert_eq!(write_key_from_header(Some("Bearer abc")), HeaderKey::Absent);
        assert_eq!(
            write_key_from_header(Some("Basic !!!")),
            HeaderKey::Malformed
        );
        assert_eq!(
            write_key_from_header(Some("Basic Og==")),
            HeaderKey::Malformed
        );
        assert_eq!(write_key_from_header(Some("garbage")), HeaderKey::Malformed);
    }
}
