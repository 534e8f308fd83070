//! Progress on stderr: what the build is doing, per platform.
//!
//! The orchestration and the libraries report typed [`Event`]s (crate
//! `mab-events`) through the [`Reporter`] trait; this module only renders
//! them: indicatif bars on a terminal, one plain line per event in CI logs
//! (`--progress plain`), or one JSON object per line (`--progress json`,
//! [`mab_events::json_line`]).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cli::Progress;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

pub use mab_events::{Event, Reporter};

/// The reporter `--progress` asks for, shared with the engines, which
/// report their retries for as long as they live.
pub fn reporter(mode: Progress, stderr_is_terminal: bool) -> Arc<dyn Reporter> {
    match mode {
        // indicatif draws nothing where stderr is not a terminal.
        Progress::Tty | Progress::Auto if stderr_is_terminal => Arc::new(Bars::new()),
        Progress::Tty | Progress::Auto | Progress::Plain => Arc::new(Lines),
        Progress::Json => Arc::new(JsonLines),
    }
}

/// One line per event, prefixed with platform and runner.
pub struct Lines;

impl Lines {
    /// The line for `event`; `None` for events a plain log leaves out.
    fn line(event: &Event) -> Option<String> {
        let at = |platform: &mab_config::Platform, runner: &str| format!("[{platform} {runner}]");
        Some(match event {
            Event::Plan {
                image,
                context_files,
                jobs,
            } => {
                let mut lines: Vec<String> = jobs
                    .iter()
                    .map(|job| format!("{} -> {}: {}", job.platform, job.runner, job.reason))
                    .collect();
                lines.push(format!(
                    "building {image} for {} platform(s) from {context_files} file(s)",
                    jobs.len()
                ));
                lines.join("\n")
            }
            Event::JobStarted {
                platform,
                runner,
                emulated,
            } => {
                let how = if *emulated {
                    "emulated with QEMU"
                } else {
                    "native"
                };
                format!("{} started ({how})", at(platform, runner))
            }
            Event::PhaseStarted { .. } => return None,
            Event::PhaseFinished {
                platform,
                runner,
                phase,
                seconds,
                bytes,
            } => {
                let phase = match phase {
                    mab_events::Phase::Build => "build",
                    mab_events::Phase::Push => "push",
                    mab_events::Phase::Verify => "verify",
                };
                let bytes = bytes.map_or_else(String::new, |bytes| format!(", {bytes} bytes"));
                format!("{} {phase} done in {seconds:.1}s{bytes}", at(platform, runner))
            }
            Event::Step {
                platform,
                runner,
                step,
            } => format!("{} {step}", at(platform, runner)),
            Event::Log {
                platform,
                runner,
                line,
            } => format!("{} | {line}", at(platform, runner)),
            Event::Pushed {
                platform,
                runner,
                digest,
            } => format!("{} pushed {digest}", at(platform, runner)),
            Event::JobFinished {
                platform,
                runner,
                seconds,
            } => format!("{} done in {seconds:.1}s", at(platform, runner)),
            Event::JobFailed {
                platform,
                runner,
                message,
                ..
            } => format!("{} FAILED: {message}", at(platform, runner)),
            Event::Retry {
                target,
                request,
                attempt,
                tries,
                delay_ms,
                error,
            } => {
                let target = match target {
                    mab_events::RetryTarget::Registry { registry } => registry.clone(),
                    mab_events::RetryTarget::Ssh { runner } => format!("sshd of runner `{runner}`"),
                    mab_events::RetryTarget::Engine { runner } => {
                        format!("engine of runner `{runner}`")
                    }
                };
                format!(
                    "warning: {target}: {request} failed (try {attempt} of {tries}): {error}; retrying in {delay_ms} ms"
                )
            }
            Event::Moved {
                platform,
                from,
                to,
                emulated,
                reason,
            } => {
                let how = if *emulated { "emulated" } else { "native" };
                format!("warning: {platform} moved from runner `{from}` to runner `{to}` ({how}): {reason}")
            }
            Event::Published {
                image,
                digest,
                tags,
            } => format!("published {image}@{digest} as {}", tags.join(", ")),
            Event::StagingTagsLeft { image, tags } => format!(
                "staging tag(s) {} remain in {image}: the registry did not delete them (see docs/publishing.md)",
                tags.join(", ")
            ),
            Event::Warning { message } => format!("warning: {message}"),
            Event::Diagnostic { level, message } => format!("{level}: {message}"),
            Event::Result(outcome) => match (&outcome.digest, &outcome.error) {
                (None, None) => "built and verified every platform; nothing was pushed (--no-push)"
                    .to_owned(),
                // The digest is on stdout; a failure's report follows.
                _ => return None,
            },
        })
    }
}

impl Reporter for Lines {
    fn report(&self, event: Event) {
        if let Some(line) = Lines::line(&event) {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "{line}");
        }
    }
}

/// One JSON object per line, with `"schema": 1`.
pub struct JsonLines;

impl Reporter for JsonLines {
    fn report(&self, event: Event) {
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{}", mab_events::json_line(&event));
    }
}

/// A spinner per platform showing its runner, current step and elapsed time.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    fn new() -> Bars {
        Bars {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn bar(&self, platform: &mab_config::Platform, runner: &str) -> ProgressBar {
        let mut bars = self
            .bars
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        bars.entry(platform.to_string())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {prefix:<16} [{elapsed:>4}] {wide_msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(format!("{platform} {runner}"));
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            })
            .clone()
    }
}

impl Reporter for Bars {
    fn report(&self, event: Event) {
        match &event {
            Event::JobStarted {
                platform,
                runner,
                emulated,
            } => {
                let how = if *emulated {
                    "starting (emulated)"
                } else {
                    "starting"
                };
                self.bar(platform, runner).set_message(how.to_owned());
            }
            Event::Step {
                platform,
                runner,
                step,
            } => self.bar(platform, runner).set_message(step.clone()),
            Event::Log { .. } | Event::PhaseStarted { .. } | Event::PhaseFinished { .. } => {}
            Event::Pushed {
                platform,
                runner,
                digest,
            } => {
                self.bar(platform, runner)
                    .set_message(format!("pushed {digest}"));
            }
            Event::JobFinished {
                platform,
                runner,
                seconds,
            } => {
                self.bar(platform, runner)
                    .finish_with_message(format!("done in {seconds:.1}s"));
            }
            Event::JobFailed {
                platform,
                runner,
                message,
                ..
            } => {
                self.bar(platform, runner)
                    .abandon_with_message(format!("FAILED: {message}"));
            }
            _ => {
                if let Some(line) = Lines::line(&event) {
                    let _ = self.multi.println(line);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_name_platform_and_runner() {
        let platform = |text: &str| text.parse::<mab_config::Platform>().unwrap();
        let cases = [
            (
                Event::JobStarted {
                    platform: platform("linux/arm64"),
                    runner: "runner-a".into(),
                    emulated: true,
                },
                Some("[linux/arm64 runner-a] started (emulated with QEMU)"),
            ),
            (
                Event::JobFailed {
                    platform: platform("linux/ppc64le"),
                    runner: "runner-b".into(),
                    kind: mab_events::ErrorKind::Build,
                    message: "exit code 1".into(),
                },
                Some("[linux/ppc64le runner-b] FAILED: exit code 1"),
            ),
            (
                Event::Moved {
                    platform: platform("linux/arm64"),
                    from: "a".into(),
                    to: "b".into(),
                    emulated: false,
                    reason: "connection refused".into(),
                },
                Some("warning: linux/arm64 moved from runner `a` to runner `b` (native): connection refused"),
            ),
            (
                Event::PhaseStarted {
                    platform: platform("linux/amd64"),
                    runner: "local".into(),
                    phase: mab_events::Phase::Push,
                },
                None,
            ),
        ];
        for (event, expected) in cases {
            assert_eq!(Lines::line(&event).as_deref(), expected, "{event:?}");
        }
    }
}
