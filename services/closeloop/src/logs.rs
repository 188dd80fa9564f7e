//! The log format flag shared by the `closeloop` and `closeloop-lab` command lines.

/// `--log-format` / `LOG_FORMAT`, for every subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log lines as JSON (for log shippers) instead of text.
    #[arg(long, env = "LOG_FORMAT", global = true, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogArgs {
    pub fn json(&self) -> bool {
        self.log_format == LogFormat::Json
    }
}
