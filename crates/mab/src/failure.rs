//! How a command fails: the report the user reads, and the kind of failure,
//! whose exit code PRODUCT.md gives ([`FailureKind::exit_code`], the one
//! place where an exit code is chosen).

use std::fmt::Write as _;

/// What kind of failure a command ended in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Bad usage or configuration, found before anything was built.
    Usage,
    /// Something failed while running: a host, an engine, a build, a push,
    /// a publish.
    Runtime,
    /// Interrupted (Ctrl-C, SIGINT).
    Interrupted,
    /// Asked to stop (SIGTERM, as `kill` and CI runners send it).
    Terminated,
}

impl FailureKind {
    /// The process exit code (PRODUCT.md): 2 usage, 1 runtime, 130
    /// interrupted, 143 on SIGTERM (128 + the signal's number, as shells
    /// report them).
    pub fn exit_code(self) -> u8 {
        match self {
            FailureKind::Usage => 2,
            FailureKind::Runtime => 1,
            FailureKind::Interrupted => 130,
            FailureKind::Terminated => 143,
        }
    }
}

/// A failed command: the whole report for stderr and its kind.
#[derive(Debug)]
pub struct Failure {
    pub kind: FailureKind,
    /// For stderr.
    pub report: String,
    /// Data for stdout that the failed command still produced (such as
    /// `mab runners check`'s report).
    pub stdout: String,
}

impl Failure {
    /// Bad usage or configuration, found before anything was built.
    pub fn usage(message: impl AsRef<str>, hint: Option<&str>) -> Failure {
        Failure {
            kind: FailureKind::Usage,
            report: render(message.as_ref(), hint, &[]),
            stdout: String::new(),
        }
    }

    /// Something failed while running: a host, an engine, a build, a push.
    pub fn runtime(message: impl AsRef<str>, hint: Option<&str>) -> Failure {
        Failure {
            kind: FailureKind::Runtime,
            report: render(message.as_ref(), hint, &[]),
            stdout: String::new(),
        }
    }

    /// A runtime failure with a section of detail (such as a build log's tail).
    pub fn runtime_with_details(
        message: impl AsRef<str>,
        hint: Option<&str>,
        details: &[String],
    ) -> Failure {
        Failure {
            kind: FailureKind::Runtime,
            report: render(message.as_ref(), hint, details),
            stdout: String::new(),
        }
    }

    /// A runtime failure whose report is data on stdout, with a one-line
    /// summary on stderr.
    pub fn runtime_with_output(stdout: String, summary: &str) -> Failure {
        Failure {
            kind: FailureKind::Runtime,
            report: render(summary, None, &[]),
            stdout,
        }
    }

    /// Stopped by a signal before publishing: `kind` is
    /// [`FailureKind::Interrupted`] or [`FailureKind::Terminated`].
    pub fn stopped(kind: FailureKind) -> Failure {
        let how = match kind {
            FailureKind::Terminated => "terminated",
            _ => "interrupted",
        };
        Failure {
            kind,
            report: format!("error: {how}; nothing was published"),
            stdout: String::new(),
        }
    }
}

impl From<mab_config::ConfigError> for Failure {
    fn from(error: mab_config::ConfigError) -> Failure {
        Failure {
            kind: FailureKind::Usage,
            report: error.to_string(),
            stdout: String::new(),
        }
    }
}

/// `error: …`, then indented details, then `hint: …`.
pub fn render(message: &str, hint: Option<&str>, details: &[String]) -> String {
    let mut report = format!("error: {message}");
    for line in details {
        let _ = write!(report, "\n  | {line}");
    }
    if let Some(hint) = hint {
        let _ = write!(report, "\nhint: {hint}");
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_message_details_and_hint() {
        let failure = Failure::runtime_with_details(
            "linux/arm64 failed on runner-a",
            Some("fix the Dockerfile"),
            &["step 2".to_owned(), "exit code 1".to_owned()],
        );
        assert_eq!(failure.kind, FailureKind::Runtime);
        assert_eq!(
            failure.report,
            "error: linux/arm64 failed on runner-a\n  | step 2\n  | exit code 1\nhint: fix the Dockerfile"
        );
        assert_eq!(Failure::usage("bad", None).kind, FailureKind::Usage);
        assert_eq!(
            Failure::stopped(FailureKind::Interrupted).kind,
            FailureKind::Interrupted
        );
        assert_eq!(
            Failure::stopped(FailureKind::Terminated).report,
            "error: terminated; nothing was published"
        );
        // PRODUCT.md's exit codes.
        let codes = [
            (FailureKind::Usage, 2),
            (FailureKind::Runtime, 1),
            (FailureKind::Interrupted, 130),
            (FailureKind::Terminated, 143),
        ];
        for (kind, code) in codes {
            assert_eq!(kind.exit_code(), code, "{kind:?}");
        }
    }
}
