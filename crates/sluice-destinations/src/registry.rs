//! The destination kinds sluice knows, by name.

use crate::{BuildContext, ConfigError, Destination, DestinationKind};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

type Builder = fn(&Value, &BuildContext) -> Result<Arc<dyn Destination>, ConfigError>;

struct Kind {
    build: Builder,
    secret_fields: &'static [&'static str],
    url_fields: &'static [&'static str],
}

/// Destination kinds by their `type` name.
#[derive(Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Kind>,
}

/// Every kind that ships with sluice. A new kind is one line here.
pub fn builtin() -> Registry {
    let mut registry = Registry::default();
    registry.register::<crate::customerio::CustomerIo>();
    registry.register::<crate::webhook::Webhook>();
    registry
}

/// How a secret is shown: its last four characters.
pub fn mask_secret(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    format!("••••{tail}")
}

fn is_masked(value: &Value) -> bool {
    value.as_str().is_some_and(|s| s.contains("••••"))
}

/// A URL with its password and query values masked (`?token=••••`); `None` when it has none.
fn mask_url(url: &str) -> Option<String> {
    let mut parsed = reqwest::Url::parse(url).ok()?;
    let mut masked = false;
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("••••"));
        masked = true;
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, _)| (k.into_owned(), "••••".to_owned()))
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
        masked = true;
    }
    // Shown as typed: the bullets stay readable rather than percent-encoded.
    masked.then(|| parsed.to_string().replace("%E2%80%A2", "•"))
}

impl Registry {
    pub fn register<K: DestinationKind>(&mut self) -> &mut Self {
        fn build<K: DestinationKind>(
            config: &Value,
            context: &BuildContext,
        ) -> Result<Arc<dyn Destination>, ConfigError> {
            Ok(Arc::new(K::from_config(config, context)?))
        }
        self.kinds.insert(
            K::KIND,
            Kind {
                build: build::<K>,
                secret_fields: K::SECRET_FIELDS,
                url_fields: K::URL_FIELDS,
            },
        );
        self
    }

    /// The known kind names, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.kinds.keys().copied().collect()
    }

    fn kind(&self, kind: &str) -> Result<&Kind, ConfigError> {
        self.kinds.get(kind).ok_or_else(|| {
            ConfigError::new(
                "type",
                format!(
                    "unknown destination type `{kind}`; known types: {}",
                    self.kinds().join(", ")
                ),
            )
        })
    }

    /// Builds a destination, validating its configuration.
    pub fn build(
        &self,
        kind: &str,
        config: &Value,
        context: &BuildContext,
    ) -> Result<Arc<dyn Destination>, ConfigError> {
        if !config.is_object() {
            return Err(ConfigError::new("config", "must be a JSON object"));
        }
        (self.kind(kind)?.build)(config, context)
    }

    /// The configuration with every secret masked, as the API and the dashboard show it.
    pub fn masked_config(&self, kind: &str, config: &Value) -> Value {
        let mut shown = config.clone();
        let (secrets, urls) = self
            .kind(kind)
            .map(|k| (k.secret_fields, k.url_fields))
            .unwrap_or_default();
        if let Some(fields) = shown.as_object_mut() {
            for (name, value) in fields.iter_mut() {
                let Some(text) = value.as_str() else { continue };
                if secrets.contains(&name.as_str()) {
                    *value = Value::String(mask_secret(text));
                } else if urls.contains(&name.as_str()) {
                    if let Some(masked) = mask_url(text) {
                        *value = Value::String(masked);
                    }
                }
            }
        }
        shown
    }

    /// Applies a configuration change: the fields in `change` replace those in `current`, except
    /// a secret sent back masked (as the API showed it), which keeps its stored value.
    pub fn merge_config(&self, kind: &str, current: &Value, change: &Value) -> Value {
        let mut merged = current.clone();
        let (secrets, urls) = self
            .kind(kind)
            .map(|k| (k.secret_fields, k.url_fields))
            .unwrap_or_default();
        if let (Some(target), Some(changes)) = (merged.as_object_mut(), change.as_object()) {
            for (name, value) in changes {
                let guarded = secrets.contains(&name.as_str()) || urls.contains(&name.as_str());
                if guarded && is_masked(value) {
                    continue;
                }
                target.insert(name.clone(), value.clone());
            }
        }
        merged
    }

    /// Whether two configurations differ in a secret (credentials changed).
    pub fn secrets_differ(&self, kind: &str, a: &Value, b: &Value) -> bool {
        let secrets = self.kind(kind).map(|k| k.secret_fields).unwrap_or_default();
        secrets.iter().any(|field| a.get(field) != b.get(field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_kind_lists_the_known_ones() {
        let error = builtin()
            .build(
                "mailchimp",
                &json!({}),
                &BuildContext::new(std::time::Duration::from_secs(1)),
            )
            .err()
            .expect("unknown kind");
        assert_eq!(error.field, "type");
        assert!(
            error.message.contains("customerio, webhook"),
            "{}",
            error.message
        );
    }

    #[test]
    fn tokens_in_a_webhook_url_are_masked_and_kept_when_echoed_back() {
        let registry = builtin();
        let config =
            json!({"url": "https://user:pw@hooks.test/in?token=s3cr3t&team=a", "secret": "k"});
        let shown = registry.masked_config("webhook", &config);
        let url = shown["url"].as_str().unwrap();
        assert!(!url.contains("s3cr3t") && !url.contains(":pw@"), "{url}");
        assert!(
            url.contains("token=••••") && url.contains("hooks.test/in"),
            "{url}"
        );
        let plain = registry.masked_config("webhook", &json!({"url": "https://hooks.test/in"}));
        assert_eq!(plain["url"], "https://hooks.test/in", "nothing to hide");
        let echoed = registry.merge_config("webhook", &config, &shown);
        assert_eq!(echoed["url"], config["url"]);
    }

    #[test]
    fn secrets_are_masked_and_kept_when_echoed_back() {
        let registry = builtin();
        let config = json!({"site_id": "site", "api_key": "abcdef123456", "region": "us"});
        let shown = registry.masked_config("customerio", &config);
        assert_eq!(shown["api_key"], "••••3456");
        assert_eq!(shown["site_id"], "site");
        assert!(!shown.to_string().contains("abcdef"));

        let echoed = registry.merge_config("customerio", &config, &shown);
        assert_eq!(echoed["api_key"], "abcdef123456");
        let changed = registry.merge_config("customerio", &config, &json!({"api_key": "new-key"}));
        assert_eq!(changed["api_key"], "new-key");
        assert!(registry.secrets_differ("customerio", &config, &changed));
        assert!(!registry.secrets_differ("customerio", &config, &echoed));
    }
}
