//! `sluice`: serve the pipeline, or manage it through the admin API.

mod cli;
mod cli_delivery;

// The collector allocates and frees many small JSON values per request; glibc's allocator
// showed up as ~12% of a profile under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice::Config;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Self-hosted, Segment-compatible clickstream pipeline"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector (and everything else) on this machine.
    Serve {
        /// TOML config file.
        #[arg(long, env = "SLUICE_CONFIG")]
        config: Option<PathBuf>,
        /// Data folder (overrides the config).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Listen address (overrides the config).
        #[arg(long)]
        listen: Option<String>,
    },
    #[command(flatten)]
    Admin(cli::AdminCommand),
}

fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.command {
        Command::Serve {
            config,
            data_dir,
            listen,
        } => runtime.block_on(serve(config, data_dir, listen)),
        Command::Admin(command) => runtime.block_on(cli::run(command)),
    }
}

async fn serve(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    listen: Option<String>,
) -> anyhow::Result<()> {
    let mut config = Config::load(config.as_deref())?;
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    if let Some(listen) = listen {
        config.listen = listen;
    }
    init_tracing(config.log_format == "json");
    let server = sluice::start(config.clone(), Arc::new(sluice_core::SystemClock))
        .await
        .context("sluice could not start")?;
    let scheme = if config.tls_cert.trim().is_empty() {
        "http"
    } else {
        "https"
    };
    let url = format!("{scheme}://{}", server.addr);
    println!("sluice is running at {url}");
    println!("  data folder:  {}", config.data_dir.display());
    if server.admin_token_generated {
        println!(
            "  admin token:  {} (generated; kept in {})",
            server.admin_token,
            config.data_dir.join("admin-token").display()
        );
    } else {
        println!(
            "  admin token:  from your configuration or {}",
            config.data_dir.join("admin-token").display()
        );
    }
    println!("  create a source:  sluice source create --name web --kind web");
    wait_for_signal().await;
    tracing::info!("shutdown signal received");
    server.trigger_shutdown();
    server.wait().await;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
