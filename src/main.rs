use clap::Parser;

/// Exit codes: 0 done, 1 an error, 2 a usage error (clap's), 3 the daemon is not running
/// (as an LSB init script's `status` says for a stopped service).
fn main() -> std::process::ExitCode {
    let cli = mcgate::cli::Cli::parse();
    match mcgate::cli::main(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcgate: {e:#}");
            if e.downcast_ref::<mcgate::daemon::control::NotRunning>().is_some() {
                std::process::ExitCode::from(3)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}
