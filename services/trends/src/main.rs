//! `trends` as its own process: configuration from flags and environment, logs, and the
//! service until SIGTERM / Ctrl-C.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    closeloop_telemetry::init_tracing(
        std::env::var("LOG_FORMAT").is_ok_and(|format| format == "json"),
    );
    let config = closeloop_trends::Config::parse();
    let service = closeloop_trends::Service::build(config).await?;
    service
        .run_until_stopped(closeloop_telemetry::shutdown_on_signals())
        .await?;
    Ok(())
}
