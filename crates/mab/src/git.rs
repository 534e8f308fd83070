//! What the git repository holding the context says, for the tag rules
//! (`mab_registry::tags`): the tags at HEAD and HEAD's commit.

use std::path::Path;
use std::process::Command;

use mab_registry::tags::Checkout;

/// The checkout holding `context`; `None` when git says nothing.
pub fn checkout(context: &Path) -> Option<Checkout> {
    let head = git(context, &["rev-parse", "--verify", "HEAD"])?;
    let tags_at_head = git(context, &["tag", "--points-at", "HEAD"])
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    Some(Checkout {
        tags_at_head,
        head,
        changed: Vec::new(),
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
    fn outside_git_there_is_no_checkout() {
        let directory = tempfile::tempdir().unwrap();
        assert_eq!(checkout(directory.path()), None);
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
        let mut checkout = checkout(directory.path()).unwrap();
        checkout.tags_at_head.sort();
        assert_eq!(checkout.tags_at_head, ["nightly", "v1.10.0", "v1.9.0"]);
        assert_eq!(checkout.head, commit);
    }
}
