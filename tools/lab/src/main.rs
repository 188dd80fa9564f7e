//! `closeloop-lab`: the tools beside the product — benchmarks and quality evaluations. They
//! drive the product's own library (`closeloop`), but ship in their own binary, so the
//! release image carries neither their load generators nor the archive readers that
//! fetch third-party evaluation data.

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

mod bench;
mod eval;

#[derive(Parser)]
#[command(name = "closeloop-lab", version)]
struct Cli {
    #[command(flatten)]
    logs: closeloop::logs::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure throughput, latency and memory; prints a table.
    Bench(bench::BenchArgs),
    /// Measure classification and trend detection quality; prints tables.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// The product's `closeloop up`, run by the bench as the child process it measures.
    #[command(hide = true)]
    Up(closeloop::up::UpArgs),
    /// The product's `closeloop import`, run by the bench as the child process whose
    /// memory it measures; ends with a line of figures for the bench.
    #[command(hide = true)]
    Import(Box<closeloop::import::ImportArgs>),
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Sentiment, language and themes on third-party and own labelled data, compared with VADER.
    Classify(eval::classify::EvalClassifyArgs),
    /// Trend detection on generated scenarios: precision, recall and time-to-detect.
    Trends(eval::trends::EvalArgs),
    /// Emerging topics on generated feedback: time until a new topic is listed, precision.
    Topics(eval::topics::EvalArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let json = cli.logs.json();
    match cli.command {
        // Their results go to stdout and they log nothing: no log lines to mix into it.
        Command::Eval(_) => {}
        // The bench prints its own table; logs only when something is wrong.
        Command::Bench(_) | Command::Import(_) if std::env::var_os("RUST_LOG").is_none() => {
            closeloop_telemetry::init_tracing_with(json, "warn")
        }
        _ => closeloop_telemetry::init_tracing(json),
    }
    let shutdown = closeloop_telemetry::shutdown_on_signals();
    let outcome = run(cli.command, shutdown).await;
    closeloop_telemetry::shutdown_tracing();
    outcome
}

async fn run(command: Command, shutdown: CancellationToken) -> anyhow::Result<()> {
    match command {
        Command::Bench(args) => bench::run(args, shutdown).await?,
        Command::Eval(EvalCommand::Classify(args)) => eval::classify::run(args, shutdown).await?,
        Command::Eval(EvalCommand::Trends(args)) => eval::trends::run(&args)?,
        Command::Eval(EvalCommand::Topics(args)) => eval::topics::run(&args)?,
        Command::Up(args) => closeloop::up::run(args, shutdown).await?,
        Command::Import(args) => {
            let summary = closeloop::import::run(*args, shutdown).await?;
            println!("{}", bench::import_report(&summary));
        }
    }
    Ok(())
}
