//! HTTP Basic credentials: `Basic base64(site_id:api_key)` in either base64 alphabet, padded or
//! not (Go's client uses the URL-safe alphabet).

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE_ANY_PAD: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Whether the `Authorization` header value carries exactly these credentials.
pub(crate) fn is_authorized(header: Option<&[u8]>, site_id: &str, api_key: &str) -> bool {
    let Some(value) = header.and_then(|h| std::str::from_utf8(h).ok()) else {
        return false;
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let encoded = encoded.trim();
    let Some(decoded) = [STANDARD_ANY_PAD, URL_SAFE_ANY_PAD]
        .iter()
        .find_map(|engine| engine.decode(encoded).ok())
    else {
        return false;
    };
    let expected = format!("{site_id}:{api_key}");
    decoded == expected.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

    #[test]
    fn every_alphabet_and_padding() {
        let (site, key) = ("SITE?>", "KEY?>~~");
        for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            let header = format!("Basic {}", engine.encode(format!("{site}:{key}")));
            assert!(
                is_authorized(Some(header.as_bytes()), site, key),
                "{header}"
            );
            assert!(
                !is_authorized(Some(header.as_bytes()), site, "other"),
                "{header}"
            );
        }
        assert!(!is_authorized(None, site, key));
        assert!(!is_authorized(Some(b"Bearer abc"), site, key));
        assert!(!is_authorized(Some(b"Basic !!!"), site, key));
        assert!(!is_authorized(Some(b"Basic"), site, key));
    }
}
