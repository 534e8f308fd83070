//! Where a build's files are, found the way `docker build` finds them.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::error::ContextError;
use crate::follow::resolve_links;
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
/// - the ignore file is `<Dockerfile>.dockerignore` beside the Dockerfile
///   when that exists, *instead of* the context's `.dockerignore`
///   (BuildKit's rule; the name is the Dockerfile's as given, a symlink's own
///   name and not its target's).
///
/// Both the listing made before anything is sent ([`BuildContext::scan`])
/// and what is served to the engine use this one value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildContext {
    dir: PathBuf,
    dockerfile: PathBuf,
    dockerfile_name: String,
    ignore_file: Option<PathBuf>,
}

impl BuildContext {
    /// Finds the files of a build whose context is `dir` (a directory) and
    /// whose Dockerfile is `dockerfile` (relative to `dir`, or absolute), or
    /// the default one when `None`.
    ///
    /// Errors: the context is missing or not a directory; the Dockerfile is
    /// missing, not a regular file, a symlink whose target the engine could
    /// not read (fsutil follows it only inside the Dockerfile's directory),
    /// or has a name that is not UTF-8; the ignore file cannot be read.
    pub fn locate(dir: &Path, dockerfile: Option<&Path>) -> Result<BuildContext, ContextError> {
        check_context_dir(dir)?;
        let dockerfile = match dockerfile {
            Some(given) => normalize(&dir.join(given)),
            None => default_dockerfile(dir),
        };
        let is_link = match fs::symlink_metadata(&dockerfile) {
            Ok(metadata) => metadata.file_type().is_symlink(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(ContextError::DockerfileMissing {
                    path: dockerfile,
                    context: dir.to_path_buf(),
                })
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
        // What the engine will read: the Dockerfile with its symlinks
        // followed inside the directory it is sent from, as fsutil does.
        let target = parent.join(resolve_links(parent, &name));
        let readable = fs::symlink_metadata(&target).is_ok_and(|metadata| metadata.is_file());
        if !readable && is_link {
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
        let specific = parent.join(format!("{name}.dockerignore"));
        let root = dir.join(DOCKERIGNORE);
        let ignore_file = [specific, root].into_iter().find(|path| path.is_file());
        Ok(BuildContext {
            dir: dir.to_path_buf(),
            dockerfile_name: name,
            dockerfile,
            ignore_file,
        })
    }

    /// The context directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Dockerfile: the context joined with the name given, normalised
    /// (`.` and `..` removed without following symlinks).
    pub fn dockerfile(&self) -> &Path {
        &self.dockerfile
    }

    /// The directory the engine receives the Dockerfile from.
    pub fn dockerfile_dir(&self) -> &Path {
        self.dockerfile.parent().unwrap_or(Path::new("/"))
    }

    /// The Dockerfile's file name, as the build request names it.
    pub fn dockerfile_name(&self) -> &str {
        &self.dockerfile_name
    }

    /// The ignore file that applies, when one exists.
    pub fn ignore_file(&self) -> Option<&Path> {
        self.ignore_file.as_deref()
    }

    /// The rules of the ignore file that applies (none without one).
    pub fn ignore(&self) -> Result<DockerIgnore, ContextError> {
        match &self.ignore_file {
            Some(path) => DockerIgnore::read(path),
            None => Ok(DockerIgnore::default()),
        }
    }

    /// The context as the engine receives it: every entry the ignore rules
    /// let through, in the order sent. (The Dockerfile and the ignore file
    /// travel separately and are here only when the rules keep them.)
    pub fn scan(&self) -> Result<ContextListing, ContextError> {
        let ignore = self.ignore()?;
        walk(
            &self.dir,
            Selection {
                exclude: Some(&ignore),
                include: None,
            },
        )
    }

    /// Every path whose contents decide what the engine receives, as
    /// absolute paths, each once: the entries of `listing` (directories
    /// included), the Dockerfile, and the ignore file, where it is or, where
    /// none is, both places one would be read from (so that removing one is a
    /// change too). For a dirty-tree check.
    pub fn sent_paths(&self, listing: &ContextListing) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = listing
            .entries
            .iter()
            .map(|entry| self.dir.join(&entry.path))
            .collect();
        paths.push(self.dockerfile.clone());
        let specific = self
            .dockerfile_dir()
            .join(format!("{}.dockerignore", self.dockerfile_name));
        if self.ignore_file.as_ref() != Some(&specific) {
            paths.push(self.dir.join(DOCKERIGNORE));
        }
        paths.push(specific);
        paths.sort();
        paths.dedup();
        paths
    }
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
            Component::ParentDir => {
                if !normalized.pop() {
                    normalized.push("..");
                }
            }
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
        assert_eq!(found.dockerfile_name(), "dockerfile");

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
                root.join("app/main.c"),
                root.join("docker/Dockerfile"),
                root.join("docker/Dockerfile.dockerignore"),
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
            ]
        );
        let absolute = root.join("docker/Dockerfile");
        let found = BuildContext::locate(&context, Some(&absolute)).unwrap();
        assert_eq!(found.dockerfile(), absolute);
    }

    #[test]
    fn a_symlinked_dockerfile_must_lead_to_a_file_the_engine_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "docker/Dockerfile.prod", "FROM scratch\n");
        write(root, "Dockerfile.release", "FROM scratch\n");
        symlink("docker/Dockerfile.prod", root.join("Dockerfile")).unwrap();
        symlink("Dockerfile.release", root.join("Dockerfile.alias")).unwrap();
        symlink("../elsewhere/Dockerfile", root.join("Dockerfile.escaping")).unwrap();
        symlink("nowhere", root.join("Dockerfile.dangling")).unwrap();
        fs::create_dir(root.join("Dockerfile.dir")).unwrap();

        let found = BuildContext::locate(root, None).unwrap();
        assert_eq!(found.dockerfile_name(), "Dockerfile");
        assert!(BuildContext::locate(root, Some(Path::new("Dockerfile.alias"))).is_ok());
        for name in ["Dockerfile.escaping", "Dockerfile.dangling"] {
            let error = BuildContext::locate(root, Some(Path::new(name))).unwrap_err();
            assert!(
                matches!(error, ContextError::DockerfileLinkUnresolved { .. }),
                "{name}: {error:?}"
            );
            assert!(error
                .hint()
                .unwrap()
                .contains("the file the link points at"));
        }
        let error = BuildContext::locate(root, Some(Path::new("Dockerfile.dir"))).unwrap_err();
        assert!(
            matches!(error, ContextError::DockerfileNotFile { .. }),
            "{error:?}"
        );
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
        let context = BuildContext::locate(root, None).unwrap();
        let error = context.scan().unwrap_err();
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
