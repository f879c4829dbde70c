use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = mcgate::cli::Cli::parse();
    match mcgate::cli::main(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
