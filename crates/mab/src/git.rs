//! Where the source came from, for the tag rules: `GITHUB_REF`/`GITHUB_SHA`
//! when set, else the git repository holding the context.

use std::path::Path;
use std::process::Command;

use mab_registry::tags::{pick_tag, Source};

/// The ref comes from `GITHUB_REF` when set, the commit from `GITHUB_SHA`
/// when set; whatever is not set comes from the git repository holding the
/// context. `None` when neither the variables nor a repository say anything.
pub fn source(
    context: &Path,
    github_ref: Option<&str>,
    github_sha: Option<&str>,
) -> Option<Source> {
    let tag = match github_ref {
        Some(reference) => reference.strip_prefix("refs/tags/").map(str::to_owned),
        None => {
            let tags: Vec<String> = git(context, &["tag", "--points-at", "HEAD"])
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect();
            pick_tag(&tags).map(str::to_owned)
        }
    };
    let commit = match github_sha {
        Some(sha) => Some(sha.to_owned()),
        None => git(context, &["rev-parse", "--verify", "HEAD"]),
    };
    if github_ref.is_none() && commit.is_none() {
        return None;
    }
    Some(Source { tag, commit })
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
        let repository_commit = repository_tagged(directory.path(), &["v9.9.9"]);
        let source = source(directory.path(), Some("refs/tags/v1.2.3"), Some("abc")).unwrap();
        assert_eq!(source.tag.as_deref(), Some("v1.2.3"));
        assert_eq!(source.commit.as_deref(), Some("abc"));
        let branch = super::source(directory.path(), Some("refs/heads/main"), None).unwrap();
        assert_eq!(
            branch.tag, None,
            "a branch ref is not a tag, whatever the repository says"
        );
        assert_eq!(
            branch.commit,
            Some(repository_commit.clone()),
            "the commit still comes from git"
        );
        let sha_only = super::source(directory.path(), None, Some("def")).unwrap();
        assert_eq!(sha_only.tag.as_deref(), Some("v9.9.9"));
        assert_eq!(sha_only.commit.as_deref(), Some("def"));
    }

    #[test]
    fn outside_git_there_is_no_source() {
        let directory = tempfile::tempdir().unwrap();
        assert_eq!(source(directory.path(), None, None), None);
    }

    /// A repository with one empty commit and these tags on it; its commit id.
    fn repository_tagged(directory: &Path, tags: &[&str]) -> String {
        let run = |arguments: &[&str]| {
            let status = Command::new("git")
                .arg("-C")
                .arg(directory)
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
        for tag in tags {
            run(&["tag", tag]);
        }
        git(directory, &["rev-parse", "HEAD"]).unwrap()
    }

    #[test]
    fn reads_the_tags_at_head() {
        let directory = tempfile::tempdir().unwrap();
        let commit = repository_tagged(directory.path(), &["v1.9.0", "v1.10.0", "nightly"]);
        let source = source(directory.path(), None, None).unwrap();
        assert_eq!(source.tag.as_deref(), Some("v1.10.0"));
        assert_eq!(source.commit, Some(commit));
    }
}
