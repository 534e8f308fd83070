//! Progress on stderr: what the build is doing, per platform.
//!
//! The orchestration reports [`Event`]s through the [`Reporter`] trait;
//! this module renders them as indicatif bars on a terminal, one plain line
//! per event in CI logs (`--progress plain`), or one JSON object per event.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::cli::Progress;

/// Something worth telling the user while a build runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A line about the build as a whole.
    Note {
        message: String,
    },
    Warning {
        message: String,
    },
    Started {
        platform: String,
        runner: String,
        emulated: bool,
    },
    Step {
        platform: String,
        runner: String,
        step: String,
    },
    Log {
        platform: String,
        runner: String,
        line: String,
    },
    Pushed {
        platform: String,
        runner: String,
        digest: String,
    },
    Done {
        platform: String,
        runner: String,
        seconds: f64,
    },
    Failed {
        platform: String,
        runner: String,
        message: String,
    },
}

pub trait Reporter: Send + Sync {
    fn report(&self, event: Event);
}

/// The reporter `--progress` asks for.
pub fn reporter(mode: Progress, stderr_is_terminal: bool) -> Box<dyn Reporter> {
    match mode {
        // indicatif draws nothing where stderr is not a terminal.
        Progress::Tty | Progress::Auto if stderr_is_terminal => Box::new(Bars::new()),
        Progress::Tty | Progress::Auto | Progress::Plain => Box::new(Lines),
        Progress::Json => Box::new(JsonLines),
    }
}

/// One line per event, prefixed with platform and runner.
pub struct Lines;

impl Lines {
    fn line(event: &Event) -> String {
        match event {
            Event::Note { message } => message.clone(),
            Event::Warning { message } => format!("warning: {message}"),
            Event::Started {
                platform,
                runner,
                emulated,
            } => {
                let how = if *emulated {
                    "emulated with QEMU"
                } else {
                    "native"
                };
                format!("[{platform} {runner}] started ({how})")
            }
            Event::Step {
                platform,
                runner,
                step,
            } => format!("[{platform} {runner}] {step}"),
            Event::Log {
                platform,
                runner,
                line,
            } => format!("[{platform} {runner}] | {line}"),
            Event::Pushed {
                platform,
                runner,
                digest,
            } => format!("[{platform} {runner}] pushed {digest}"),
            Event::Done {
                platform,
                runner,
                seconds,
            } => format!("[{platform} {runner}] done in {seconds:.1}s"),
            Event::Failed {
                platform,
                runner,
                message,
            } => format!("[{platform} {runner}] FAILED: {message}"),
        }
    }
}

impl Reporter for Lines {
    fn report(&self, event: Event) {
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{}", Lines::line(&event));
    }
}

/// One JSON object per line.
pub struct JsonLines;

impl Reporter for JsonLines {
    fn report(&self, event: Event) {
        if let Ok(line) = serde_json::to_string(&event) {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "{line}");
        }
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

    fn bar(&self, platform: &str, runner: &str) -> ProgressBar {
        let mut bars = self
            .bars
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        bars.entry(platform.to_owned())
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
            Event::Note { .. } | Event::Warning { .. } => {
                let _ = self.multi.println(Lines::line(&event));
            }
            Event::Started {
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
            Event::Log { .. } => {}
            Event::Pushed {
                platform,
                runner,
                digest,
            } => {
                self.bar(platform, runner)
                    .set_message(format!("pushed {digest}"));
            }
            Event::Done {
                platform,
                runner,
                seconds,
            } => {
                self.bar(platform, runner)
                    .finish_with_message(format!("done in {seconds:.1}s"));
            }
            Event::Failed {
                platform,
                runner,
                message,
            } => {
                self.bar(platform, runner)
                    .abandon_with_message(format!("FAILED: {message}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_name_platform_and_runner() {
        let started = Event::Started {
            platform: "linux/arm64".into(),
            runner: "runner-a".into(),
            emulated: true,
        };
        assert_eq!(
            Lines::line(&started),
            "[linux/arm64 runner-a] started (emulated with QEMU)"
        );
        let failed = Event::Failed {
            platform: "linux/ppc64le".into(),
            runner: "runner-b".into(),
            message: "exit code 1".into(),
        };
        assert_eq!(
            Lines::line(&failed),
            "[linux/ppc64le runner-b] FAILED: exit code 1"
        );
    }

    #[test]
    fn json_events_carry_their_kind() {
        let event = Event::Done {
            platform: "linux/amd64".into(),
            runner: "local".into(),
            seconds: 1.5,
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["event"], "done");
        assert_eq!(json["seconds"], 1.5);
    }
}
