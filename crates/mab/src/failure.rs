//! How a command fails: the report the user reads, and the kind of failure,
//! whose exit code PRODUCT.md gives ([`FailureKind::exit_code`], the one
//! place where an exit code is chosen).

use std::fmt::Write as _;

use mab_events::OutcomeError;

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

/// A failed command: the whole report for stderr, its parts and its kind.
#[derive(Debug)]
pub struct Failure {
    pub kind: FailureKind,
    /// For stderr: `error: …`, details, `hint: …` ([`render`]).
    pub report: String,
    /// The report's parts (message, hints, details), for the `result`
    /// event of `--progress json` (boxed: a `Failure` travels in every
    /// `Result` of the binary).
    pub error: Box<OutcomeError>,
    /// Data for stdout that the failed command still produced (such as
    /// `mab runners check`'s report).
    pub stdout: String,
    /// The digest of a list the failed command still published (a partial
    /// list of `mab build --allow-partial`), for the `result` event.
    pub digest: Option<String>,
}

impl Failure {
    /// A failure of `kind` with these parts, its report rendered from them.
    /// A hint that holds several `hint:` lines (a job's own hint after the
    /// one about fallback) becomes one hint per line, so that the `result`
    /// event lists each on its own; a hint given twice is kept once.
    pub fn new(
        kind: FailureKind,
        message: &str,
        hints: Vec<String>,
        details: &[String],
    ) -> Failure {
        let mut listed: Vec<String> = Vec::new();
        for hint in hints.iter().flat_map(|hint| hint.split("\nhint: ")) {
            // Runners that failed alike give the same hint: once is enough.
            if !listed.iter().any(|seen| seen == hint) {
                listed.push(hint.to_owned());
            }
        }
        let hints = listed;
        let error = Box::new(OutcomeError {
            message: message.to_owned(),
            hints,
            details: details.to_vec(),
        });
        Failure {
            kind,
            report: render(&error),
            error,
            stdout: String::new(),
            digest: None,
        }
    }

    /// Bad usage or configuration, found before anything was built.
    pub fn usage(message: impl AsRef<str>, hint: Option<&str>) -> Failure {
        Failure::new(FailureKind::Usage, message.as_ref(), hints(hint), &[])
    }

    /// Something failed while running: a host, an engine, a build, a push.
    pub fn runtime(message: impl AsRef<str>, hint: Option<&str>) -> Failure {
        Failure::new(FailureKind::Runtime, message.as_ref(), hints(hint), &[])
    }

    /// A runtime failure with a section of detail (such as a build log's
    /// tail) and any number of hints.
    pub fn runtime_with_details(
        message: impl AsRef<str>,
        hints: &[&str],
        details: &[String],
    ) -> Failure {
        let hints = hints.iter().map(|hint| (*hint).to_owned()).collect();
        Failure::new(FailureKind::Runtime, message.as_ref(), hints, details)
    }

    /// A runtime failure whose report is data on stdout, with a one-line
    /// summary on stderr.
    pub fn runtime_with_output(stdout: String, summary: &str) -> Failure {
        Failure {
            stdout,
            ..Failure::new(FailureKind::Runtime, summary, Vec::new(), &[])
        }
    }

    /// Stopped by a signal before publishing: `kind` is
    /// [`FailureKind::Interrupted`] or [`FailureKind::Terminated`].
    pub fn stopped(kind: FailureKind) -> Failure {
        Failure::stopped_with(kind, Vec::new())
    }

    /// [`Failure::stopped`] of a build whose jobs ran, with its metadata
    /// and state written: when `pushed` platforms were pushed and verified
    /// (or reused), the hint says that `mab build --resume` builds only the
    /// others (docs/publishing.md).
    pub fn stopped_after_jobs(kind: FailureKind, pushed: usize) -> Failure {
        let hints = (pushed > 0).then(|| format!(
            "{pushed} platform(s) were pushed and verified before the stop: `mab build --resume` builds only the others and publishes the list"
        ));
        Failure::stopped_with(kind, hints.into_iter().collect())
    }

    fn stopped_with(kind: FailureKind, hints: Vec<String>) -> Failure {
        let how = match kind {
            FailureKind::Terminated => "terminated",
            _ => "interrupted",
        };
        Failure::new(kind, &format!("{how}; nothing was published"), hints, &[])
    }

    /// Stopped (a second Ctrl-C, or the stop's grace over) after the list
    /// was pushed under every tag, while it was read back or the staging
    /// tags removed: the list is out, its metadata written with its digest.
    pub fn stopped_after_publish(kind: FailureKind) -> Failure {
        let how = match kind {
            FailureKind::Terminated => "terminated",
            _ => "interrupted",
        };
        Failure::new(
            kind,
            &format!("{how} after the list was published under every tag; reading it back (or removing the staging tags) did not finish"),
            vec!["the metadata file has the list's digest; see what a tag holds with `mab inspect IMAGE:TAG`".to_owned()],
            &[],
        )
    }

    /// Stopped by a second Ctrl-C while the list and its tags were being
    /// pushed (exit 130): some tags may point at the new list already.
    pub fn stopped_while_publishing() -> Failure {
        Failure::new(
            FailureKind::Interrupted,
            "interrupted twice while publishing; the publish was cut short, so some tags may already point at the new list and others not",
            vec!["run `mab build` again with the same tags to publish them all".to_owned()],
            &[],
        )
    }
}

impl Failure {
    /// The failure with `extra` lines after its details, its report
    /// rendered again (a report with its own rendering, such as a
    /// `mab.toml` error's, is left as it is).
    pub fn with_details(mut self, extra: &[String]) -> Failure {
        if extra.is_empty() || self.report != render(&self.error) {
            return self;
        }
        self.error.details.extend_from_slice(extra);
        self.report = render(&self.error);
        self
    }
}

/// `hint` as a list of hints.
fn hints(hint: Option<&str>) -> Vec<String> {
    hint.map(str::to_owned).into_iter().collect()
}

impl From<mab_config::ConfigError> for Failure {
    /// The report is the error's own rendering, with the file and the
    /// snippet under the value; the details name the file and place
    /// (`path:line:column`), then the snippet's lines.
    fn from(error: mab_config::ConfigError) -> Failure {
        let place = match error.location() {
            Some(location) => format!(
                "{}:{}:{}",
                error.path().display(),
                location.line,
                location.column
            ),
            None => error.path().display().to_string(),
        };
        let report = error.to_string();
        // The snippet: the report's lines after its `error:` and ` --> `
        // lines, before its hint.
        let snippet = report
            .lines()
            .skip(1)
            .filter(|line| !line.trim_start().starts_with("-->") && !line.starts_with("hint:"))
            .map(str::to_owned);
        Failure {
            kind: FailureKind::Usage,
            error: Box::new(OutcomeError {
                message: error.message(),
                hints: hints(error.hint()),
                details: std::iter::once(place).chain(snippet).collect(),
            }),
            report,
            stdout: String::new(),
            digest: None,
        }
    }
}

/// `error: …`, then indented details, then `hint: …` for each hint.
pub fn render(error: &OutcomeError) -> String {
    let mut report = format!("error: {}", error.message);
    for line in &error.details {
        let _ = write!(report, "\n  | {line}");
    }
    for hint in &error.hints {
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
            &["fix the Dockerfile"],
            &["step 2".to_owned(), "exit code 1".to_owned()],
        );
        assert_eq!(failure.kind, FailureKind::Runtime);
        assert_eq!(
            failure.report,
            "error: linux/arm64 failed on runner-a\n  | step 2\n  | exit code 1\nhint: fix the Dockerfile"
        );
        assert_eq!(Failure::usage("bad", None).kind, FailureKind::Usage);
        let joined = Failure::runtime(
            "stranded",
            Some("leave out --no-fallback\nhint: start sshd"),
        );
        assert_eq!(
            joined.error.hints,
            ["leave out --no-fallback", "start sshd"],
            "one hint per `hint:` line"
        );
        assert_eq!(
            joined.report,
            "error: stranded\nhint: leave out --no-fallback\nhint: start sshd"
        );
        let twice = Failure::runtime("two runners", Some("fix the config\nhint: fix the config"));
        assert_eq!(twice.error.hints, ["fix the config"], "each hint once");
        assert_eq!(
            Failure::stopped(FailureKind::Interrupted).kind,
            FailureKind::Interrupted
        );
        assert_eq!(
            Failure::stopped(FailureKind::Terminated).report,
            "error: terminated; nothing was published"
        );
        let after = Failure::stopped_after_publish(FailureKind::Terminated);
        assert_eq!(after.kind.exit_code(), 143);
        assert!(
            after.report.starts_with(
                "error: terminated after the list was published under every tag; reading it back"
            ),
            "{}",
            after.report
        );
        assert!(!after.report.contains("nothing was published"));
        let cut_short = Failure::stopped_while_publishing();
        assert_eq!(cut_short.kind.exit_code(), 130);
        assert!(
            cut_short
                .report
                .contains("some tags may already point at the new list")
                && cut_short
                    .report
                    .contains("\nhint: run `mab build` again with the same tags"),
            "{}",
            cut_short.report
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

    #[test]
    fn a_configuration_error_keeps_its_rendering_and_names_its_place() {
        let error = mab_config::parse_project(
            std::path::Path::new("/src/mab.toml"),
            "[image]\nname = \"App\"\n",
        )
        .unwrap_err();
        let rendered = error.to_string();
        let failure = Failure::from(error);
        assert_eq!(failure.kind, FailureKind::Usage);
        assert_eq!(failure.report, rendered);
        assert!(
            failure.report.contains("/src/mab.toml:2:8"),
            "{}",
            failure.report
        );
        assert_eq!(
            failure.error.details,
            [
                "/src/mab.toml:2:8",
                "  |",
                "2 | name = \"App\"",
                "  |        ^^^^^"
            ],
            "the place, then the snippet"
        );
        assert!(!failure.error.message.starts_with("error:"));
        assert_eq!(failure.error.hints.len(), 1, "{:?}", failure.error);
    }
}
