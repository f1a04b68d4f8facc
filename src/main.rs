//! The `gatehouse` binary: parse the command line, then either run the
//! controller until a signal, or print the routing table (`routes`).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use std::sync::Arc;

use gatehouse::app::SourceConfig;
use gatehouse::cli::{Cli, Command, RoutingArgs, SourceArgs};
use gatehouse::source::files::ManifestDir;
use gatehouse::telemetry::logging;

/// mimalloc: the proxy allocates and frees small buffers on every request,
/// across threads; glibc's allocator spent about a tenth of the proxy's CPU
/// time on that in the load comparison's profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The main runtime runs the control plane (sources, translate on blocking
// threads, admin, status); the data plane has its own worker threads.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<ExitCode> {
    // Usage errors print their message and exit with status 2.
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match &cli.command {
        Some(Command::Routes {
            source,
            routing,
            configmap_file,
        }) => routes(source, routing, configmap_file.as_deref()).await,
        None => run(&cli).await.map(|()| ExitCode::SUCCESS),
    }
}

/// `gatehouse routes`: one translation, printed; exit 1 on any problem.
async fn routes(
    source: &SourceArgs,
    routing: &RoutingArgs,
    configmap_file: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    routing.warn_about_unenforced_protection();
    let (mut state, errors) = match source.source(routing).await.context("gatehouse routes")? {
        SourceConfig::Manifests(dir) => {
            let (manifests, errors) = ManifestDir::load(&dir).context("gatehouse routes")?;
            (Arc::new(manifests.state().0), errors)
        }
        SourceConfig::Kube(kube) => {
            let states = gatehouse::source::kube::watch_cluster(kube).await;
            let state = states.borrow().clone();
            (state, Vec::new())
        }
    };
    let mut options = routing.translate_options();
    if let Some(path) = configmap_file {
        let map = config_map_file(path)?;
        options.config_map = Some(map.key());
        Arc::make_mut(&mut state).insert(map);
    }
    let translation = gatehouse::translate::translate(&state, &options);
    print!(
        "{}",
        gatehouse::report::render(
            &translation.table,
            &translation.warnings,
            &errors,
            &translation.summary_list()
        )
    );
    let verdicts =
        gatehouse::translate::admission::verdicts(&translation, routing.admission_options());
    print!("{}", gatehouse::report::admission(&verdicts));
    let clean = errors.is_empty() && translation.warnings.is_empty();
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    cli.routing.warn_about_unenforced_protection();
    let source = cli
        .source
        .source(&cli.routing)
        .await
        .context("gatehouse could not start")?;
    let mut running = gatehouse::app::start(cli.config(source))
        .await
        .context("gatehouse could not start")?;
    let signal = tokio::select! {
        _ = running.wait() => anyhow::bail!("a gatehouse task stopped unexpectedly"),
        signal = shutdown_signal() => signal?,
    };
    tracing::info!("{signal} received");
    running.shutdown().await;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<&'static str> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        _ = term.recv() => Ok("SIGTERM"),
        result = tokio::signal::ctrl_c() => result.map(|()| "SIGINT").context("cannot listen for SIGINT"),
    }
}

/// The one ConfigMap of a manifest file (`routes --configmap-file`).
fn config_map_file(path: &std::path::Path) -> anyhow::Result<gatehouse::cluster::Object> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let objects = gatehouse::source::manifest::parse(&text)
        .with_context(|| format!("{} is not a manifest", path.display()))?;
    let mut maps = objects
        .into_iter()
        .filter(|o| matches!(o, gatehouse::cluster::Object::ConfigMap(_)));
    match (maps.next(), maps.next()) {
        (Some(map), None) => Ok(map),
        _ => anyhow::bail!("{} must hold exactly one ConfigMap", path.display()),
    }
}
