//! The `mab` command: thin clap commands over the library crates.
//!
//! - [`cli`]: the flags; [`ops`]: what each command does;
//! - [`progress`]: rendering what the build reports on stderr;
//! - [`failure`]: the error report and exit code of a failed command;
//! - [`logging`]: the libraries' log lines, as progress events.
//!
//! Data goes to stdout, progress and logs to stderr.

pub mod build_log;
pub mod cli;
pub mod environment;
pub mod failure;
pub mod git;
pub mod github;
pub mod history;
pub mod logging;
pub mod ops;
pub mod progress;
pub mod report;

use std::io::Write;
use std::sync::Arc;

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
    logging::install(environment.log_level.as_deref());
    // The commands that report progress; the others print their report
    // (and library warnings) as plain lines.
    let terminal = progress::Terminal {
        verbose: cli.verbose,
        quiet: cli.quiet,
        color: cli
            .color
            .enabled(environment.stderr_is_terminal, environment.no_color),
        groups: environment.github_actions && matches!(&cli.command, Command::Build(_)),
    };
    terminal.apply_color();
    let renderer = match &cli.command {
        Command::Build(args) => Some(progress::renderer(
            args.progress,
            environment.stderr_is_terminal,
            terminal,
        )),
        Command::Plan(_) => Some(progress::renderer(Progress::Plain, false, terminal)),
        // `-q` silences the others' warnings too.
        _ if terminal.quiet => Some(progress::renderer(Progress::Plain, false, terminal)),
        _ => None,
    };
    if let Some(renderer) = &renderer {
        progress::activate(renderer.clone());
    }
    let no_push = matches!(&cli.command, Command::Build(args) if args.no_push);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let failure = Failure::new(
                FailureKind::Runtime,
                &format!("cannot start the async runtime: {error}"),
                Vec::new(),
                &[],
            );
            return finish(renderer.as_deref(), no_push, Err(failure));
        }
    };
    // Only `mab build` ends through its failure path on a signal
    // (writing its metadata); the other commands stop at once.
    let stops_gracefully = matches!(&cli.command, Command::Build(_));
    let control = ops::publishing::BuildControl::default();
    let result = runtime.block_on(async {
        let command = run(cli, &environment, renderer.clone(), &control);
        tokio::pin!(command);
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        // Whether a signal already asked to stop during the publish.
        let mut asked = false;
        // The stop the build was asked for, and until when it may take.
        let mut stopping: Option<(FailureKind, tokio::time::Instant)> = None;
        loop {
            let grace = async {
                match stopping {
                    Some((_, until)) => tokio::time::sleep_until(until).await,
                    None => std::future::pending().await,
                }
            };
            let signal = tokio::select! {
                result = &mut command => break result,
                () = grace => {
                    let kind = stopping.map_or(FailureKind::Interrupted, |(kind, _)| kind);
                    break Err(stopped(&control, kind));
                }
                _ = tokio::signal::ctrl_c() => FailureKind::Interrupted,
                Some(()) = async {
                    match terminate.as_mut() {
                        Some(terminate) => terminate.recv().await,
                        None => std::future::pending().await,
                    }
                } => FailureKind::Terminated,
            };
            if stopping.is_some() {
                // A second Ctrl-C while the build stops: stop at once.
                if signal == FailureKind::Interrupted {
                    break Err(stopped(&control, signal));
                }
                continue;
            }
            if !stops_gracefully {
                break Err(Failure::stopped(signal));
            }
            // Ask the build to stop, so that it writes what it pushed for
            // a resume; refused while the list is published.
            if control.request_stop(signal) {
                stopping = Some((signal, tokio::time::Instant::now() + STOP_GRACE));
                continue;
            }
            // A second Ctrl-C is the user insisting: stop at once.
            if asked && signal == FailureKind::Interrupted {
                break Err(Failure::stopped_while_publishing());
            }
            asked = true;
            // Leave the registry consistent: the list and its tags are
            // being pushed; let that finish.
            progress::report(progress::Event::Warning {
                message: "interrupted while publishing; finishing the publish first (Ctrl-C again stops at once)".to_owned(),
            });
        }
    });
    // Jobs dropped midway (a time limit, a signal) left the removal of
    // their smoke-test containers to tasks: let them end first.
    // Podman builds dropped midway left stopping them on their hosts
    // (their commands, their steps' processes) to tasks too: both are
    // waited for at once.
    let (removals, cleanups) = runtime.block_on(async {
        tokio::join!(
            mab_engine::finish_removals(REMOVAL_LIMIT),
            mab_engine::finish_cleanups(REMOVAL_LIMIT)
        )
    });
    let left = removals.iter().map(mab_engine::LeftContainer::warning);
    for message in left.chain(cleanups) {
        progress::report(progress::Event::Warning { message });
    }
    // The command's end is told first: the shutdown below waits for
    // blocking work still running (a runner's host name being resolved
    // by a connection started before a usage error was found), which
    // must not hold the error back.
    let exit_code = finish(renderer.as_deref(), no_push, result);
    progress::end();
    // Dropping the runtime closes every connection, which makes the engines
    // stop any build still running.
    runtime.shutdown_timeout(SHUTDOWN_LIMIT);
    exit_code
}

/// How long mab waits, once its command ended and was told, for blocking
/// work left running (a host name lookup, a credential helper) before it
/// exits.
const SHUTDOWN_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long the removals of smoke-test containers that jobs dropped
/// midway left to tasks may take, in all, before mab exits
/// ([`mab_engine::finish_removals`]), and the clean-ups of Podman builds
/// dropped midway ([`mab_engine::finish_cleanups`]), waited for at once;
/// those not done then are warnings.
const REMOVAL_LIMIT: std::time::Duration = std::time::Duration::from_secs(15);

/// A build stopped by `kind` without waiting for it to end: before or
/// after its list was published.
fn stopped(control: &ops::publishing::BuildControl, kind: FailureKind) -> Failure {
    match control.published() {
        true => Failure::stopped_after_publish(kind),
        false => Failure::stopped(kind),
    }
}

/// How long a build asked to stop by a signal may take to end (its jobs
/// dropped, its metadata written) before it is dropped as it is.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// What a command that ended well produced.
#[derive(Debug, Default)]
pub struct Done {
    /// For stdout.
    pub stdout: String,
    /// The digest of the manifest list `mab build` published.
    pub digest: Option<String>,
}

impl From<String> for Done {
    fn from(stdout: String) -> Done {
        Done {
            stdout,
            ..Done::default()
        }
    }
}

/// Ends the command: its stdout, then (with a renderer) the `result`
/// event, the last one, then a failure's report as text unless the
/// renderer holds it (`--progress json`); returns the exit code.
/// `no_push`: the command is `mab build --no-push`.
fn finish(
    renderer: Option<&progress::Renderer>,
    no_push: bool,
    result: Result<Done, Failure>,
) -> i32 {
    let (stdout, outcome, report) = ending(no_push, result);
    let exit_code = i32::from(outcome.exit_code);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(stdout.as_bytes());
    let _ = out.flush();
    let prints_report = match renderer {
        Some(renderer) => {
            renderer.report(progress::Event::Result(outcome));
            progress::deactivate();
            renderer.prints_reports()
        }
        None => true,
    };
    if let Some(report) = report.filter(|_| prints_report) {
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{}", progress::paint_report(&report));
    }
    // After mab's last line: observers that end their output when dropped
    // (GitHub Actions resumes its workflow commands) do so now.
    progress::forget_observers();
    exit_code
}

/// What a command's `result` leaves: its stdout, the outcome of the
/// `result` event, and a failure's report as text.
fn ending(
    no_push: bool,
    result: Result<Done, Failure>,
) -> (String, mab_events::Outcome, Option<String>) {
    match result {
        Ok(done) => (
            done.stdout,
            mab_events::Outcome {
                exit_code: 0,
                digest: done.digest,
                no_push,
                error: None,
            },
            None,
        ),
        Err(failure) => (
            failure.stdout,
            mab_events::Outcome {
                exit_code: failure.kind.exit_code(),
                digest: failure.digest,
                no_push,
                error: Some(*failure.error),
            },
            Some(failure.report),
        ),
    }
}

async fn run(
    cli: Cli,
    environment: &Environment,
    renderer: Option<Arc<progress::Renderer>>,
    control: &ops::publishing::BuildControl,
) -> Result<Done, Failure> {
    let reporter: Arc<dyn Reporter> = match renderer {
        Some(renderer) => renderer,
        None => Arc::new(progress::Lines),
    };
    let done = match cli.command {
        Command::Build(args) => {
            let built = ops::build::build(&args, environment, &reporter, control).await?;
            return Ok(Done {
                stdout: built.stdout(),
                digest: built.digest,
            });
        }
        Command::Plan(args) => ops::plan::plan(&args, environment, &reporter).await,
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
            } => {
                ops::runners::check(
                    &names,
                    runners.as_deref(),
                    format,
                    cli.verbose,
                    environment,
                    &reporter,
                )
                .await
            }
        },
        Command::Init(args) => {
            let directory = environment.start_dir(args.directory.as_deref());
            ops::init::init(&directory, args.image.as_deref(), &args.platforms)
        }
        Command::Inspect {
            reference,
            format,
            raw,
        } => ops::inspect::inspect(&reference, format, raw, environment, &reporter).await,
        Command::Completions { shell } => Ok(ops::manual::completions(shell)),
        Command::Man { dir } => ops::manual::man(dir.as_deref()),
    };
    done.map(Done::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_event_holds_the_exit_code_the_digest_and_the_report() {
        let published = Done {
            stdout: "127.0.0.1:5000/app@sha256:ab\n".to_owned(),
            digest: Some("sha256:ab".to_owned()),
        };
        let (stdout, outcome, report) = ending(false, Ok(published));
        assert_eq!(stdout, "127.0.0.1:5000/app@sha256:ab\n");
        assert_eq!(
            outcome,
            mab_events::Outcome {
                exit_code: 0,
                digest: Some("sha256:ab".to_owned()),
                no_push: false,
                error: None,
            }
        );
        assert_eq!(report, None);

        let failed = Failure::runtime_with_details(
            "build failed for linux/arm64 (runner pi); nothing was published",
            &["fix the Dockerfile"],
            &["linux/arm64 on pi: exit code 1".to_owned()],
        );
        let (stdout, outcome, report) = ending(true, Err(failed));
        assert_eq!(stdout, "");
        assert_eq!(
            outcome,
            mab_events::Outcome {
                exit_code: 1,
                digest: None,
                no_push: true,
                error: Some(mab_events::OutcomeError {
                    message: "build failed for linux/arm64 (runner pi); nothing was published"
                        .to_owned(),
                    hints: vec!["fix the Dockerfile".to_owned()],
                    details: vec!["linux/arm64 on pi: exit code 1".to_owned()],
                }),
            }
        );
        assert_eq!(
            report.as_deref(),
            Some("error: build failed for linux/arm64 (runner pi); nothing was published\n  | linux/arm64 on pi: exit code 1\nhint: fix the Dockerfile")
        );

        let (_, outcome, _) = ending(false, Err(Failure::stopped(FailureKind::Terminated)));
        assert_eq!(outcome.exit_code, 143);
        assert_eq!(
            outcome.error.unwrap().message,
            "terminated; nothing was published"
        );
    }
}
