//! The `gatehouse` binary: parse the command line, start, wait for a signal.

use anyhow::Context;
use clap::Parser;

use gatehouse::cli::Cli;
use gatehouse::telemetry::logging;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Usage errors print their message and exit with status 2.
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let mut running = gatehouse::app::start(cli.config())
        .await
        .context("gatehouse could not start")?;
    tokio::select! {
        _ = running.wait() => anyhow::bail!("a gatehouse task stopped unexpectedly"),
        signal = shutdown_signal() => {
            tracing::info!("{} received, exiting", signal?);
            Ok(())
        }
    }
}

async fn shutdown_signal() -> anyhow::Result<&'static str> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        _ = term.recv() => Ok("SIGTERM"),
        result = tokio::signal::ctrl_c() => result.map(|()| "SIGINT").context("cannot listen for SIGINT"),
    }
}
