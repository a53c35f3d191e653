//! CLI commands for destinations and dead letters (over the admin API).

use crate::cli::{print_json, Client, Connection};
use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Value};
use std::io::Write;

#[derive(Subcommand)]
pub enum DestinationCommand {
    /// Create a destination; it starts delivering at once.
    Create {
        #[command(subcommand)]
        kind: NewDestinationKind,
    },
    /// List destinations with their delivery status.
    List,
    /// Show one destination (by name or id).
    Show {
        name: String,
    },
    Enable {
        name: String,
    },
    Disable {
        name: String,
    },
    /// Delete a destination and its delivery state.
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum NewDestinationKind {
    /// Customer.io (Track API).
    Customerio {
        #[arg(long)]
        name: String,
        #[arg(long)]
        site_id: String,
        /// The Track API key (or SLUICE_CIO_API_KEY, so it stays out of shell history).
        #[arg(long, env = "SLUICE_CIO_API_KEY", hide_env_values = true)]
        api_key: String,
        #[arg(long, default_value = "us", value_parser = ["us", "eu"])]
        region: String,
        /// Override the Track API root (a proxy, a test server).
        #[arg(long)]
        track_url: Option<String>,
        /// Deliver the retained backlog too, not only new events.
        #[arg(long)]
        backfill: bool,
    },
    /// A webhook: batches POSTed as JSON, signed with HMAC-SHA256 when a secret is given.
    Webhook {
        #[arg(long)]
        name: String,
        #[arg(long)]
        url: String,
        #[arg(long, env = "SLUICE_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        #[arg(long)]
        backfill: bool,
    },
}

#[derive(Subcommand)]
pub enum DeadLetterCommand {
    /// List a destination's dead letters.
    List {
        #[arg(long)]
        destination: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Send dead letters again (all, or those whose reason contains --reason).
    Replay {
        #[arg(long)]
        destination: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        person: Option<String>,
    },
}

fn path(name: &str) -> String {
    format!("/api/v1/destinations/{}", urlencode(name))
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn status_line(d: &Value) -> String {
    let status = &d["status"];
    let state = if d["enabled"] == false {
        "disabled".to_owned()
    } else {
        status["state"].as_str().unwrap_or("starting").to_owned()
    };
    format!(
        "{:<22} {:<20} {:<11} {:<21} delivered={} held={} dead_letters={}{}",
        d["id"].as_str().unwrap_or_default(),
        d["name"].as_str().unwrap_or_default(),
        d["type"].as_str().unwrap_or_default(),
        state,
        status["delivered"],
        status["held"],
        d["dead_letters"],
        status["last_error"]
            .as_str()
            .map(|e| format!("  last error: {e}"))
            .unwrap_or_default()
    )
}

pub async fn destination(
    command: DestinationCommand,
    connection: &Connection,
) -> anyhow::Result<()> {
    let client = Client::new(connection)?;
    let shown = match command {
        DestinationCommand::Create { kind } => {
            let (name, kind, config, backfill) = match kind {
                NewDestinationKind::Customerio {
                    name,
                    site_id,
                    api_key,
                    region,
                    track_url,
                    backfill,
                } => {
                    let mut config =
                        json!({"site_id": site_id, "api_key": api_key, "region": region});
                    if let Some(url) = track_url {
                        config["track_url"] = url.into();
                    }
                    (name, "customerio", config, backfill)
                }
                NewDestinationKind::Webhook {
                    name,
                    url,
                    secret,
                    backfill,
                } => (
                    name,
                    "webhook",
                    json!({"url": url, "secret": secret}),
                    backfill,
                ),
            };
            let body = json!({"name": name, "type": kind, "config": config,
                              "start": if backfill { "oldest" } else { "now" }});
            client
                .call(reqwest::Method::POST, "/api/v1/destinations", Some(body))
                .await?
        }
        DestinationCommand::List => {
            let list = client
                .call(reqwest::Method::GET, "/api/v1/destinations", None)
                .await?;
            let destinations = list["destinations"].as_array().cloned().unwrap_or_default();
            if connection.json {
                print_json(&Value::Array(destinations));
            } else if destinations.is_empty() {
                println!("no destinations yet: sluice destination create customerio --name cio --site-id ID --api-key KEY");
            } else {
                for d in &destinations {
                    println!("{}", status_line(d));
                }
            }
            return Ok(());
        }
        DestinationCommand::Show { name } => {
            client
                .call(reqwest::Method::GET, &path(&name), None)
                .await?
        }
        DestinationCommand::Enable { name } => set_enabled(&client, &name, true).await?,
        DestinationCommand::Disable { name } => set_enabled(&client, &name, false).await?,
        DestinationCommand::Delete { name } => {
            client
                .call(reqwest::Method::DELETE, &path(&name), None)
                .await?;
            println!("deleted destination {name} and its delivery state");
            return Ok(());
        }
    };
    if connection.json {
        print_json(&shown);
    } else {
        println!("{}", status_line(&shown));
    }
    Ok(())
}

async fn set_enabled(client: &Client, name: &str, enabled: bool) -> anyhow::Result<Value> {
    let body = json!({ "enabled": enabled });
    client
        .call(reqwest::Method::PATCH, &path(name), Some(body))
        .await
}

pub async fn dead_letters(
    command: DeadLetterCommand,
    connection: &Connection,
) -> anyhow::Result<()> {
    let client = Client::new(connection)?;
    match command {
        DeadLetterCommand::List { destination, limit } => {
            let list = client
                .call(
                    reqwest::Method::GET,
                    &format!(
                        "{}/dead-letters?limit={}",
                        path(&destination),
                        limit.clamp(1, 1000)
                    ),
                    None,
                )
                .await?;
            let letters = list["dead_letters"].as_array().cloned().unwrap_or_default();
            if connection.json {
                print_json(&list);
            } else {
                println!("{} dead letters (showing {})", list["total"], letters.len());
                for letter in letters {
                    println!(
                        "#{:<6} seq={:<8} {:<9} {:<24} {}",
                        letter["id"],
                        letter["seq"],
                        letter["event_type"].as_str().unwrap_or_default(),
                        letter["person"].as_str().unwrap_or_default(),
                        letter["reason"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        DeadLetterCommand::Replay {
            destination,
            reason,
            person,
        } => {
            // Replayed in pages, so a long replay shows progress and can be interrupted.
            let total = client
                .call(
                    reqwest::Method::GET,
                    &format!("{}/dead-letters?limit=1", path(&destination)),
                    None,
                )
                .await?["total"]
                .as_u64()
                .context("the server did not say how many dead letters there are")?;
            let mut replayed = 0u64;
            loop {
                let body = json!({"reason": reason, "person": person, "limit": 100});
                let page = client
                    .call(
                        reqwest::Method::POST,
                        &format!("{}/dead-letters/replay", path(&destination)),
                        Some(body),
                    )
                    .await?["replayed"]
                    .as_u64()
                    .unwrap_or(0);
                replayed += page;
                if !connection.json {
                    progress(replayed, total);
                }
                if page < 100 || replayed >= total {
                    break;
                }
            }
            if connection.json {
                print_json(&json!({"replayed": replayed}));
            } else {
                eprintln!();
                println!("replayed {replayed} dead letters; they are delivered in order with each person's other events");
            }
        }
    }
    Ok(())
}

fn progress(done: u64, total: u64) {
    let total = total.max(done).max(1);
    let filled = (done * 30 / total) as usize;
    eprint!(
        "\r[{}{}] {done}/{total}",
        "#".repeat(filled),
        " ".repeat(30 - filled)
    );
    let _ = std::io::stderr().flush();
}
