//! Each platform's full build log in the build's history directory
//! ([`crate::history::BuildRecord::log_path`]): an observer of the events
//! ([`crate::progress::observe`]) that appends every `step` and `log`
//! line of a platform to its file, with a heading for each runner the
//! platform's job runs on (a moved platform's file holds both runners'
//! logs). A file that cannot be written is warned of once and left; the
//! build goes on (docs/progress.md#build-logs).

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use mab_config::Platform;

use crate::history::BuildRecord;
use crate::progress::{Event, Reporter};

/// The observer writing the build's log files.
pub struct BuildLogs {
    record: BuildRecord,
    files: Mutex<HashMap<Platform, File>>,
    /// The platforms whose job failed on some runner, in the order heard.
    failed: Mutex<Vec<(Platform, String)>>,
    /// Whether a write error was warned of already.
    warned: AtomicBool,
}

impl BuildLogs {
    /// Logs into `record`'s `logs/` directory.
    pub fn new(record: BuildRecord) -> BuildLogs {
        BuildLogs {
            record,
            files: Mutex::new(HashMap::new()),
            failed: Mutex::new(Vec::new()),
            warned: AtomicBool::new(false),
        }
    }

    /// The build's directory the logs are in, for the other observers of
    /// the same build (its HTML report).
    pub fn record(&self) -> &BuildRecord {
        &self.record
    }

    /// The log file of `platform`: `<build dir>/logs/linux-arm64.log`.
    pub fn path(&self, platform: &Platform) -> PathBuf {
        self.record.log_path(platform)
    }

    /// Each failed platform's runner (the last it failed on) and the path
    /// of its full log, for the failure report: `full log of linux/arm64
    /// (runner pi): /home/…/logs/linux-arm64.log`.
    pub fn failed_logs(&self) -> Vec<String> {
        let failed = self
            .failed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut lines: Vec<String> = Vec::new();
        for (index, (platform, runner)) in failed.iter().enumerate() {
            // A platform that failed on several runners: its last one.
            if failed[index + 1..]
                .iter()
                .any(|(later, _)| later == platform)
            {
                continue;
            }
            lines.push(format!(
                "full log of {platform} (runner {runner}): {}",
                self.path(platform).display()
            ));
        }
        lines
    }

    /// Appends `text` (lines ending in `\n`) to `platform`'s log file,
    /// opened on its first line.
    fn write(&self, platform: &Platform, text: &str) {
        let mut files = self
            .files
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let written = match files.get_mut(platform) {
            Some(file) => file.write_all(text.as_bytes()),
            None => File::options()
                .create(true)
                .append(true)
                .open(self.path(platform))
                .and_then(|mut file| {
                    file.write_all(text.as_bytes())?;
                    files.insert(platform.clone(), file);
                    Ok(())
                }),
        };
        drop(files);
        if let Err(error) = written {
            if !self.warned.swap(true, Ordering::SeqCst) {
                crate::progress::report(Event::Warning {
                    message: format!(
                        "cannot write the build log {}: {error}; the build goes on without its log files",
                        self.path(platform).display()
                    ),
                });
            }
        }
    }
}

impl Reporter for BuildLogs {
    fn report(&self, event: Event) {
        match event {
            Event::JobStarted {
                platform,
                runner,
                emulated,
            } => {
                let how = if emulated {
                    "emulated with QEMU"
                } else {
                    "native"
                };
                self.write(
                    &platform,
                    &format!("# {platform} on runner {runner} ({how})\n"),
                );
            }
            Event::Step {
                platform,
                step,
                cached,
                ..
            } => {
                let cached = if cached { " (cached)" } else { "" };
                self.write(&platform, &format!("# {step}{cached}\n"));
            }
            Event::Log { platform, line, .. } => self.write(&platform, &format!("{line}\n")),
            Event::JobFailed {
                platform,
                runner,
                message,
                ..
            } => {
                self.write(
                    &platform,
                    &format!("# FAILED on runner {runner}: {message}\n"),
                );
                self.failed
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push((platform, runner));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn each_platform_has_its_log_and_a_failed_one_names_its_file() {
        let state = tempfile::tempdir().unwrap();
        let record = BuildRecord::create(state.path(), SystemTime::now()).unwrap();
        let logs = BuildLogs::new(record.clone());
        let arm: Platform = "linux/arm64".parse().unwrap();
        let amd: Platform = "linux/amd64".parse().unwrap();
        let events = [
            Event::JobStarted {
                platform: arm.clone(),
                runner: "pi".into(),
                emulated: false,
            },
            Event::Step {
                platform: arm.clone(),
                runner: "pi".into(),
                step: "[1/2] RUN make".into(),
                cached: false,
            },
            Event::Log {
                platform: arm.clone(),
                runner: "pi".into(),
                line: "cc -O2 main.c".into(),
            },
            Event::Log {
                platform: amd.clone(),
                runner: "here".into(),
                line: "ok".into(),
            },
            Event::JobFailed {
                platform: arm.clone(),
                runner: "pi".into(),
                kind: mab_events::ErrorKind::Build,
                message: "exit code 2".into(),
            },
        ];
        for event in events {
            logs.report(event);
        }
        assert_eq!(
            std::fs::read_to_string(record.log_path(&arm)).unwrap(),
            "# linux/arm64 on runner pi (native)\n# [1/2] RUN make\ncc -O2 main.c\n# FAILED on runner pi: exit code 2\n"
        );
        assert_eq!(
            std::fs::read_to_string(record.log_path(&amd)).unwrap(),
            "ok\n"
        );
        assert_eq!(
            logs.failed_logs(),
            [format!(
                "full log of linux/arm64 (runner pi): {}",
                record.log_path(&arm).display()
            )]
        );
    }

    #[test]
    fn a_log_that_cannot_be_written_does_not_stop_the_others() {
        let state = tempfile::tempdir().unwrap();
        let record = BuildRecord::create(state.path(), SystemTime::now()).unwrap();
        std::fs::remove_dir_all(record.dir()).unwrap();
        let logs = BuildLogs::new(record);
        // No directory: each write fails, quietly after the first warning.
        for _ in 0..2 {
            logs.report(Event::Log {
                platform: "linux/amd64".parse().unwrap(),
                runner: "here".into(),
                line: "ok".into(),
            });
        }
        assert!(logs.warned.load(Ordering::SeqCst));
    }
}
