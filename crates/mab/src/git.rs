//! What the git repository holding the context says, for the tag rules
//! (`mab_registry::tags`): the tags at HEAD, HEAD's commit, and which of
//! the files a build sends differ from HEAD (a dirty tree).
//!
//! The repository is found as git finds it: the nearest directory, from the
//! context's real path (symlinks resolved, as git resolves the directory it
//! runs in) up, holding a `.git` entry (a directory, or a file as in
//! worktrees and submodules). Without one the context is outside git, and
//! git itself is not needed. With one, the git CLI reads it, and every
//! failure is a [`GitError`] naming the repository, never taken for
//! "outside git": a repository git refuses to read (its ownership check,
//! `safe.directory`), a `.git` git does not recognise, git missing, a
//! repository without a commit.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mab_registry::tags::Checkout;

/// Why the repository holding the context cannot be read. Each names the
/// repository; [`GitError::hint`] says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The `git` command cannot be run (not installed, not on `PATH`).
    #[error("the context is in the git repository {}, but the `git` command cannot be run: {source}", repository.display())]
    GitMissing {
        repository: PathBuf,
        source: io::Error,
    },
    /// git's ownership check: the repository belongs to another user and
    /// is not listed in `safe.directory` (git 2.35.2 and later).
    #[error("git refuses to read the repository {}: it is owned by another user, and git reads such a repository only when `safe.directory` names it", repository.display())]
    DubiousOwnership { repository: PathBuf },
    /// git does not take the `.git` found for a repository (a garbage
    /// `HEAD`, a missing `objects` directory, a `.git` file pointing
    /// nowhere), or takes another repository than the one it is in.
    #[error("the git repository {} is broken: {detail}", git_dir.display())]
    Broken { git_dir: PathBuf, detail: String },
    /// HEAD is unborn: `git init` without a commit.
    #[error("the git repository {} has no commit yet, so there is no commit id to tag with", repository.display())]
    NoCommit { repository: PathBuf },
    /// Any other failure of a git command (a corrupt index, an I/O error):
    /// a runtime failure, not a configuration one.
    #[error("git failed on the repository {}: `git {command}`: {detail}", repository.display())]
    Failed {
        repository: PathBuf,
        command: String,
        detail: String,
    },
}

impl GitError {
    /// Whether the repository or the machine is set up wrong (git missing,
    /// its ownership check, a broken `.git`, no commit): bad configuration,
    /// exit 2. A git command failing otherwise ([`GitError::Failed`]: a
    /// corrupt index, an I/O error) is a runtime failure, exit 1.
    pub fn is_configuration(&self) -> bool {
        !matches!(self, GitError::Failed { .. })
    }

    /// How to fix it; every fix also offers `--tag`, with which a git
    /// problem is only a warning.
    pub fn hint(&self) -> String {
        let fix = match self {
            GitError::GitMissing { .. } => {
                "install git (mab reads the tags at HEAD, the commit and the changed files with it)"
                    .to_owned()
            }
            GitError::DubiousOwnership { repository } => format!(
                "if you trust the repository, run `git config --global --add safe.directory {}` as the user running mab (a CI job in a container often runs as another user than the checkout's owner)",
                repository.display()
            ),
            GitError::Broken { git_dir, .. } => format!(
                "repair or remove {} (`git status` there shows what git finds wrong)",
                git_dir.display()
            ),
            GitError::NoCommit { .. } => "commit the project first".to_owned(),
            GitError::Failed {
                repository,
                command,
                ..
            } => format!(
                "run `git -C {} {command}` to see the problem",
                repository.display()
            ),
        };
        format!("{fix}, or give the tags with --tag")
    }
}

/// The top of the git working tree holding `directory` (absolute): the
/// nearest of it and its ancestors that holds a `.git` entry. `None`
/// outside git.
pub fn find_repository(directory: &Path) -> Option<PathBuf> {
    directory
        .ancestors()
        .find(|ancestor| std::fs::symlink_metadata(ancestor.join(".git")).is_ok())
        .map(Path::to_path_buf)
}

/// What a build sends, for the dirty check.
pub struct Sent<'a> {
    /// The context directory (absolute).
    pub context: &'a Path,
    /// The absolute path of every entry sent: the context's files,
    /// directories and symlinks after the ignore rules, the Dockerfile and
    /// the ignore file (which counts even where it does not exist, so that
    /// deleting it is a change). Each path starts with the context's path
    /// as given, not resolved, except the Dockerfile's and the ignore
    /// file's when they lie outside it.
    pub paths: HashSet<PathBuf>,
    /// Whether a path relative to the context that does not exist would be
    /// sent were it there (the ignore rules): a tracked file deleted from
    /// the context is a change when it would.
    pub would_send: &'a dyn Fn(&Path) -> bool,
}

/// The checkout holding the context (absolute): `Ok(None)` outside git,
/// else what the git CLI reads from it (the tags at HEAD, HEAD, and the
/// entries of `sent` that differ from HEAD or are untracked and not ignored
/// by git), or why it cannot be read. A context reached through a symlink
/// (`vendor/app` linking into another repository) belongs to the
/// repository holding its real path, as for git.
pub fn checkout(sent: &Sent) -> Result<Option<Checkout>, GitError> {
    let context = &real_path(sent.context);
    let sent = &Sent {
        context,
        paths: real_paths(sent, context),
        would_send: sent.would_send,
    };
    let Some(repository) = find_repository(context) else {
        return Ok(None);
    };
    let git = Git {
        repository: &repository,
    };
    let toplevel = git.run(context, &["rev-parse", "--show-toplevel"])?;
    let toplevel = Path::new(OsStr::from_bytes(toplevel.trim_ascii_end()));
    if !same_directory(toplevel, &repository) {
        return Err(GitError::Broken {
            git_dir: repository.join(".git"),
            detail: format!(
                "git passes it over and takes {} for the repository",
                toplevel.display()
            ),
        });
    }
    let head = git.output(
        &repository,
        &["rev-parse", "-q", "--verify", "HEAD^{commit}"],
    )?;
    if !head.status.success() {
        return Err(match head.stderr.is_empty() {
            true => GitError::NoCommit {
                repository: repository.clone(),
            },
            false => git.failure("rev-parse -q --verify HEAD^{commit}", &head),
        });
    }
    let tags_at_head =
        String::from_utf8_lossy(&git.run(&repository, &["tag", "--points-at", "HEAD"])?)
            .lines()
            .map(str::to_owned)
            .collect();
    let changed = changed_files(&git, sent)?;
    Ok(Some(Checkout {
        tags_at_head,
        head: String::from_utf8_lossy(&head.stdout).trim().to_owned(),
        changed,
    }))
}

/// Where a checkout's source comes from and when HEAD was committed, for
/// the image's `org.opencontainers.image.*` labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    /// The URL of the remote the current branch tracks (`branch.NAME.remote`),
    /// else of `origin`, as `git remote get-url` gives it (`insteadOf`
    /// rewrites applied), credentials still in it; `None` when there is no
    /// such remote (HEAD detached and no `origin`, a repository never
    /// cloned), or when the branch tracks a local branch (remote `.`).
    pub remote_url: Option<String>,
    /// HEAD's committer time, in seconds since the Unix epoch (git's `%ct`).
    pub commit_time: i64,
}

/// The [`Provenance`] of the checkout holding `context` (absolute):
/// `Ok(None)` outside git. Run after [`checkout`] succeeded, so the
/// repository is known to be readable and to have a commit; a git failure
/// here is a [`GitError`] all the same.
pub fn provenance(context: &Path) -> Result<Option<Provenance>, GitError> {
    let context = real_path(context);
    let Some(repository) = find_repository(&context) else {
        return Ok(None);
    };
    let git = Git {
        repository: &repository,
    };
    // The stdout of a command that succeeded with some output.
    let answer = |output: Output| {
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        (output.status.success() && !text.is_empty()).then_some(text)
    };
    let time = git.run(&repository, &["show", "-s", "--format=%ct", "HEAD"])?;
    let time = String::from_utf8_lossy(&time).trim().to_owned();
    let commit_time = time.parse().map_err(|_| GitError::Failed {
        repository: repository.clone(),
        command: "show -s --format=%ct HEAD".to_owned(),
        detail: format!("`{time}` is not a time in seconds"),
    })?;
    // A detached HEAD has no branch, so no upstream: `origin` then.
    let tracked = match answer(git.output(&repository, &["symbolic-ref", "-q", "--short", "HEAD"])?)
    {
        Some(branch) => {
            let key = format!("branch.{branch}.remote");
            answer(git.output(&repository, &["config", "--get", &key])?)
        }
        None => None,
    };
    let remote = tracked.unwrap_or_else(|| "origin".to_owned());
    let remote_url = match remote.as_str() {
        "." => None,
        _ => answer(git.output(&repository, &["remote", "get-url", &remote])?),
    };
    Ok(Some(Provenance {
        remote_url,
        commit_time,
    }))
}

/// `path` with every symlink resolved, as given when it cannot be (it
/// does not exist).
fn real_path(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// The paths of `sent` as git names them once the context is `context`
/// (its real path): an entry under the context moves along with it; an
/// entry outside it (the Dockerfile, the ignore file) is its directory's
/// real path and its own name (a symlinked Dockerfile is the link, which is
/// what git tracks).
fn real_paths(sent: &Sent, context: &Path) -> HashSet<PathBuf> {
    sent.paths
        .iter()
        .map(|path| match path.strip_prefix(sent.context) {
            Ok(relative) => context.join(relative),
            Err(_) => match (path.parent(), path.file_name()) {
                (Some(parent), Some(name)) => real_path(parent).join(name),
                _ => path.clone(),
            },
        })
        .collect()
}

/// The entries of `sent` that `git status` reports (changed, added,
/// deleted, renamed, untracked and not ignored), as paths relative to the
/// repository, in git's order, each once. One `git status` for the context directory
/// and whatever is sent from outside it, not a pathspec per file.
fn changed_files(git: &Git, sent: &Sent) -> Result<Vec<String>, GitError> {
    let repository = git.repository;
    let mut arguments: Vec<OsString> = [
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=all",
        "--",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    let mut pathspec = |path: &Path| {
        if let Ok(relative) = path.strip_prefix(repository) {
            arguments.push(match relative.as_os_str().is_empty() {
                true => OsString::from("."),
                false => relative.as_os_str().to_owned(),
            });
        }
    };
    pathspec(sent.context);
    for path in &sent.paths {
        if !path.starts_with(sent.context) {
            pathspec(path);
        }
    }
    let status = git.run(repository, &arguments)?;
    let mut changed = Vec::new();
    let mut named = HashSet::new();
    for reported in status_paths(&status) {
        let absolute = repository.join(reported);
        let is_sent = sent.paths.contains(&absolute)
            || (std::fs::symlink_metadata(&absolute).is_err()
                && absolute
                    .strip_prefix(sent.context)
                    .is_ok_and(|relative| (sent.would_send)(relative)));
        let name = reported.to_string_lossy().into_owned();
        // A path can be reported twice (`git rm --cached`: deleted in the
        // index, untracked in the tree).
        if is_sent && named.insert(name.clone()) {
            changed.push(name);
        }
    }
    Ok(changed)
}

/// The paths of `git status --porcelain=v1 -z` output, relative to the
/// repository: each entry is `XY PATH`, a rename or copy followed by its
/// source path (which is reported too); a trailing `/` (an untracked
/// repository inside) is dropped. Untracked files are `??`.
fn status_paths(output: &[u8]) -> Vec<&Path> {
    let mut paths = Vec::new();
    let mut fields = output.split(|byte| *byte == 0);
    while let Some(entry) = fields.next() {
        let (Some(status), Some(path)) = (entry.get(..2), entry.get(3..)) else {
            continue;
        };
        paths.push(path);
        if status.iter().any(|code| matches!(code, b'R' | b'C')) {
            paths.extend(fields.next());
        }
    }
    paths
        .into_iter()
        .map(|path| Path::new(OsStr::from_bytes(path.strip_suffix(b"/").unwrap_or(path))))
        .collect()
}

/// Whether two paths name one directory (symlinks resolved).
fn same_directory(left: &Path, right: &Path) -> bool {
    match (left.canonicalize(), right.canonicalize()) {
        (Ok(left), Ok(right)) => left == right,
        _ => left == right,
    }
}

/// The git CLI on one repository.
struct Git<'a> {
    repository: &'a Path,
}

impl Git<'_> {
    /// `git -C DIRECTORY ARGUMENTS`, whatever its exit status. Messages are
    /// in English (`LC_ALL=C`) so that they can be told apart, and
    /// `GIT_DIR`/`GIT_WORK_TREE` from mab's environment are left out so that
    /// git finds the repository from the directory, as [`find_repository`]
    /// does. `--no-optional-locks`: reading never writes the index;
    /// `--literal-pathspecs`: a file name is never a pattern.
    fn output<S: AsRef<OsStr>>(
        &self,
        directory: &Path,
        arguments: &[S],
    ) -> Result<Output, GitError> {
        Command::new("git")
            .args(["--no-optional-locks", "--literal-pathspecs", "-C"])
            .arg(directory)
            .args(arguments)
            .env("LC_ALL", "C")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .output()
            .map_err(|source| GitError::GitMissing {
                repository: self.repository.to_path_buf(),
                source,
            })
    }

    /// [`Git::output`]'s stdout when git succeeded, else the failure.
    fn run<S: AsRef<OsStr>>(&self, directory: &Path, arguments: &[S]) -> Result<Vec<u8>, GitError> {
        let output = self.output(directory, arguments)?;
        if !output.status.success() {
            let command: Vec<_> = arguments
                .iter()
                .map(|argument| argument.as_ref().to_string_lossy())
                .collect();
            return Err(self.failure(&command.join(" "), &output));
        }
        Ok(output.stdout)
    }

    /// What a failed git command's stderr says went wrong.
    fn failure(&self, command: &str, output: &Output) -> GitError {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let repository = self.repository.to_path_buf();
        if stderr.contains("detected dubious ownership") {
            return GitError::DubiousOwnership { repository };
        }
        let detail = stderr
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .map(|line| line.strip_prefix("fatal: ").unwrap_or(line).to_owned())
            .unwrap_or_else(|| format!("exit status {}", output.status));
        if stderr.contains("not a git repository") {
            return GitError::Broken {
                git_dir: repository.join(".git"),
                detail: format!("git says \"{detail}\""),
            };
        }
        GitError::Failed {
            repository,
            command: command.to_owned(),
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs git in `directory` as a person would, with an identity.
    fn git(directory: &Path, arguments: &[&str]) -> String {
        let output = Command::new("git")
            .arg("-C")
            .arg(directory)
            .args(arguments)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap();
        assert!(output.status.success(), "git {arguments:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// A repository with one empty commit and these tags on it; its commit id.
    fn repository_tagged(directory: &Path, tags: &[&str]) -> String {
        git(directory, &["init", "-q"]);
        git(directory, &["commit", "-q", "--allow-empty", "-m", "first"]);
        for tag in tags {
            git(directory, &["tag", tag]);
        }
        git(directory, &["rev-parse", "HEAD"])
    }

    /// `context` sending these files (relative to it); a deleted file would
    /// be sent unless its name starts with `ignored`.
    fn sending<'a>(context: &'a Path, files: &[&str]) -> Sent<'a> {
        Sent {
            context,
            paths: files.iter().map(|file| context.join(file)).collect(),
            would_send: &|relative| !relative.to_string_lossy().starts_with("ignored"),
        }
    }

    /// Writes `text` to `directory/relative`.
    fn write(directory: &Path, relative: &str, text: &str) {
        let path = directory.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn reads_git_status_paths() {
        let output = b" M a.txt\0?? new dir/b c\0R  new.txt\0old.txt\0?? nested/\0 D gone\0";
        let paths: Vec<&Path> = status_paths(output);
        let expected: Vec<&Path> = [
            "a.txt",
            "new dir/b c",
            "new.txt",
            "old.txt",
            "nested",
            "gone",
        ]
        .into_iter()
        .map(Path::new)
        .collect();
        assert_eq!(paths, expected);
        assert!(status_paths(b"").is_empty());
    }

    #[test]
    fn a_dirty_tree_is_one_whose_sent_files_changed() {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path();
        for file in [
            "Dockerfile",
            "ctx/a.txt",
            "ctx/ignored.txt",
            "ctx/gone.txt",
            "ctx/ignored-gone.txt",
            "outside.txt",
        ] {
            write(root, file, "committed\n");
        }
        write(root, ".gitignore", "*.log\n");
        repository_tagged(root, &[]);
        git(root, &["add", "-A"]);
        git(root, &["commit", "-q", "-m", "files"]);
        let context = root.join("ctx");
        let sent_files = ["a.txt", "new.txt", "build.log", ".dockerignore"];
        let changed = |sent: &Sent| checkout(sent).unwrap().unwrap().changed;
        let mut sent = sending(&context, &sent_files);
        sent.paths.insert(root.join("Dockerfile"));
        assert_eq!(changed(&sent), Vec::<String>::new(), "a clean tree");

        // Changes that are not sent, or ignored by git, do not count.
        write(root, "ctx/ignored.txt", "changed\n");
        write(root, "outside.txt", "changed\n");
        write(&context, "build.log", "untracked but ignored by git\n");
        std::fs::remove_file(context.join("ignored-gone.txt")).unwrap();
        assert_eq!(changed(&sent), Vec::<String>::new(), "nothing sent changed");

        // Each of these does.
        write(&context, "a.txt", "changed\n");
        write(&context, "new.txt", "untracked\n");
        write(root, "Dockerfile", "changed\n");
        std::fs::remove_file(context.join("gone.txt")).unwrap();
        let mut found = changed(&sent);
        found.sort();
        assert_eq!(
            found,
            ["Dockerfile", "ctx/a.txt", "ctx/gone.txt", "ctx/new.txt"]
        );

        // Deleted in the index and untracked in the tree: named once.
        git(root, &["rm", "-q", "--cached", "ctx/a.txt"]);
        let found = changed(&sent);
        let named: Vec<&String> = found.iter().filter(|path| *path == "ctx/a.txt").collect();
        assert_eq!(named.len(), 1, "{found:?}");
    }

    #[test]
    fn outside_git_there_is_no_checkout() {
        let directory = tempfile::tempdir().unwrap();
        assert_eq!(find_repository(directory.path()), None);
        assert_eq!(checkout(&sending(directory.path(), &[])).unwrap(), None);
    }

    #[test]
    fn reads_the_tags_at_head_from_a_subdirectory() {
        let directory = tempfile::tempdir().unwrap();
        let commit = repository_tagged(directory.path(), &["v1.9.0", "v1.10.0", "nightly"]);
        let context = directory.path().join("deep/context");
        std::fs::create_dir_all(&context).unwrap();
        assert_eq!(find_repository(&context).as_deref(), Some(directory.path()));
        let mut checkout = checkout(&sending(&context, &[])).unwrap().unwrap();
        checkout.tags_at_head.sort();
        assert_eq!(checkout.tags_at_head, ["nightly", "v1.10.0", "v1.9.0"]);
        assert_eq!(checkout.head, commit);
    }

    #[test]
    fn a_context_linked_into_another_repository_belongs_to_that_repository() {
        let directory = tempfile::tempdir().unwrap();
        let outer = directory.path().join("outer");
        let other = directory.path().join("other");
        write(&outer, "README", "outer\n");
        write(&other, "app/a.txt", "committed\n");
        write(&other, "app/Dockerfile", "FROM scratch\n");
        repository_tagged(&outer, &["v1.0.0"]);
        git(&other, &["init", "-q"]);
        git(&other, &["add", "-A"]);
        git(&other, &["commit", "-q", "-m", "app"]);
        git(&other, &["tag", "v2.0.0"]);
        let other_head = git(&other, &["rev-parse", "HEAD"]);
        std::fs::create_dir_all(outer.join("vendor")).unwrap();
        std::os::unix::fs::symlink(other.join("app"), outer.join("vendor/app")).unwrap();

        let context = outer.join("vendor/app");
        let sent = sending(&context, &["a.txt", "new.txt", "Dockerfile"]);
        let found = checkout(&sent).unwrap().unwrap();
        assert_eq!(found.head, other_head);
        assert_eq!(found.tags_at_head, ["v2.0.0"]);
        assert_eq!(found.changed, Vec::<String>::new());

        write(&context, "a.txt", "changed through the link\n");
        write(&context, "new.txt", "untracked\n");
        let mut changed = checkout(&sent).unwrap().unwrap().changed;
        changed.sort();
        assert_eq!(changed, ["app/a.txt", "app/new.txt"]);
    }

    #[test]
    fn provenance_names_the_tracked_remote_else_origin() {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path();
        let commit = repository_tagged(root, &[]);
        let read = || provenance(root).unwrap().unwrap();
        let time = git(root, &["show", "-s", "--format=%ct", "HEAD"]);
        assert_eq!(read().commit_time.to_string(), time);
        assert_eq!(read().remote_url, None, "no remote");

        git(
            root,
            &[
                "remote",
                "add",
                "origin",
                "https://u:p@example.com/origin.git",
            ],
        );
        git(root, &["remote", "add", "fork", "git@example.com:fork.git"]);
        assert_eq!(
            read().remote_url.as_deref(),
            Some("https://u:p@example.com/origin.git"),
            "no upstream: origin"
        );
        let branch = git(root, &["symbolic-ref", "--short", "HEAD"]);
        git(
            root,
            &["config", &format!("branch.{branch}.remote"), "fork"],
        );
        assert_eq!(
            read().remote_url.as_deref(),
            Some("git@example.com:fork.git"),
            "the branch's upstream remote"
        );
        git(root, &["config", &format!("branch.{branch}.remote"), "."]);
        assert_eq!(read().remote_url, None, "a local upstream");
        git(root, &["checkout", "-q", "--detach", &commit]);
        assert_eq!(
            read().remote_url.as_deref(),
            Some("https://u:p@example.com/origin.git"),
            "detached: origin"
        );
        let outside = tempfile::tempdir().unwrap();
        assert_eq!(provenance(outside.path()).unwrap(), None);
    }

    #[test]
    fn a_repository_without_a_commit_is_an_error() {
        let directory = tempfile::tempdir().unwrap();
        git(directory.path(), &["init", "-q"]);
        let error = checkout(&sending(directory.path(), &[])).unwrap_err();
        assert!(matches!(error, GitError::NoCommit { .. }), "{error:?}");
    }

    #[test]
    fn a_broken_git_directory_is_an_error_not_outside_git() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(directory.path().join(".git")).unwrap();
        std::fs::write(directory.path().join(".git/HEAD"), "garbage\n").unwrap();
        let error = checkout(&sending(directory.path(), &[])).unwrap_err();
        let GitError::Broken { git_dir, detail } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(git_dir, &directory.path().join(".git"));
        assert!(detail.contains("not a git repository"), "{detail}");
    }

    #[test]
    fn a_broken_git_directory_inside_a_repository_is_not_passed_over() {
        let outer = tempfile::tempdir().unwrap();
        repository_tagged(outer.path(), &["v1.0.0"]);
        let inner = outer.path().join("inner");
        std::fs::create_dir_all(inner.join(".git")).unwrap();
        std::fs::write(inner.join(".git/HEAD"), "garbage\n").unwrap();
        let error = checkout(&sending(&inner, &[])).unwrap_err();
        let GitError::Broken { git_dir, detail } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(git_dir, &inner.join(".git"));
        assert!(detail.contains("takes"), "{detail}");
    }

    #[test]
    fn every_hint_offers_the_tag_flag() {
        let repository = PathBuf::from("/project");
        let errors = [
            GitError::GitMissing {
                repository: repository.clone(),
                source: io::Error::from(io::ErrorKind::NotFound),
            },
            GitError::DubiousOwnership {
                repository: repository.clone(),
            },
            GitError::Broken {
                git_dir: repository.join(".git"),
                detail: "x".to_owned(),
            },
            GitError::NoCommit {
                repository: repository.clone(),
            },
            GitError::Failed {
                repository: repository.clone(),
                command: "status".to_owned(),
                detail: "x".to_owned(),
            },
        ];
        for error in errors {
            assert_eq!(
                error.is_configuration(),
                !matches!(error, GitError::Failed { .. }),
                "only an unexpected git failure is a runtime one: {error:?}"
            );
            assert!(error.to_string().contains("/project"), "{error}");
            assert!(
                error.hint().ends_with("or give the tags with --tag"),
                "{error:?}"
            );
        }
    }
}
