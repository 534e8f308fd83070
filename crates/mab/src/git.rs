//! Where the source came from, for the tag rules: `GITHUB_REF`/`GITHUB_SHA`
//! when set, else the git repository holding the context.

use std::path::Path;
use std::process::Command;

use mab_registry::tags::{pick_tag, Source};

/// `None` when the context is not in a git repository (or git is missing).
pub fn source(
    context: &Path,
    github_ref: Option<&str>,
    github_sha: Option<&str>,
) -> Option<Source> {
    if let Some(reference) = github_ref {
        return Some(Source {
            tag: reference.strip_prefix("refs/tags/").map(str::to_owned),
            commit: github_sha.map(str::to_owned),
        });
    }
    let commit = git(context, &["rev-parse", "--verify", "HEAD"])?;
    let tags: Vec<String> = git(context, &["tag", "--points-at", "HEAD"])
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    Some(Source {
        tag: pick_tag(&tags).map(str::to_owned),
        commit: Some(commit),
    })
}

fn git(directory: &Path, arguments: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(directory)
        .args(arguments)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_variables_win_over_the_repository() {
        let directory = tempfile::tempdir().unwrap();
        let source = source(directory.path(), Some("refs/tags/v1.2.3"), Some("abc")).unwrap();
        assert_eq!(source.tag.as_deref(), Some("v1.2.3"));
        assert_eq!(source.commit.as_deref(), Some("abc"));
        let branch = super::source(directory.path(), Some("refs/heads/main"), Some("abc")).unwrap();
        assert_eq!(branch.tag, None);
    }

    #[test]
    fn outside_git_there_is_no_source() {
        let directory = tempfile::tempdir().unwrap();
        assert_eq!(source(directory.path(), None, None), None);
    }

    #[test]
    fn reads_the_tags_at_head() {
        let directory = tempfile::tempdir().unwrap();
        let run = |arguments: &[&str]| {
            let status = Command::new("git")
                .arg("-C")
                .arg(directory.path())
                .args(arguments)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@example.com")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@example.com")
                .status()
                .unwrap();
            assert!(status.success(), "git {arguments:?}");
        };
        run(&["init", "-q"]);
        run(&["commit", "-q", "--allow-empty", "-m", "first"]);
        run(&["tag", "v1.9.0"]);
        run(&["tag", "v1.10.0"]);
        run(&["tag", "nightly"]);
        let source = source(directory.path(), None, None).unwrap();
        assert_eq!(source.tag.as_deref(), Some("v1.10.0"));
        assert_eq!(source.commit.as_ref().map(String::len), Some(40));
    }
}
