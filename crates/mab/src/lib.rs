//! The `mab` command: thin clap commands over the library crates.
//!
//! - [`cli`]: the flags; [`ops`]: what each command does;
//! - [`progress`]: rendering what the build reports on stderr;
//! - [`failure`]: the error report and exit code of a failed command.
//!
//! Data goes to stdout, progress and logs to stderr.

pub mod cli;
pub mod environment;
pub mod failure;
pub mod git;
pub mod ops;
pub mod progress;

use std::io::Write;

use clap::Parser;

use crate::cli::{Cli, Command, Progress, RunnersCommand};
use crate::environment::Environment;
use crate::failure::{Failure, FailureKind};
use crate::progress::Reporter;

/// Runs mab with the process's arguments and environment; returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                i32::from(failure::FailureKind::Usage.exit_code())
            } else {
                0
            };
        }
    };
    let environment = Environment::from_process();
    install_logging(environment.log_level.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "error: cannot start the async runtime: {error}");
            return i32::from(failure::FailureKind::Runtime.exit_code());
        }
    };
    let publishing = ops::publishing::Publishing::default();
    let result = runtime.block_on(async {
        let command = run(cli, &environment, &publishing);
        tokio::pin!(command);
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        loop {
            let signal = tokio::select! {
                result = &mut command => break result,
                _ = tokio::signal::ctrl_c() => FailureKind::Interrupted,
                Some(()) = async {
                    match terminate.as_mut() {
                        Some(terminate) => terminate.recv().await,
                        None => std::future::pending().await,
                    }
                } => FailureKind::Terminated,
            };
            if !publishing.in_progress() {
                break Err(Failure::stopped(signal));
            }
            // Leave the registry consistent: the list and its tags are
            // being pushed; let that finish.
            progress::Lines.report(progress::Event::Warning {
                message: "interrupted while publishing; finishing the publish first".to_owned(),
            });
        }
    });
    // Dropping the runtime closes every connection, which makes the engines
    // stop any build still running.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(output) => {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(output.as_bytes());
            0
        }
        Err(failure) => {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(failure.stdout.as_bytes());
            let _ = stdout.flush();
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "{}", failure.report);
            i32::from(failure.kind.exit_code())
        }
    }
}

/// Warnings from the library crates (a host key learnt with `accept-new`, a
/// build response cut short, a registry request retried) go to stderr as
/// `warning: …` lines; `MAB_LOG` (`error`, `warn`, `info`, `debug`,
/// `trace`) shows more or less.
fn install_logging(level: Option<&str>) {
    let level = level
        .and_then(|level| {
            level
                .parse::<tracing_subscriber::filter::LevelFilter>()
                .ok()
        })
        .unwrap_or(tracing_subscriber::filter::LevelFilter::WARN);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .event_format(LevelLines)
        .try_init();
}

/// A log event as one `level: message` line (`warning: …`, `error: …`,
/// `debug: …`), the way mab's own messages are written.
struct LevelLines;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for LevelLines
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use tracing_subscriber::fmt::FormatFields as _;
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "trace",
        };
        write!(writer, "{level}: ")?;
        context.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

async fn run(
    cli: Cli,
    environment: &Environment,
    publishing: &ops::publishing::Publishing,
) -> Result<String, Failure> {
    match cli.command {
        Command::Build(args) => {
            let reporter = progress::reporter(args.progress, environment.stderr_is_terminal);
            ops::build::build(&args, environment, &reporter, publishing).await
        }
        Command::Plan(args) => {
            let reporter = progress::reporter(Progress::Plain, false);
            ops::plan::plan(&args, environment, &reporter).await
        }
        Command::Runners { command } => match command {
            RunnersCommand::List { runners, format } => {
                ops::runners::list(runners.as_deref(), format, environment)
            }
            RunnersCommand::Add(args) => ops::runners::add(&args, environment),
            RunnersCommand::Remove { name, runners } => {
                ops::runners::remove(&name, runners.as_deref(), environment)
            }
            RunnersCommand::Check {
                names,
                runners,
                format,
            } => ops::runners::check(&names, runners.as_deref(), format, environment).await,
        },
        Command::Init(args) => {
            let directory = match &args.directory {
                Some(directory) => environment.current_dir.join(directory),
                None => environment.current_dir.clone(),
            };
            ops::init::init(&directory, args.image.as_deref(), &args.platforms)
        }
        Command::Inspect { reference } => ops::inspect::inspect(&reference, environment).await,
    }
}
