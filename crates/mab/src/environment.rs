//! What mab reads from its environment, read once at start so that the
//! rest of the code takes values (and tests can give mab a home of its own).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

#[derive(Clone, Debug, Default)]
pub struct Environment {
    pub current_dir: PathBuf,
    /// `$HOME`: where `~/.ssh`, `~/.docker` and `~/.config` are.
    pub home: PathBuf,
    pub xdg_config_home: Option<PathBuf>,
    pub mab_runners: Option<PathBuf>,
    pub docker_host: Option<String>,
    pub docker_config: Option<PathBuf>,
    /// GitHub Actions: `GITHUB_REF` (`refs/heads/main`, `refs/tags/v1.2.3`,
    /// `refs/pull/42/merge`) and `GITHUB_SHA`, the full commit id.
    pub github_ref: Option<String>,
    pub github_sha: Option<String>,
    /// GitLab CI: `CI_COMMIT_TAG` (set in tag pipelines), `CI_COMMIT_SHA`,
    /// and `CI_MERGE_REQUEST_IID` (set in merge request pipelines).
    pub ci_commit_tag: Option<String>,
    pub ci_commit_sha: Option<String>,
    pub ci_merge_request_iid: Option<String>,
    /// Every variable as it was at start, empty ones included, for
    /// `--build-arg NAME` (which takes `NAME`'s value from here). Its
    /// `Debug` shows the names only: values hold tokens and passwords in CI.
    pub variables: Variables,
    /// Whether stderr is a terminal (progress bars) and colour is welcome.
    pub stderr_is_terminal: bool,
    /// `MAB_LOG`: how much of the libraries' logging to show.
    pub log_level: Option<String>,
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
            mab_runners: variable("MAB_RUNNERS").map(PathBuf::from),
            docker_host: text("DOCKER_HOST"),
            docker_config: variable("DOCKER_CONFIG").map(PathBuf::from),
            github_ref: text("GITHUB_REF"),
            github_sha: text("GITHUB_SHA"),
            ci_commit_tag: text("CI_COMMIT_TAG"),
            ci_commit_sha: text("CI_COMMIT_SHA"),
            ci_merge_request_iid: text("CI_MERGE_REQUEST_IID"),
            variables: std::env::vars_os().collect(),
            stderr_is_terminal: std::io::stderr().is_terminal(),
            log_level: text("MAB_LOG"),
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

    /// The CI variables that name the ref and commit of the build.
    pub fn ci_variables(&self) -> mab_registry::tags::CiVariables<'_> {
        mab_registry::tags::CiVariables {
            github_ref: self.github_ref.as_deref(),
            github_sha: self.github_sha.as_deref(),
            gitlab_commit_tag: self.ci_commit_tag.as_deref(),
            gitlab_commit_sha: self.ci_commit_sha.as_deref(),
            gitlab_merge_request_iid: self.ci_merge_request_iid.as_deref(),
        }
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
