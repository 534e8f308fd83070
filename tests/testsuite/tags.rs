//! The computed tags on the lab: what a build publishes under (read back
//! with skopeo), for pull and merge requests, dirty trees and git failures.

use std::path::Path;

use crate::support::{
    mab_with_env, require_lab, sha256, skopeo_raw, skopeo_tags, GitProblem, Lab, Project, Run,
};

/// A one-platform `FROM scratch` project for the lab's local engine, whose
/// image holds `content.txt`; `ignored.txt` is left out by `.dockerignore`.
fn project(repository: &str, content: &str) -> Project {
    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\nCOPY content.txt /\n")
        .file(".dockerignore", "ignored.txt\n")
        .file("content.txt", content)
        .file("ignored.txt", "not sent\n")
        .file(
            "mab.toml",
            &format!("[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\"]\n\n[tags]\nextra = [\"edge\"]\n"),
        );
    project
}

/// `mab build --progress plain ARGUMENTS` in the project with these
/// variables, with a home of its own; it must succeed.
pub(crate) fn build(
    project: &Project,
    arguments: &[&str],
    variables: &[(&str, Option<&str>)],
) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut all = vec!["build", "--progress", "plain"];
    all.extend_from_slice(arguments);
    let run = mab_with_env(home.path(), project.path(), &all, variables);
    assert_eq!(run.code, 0, "{run:?}");
    run
}

/// [`build`] with `--metadata-file` outside the project (so that the file
/// is never sent); returns the run and the metadata file's JSON.
fn build_recorded(
    project: &Project,
    arguments: &[&str],
    variables: &[(&str, Option<&str>)],
) -> (Run, serde_json::Value) {
    let outside = tempfile::tempdir().unwrap();
    let metadata_file = outside.path().join("metadata.json");
    let mut all = vec!["--metadata-file", metadata_file.to_str().unwrap()];
    all.extend_from_slice(arguments);
    let run = build(project, &all, variables);
    let metadata = serde_json::from_str(&std::fs::read_to_string(&metadata_file).unwrap())
        .unwrap_or_else(|error| panic!("the metadata file is JSON ({error}): {run:?}"));
    (run, metadata)
}

/// The tags of `repository` that are not mab's staging tags.
fn published_tags(repository: &str) -> Vec<String> {
    skopeo_tags(repository)
        .into_iter()
        .filter(|tag| !tag.starts_with("mab-"))
        .collect()
}

/// The digest of the list `repository:tag` points at, read with skopeo.
fn digest_of(repository: &str, tag: &str) -> String {
    sha256(&skopeo_raw(&format!("{repository}:{tag}")))
}

fn sorted(tags: &[&str]) -> Vec<String> {
    let mut tags: Vec<String> = tags.iter().map(|tag| tag.to_string()).collect();
    tags.sort();
    tags
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn pull_and_merge_requests_get_pr_tags_and_never_latest() {
    let lab: &Lab = require_lab!();
    let repository = lab.repository("pull-request");

    let first = project(&repository, "pull request 42\n");
    let first_commit = first.commit_and_tag(&[]);
    let run = build(
        &first,
        &[],
        &[
            ("GITHUB_REF", Some("refs/pull/42/merge")),
            ("GITHUB_SHA", Some(&first_commit)),
        ],
    );
    assert_eq!(
        published_tags(&repository),
        sorted(&["pr-42", &first_commit[..8]]),
        "no latest, no extra tag: {run:?}"
    );
    let pull_request = digest_of(&repository, "pr-42");
    assert_eq!(digest_of(&repository, &first_commit[..8]), pull_request);
    assert_eq!(run.stdout.trim(), format!("{repository}@{pull_request}"));

    // A release moves latest; a merge request after it does not.
    let release = project(&repository, "release\n");
    build(&release, &["--tag", "latest"], &[]);
    let latest = digest_of(&repository, "latest");
    assert_ne!(latest, pull_request);

    let merge_request = project(&repository, "merge request 43\n");
    let commit = merge_request.commit_and_tag(&["v9.9.9"]);
    build(
        &merge_request,
        &[],
        &[
            ("CI_MERGE_REQUEST_IID", Some("43")),
            ("CI_COMMIT_SHA", Some(&commit)),
        ],
    );
    let published = digest_of(&repository, "pr-43");
    assert_ne!(published, latest);
    assert_eq!(digest_of(&repository, &commit[..8]), published);
    assert_eq!(
        digest_of(&repository, "latest"),
        latest,
        "the merge request left latest where it was"
    );
    assert_eq!(
        published_tags(&repository),
        sorted(&["pr-42", &first_commit[..8], "latest", "pr-43", &commit[..8]]),
        "neither the tag at HEAD (9.9.9) nor the extra tag were published"
    );
}

/// A `pull_request_target` run names the base branch and its commit in
/// `GITHUB_REF`/`GITHUB_SHA` while the pull request's code is checked out:
/// the tags are `pr-N` (from the event payload) and HEAD's commit, never
/// `latest`, and a warning names both commits.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_pull_request_target_run_tags_the_checked_out_commit() {
    let lab: &Lab = require_lab!();
    let repository = lab.repository("pull-request-target");
    let project = project(&repository, "base\n");
    let base = project.commit_and_tag(&["v5.0.0"]);
    project.file("content.txt", "pull request 77\n");
    project.git(&["commit", "-q", "-am", "the pull request"]);
    let head = String::from_utf8(project.git(&["rev-parse", "HEAD"]).stdout).unwrap();
    let head = head.trim();
    let outside = tempfile::tempdir().unwrap();
    let payload = outside.path().join("event.json");
    std::fs::write(&payload, r#"{"action": "synchronize", "number": 77}"#).unwrap();
    fn target<'a>(payload: &'a Path, base: &'a str) -> [(&'static str, Option<&'a str>); 4] {
        [
            ("GITHUB_EVENT_NAME", Some("pull_request_target")),
            ("GITHUB_EVENT_PATH", payload.to_str()),
            ("GITHUB_REF", Some("refs/heads/main")),
            ("GITHUB_SHA", Some(base)),
        ]
    }

    let run = build(&project, &[], &target(&payload, &base));
    let warning = warning_starting(&run, "GITHUB_SHA names the commit")
        .unwrap_or_else(|| panic!("a warning: {run:?}"));
    assert!(
        warning.contains(&base) && warning.contains(head),
        "{warning}"
    );
    assert_eq!(
        published_tags(&repository),
        sorted(&["pr-77", &head[..8]]),
        "{run:?}"
    );
    let pull_request = digest_of(&repository, "pr-77");
    assert_eq!(run.stdout.trim(), format!("{repository}@{pull_request}"));
    assert_eq!(digest_of(&repository, &head[..8]), pull_request);

    // Without the payload the number is unknown: the commit tag alone.
    let missing = outside.path().join("missing.json");
    let (run, metadata) = build_recorded(&project, &[], &target(&missing, &base));
    let warning = warning_starting(&run, "GITHUB_EVENT_NAME is pull_request_target")
        .unwrap_or_else(|| panic!("a warning: {run:?}"));
    assert!(warning.contains("missing.json"), "{warning}");
    assert_eq!(metadata["tags"], serde_json::json!([&head[..8]]), "{run:?}");
    assert_eq!(
        published_tags(&repository),
        sorted(&["pr-77", &head[..8]]),
        "no latest, no release tag: {run:?}"
    );
}

/// The warning of `run` about the repository git cannot read, which says
/// that `flag` lets the build go on: it names the project's repository,
/// and the repository is not taken for "outside git".
fn git_warning<'a>(run: &'a Run, flag: &str, project: &Project) -> &'a str {
    let warning = run
        .stderr
        .lines()
        .find(|line| line.starts_with("warning: ") && line.contains(flag))
        .unwrap_or_else(|| panic!("a warning mentioning {flag}: {run:?}"));
    assert!(
        warning.contains(project.path().to_str().unwrap()),
        "names the repository: {warning}"
    );
    assert!(!run.stderr.contains("not in a git repository"), "{run:?}");
    warning
}

/// With `--tag`, a repository git cannot read is a warning naming it, and
/// the build publishes exactly the `--tag`s (bad_input.rs has the messages
/// without `--tag`).
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn with_tag_flags_a_git_problem_is_a_warning() {
    let lab: &Lab = require_lab!();
    let repository = lab.repository("git-problems");
    for problem in GitProblem::ALL {
        let tag = problem.name();
        let project = project(&repository, tag);
        let variables = problem.make(&project);
        let run = build(&project, &["--tag", tag], &variables);
        git_warning(&run, "--tag", &project);
    }
    let mut expected: Vec<&str> = GitProblem::ALL
        .iter()
        .map(|problem| problem.name())
        .collect();
    expected.sort();
    assert_eq!(published_tags(&repository), expected);
}

/// With `--no-push` nothing is published, so a repository git cannot read
/// is a warning naming it, and the build goes on recording no tags rather
/// than invented ones (bad_input.rs has the errors without either flag).
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn with_no_push_a_git_problem_is_a_warning_and_no_tags_are_recorded() {
    let lab: &Lab = require_lab!();
    let repository = lab.repository("git-problems-no-push");
    for problem in GitProblem::ALL {
        let name = problem.name();
        let project = project(&repository, name);
        let variables = problem.make(&project);
        let (run, metadata) = build_recorded(&project, &["--no-push"], &variables);
        let warning = git_warning(&run, "--no-push", &project);
        assert!(warning.contains("records none"), "{name}: {warning}");
        assert_eq!(metadata["tags"], serde_json::json!([]), "{name}: {run:?}");
        assert_eq!(
            metadata["platforms"][0]["platform"], "linux/amd64",
            "{name}: built: {run:?}"
        );
    }
    assert_eq!(published_tags(&repository), Vec::<String>::new());
}

/// The first warning of `run` that starts with `start` (after `warning: `).
fn warning_starting<'a>(run: &'a Run, start: &str) -> Option<&'a str> {
    run.stderr.lines().find(|line| {
        line.strip_prefix("warning: ")
            .is_some_and(|warning| warning.starts_with(start))
    })
}

/// The warning that the tree is dirty, if `run` gave one.
fn warned_dirty(run: &Run) -> Option<&str> {
    warning_starting(run, "the working tree is dirty")
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_dirty_tree_publishes_only_the_dirty_tag() {
    let lab: &Lab = require_lab!();
    let repository = lab.repository("changes");
    let project = project(&repository, "committed\n");
    let commit = project.commit_and_tag(&["v1.2.3"]);
    let short_commit = &commit[..8];

    // A change to a file .dockerignore leaves out is not sent: a release.
    project.file("ignored.txt", "changed, not sent\n");
    let run = build(&project, &[], &[]);
    assert_eq!(warned_dirty(&run), None, "{run:?}");
    let release_tags = sorted(&["1.2.3", short_commit, "latest", "edge"]);
    assert_eq!(published_tags(&repository), release_tags);
    let release = digest_of(&repository, "1.2.3");

    // A change to a sent file: only SHA8-dirty, and a warning naming it.
    project.file("content.txt", "changed\n");
    let run = build(&project, &[], &[]);
    let dirty_tag = format!("{short_commit}-dirty");
    let warning = warned_dirty(&run).unwrap_or_else(|| panic!("a warning: {run:?}"));
    assert!(warning.contains("(content.txt)"), "{warning}");
    assert!(warning.contains(&format!("`{dirty_tag}`")), "{warning}");
    let mut expected = release_tags.clone();
    expected.push(dirty_tag.clone());
    expected.sort();
    assert_eq!(published_tags(&repository), expected);
    assert_ne!(digest_of(&repository, &dirty_tag), release);
    for tag in ["1.2.3", "latest", "edge", short_commit] {
        assert_eq!(digest_of(&repository, tag), release, "{tag} did not move");
    }

    // An untracked file that is sent makes it dirty too: only SHA8-dirty,
    // moved to this build, and the release tags stay where they were.
    let changed = digest_of(&repository, &dirty_tag);
    project.file("content.txt", "committed\n");
    project.file("untracked.txt", "new\n");
    let (run, metadata) = build_recorded(&project, &[], &[]);
    let warning = warned_dirty(&run).unwrap_or_else(|| panic!("a warning: {run:?}"));
    assert!(warning.contains("(untracked.txt)"), "{warning}");
    assert_eq!(metadata["tags"], serde_json::json!([dirty_tag]), "{run:?}");
    assert_eq!(published_tags(&repository), expected, "no other tag");
    let untracked = digest_of(&repository, &dirty_tag);
    assert_ne!(untracked, changed, "{dirty_tag} moved");
    assert_eq!(run.stdout.trim(), format!("{repository}@{untracked}"));
    for tag in ["1.2.3", "latest", "edge", short_commit] {
        assert_eq!(digest_of(&repository, tag), release, "{tag} did not move");
    }

    // --tag still does exactly what it says.
    let run = build(&project, &["--tag", "explicit"], &[]);
    assert_eq!(warned_dirty(&run), None, "{run:?}");
    expected.push("explicit".to_owned());
    expected.sort();
    assert_eq!(published_tags(&repository), expected);
}

/// `mab inspect` reads the published list by tag, by digest and by tag and
/// digest together; each names the list skopeo reads under the tag.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn inspect_reads_a_tag_or_a_digest() {
    let lab = require_lab!();
    let repository = lab.repository("inspect-forms");
    let project = project(&repository, "inspect forms\n");
    build(&project, &["--tag", "1.0"], &[]);
    let digest = digest_of(&repository, "1.0");
    let home = tempfile::tempdir().unwrap();
    for reference in [
        format!("{repository}:1.0"),
        format!("{repository}@{digest}"),
        format!("{repository}:1.0@{digest}"),
    ] {
        let run = mab_with_env(home.path(), project.path(), &["inspect", &reference], &[]);
        assert_eq!(run.code, 0, "{reference}: {run:?}");
        assert_eq!(
            run.stdout.lines().next(),
            Some(format!("{repository}@{digest}").as_str()),
            "{reference}: {run:?}"
        );
        assert!(run.stdout.contains("linux/amd64"), "{reference}: {run:?}");
    }
}
