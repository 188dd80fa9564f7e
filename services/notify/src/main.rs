//! The notify process: configuration from flags and environment, then the service
//! until SIGTERM / Ctrl-C.

use clap::Parser;
use closeloop_notify::{Config, Service};
use closeloop_telemetry::{init_tracing, shutdown_on_signals};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    init_tracing(json);
    let config = Config::parse();
    let service = Service::build(config).await?;
    service.run_until_stopped(shutdown_on_signals()).await?;
    Ok(())
}
