//! `orderflow`: the command-line face of the pipeline (CONTRACT §4).

mod checkpoint;
mod cli;
mod config;
mod kafka;
mod latency;
mod progress;
mod run;
mod serve;
mod sink;
mod source;
mod sql;

use std::io::IsTerminal;

fn main() -> std::process::ExitCode {
    let cli = match config::parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(error) => match error.downcast::<clap::Error>() {
            Ok(clap) => clap.exit(),
            Err(error) => {
                eprintln!("error: {}", describe(&error));
                return std::process::ExitCode::from(2);
            }
        },
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match cli.log_format {
        cli::LogFormat::Text => logs.init(),
        cli::LogFormat::Json => logs.json().init(),
    }
    let outcome = match cli.command {
        cli::Command::Run(args) => run::run(args),
        cli::Command::Replay(args) => run::replay(args),
        cli::Command::Gen(args) => source::gen::write(args),
        cli::Command::Sql(args) => sql::run(args),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: DataFusion's and Arrow's
/// errors carry their source's text inside their own (sometimes without
/// its `kind error: ` prefix), so `{:#}` would print the same message two
/// or three times.
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain().map(ToString::to_string) {
        let cause = cause.trim();
        let said = text.contains(cause)
            || cause
                .split_once(": ")
                .is_some_and(|(_, message)| message.len() >= 20 && text.contains(message));
        if !said {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::describe;
    use anyhow::anyhow;

    #[test]
    fn each_cause_is_said_once() {
        let repeated = anyhow!("No field named x").context("Schema error: No field named x");
        assert_eq!(describe(&repeated), "Schema error: No field named x");
        let prefixed = anyhow!("sql parser error: Expected: an expression, found: EOF")
            .context(r#"SQL error: ParserError("Expected: an expression, found: EOF")"#);
        assert_eq!(
            describe(&prefixed),
            r#"SQL error: ParserError("Expected: an expression, found: EOF")"#
        );
        let chained = anyhow!("connection refused").context("reading trades");
        assert_eq!(describe(&chained), "reading trades: connection refused");
    }
}
