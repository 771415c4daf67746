//! `orderflow`: the command-line face of the pipeline (CONTRACT §4).

mod cli;
mod kafka;
mod progress;
mod run;
mod sink;
mod source;
mod sql;

use clap::Parser;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let outcome = match cli::Cli::parse().command {
        cli::Command::Run(args) => run::run(args),
        cli::Command::Gen(args) => source::gen::write(args),
        cli::Command::Sql(args) => sql::run(args),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
