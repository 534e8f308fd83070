//! Where a build's files are, found the way `docker build` finds them.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::error::ContextError;
use crate::follow::{follow_links, resolve_links};
use crate::ignore::{DockerIgnore, DOCKERIGNORE};
use crate::walk::{walk, ContextListing, Selection};

/// The Dockerfile's name when none is given.
pub const DEFAULT_DOCKERFILE: &str = "Dockerfile";
/// Tried when no name is given and [`DEFAULT_DOCKERFILE`] does not exist,
/// as the docker CLI does.
const LOWERCASE_DOCKERFILE: &str = "dockerfile";

/// A build's context directory, its Dockerfile and the ignore file that
/// applies, as `docker build` (BuildKit) finds them:
///
/// - the Dockerfile is the one named (strictly), or, when none is named,
///   `Dockerfile` in the context, else `dockerfile`; it may lie outside the
///   context, as with `docker build -f`, since it travels separately (the
///   engine asks for the directory holding it under the name `dockerfile`);
/// - the ignore file is `<name>.dockerignore` beside the Dockerfile when
///   that exists, *instead of* the context's `.dockerignore` (BuildKit's
///   rule). `<name>` is the name the build request gives: the Dockerfile's
///   own (a symlink's, not its target's), or `Dockerfile` when the lowercase
///   `dockerfile` was found, since the frontend asks for `Dockerfile` and
///   falls back to `dockerfile` itself;
/// - every symlink on the way to the Dockerfile or an ignore file is
///   followed inside the directory it is sent from, as fsutil follows the
///   frontend's `followpaths`.
///
/// Both the listing made before anything is sent ([`BuildContext::scan`])
/// and what is served to the engine use this one value.
#[derive(Clone, Debug)]
pub struct BuildContext {
    dir: PathBuf,
    dockerfile: PathBuf,
    request_name: String,
    /// The ignore file as named (it may be a symlink), when one exists.
    ignore_file: Option<PathBuf>,
    /// Ignore files that are symlinks the engine cannot follow.
    warnings: Vec<String>,
    /// The rules of `ignore_file`, parsed once.
    ignore: DockerIgnore,
}

impl BuildContext {
    /// Finds the files of a build whose context is `dir` (a directory) and
    /// whose Dockerfile is `dockerfile` (relative to `dir`, or absolute), or
    /// the default one when `None`.
    ///
    /// Errors: the context is missing or not a directory; the Dockerfile is
    /// missing, not a regular file, a symlink whose target the engine could
    /// not read (fsutil follows it only inside the Dockerfile's directory),
    /// or has a name that is not UTF-8; the ignore file cannot be read or
    /// has a pattern Docker refuses.
    pub fn locate(dir: &Path, dockerfile: Option<&Path>) -> Result<BuildContext, ContextError> {
        check_context_dir(dir)?;
        let named = dockerfile.is_some();
        let dockerfile = match dockerfile {
            Some(given) => normalize(&dir.join(given)),
            None => default_dockerfile(dir),
        };
        let is_link = match fs::symlink_metadata(&dockerfile) {
            Ok(metadata) => metadata.file_type().is_symlink(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let lowercase = dockerfile
                    .file_name()
                    .filter(|name| *name == DEFAULT_DOCKERFILE)
                    .map(|_| dockerfile.with_file_name(LOWERCASE_DOCKERFILE))
                    .filter(|lowercase| lowercase.is_file());
                return Err(ContextError::DockerfileMissing {
                    path: dockerfile,
                    context: dir.to_path_buf(),
                    lowercase,
                });
            }
            Err(source) => {
                return Err(ContextError::Read {
                    path: dockerfile,
                    source,
                })
            }
        };
        let (parent, name) = match (dockerfile.parent(), dockerfile.file_name()) {
            (Some(parent), Some(name)) => (parent, name),
            _ => return Err(ContextError::DockerfileNotFile { path: dockerfile }),
        };
        let Some(name) = name.to_str().map(str::to_owned) else {
            return Err(ContextError::NameNotUtf8 { path: dockerfile });
        };
        let target = resolved(parent, &name);
        let readable = fs::symlink_metadata(&target).is_ok_and(|metadata| metadata.is_file());
        // A link that leads nowhere even on this host, or to a directory.
        let on_host = fs::metadata(&dockerfile);
        if !readable && is_link && on_host.is_err() {
            return Err(ContextError::DockerfileLinkDangling {
                target: fs::read_link(&dockerfile).unwrap_or_default(),
                dockerfile,
            });
        }
        if !readable && is_link && on_host.is_ok_and(|metadata| metadata.is_file()) {
            return Err(ContextError::DockerfileLinkUnresolved {
                target: fs::read_link(&dockerfile).unwrap_or_default(),
                read_as: target,
                dir: parent.to_path_buf(),
                dockerfile,
            });
        }
        if !readable {
            return Err(ContextError::DockerfileNotFile { path: dockerfile });
        }
        let request_name = if !named && name == LOWERCASE_DOCKERFILE {
            DEFAULT_DOCKERFILE.to_owned()
        } else {
            name
        };
        let mut context = BuildContext {
            dir: dir.to_path_buf(),
            dockerfile,
            request_name,
            ignore_file: None,
            warnings: Vec::new(),
            ignore: DockerIgnore::default(),
        };
        let candidates = [
            (
                context.dockerfile_dir().to_path_buf(),
                context.specific_ignore_name(),
            ),
            (context.dir.clone(), DOCKERIGNORE.to_owned()),
        ];
        for (base, name) in &candidates {
            let named = base.join(name);
            let is_link = fs::symlink_metadata(&named).is_ok_and(|metadata| metadata.is_symlink());
            let read_as = resolved(base, name);
            if is_link && !read_as.is_file() {
                context.warnings.push(format!(
                    "the ignore file {} is a symlink the engine reads as {}, where there is no file, \
                     so it leaves nothing out (a symlink is followed only inside {}, as fsutil does)",
                    named.display(),
                    read_as.display(),
                    base.display()
                ));
            }
        }
        if let Some((base, name)) = candidates
            .into_iter()
            .find(|(base, name)| resolved(base, name).is_file())
        {
            // Read where the engine reads it: its symlinks followed inside
            // its directory.
            context.ignore = DockerIgnore::read(&resolved(&base, &name))?;
            context.ignore_file = Some(base.join(name));
        }
        Ok(context)
    }

    /// The context directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Dockerfile: the context joined with the name given (or found),
    /// normalised (`.` and `..` removed without following symlinks).
    pub fn dockerfile(&self) -> &Path {
        &self.dockerfile
    }

    /// Checks that the Dockerfile names the stage `target`, compared as
    /// BuildKit compares `--target` (case-insensitively, by name only; see
    /// [`stage_names`](crate::stage_names)). Errors: the Dockerfile cannot
    /// be read ([`ContextError::Read`]), or it has no such stage
    /// ([`ContextError::TargetMissing`], listing those it has).
    pub fn check_target(&self, target: &str) -> Result<(), ContextError> {
        let bytes = std::fs::read(&self.dockerfile).map_err(|source| ContextError::Read {
            path: self.dockerfile.clone(),
            source,
        })?;
        let stages = crate::stage_names(&String::from_utf8_lossy(&bytes));
        if stages.contains(&target.to_lowercase()) {
            return Ok(());
        }
        Err(ContextError::TargetMissing {
            dockerfile: self.dockerfile.clone(),
            target: target.to_owned(),
            stages,
        })
    }

    /// The directory the engine receives the Dockerfile from.
    pub fn dockerfile_dir(&self) -> &Path {
        self.dockerfile.parent().unwrap_or(Path::new("/"))
    }

    /// The Dockerfile's name as the build request gives it: its file name,
    /// or `Dockerfile` when the lowercase `dockerfile` was found without a
    /// name given (the frontend then reads `dockerfile` itself).
    pub fn dockerfile_name(&self) -> &str {
        &self.request_name
    }

    /// `<name>.dockerignore`, the ignore file the frontend looks for beside
    /// the Dockerfile.
    fn specific_ignore_name(&self) -> String {
        format!("{}.dockerignore", self.request_name)
    }

    /// What a user should know about these files that is not an error: an
    /// ignore file that is a symlink the engine cannot follow (it then
    /// leaves nothing out, for the engine as for mab). One sentence each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The ignore file that applies, as named (it may be a symlink), when
    /// one exists.
    pub fn ignore_file(&self) -> Option<&Path> {
        self.ignore_file.as_deref()
    }

    /// The rules of the ignore file that applies (none without one), as
    /// [`BuildContext::locate`] read them.
    pub fn ignore(&self) -> &DockerIgnore {
        &self.ignore
    }

    /// The context as the engine receives it: every entry the ignore rules
    /// let through, in the order sent. (The Dockerfile and the ignore file
    /// travel separately and are here only when the rules keep them.)
    pub fn scan(&self) -> Result<ContextListing, ContextError> {
        walk(
            &self.dir,
            Selection {
                exclude: Some(&self.ignore),
                include: None,
            },
        )
    }

    /// Every path whose contents decide what the engine receives, as
    /// absolute paths, each once, for a dirty-tree check: the entries of
    /// `listing` (directories included), and what the frontend fetches
    /// besides the context (the Dockerfile and `<name>.dockerignore` from the
    /// Dockerfile's directory, `dockerfile` too when the name is
    /// `Dockerfile`, and the context's `.dockerignore`), each with the
    /// symlinks on the way and their targets. A path that does not exist
    /// counts too, so that removing one is a change.
    pub fn sent_paths(&self, listing: &ContextListing) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = listing
            .entries
            .iter()
            .map(|entry| self.dir.join(&entry.path))
            .collect();
        let mut beside_dockerfile = vec![self.request_name.clone(), self.specific_ignore_name()];
        if self.request_name == DEFAULT_DOCKERFILE {
            beside_dockerfile.push(LOWERCASE_DOCKERFILE.to_owned());
        }
        let fetched = [
            (self.dockerfile_dir(), beside_dockerfile),
            (self.dir.as_path(), vec![DOCKERIGNORE.to_owned()]),
        ];
        for (base, names) in fetched {
            paths.extend(
                follow_links(base, &names)
                    .iter()
                    .map(|relative| base.join(relative)),
            );
        }
        paths.sort();
        paths.dedup();
        paths
    }
}

/// Where the engine reads `name` in `base`: with every symlink on the way
/// followed inside `base`, as fsutil follows `followpaths`.
fn resolved(base: &Path, name: &str) -> PathBuf {
    base.join(resolve_links(base, name))
}

/// `Dockerfile`, else `dockerfile` when only that exists (the docker CLI's
/// lookup, which looks at names without following symlinks).
fn default_dockerfile(dir: &Path) -> PathBuf {
    let default = dir.join(DEFAULT_DOCKERFILE);
    let lowercase = dir.join(LOWERCASE_DOCKERFILE);
    if fs::symlink_metadata(&default).is_err() && fs::symlink_metadata(&lowercase).is_ok() {
        lowercase
    } else {
        default
    }
}

fn check_context_dir(dir: &Path) -> Result<(), ContextError> {
    match fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => Ok(()),
        Ok(_) => Err(ContextError::ContextNotDirectory {
            path: dir.to_path_buf(),
        }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            Err(ContextError::ContextMissing {
                path: dir.to_path_buf(),
            })
        }
        Err(source) => Err(ContextError::Read {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// `/a/./b/../c` -> `/a/c`, without looking at the filesystem (as Go's
/// `filepath.Clean`, which the docker CLI applies to `-f`).
fn normalize(path: &Path) -> PathBuf {
    let mut normalized = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match normalized.components().next_back() {
                Some(Component::Normal(_)) => {
                    normalized.pop();
                }
                // `/..` is `/`.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                // Nothing yet, or only `..`s: keep climbing.
                Some(Component::ParentDir | Component::CurDir) | None => normalized.push(".."),
            },
            other => normalized.push(other),
        }
    }
    normalized
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(root: &Path, file: &str, contents: &str) {
        let path = root.join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    fn scanned(context: &BuildContext) -> Vec<String> {
        context.scan().unwrap().path_texts()
    }

    #[test]
    fn the_dockerfile_specific_ignore_file_replaces_the_root_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, ".dockerignore", "*\n!api/\n!build/\n");
        write(root, "api/main.go", "");
        write(root, "web/index.html", "");
        write(root, "web/draft.tmp", "");
        write(
            root,
            "build/web.Dockerfile",
            "FROM scratch\nCOPY web/ /web/\n",
        );
        write(
            root,
            "build/api.Dockerfile",
            "FROM scratch\nCOPY api/ /api/\n",
        );

        let api = BuildContext::locate(root, Some(Path::new("build/api.Dockerfile"))).unwrap();
        assert_eq!(
            api.ignore_file(),
            Some(root.join(".dockerignore").as_path())
        );
        assert_eq!(
            scanned(&api),
            [
                "api",
                "api/main.go",
                "build",
                "build/api.Dockerfile",
                "build/web.Dockerfile"
            ]
        );

        write(root, "build/web.Dockerfile.dockerignore", "**/*.tmp\n");
        let web = BuildContext::locate(root, Some(Path::new("build/web.Dockerfile"))).unwrap();
        assert_eq!(
            web.ignore_file(),
            Some(root.join("build/web.Dockerfile.dockerignore").as_path())
        );
        assert_eq!(web.dockerfile_name(), "web.Dockerfile");
        assert_eq!(web.dockerfile_dir(), root.join("build"));
        let listed = scanned(&web);
        assert!(listed.contains(&"web/index.html".to_owned()), "{listed:?}");
        assert!(!listed.contains(&"web/draft.tmp".to_owned()), "{listed:?}");
        assert!(listed.contains(&".dockerignore".to_owned()), "{listed:?}");
    }

    #[test]
    fn without_a_name_dockerfile_then_lowercase_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "dockerfile", "FROM scratch\n");
        let found = BuildContext::locate(root, None).unwrap();
        assert_eq!(found.dockerfile(), root.join("dockerfile"));
        // The request names `Dockerfile`; the frontend falls back itself,
        // and reads `Dockerfile.dockerignore`, not `dockerfile.dockerignore`.
        assert_eq!(found.dockerfile_name(), "Dockerfile");
        write(root, "dockerfile.dockerignore", "b\n");
        assert_eq!(
            BuildContext::locate(root, None).unwrap().ignore_file(),
            None
        );
        write(root, "Dockerfile.dockerignore", "a\n");
        assert_eq!(
            BuildContext::locate(root, None).unwrap().ignore_file(),
            Some(root.join("Dockerfile.dockerignore").as_path())
        );
        // Named, the lowercase file is taken as it is.
        let named = BuildContext::locate(root, Some(Path::new("dockerfile"))).unwrap();
        assert_eq!(named.dockerfile_name(), "dockerfile");
        assert_eq!(
            named.ignore_file(),
            Some(root.join("dockerfile.dockerignore").as_path())
        );

        write(root, "Dockerfile", "FROM scratch\n");
        let found = BuildContext::locate(root, None).unwrap();
        assert_eq!(found.dockerfile_name(), "Dockerfile");

        // A name given is looked up as it is.
        fs::remove_file(root.join("Dockerfile")).unwrap();
        let error = BuildContext::locate(root, Some(Path::new("Dockerfile"))).unwrap_err();
        assert!(
            matches!(error, ContextError::DockerfileMissing { .. }),
            "{error:?}"
        );
        fs::remove_file(root.join("dockerfile")).unwrap();
        let error = BuildContext::locate(root, None).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "the Dockerfile {} does not exist",
                root.join("Dockerfile").display()
            )
        );
    }

    #[test]
    fn the_dockerfile_may_lie_outside_the_context() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "docker/Dockerfile", "FROM scratch\n");
        write(root, "docker/Dockerfile.dockerignore", "*.tmp\n");
        write(root, "app/main.c", "");
        write(root, "app/x.tmp", "");
        let context = root.join("app");
        let found =
            BuildContext::locate(&context, Some(Path::new("../docker/Dockerfile"))).unwrap();
        assert_eq!(found.dockerfile(), root.join("docker/Dockerfile"));
        assert_eq!(found.dockerfile_dir(), root.join("docker"));
        assert_eq!(scanned(&found), ["main.c"]);
        let listing = found.scan().unwrap();
        assert_eq!(
            found.sent_paths(&listing),
            [
                root.join("app/.dockerignore"),
                root.join("app/main.c"),
                root.join("docker/Dockerfile"),
                root.join("docker/Dockerfile.dockerignore"),
                root.join("docker/dockerfile"),
            ]
        );
        fs::remove_file(root.join("docker/Dockerfile.dockerignore")).unwrap();
        let found =
            BuildContext::locate(&context, Some(Path::new("../docker/Dockerfile"))).unwrap();
        let listing = found.scan().unwrap();
        assert_eq!(
            found.sent_paths(&listing),
            [
                root.join("app/.dockerignore"),
                root.join("app/main.c"),
                root.join("app/x.tmp"),
                root.join("docker/Dockerfile"),
                root.join("docker/Dockerfile.dockerignore"),
                root.join("docker/dockerfile"),
            ]
        );
        let absolute = root.join("docker/Dockerfile");
        let found = BuildContext::locate(&context, Some(&absolute)).unwrap();
        assert_eq!(found.dockerfile(), absolute);
    }

    #[test]
    fn a_symlinked_dockerfile_must_lead_to_a_file_the_engine_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("app");
        let root = root.as_path();
        write(root, "docker/Dockerfile.prod", "FROM scratch\n");
        write(root, "Dockerfile.release", "FROM scratch\n");
        write(dir.path(), "shared/Dockerfile", "FROM scratch\n");
        symlink("docker/Dockerfile.prod", root.join("Dockerfile")).unwrap();
        symlink("Dockerfile.release", root.join("Dockerfile.alias")).unwrap();
        symlink("../shared/Dockerfile", root.join("Dockerfile.escaping")).unwrap();
        symlink("nowhere", root.join("Dockerfile.dangling")).unwrap();
        symlink("docker", root.join("Dockerfile.to-dir")).unwrap();
        fs::create_dir(root.join("Dockerfile.dir")).unwrap();

        let found = BuildContext::locate(root, None).unwrap();
        assert_eq!(found.dockerfile_name(), "Dockerfile");
        // What the link leads to is sent, so it counts for a dirty tree.
        let sent = found.sent_paths(&found.scan().unwrap());
        assert!(
            sent.contains(&root.join("docker/Dockerfile.prod")),
            "{sent:?}"
        );
        assert!(BuildContext::locate(root, Some(Path::new("Dockerfile.alias"))).is_ok());

        // A file on this host that the engine cannot reach.
        let error = BuildContext::locate(root, Some(Path::new("Dockerfile.escaping"))).unwrap_err();
        assert!(
            matches!(error, ContextError::DockerfileLinkUnresolved { .. }),
            "{error:?}"
        );
        assert!(error
            .hint()
            .unwrap()
            .contains("the file the link points at"));
        // A link to nothing at all.
        let error = BuildContext::locate(root, Some(Path::new("Dockerfile.dangling"))).unwrap_err();
        assert!(
            matches!(error, ContextError::DockerfileLinkDangling { .. }),
            "{error:?}"
        );
        assert!(error
            .to_string()
            .ends_with("is a symlink to nowhere, which does not exist"));
        // A directory, by a link or not.
        for name in ["Dockerfile.dir", "Dockerfile.to-dir"] {
            let error = BuildContext::locate(root, Some(Path::new(name))).unwrap_err();
            assert!(
                matches!(error, ContextError::DockerfileNotFile { .. }),
                "{name}: {error:?}"
            );
        }
    }

    #[test]
    fn a_named_dockerfile_missing_beside_a_lowercase_one_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "sub/dockerfile", "FROM scratch\n");
        let error = BuildContext::locate(root, Some(Path::new("sub/Dockerfile"))).unwrap_err();
        assert!(
            error.hint().unwrap().starts_with(&format!(
                "there is {}",
                root.join("sub/dockerfile").display()
            )),
            "{error:?}"
        );
        let error = BuildContext::locate(root, Some(Path::new("other/Dockerfile"))).unwrap_err();
        assert!(error.hint().unwrap().starts_with("write one"), "{error:?}");
    }

    #[test]
    fn an_ignore_file_is_read_where_the_engine_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "app/Dockerfile", "FROM scratch\n");
        write(root, "app/a.txt", "");
        write(root, "app/rules/context.ignore", "a.txt\n");
        write(root, "common.ignore", "*\n");
        let context = root.join("app");
        // A link inside the directory is followed; one out of it is read
        // inside it, as the engine does, and leads nowhere here.
        symlink("rules/context.ignore", context.join(".dockerignore")).unwrap();
        let found = BuildContext::locate(&context, None).unwrap();
        assert_eq!(
            found.ignore_file(),
            Some(context.join(".dockerignore").as_path())
        );
        assert!(found.warnings().is_empty(), "{:?}", found.warnings());
        assert!(!found
            .scan()
            .unwrap()
            .path_texts()
            .contains(&"a.txt".to_owned()));
        let sent = found.sent_paths(&found.scan().unwrap());
        assert!(
            sent.contains(&context.join("rules/context.ignore")),
            "{sent:?}"
        );

        fs::remove_file(context.join(".dockerignore")).unwrap();
        symlink("../common.ignore", context.join(".dockerignore")).unwrap();
        let found = BuildContext::locate(&context, None).unwrap();
        assert_eq!(found.ignore_file(), None);
        assert_eq!(found.warnings().len(), 1, "{:?}", found.warnings());
        assert!(found.warnings()[0].contains("leaves nothing out"));
        assert!(found
            .scan()
            .unwrap()
            .path_texts()
            .contains(&"a.txt".to_owned()));
    }

    #[test]
    fn paths_are_normalised_as_go_cleans_them() {
        // (input, normalised)
        let cases = [
            ("/a/./b/../c", "/a/c"),
            ("/..", "/"),
            ("/a/../../b", "/b"),
            ("./../../x", "../../x"),
            ("a/../../x", "../x"),
            ("a/b/..", "a"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize(Path::new(input)), Path::new(expected), "{input}");
        }
    }

    #[test]
    fn missing_paths_are_named_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let missing = root.join("nope");
        let error = BuildContext::locate(&missing, None).unwrap_err();
        assert!(
            matches!(error, ContextError::ContextMissing { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains(&*missing.to_string_lossy()));
        assert!(error.hint().unwrap().contains("context"));

        let error = BuildContext::locate(root, None).unwrap_err();
        assert!(error.hint().unwrap().contains("`dockerfile` in [image]"));

        write(root, "file", "");
        let error = BuildContext::locate(&root.join("file"), None).unwrap_err();
        assert!(
            matches!(error, ContextError::ContextNotDirectory { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn a_bad_ignore_file_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "Dockerfile", "FROM scratch\n");
        write(root, "Dockerfile.dockerignore", "ok\n\nsrc/[a-\n");
        let error = BuildContext::locate(root, None).unwrap_err();
        match &error {
            ContextError::InvalidPattern {
                file,
                line,
                pattern,
                ..
            } => {
                assert_eq!(file, &root.join("Dockerfile.dockerignore"));
                assert_eq!(*line, 3);
                assert_eq!(pattern, "src/[a-");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(error
            .hint()
            .unwrap()
            .starts_with("fix line 3 of Dockerfile.dockerignore"));
    }
}
