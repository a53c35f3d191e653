//! Configuration: defaults, then a TOML file, then `SLUICE_*` environment variables, then flags.
//! Every key has an environment form: the key path joined by `_`, upper-cased, after `SLUICE_`
//! (`log.durability` → `SLUICE_LOG_DURABILITY`).

use crate::duration::parse_duration;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sluice_log::Durability;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// Folder holding the embedded databases and the generated admin token.
    pub data_dir: PathBuf,
    /// Admin API token; generated into `DATA_DIR/admin-token` when empty.
    pub admin_token: String,
    /// `text` or `json` log lines.
    pub log_format: String,
    /// The URL browsers and apps reach sluice at (`https://collect.example.com`), used in the
    /// settings documents and the snippet; empty: taken from each request's Host header.
    pub public_url: String,
    /// PEM certificate chain and private key: when both are set, sluice serves HTTPS itself
    /// (the mobile SDKs only speak HTTPS). Otherwise put a TLS proxy in front.
    pub tls_cert: String,
    pub tls_key: String,
    pub log: LogSection,
    pub collector: CollectorSection,
    pub delivery: DeliverySection,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// `fsync` (acknowledge only what is on disk) or `none` (leave flushing to the OS).
    pub durability: Durability,
    /// Delete events older than this (`0` = keep forever), never above a destination's cursor.
    pub retention_max_age: String,
    /// Keep at most this many bytes of events (`0` = no cap), never above a destination's cursor.
    pub retention_max_bytes: u64,
    /// How often retention runs.
    pub retention_interval: String,
    /// How long rejected events stay visible in the events API.
    pub rejected_max_age: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorSection {
    /// A repeated `(source, messageId)` within this window is stored once.
    pub dedupe_window: String,
    /// Longest time to receive a request body and answer.
    pub request_timeout: String,
    /// Longest time to receive a request's headers.
    pub header_timeout: String,
    /// Largest request head (request line and headers) in bytes.
    pub max_header_bytes: usize,
    /// Proxies whose `X-Forwarded-For` is believed (addresses or CIDR ranges).
    pub trusted_proxies: Vec<String>,
    /// Default requests per second per source (`0` = unlimited); a source may set its own.
    pub rate_limit_per_second: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliverySection {
    /// How often an idle destination looks for new events.
    pub poll_interval: String,
    /// How long a failing event is retried before it is dead-lettered.
    pub retry_window: String,
    /// First retry delay; doubled per failure (with jitter) up to `backoff_max`.
    pub backoff_base: String,
    pub backoff_max: String,
    /// Events read ahead of a destination's cursor.
    pub window_events: usize,
    /// Requests in flight at once per destination.
    pub max_in_flight: usize,
    /// Longest time to wait for a destination's answer.
    pub request_timeout: String,
}

impl Default for DeliverySection {
    fn default() -> Self {
        let defaults = sluice_router::RouterConfig::default();
        Self {
            poll_interval: "100ms".into(),
            retry_window: "24h".into(),
            backoff_base: "1s".into(),
            backoff_max: "5m".into(),
            window_events: defaults.window_events,
            max_in_flight: defaults.max_in_flight,
            request_timeout: "30s".into(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./sluice-data"),
            admin_token: String::new(),
            log_format: "text".into(),
            public_url: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            log: LogSection::default(),
            collector: CollectorSection::default(),
            delivery: DeliverySection::default(),
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            durability: Durability::Fsync,
            retention_max_age: "7d".into(),
            retention_max_bytes: 0,
            retention_interval: "60s".into(),
            rejected_max_age: "7d".into(),
        }
    }
}

impl Default for CollectorSection {
    fn default() -> Self {
        Self {
            dedupe_window: "24h".into(),
            request_timeout: "30s".into(),
            header_timeout: "10s".into(),
            max_header_bytes: 65_536,
            trusted_proxies: Vec::new(),
            rate_limit_per_second: 0,
        }
    }
}

/// Parsed durations, checked once at start-up.
#[derive(Debug, Clone, Copy)]
pub struct Durations {
    pub retention_max_age: Option<Duration>,
    pub retention_interval: Duration,
    pub rejected_max_age: Duration,
    pub dedupe_window: Duration,
    pub request_timeout: Duration,
    pub header_timeout: Duration,
    pub router: sluice_router::RouterConfig,
}

impl Config {
    /// Defaults, overlaid with the file (when given) and the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut table = toml::Table::try_from(Config::default()).context("default config")?;
        if let Some(file) = file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the config file {}", file.display()))?;
            let from_file: toml::Table = toml::from_str(&text)
                .with_context(|| format!("{} is not valid TOML", file.display()))?;
            merge(&mut table, from_file);
        }
        overlay_env(&mut table, "SLUICE", &|name| std::env::var(name).ok());
        let config: Config = toml::Value::Table(table)
            .try_into()
            .context("invalid configuration (file or SLUICE_* environment)")?;
        config.durations()?;
        Ok(config)
    }

    pub fn durations(&self) -> anyhow::Result<Durations> {
        let parse = |key: &str, value: &str| {
            parse_duration(value).map_err(|e| anyhow::anyhow!("{key}: {e}"))
        };
        let max_age = parse("log.retention_max_age", &self.log.retention_max_age)?;
        let durations = Durations {
            retention_max_age: (!max_age.is_zero()).then_some(max_age),
            retention_interval: parse("log.retention_interval", &self.log.retention_interval)?,
            rejected_max_age: parse("log.rejected_max_age", &self.log.rejected_max_age)?,
            dedupe_window: parse("collector.dedupe_window", &self.collector.dedupe_window)?,
            request_timeout: parse("collector.request_timeout", &self.collector.request_timeout)?,
            header_timeout: parse("collector.header_timeout", &self.collector.header_timeout)?,
            router: sluice_router::RouterConfig {
                poll_interval: parse("delivery.poll_interval", &self.delivery.poll_interval)?,
                retry_window: parse("delivery.retry_window", &self.delivery.retry_window)?,
                backoff_base: parse("delivery.backoff_base", &self.delivery.backoff_base)?,
                backoff_max: parse("delivery.backoff_max", &self.delivery.backoff_max)?,
                window_events: self.delivery.window_events.max(1),
                max_in_flight: self.delivery.max_in_flight.max(1),
                request_timeout: parse("delivery.request_timeout", &self.delivery.request_timeout)?,
            },
        };
        let public_url = self.public_url.trim();
        let has_scheme = public_url.starts_with("http://") || public_url.starts_with("https://");
        if !public_url.is_empty() && !has_scheme {
            bail!("public_url must start with http:// or https:// (got `{public_url}`)");
        }
        if self.tls_cert.trim().is_empty() != self.tls_key.trim().is_empty() {
            bail!("set both tls_cert and tls_key (PEM files), or neither");
        }
        if durations.router.poll_interval.is_zero() || durations.router.request_timeout.is_zero() {
            bail!("delivery.poll_interval and delivery.request_timeout must be more than 0");
        }
        if durations.retention_interval.is_zero() {
            bail!("log.retention_interval must be more than 0");
        }
        if durations.request_timeout.is_zero() || durations.header_timeout.is_zero() {
            bail!("collector.request_timeout and collector.header_timeout must be more than 0");
        }
        Ok(durations)
    }
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(incoming)) => {
                merge(existing, incoming)
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// Sets every key whose `PREFIX_KEY_PATH` variable is present. Values are read as TOML
/// literals when they parse as the key's type, else as strings; arrays also take `a,b,c`.
fn overlay_env(table: &mut toml::Table, prefix: &str, lookup: &dyn Fn(&str) -> Option<String>) {
    for (key, value) in table.iter_mut() {
        let name = format!("{prefix}_{}", key.to_ascii_uppercase());
        if let toml::Value::Table(inner) = value {
            overlay_env(inner, &name, lookup);
            continue;
        }
        let Some(raw) = lookup(&name) else { continue };
        let literal = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(|parsed| parsed.same_type(value));
        *value = match (literal, &*value) {
            (Some(parsed), _) => parsed,
            (None, toml::Value::Array(_)) => toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.into()))
                    .collect(),
            ),
            (None, _) => toml::Value::String(raw),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn file_then_environment_override_defaults() {
        let mut table = toml::Table::try_from(Config::default()).unwrap();
        merge(
            &mut table,
            toml::from_str("listen = \"0.0.0.0:9000\"\n[log]\nretention_max_bytes = 10\n").unwrap(),
        );
        let env: HashMap<&str, &str> = HashMap::from([
            ("SLUICE_LOG_DURABILITY", "none"),
            ("SLUICE_COLLECTOR_RATE_LIMIT_PER_SECOND", "50"),
            ("SLUICE_COLLECTOR_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1"),
            ("SLUICE_DATA_DIR", "/var/lib/sluice"),
        ]);
        overlay_env(&mut table, "SLUICE", &|name| {
            env.get(name).map(|v| v.to_string())
        });
        let config: Config = toml::Value::Table(table).try_into().unwrap();
        assert_eq!(config.listen, "0.0.0.0:9000");
        assert_eq!(config.log.retention_max_bytes, 10);
        assert_eq!(config.log.durability, Durability::None);
        assert_eq!(config.collector.rate_limit_per_second, 50);
        assert_eq!(
            config.collector.trusted_proxies,
            vec!["10.0.0.0/8", "127.0.0.1"]
        );
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/sluice"));
        assert_eq!(config.collector.dedupe_window, "24h");
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_refused() {
        let table: toml::Table = toml::from_str("[log]\nretention = 5\n").unwrap();
        assert!(toml::Value::Table(table).try_into::<Config>().is_err());
        let mut config = Config::default();
        config.collector.dedupe_window = "a day".into();
        assert!(config.durations().is_err());
    }
}
