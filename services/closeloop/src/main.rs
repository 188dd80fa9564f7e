use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// closeloop closes the customer feedback loop: feedback in, themes found, actions
/// raised, customers told "you said, we did".
#[derive(Parser)]
#[command(name = "closeloop", version)]
struct Cli {
    #[command(flatten)]
    logs: closeloop::logs::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole loop in one process: embedded broker, SQLite, all four services.
    Up(closeloop::up::UpArgs),
    /// Play realistic feedback through the loop and watch it close.
    Demo(closeloop::demo::DemoArgs),
    /// Run the ingest service (production: external Kafka and PostgreSQL).
    Ingest(closeloop_ingest::Config),
    /// Run the categorise service.
    Categorise(closeloop_categorise::Config),
    /// Run the trends service.
    Trends(closeloop_trends::Config),
    /// Run the notify service.
    Notify(closeloop_notify::Config),
    /// Classify JSON lines from stdin ({"id", "text", "lang"?, "rating"?, "nps"?}) to JSON lines on stdout.
    Classify(closeloop::classify_cmd::ClassifyArgs),
    /// Import feedback history from a CSV or JSON-lines export through ingest's batch API.
    Import(closeloop::import::ImportArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let json = cli.logs.json();
    if matches!(cli.command, Command::Classify(_)) {
        // Its results go to stdout and it logs nothing: no log lines to mix into it.
    } else if matches!(cli.command, Command::Demo(_) | Command::Import(_))
        && std::env::var_os("RUST_LOG").is_none()
    {
        // The demo and the import tell their own story on stdout; logs only when
        // something is wrong.
        closeloop_telemetry::init_tracing_with(json, "warn");
    } else {
        closeloop_telemetry::init_tracing(json);
    }
    let shutdown = closeloop_telemetry::shutdown_on_signals();
    let outcome = run(cli.command, shutdown).await;
    closeloop_telemetry::shutdown_tracing();
    outcome
}

async fn run(command: Command, shutdown: CancellationToken) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => closeloop::up::run(args, shutdown).await?,
        Command::Demo(args) => closeloop::demo::run(args, shutdown).await?,
        Command::Ingest(config) => {
            closeloop_ingest::Service::build(config)
                .await?
                .run_until_stopped(shutdown)
                .await?
        }
        Command::Categorise(config) => {
            closeloop_categorise::Service::build(config)
                .await?
                .run_until_stopped(shutdown)
                .await?
        }
        Command::Trends(config) => {
            closeloop_trends::Service::build(config)
                .await?
                .run_until_stopped(shutdown)
                .await?
        }
        Command::Notify(config) => {
            closeloop_notify::Service::build(config)
                .await?
                .run_until_stopped(shutdown)
                .await?
        }
        Command::Classify(args) => closeloop::classify_cmd::run(args, shutdown).await?,
        Command::Import(args) => {
            closeloop::import::run(args, shutdown).await?;
        }
    }
    Ok(())
}
