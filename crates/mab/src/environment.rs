//! What mab reads from its environment, read once at start so that the
//! rest of the code takes values (and tests can give mab a home of its own).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default)]
pub struct Environment {
    pub current_dir: PathBuf,
    /// `$HOME`: where `~/.ssh`, `~/.docker` and `~/.config` are.
    pub home: PathBuf,
    pub xdg_config_home: Option<PathBuf>,
    /// `$XDG_STATE_HOME` when set to an absolute path (the XDG Base
    /// Directory spec says a relative one is invalid and to be ignored).
    pub xdg_state_home: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR` when set to an absolute path, where a rootless
    /// engine keeps its socket.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// mab's real user id, for `/run/user/UID` when `$XDG_RUNTIME_DIR` is
    /// not set.
    pub uid: u32,
    pub mab_runners: Option<PathBuf>,
    pub docker_host: Option<String>,
    pub docker_config: Option<PathBuf>,
    /// GitHub Actions: `GITHUB_REF` (`refs/heads/main`, `refs/tags/v1.2.3`,
    /// `refs/pull/42/merge`) and `GITHUB_SHA`, the full commit id.
    pub github_ref: Option<String>,
    pub github_sha: Option<String>,
    /// GitHub Actions: `GITHUB_EVENT_NAME` (`push`, `pull_request_target`,
    /// …) and `GITHUB_EVENT_PATH`, the file holding the event's payload.
    pub github_event_name: Option<String>,
    pub github_event_path: Option<PathBuf>,
    /// GitLab CI: `CI_COMMIT_TAG` (set in tag pipelines), `CI_COMMIT_SHA`,
    /// and `CI_MERGE_REQUEST_IID` (set in merge request pipelines).
    pub ci_commit_tag: Option<String>,
    pub ci_commit_sha: Option<String>,
    pub ci_merge_request_iid: Option<String>,
    /// GitHub Actions: whether `GITHUB_ACTIONS` is `true` (the runner sets
    /// it in every step), and the files `GITHUB_OUTPUT` (the step's
    /// outputs) and `GITHUB_STEP_SUMMARY` (its Markdown summary) that
    /// [`crate::github`] appends to.
    pub github_actions: bool,
    pub github_output: Option<PathBuf>,
    pub github_step_summary: Option<PathBuf>,
    /// Every variable as it was at start, empty ones included, for
    /// `--build-arg NAME` (which takes `NAME`'s value from here). Its
    /// `Debug` shows the names only: values hold tokens and passwords in CI.
    pub variables: Variables,
    /// Whether stderr is a terminal (progress bars) and colour is welcome.
    pub stderr_is_terminal: bool,
    /// `MAB_LOG`: how much of the libraries' logging to show.
    pub log_level: Option<String>,
    /// `NO_COLOR` is set and not empty (no-color.org): no colour unless
    /// `--color always`.
    pub no_color: bool,
}

/// Why the number of a `pull_request_target` run's pull request is not
/// known; the tags then leave it out (docs/publishing.md).
#[derive(Debug, thiserror::Error)]
pub enum EventPayloadError {
    #[error("GITHUB_EVENT_PATH is not set, so the event payload cannot be read")]
    Unset,
    #[error("cannot read the event payload {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the event payload {} is not the JSON of a pull request event: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("the event payload {} has neither `number` nor `pull_request.number`", path.display())]
    NoNumber { path: PathBuf },
}

/// What a pull request event's payload says about its number (GitHub's
/// webhook payload: `number`, and `pull_request.number`).
#[derive(serde::Deserialize)]
struct PullRequestPayload {
    number: Option<u64>,
    pull_request: Option<PullRequestOfPayload>,
}

#[derive(serde::Deserialize)]
struct PullRequestOfPayload {
    number: Option<u64>,
}

/// Environment variables by name. `Debug` prints the names, never the
/// values, so that printing an [`Environment`] cannot leak a secret.
#[derive(Clone, Default)]
pub struct Variables(BTreeMap<OsString, OsString>);

impl<Name: Into<OsString>, Value: Into<OsString>> FromIterator<(Name, Value)> for Variables {
    fn from_iter<I: IntoIterator<Item = (Name, Value)>>(variables: I) -> Variables {
        Variables(
            variables
                .into_iter()
                .map(|(name, value)| (name.into(), value.into()))
                .collect(),
        )
    }
}

impl std::fmt::Debug for Variables {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_set().entries(self.0.keys()).finish()
    }
}

/// An XDG base directory variable's value, when it is an absolute path:
/// the XDG Base Directory spec says a relative one is invalid and to be
/// ignored.
fn absolute_only(value: Option<OsString>) -> Option<PathBuf> {
    value.map(PathBuf::from).filter(|path| path.is_absolute())
}

impl Environment {
    pub fn from_process() -> Environment {
        use std::io::IsTerminal;
        let variable = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        let text = |name: &str| variable(name).and_then(|value| value.into_string().ok());
        Environment {
            current_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            home: variable("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/")),
            xdg_config_home: variable("XDG_CONFIG_HOME").map(PathBuf::from),
            xdg_state_home: absolute_only(variable("XDG_STATE_HOME")),
            xdg_runtime_dir: absolute_only(variable("XDG_RUNTIME_DIR")),
            uid: rustix::process::getuid().as_raw(),
            mab_runners: variable("MAB_RUNNERS").map(PathBuf::from),
            docker_host: text("DOCKER_HOST"),
            docker_config: variable("DOCKER_CONFIG").map(PathBuf::from),
            github_ref: text("GITHUB_REF"),
            github_sha: text("GITHUB_SHA"),
            github_event_name: text("GITHUB_EVENT_NAME"),
            github_event_path: variable("GITHUB_EVENT_PATH").map(PathBuf::from),
            ci_commit_tag: text("CI_COMMIT_TAG"),
            ci_commit_sha: text("CI_COMMIT_SHA"),
            ci_merge_request_iid: text("CI_MERGE_REQUEST_IID"),
            github_actions: text("GITHUB_ACTIONS").as_deref() == Some("true"),
            github_output: variable("GITHUB_OUTPUT").map(PathBuf::from),
            github_step_summary: variable("GITHUB_STEP_SUMMARY").map(PathBuf::from),
            variables: std::env::vars_os().collect(),
            stderr_is_terminal: std::io::stderr().is_terminal(),
            log_level: text("MAB_LOG"),
            no_color: variable("NO_COLOR").is_some(),
        }
    }

    /// The value of the variable `name` at start; `Some("")` when it is set
    /// but empty (as Go's `os.LookupEnv`, which the docker CLI uses).
    pub fn variable(&self, name: &str) -> Option<&OsStr> {
        self.variables
            .0
            .get(OsStr::new(name))
            .map(OsString::as_os_str)
    }

    /// The CI variables that name the ref and commit of the build, with
    /// the pull request's number read from the event payload
    /// ([`Environment::pull_request_target_number`]).
    pub fn ci_variables<'a>(
        &'a self,
        github_pull_request_number: Option<&'a str>,
    ) -> mab_registry::tags::CiVariables<'a> {
        mab_registry::tags::CiVariables {
            github_ref: self.github_ref.as_deref(),
            github_sha: self.github_sha.as_deref(),
            github_event_name: self.github_event_name.as_deref(),
            github_pull_request_number,
            gitlab_commit_tag: self.ci_commit_tag.as_deref(),
            gitlab_commit_sha: self.ci_commit_sha.as_deref(),
            gitlab_merge_request_iid: self.ci_merge_request_iid.as_deref(),
        }
    }

    /// For a GitHub Actions `pull_request_target` run, the pull request's
    /// number from the event payload (the JSON file `GITHUB_EVENT_PATH`):
    /// its `number`, else `pull_request.number`, as docker/metadata-action
    /// reads it. `Ok(None)` for any other event (where `GITHUB_REF` names the
    /// pull request if there is one); an error when the payload cannot be
    /// read or has no number.
    pub fn pull_request_target_number(&self) -> Result<Option<String>, EventPayloadError> {
        if self.github_event_name.as_deref() != Some(mab_registry::tags::PULL_REQUEST_TARGET) {
            return Ok(None);
        }
        let path = self
            .github_event_path
            .as_deref()
            .ok_or(EventPayloadError::Unset)?;
        let text = std::fs::read(path).map_err(|source| EventPayloadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let payload: PullRequestPayload =
            serde_json::from_slice(&text).map_err(|source| EventPayloadError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        payload
            .number
            .or(payload
                .pull_request
                .and_then(|pull_request| pull_request.number))
            .map(|number| Some(number.to_string()))
            .ok_or_else(|| EventPayloadError::NoNumber {
                path: path.to_path_buf(),
            })
    }

    /// The directory `-C DIR` names (relative to the current directory),
    /// else the current directory: where the paths given on the command
    /// line (`--metadata-file`, `--resume FILE`, `--manifest-path`) start.
    pub fn start_dir(&self, directory: Option<&Path>) -> PathBuf {
        match directory {
            Some(directory) => self.current_dir.join(directory),
            None => self.current_dir.clone(),
        }
    }

    /// Where mab keeps what it remembers between runs (the state of the
    /// last build of each project, for `--resume`): `$XDG_STATE_HOME/mab`,
    /// else `~/.local/state/mab`, as the XDG Base Directory spec says.
    pub fn state_dir(&self) -> PathBuf {
        self.xdg_state_home
            .clone()
            .unwrap_or_else(|| self.home.join(".local/state"))
            .join("mab")
    }

    /// The user's runtime directory (rootless engines' sockets are under
    /// it): `$XDG_RUNTIME_DIR`, else `/run/user/UID`, where systemd's
    /// `pam_systemd` puts it.
    pub fn runtime_dir(&self) -> PathBuf {
        self.xdg_runtime_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("/run/user/{}", self.uid)))
    }

    /// Where registry credentials are read from, in this order:
    /// `DOCKER_AUTH_CONFIG` when set and not empty (GitLab's way), then
    /// `config.json` in [`Environment::docker_config_dir`]; see
    /// [`mab_registry::CredentialSources`]. Errors: either is not a Docker
    /// configuration ([`mab_registry::RegistryError::CredentialsConfig`]).
    pub fn credential_sources(
        &self,
    ) -> Result<mab_registry::CredentialSources, mab_registry::RegistryError> {
        let auth_config = self
            .variable("DOCKER_AUTH_CONFIG")
            .filter(|value| !value.is_empty())
            .map(|value| value.to_string_lossy());
        mab_registry::CredentialSources::load(
            auth_config.as_deref(),
            &self.docker_config_dir().join("config.json"),
        )
    }

    /// The Docker client configuration directory (`$DOCKER_CONFIG`, else `~/.docker`).
    pub fn docker_config_dir(&self) -> PathBuf {
        self.docker_config
            .clone()
            .unwrap_or_else(|| self.home.join(".docker"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_directory_follows_xdg_state_home_when_it_is_absolute() {
        let cases = [
            (Some("/var/state"), "/var/state/mab"),
            (Some("relative/state"), "/home/me/.local/state/mab"),
            (None, "/home/me/.local/state/mab"),
        ];
        for (variable, expected) in cases {
            let environment = Environment {
                home: "/home/me".into(),
                xdg_state_home: absolute_only(variable.map(OsString::from)),
                ..Environment::default()
            };
            assert_eq!(
                environment.state_dir(),
                std::path::Path::new(expected),
                "{variable:?}"
            );
        }
    }

    #[test]
    fn reads_the_number_of_a_pull_request_target_from_its_payload() {
        let directory = tempfile::tempdir().unwrap();
        let payload = |name: &str, text: &str| {
            let path = directory.path().join(name);
            std::fs::write(&path, text).unwrap();
            Some(path)
        };
        let run = |event: &str, path: Option<PathBuf>| {
            Environment {
                github_event_name: Some(event.to_owned()),
                github_event_path: path,
                ..Environment::default()
            }
            .pull_request_target_number()
        };
        let number = payload(
            "number.json",
            r#"{"action": "opened", "number": 42, "pull_request": {"number": 42, "head": {"sha": "x"}}}"#,
        );
        assert_eq!(
            run("pull_request_target", number.clone())
                .unwrap()
                .as_deref(),
            Some("42")
        );
        assert_eq!(
            run("push", number).unwrap(),
            None,
            "only pull_request_target"
        );
        let nested = payload("nested.json", r#"{"pull_request": {"number": 7}}"#);
        assert_eq!(
            run("pull_request_target", nested).unwrap().as_deref(),
            Some("7")
        );

        let error = |path| run("pull_request_target", path).unwrap_err();
        assert!(matches!(error(None), EventPayloadError::Unset));
        let missing = directory.path().join("missing.json");
        assert!(matches!(
            error(Some(missing)),
            EventPayloadError::Read { .. }
        ));
        let garbage = payload("garbage.json", "not json");
        assert!(matches!(error(garbage), EventPayloadError::Parse { .. }));
        let string = payload("string.json", r#"{"number": "42"}"#);
        assert!(matches!(error(string), EventPayloadError::Parse { .. }));
        let without = payload("without.json", r#"{"action": "opened"}"#);
        let without_number = error(without);
        assert!(
            matches!(without_number, EventPayloadError::NoNumber { .. }),
            "{without_number:?}"
        );
        assert!(
            without_number.to_string().contains("without.json"),
            "{without_number}"
        );
    }

    #[test]
    fn debug_names_the_variables_without_their_values() {
        let environment = Environment {
            variables: [("GITHUB_TOKEN", "ghp_secret-value"), ("EMPTY", "")]
                .into_iter()
                .collect(),
            github_ref: Some("refs/heads/main".to_owned()),
            ..Environment::default()
        };
        assert_eq!(
            environment.variable("GITHUB_TOKEN"),
            Some(OsStr::new("ghp_secret-value"))
        );
        for debug in [format!("{environment:?}"), format!("{environment:#?}")] {
            assert!(!debug.contains("ghp_secret-value"), "{debug}");
            assert!(debug.contains("\"GITHUB_TOKEN\""), "{debug}");
            assert!(debug.contains("refs/heads/main"), "{debug}");
        }
    }
}
