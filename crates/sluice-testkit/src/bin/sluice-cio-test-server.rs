//! A stand-alone Customer.io Track API test server for scripts and benchmarks.
//!
//! Prints `listening on http://HOST:PORT` once bound, then serves until SIGTERM or ctrl-c. The
//! `/_test/*` control API (see the library docs) drives scripted responses, chaos, delay,
//! credentials and the rate cap, and reads back what was received and accepted, or with
//! `--no-record` (benchmarks) only counters and event latency (`GET /_test/stats`).

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use sluice_testkit::{CioOptions, CioTestServer};

#[derive(Debug, Parser)]
#[command(
    name = "sluice-cio-test-server",
    about = "A Customer.io Track API-compatible test server"
)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Basic-auth user name (the Site ID).
    #[arg(long, default_value = "SITE_ID_TEST")]
    site_id: String,
    /// Basic-auth password (the Track API key).
    #[arg(long, default_value = "API_KEY_TEST")]
    api_key: String,
    /// Region reported by GET /api/v1/accounts/region.
    #[arg(long, default_value = "us", value_parser = ["us", "eu"])]
    region: String,
    /// Requests per second over the track endpoints before answering 429 (0 or absent = no cap).
    #[arg(long)]
    max_rps: Option<u32>,
    /// Bench mode: keep no request bodies, accepted ops or duplicate ids in memory (the
    /// `/_test/requests`, `/_test/accepted` and `/_test/duplicates` lists stay empty); still
    /// validate, dedupe by event id and count (`GET /_test/stats`).
    #[arg(long)]
    no_record: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let options = CioOptions {
        site_id: args.site_id,
        api_key: args.api_key,
        region: args.region,
        max_requests_per_second: args.max_rps,
    };
    let server = match CioTestServer::start_on(args.listen, options).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!(
                "sluice-cio-test-server: cannot listen on {}: {e}",
                args.listen
            );
            return ExitCode::FAILURE;
        }
    };
    if args.no_record {
        server.set_recording(false);
    }
    let mut stdout = std::io::stdout();
    if writeln!(stdout, "listening on {}", server.url())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    if let Err(e) = wait_for_stop().await {
        eprintln!("sluice-cio-test-server: cannot wait for signals: {e}");
        return ExitCode::FAILURE;
    }
    server.shutdown().await;
    ExitCode::SUCCESS
}

#[cfg(unix)]
async fn wait_for_stop() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = term.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_stop() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}
