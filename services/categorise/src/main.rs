use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    closeloop_telemetry::init_tracing(std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json"));
    let config = closeloop_categorise::Config::parse();
    let service = closeloop_categorise::Service::build(config).await?;
    service
        .run_until_stopped(closeloop_telemetry::shutdown_on_signals())
        .await?;
    Ok(())
}
