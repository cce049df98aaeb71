//! `ls-restore`: see `ls-restore -h`.

use std::process::ExitCode;

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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut stdout = std::io::stdout().lock();
    rt.block_on(cli::run(args, &mut stdout))?;
    Ok(())
}
