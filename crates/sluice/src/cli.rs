//! The CLI half: commands that talk to a running sluice over the admin API.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

#[derive(Args, Clone)]
pub struct Connection {
    /// The sluice server.
    #[arg(
        long,
        env = "SLUICE_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// Admin token (default: SLUICE_ADMIN_TOKEN, else ./sluice-data/admin-token).
    #[arg(
        long,
        env = "SLUICE_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Manage sources and their write keys.
    Source {
        #[command(subcommand)]
        command: SourceCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// Manage destinations (Customer.io, webhook).
    Destination {
        #[command(subcommand)]
        command: crate::cli_delivery::DestinationCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// Inspect and replay events that could not be delivered.
    DeadLetters {
        #[command(subcommand)]
        command: crate::cli_delivery::DeadLetterCommand,
        #[command(flatten)]
        connection: Connection,
    },
    /// Print events as they arrive, one JSON object per line.
    Tail {
        /// Source name or id (default: every source).
        #[arg(long)]
        source: Option<String>,
        /// Events shown from before the start.
        #[arg(long, default_value_t = 10)]
        last: usize,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Subcommand)]
pub enum SourceCommand {
    /// Create a source and print its write key.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "server", value_parser = ["web", "server", "mobile"])]
        kind: String,
    },
    /// List sources.
    List,
    /// Delete a source; its write key stops working at once.
    Delete { name: String },
    /// Give a source a new write key; the old one stops working at once.
    RotateKey { name: String },
}

pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub(crate) fn new(connection: &Connection) -> anyhow::Result<Self> {
        let token = match &connection.token {
            Some(token) => token.clone(),
            None => std::fs::read_to_string(Path::new("sluice-data").join("admin-token"))
                .map(|t| t.trim().to_owned())
                .context("no admin token: pass --token, set SLUICE_ADMIN_TOKEN, or run where ./sluice-data/admin-token is")?,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            http,
            base: connection.server.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach sluice at {}; is `sluice serve` running?",
                self.base
            )
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            let message = value
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
            bail!("{status}: {message}");
        }
        Ok(value)
    }

    async fn sources(&self) -> anyhow::Result<Vec<Value>> {
        let list = self
            .call(reqwest::Method::GET, "/api/v1/sources", None)
            .await?;
        Ok(list
            .get("sources")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    async fn source_id(&self, name_or_id: &str) -> anyhow::Result<String> {
        self.sources()
            .await?
            .into_iter()
            .find(|s| s["name"] == name_or_id || s["id"] == name_or_id)
            .and_then(|s| s["id"].as_str().map(str::to_owned))
            .with_context(|| format!("no source named `{name_or_id}` (see `sluice source list`)"))
    }
}

pub(crate) fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

pub async fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Source {
            command,
            connection,
        } => source(command, &connection).await,
        AdminCommand::Destination {
            command,
            connection,
        } => crate::cli_delivery::destination(command, &connection).await,
        AdminCommand::DeadLetters {
            command,
            connection,
        } => crate::cli_delivery::dead_letters(command, &connection).await,
        AdminCommand::Tail {
            source,
            last,
            connection,
        } => tail(source, last, &connection).await,
    }
}

async fn source(command: SourceCommand, connection: &Connection) -> anyhow::Result<()> {
    let client = Client::new(connection)?;
    match command {
        SourceCommand::Create { name, kind } => {
            let body = serde_json::json!({"name": name, "kind": kind});
            let created = client
                .call(reqwest::Method::POST, "/api/v1/sources", Some(body))
                .await?;
            if connection.json {
                print_json(&created);
            } else {
                println!(
                    "created source {} ({})",
                    created["name"].as_str().unwrap_or_default(),
                    created["id"].as_str().unwrap_or_default()
                );
                println!(
                    "write key: {}",
                    created["write_key"].as_str().unwrap_or_default()
                );
            }
        }
        SourceCommand::List => {
            let sources = client.sources().await?;
            if connection.json {
                print_json(&Value::Array(sources));
            } else if sources.is_empty() {
                println!("no sources yet: sluice source create --name web --kind web");
            } else {
                println!("{:<22} {:<20} {:<7} WRITE KEY", "ID", "NAME", "KIND");
                for s in sources {
                    println!(
                        "{:<22} {:<20} {:<7} {}",
                        s["id"].as_str().unwrap_or_default(),
                        s["name"].as_str().unwrap_or_default(),
                        s["kind"].as_str().unwrap_or_default(),
                        s["write_key"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        SourceCommand::Delete { name } => {
            let id = client.source_id(&name).await?;
            client
                .call(
                    reqwest::Method::DELETE,
                    &format!("/api/v1/sources/{id}"),
                    None,
                )
                .await?;
            println!("deleted source {name}; its write key no longer works");
        }
        SourceCommand::RotateKey { name } => {
            let id = client.source_id(&name).await?;
            let rotated = client
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/sources/{id}/rotate-key"),
                    None,
                )
                .await?;
            if connection.json {
                print_json(&rotated);
            } else {
                println!(
                    "new write key: {}",
                    rotated["write_key"].as_str().unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

/// Polls each source's events and prints the new ones in sequence order.
async fn tail(source: Option<String>, last: usize, connection: &Connection) -> anyhow::Result<()> {
    let client = Client::new(connection)?;
    let mut after: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut first = true;
    loop {
        let ids = match &source {
            Some(name) => vec![client.source_id(name).await?],
            None => client
                .sources()
                .await?
                .iter()
                .filter_map(|s| s["id"].as_str().map(str::to_owned))
                .collect(),
        };
        let mut batch: Vec<Value> = Vec::new();
        for id in ids {
            let limit = if first { last.clamp(1, 1000) } else { 1000 };
            let mut path = format!("/api/v1/sources/{id}/events?limit={limit}");
            if let Some(seq) = after.get(&id) {
                path.push_str(&format!("&after={seq}"));
            }
            let page = client.call(reqwest::Method::GET, &path, None).await?;
            let events = page["events"].as_array().cloned().unwrap_or_default();
            let newest = events.iter().filter_map(|e| e["seq"].as_u64()).max();
            after.insert(
                id.clone(),
                newest.unwrap_or_else(|| after.get(&id).copied().unwrap_or(0)),
            );
            if !(first && last == 0) {
                batch.extend(events);
            }
        }
        batch.sort_by_key(|e| e["seq"].as_u64());
        for event in batch {
            println!("{}", serde_json::to_string(&event).unwrap_or_default());
        }
        first = false;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
