//! `ls-restore`: see `ls-restore -h`.

use std::process::ExitCode;

use ls_config::logfmt::{LogFormat, SlogFormat};
use restore::cli;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match run(&argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(argv: &[String]) -> anyhow::Result<()> {
    let args = cli::parse_args(argv)?;
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut stdout = std::io::stdout().lock();
    rt.block_on(cli::run(args, &mut stdout))?;
    Ok(())
}

/// Log lines (config warnings, follow-mode retries) go to stderr, so stdout keeps only what
/// Litestream prints there. `LOG_LEVEL` sets the level; by default only warnings, so stderr
/// otherwise holds just Litestream's `Error: ...` line.
fn init_logging() {
    let level = std::env::var("LOG_LEVEL")
        .ok()
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "warn".into());
    let filter = tracing_subscriber::EnvFilter::try_new(level.to_ascii_lowercase())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Fails only if a subscriber is already set, which then gets the lines.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(SlogFormat {
            format: LogFormat::Text,
            source: false,
        })
        .try_init();
}
