//! Listing what a build context sends.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::error::ContextError;
use crate::ignore::{DockerIgnore, ParentMatches, DOCKERIGNORE};

/// What kind of filesystem object an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    /// Sent as a link, never followed.
    Symlink,
}

/// One path of the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextEntry {
    /// Relative to the context directory.
    pub path: PathBuf,
    pub kind: EntryKind,
    /// The length of a regular file; 0 for the others.
    pub size: u64,
}

/// The entries of a context, in the order they are sent, with totals for
/// progress output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextListing {
    pub entries: Vec<ContextEntry>,
    /// Regular files and symlinks.
    pub files: u64,
    /// The total length of the regular files.
    pub bytes: u64,
}

impl ContextListing {
    /// The relative paths, in order.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.entries
            .iter()
            .map(|entry| entry.path.clone())
            .collect()
    }
}

/// The files, directories and symlinks to send, relative to `context_dir`, sorted
/// so that a directory comes before what it holds.
///
/// The tree is filtered by `.dockerignore`; an excluded directory is entered
/// only when a `!` exception could re-include something below it, and is sent
/// when something below it is. The Dockerfile (relative to the context) and
/// `.dockerignore` are always sent. Sockets, FIFOs and devices are left out.
pub fn context_entries(
    context_dir: &Path,
    dockerfile: &Path,
) -> Result<Vec<PathBuf>, ContextError> {
    Ok(scan_context(context_dir, dockerfile)?.paths())
}

/// Like [`context_entries`], with the kind and size of each entry and the totals.
pub fn scan_context(context_dir: &Path, dockerfile: &Path) -> Result<ContextListing, ContextError> {
    check_context_dir(context_dir)?;
    let dockerfile = dockerfile_in_context(context_dir, dockerfile)?;
    let ignore = DockerIgnore::from_context(context_dir)?;
    let mut walk = Walk {
        ignore: &ignore,
        entries: Vec::new(),
    };
    walk.directory(context_dir, Path::new(""), "", None)?;
    let mut entries = walk.entries;

    let mut present: HashSet<PathBuf> = entries.iter().map(|entry| entry.path.clone()).collect();
    for always in [dockerfile, PathBuf::from(DOCKERIGNORE)] {
        let mut missing = Vec::new();
        for ancestor in always.ancestors() {
            if ancestor.as_os_str().is_empty() || present.contains(ancestor) {
                break;
            }
            missing.push(ancestor.to_path_buf());
        }
        for path in missing {
            let absolute = context_dir.join(&path);
            let metadata = match fs::symlink_metadata(&absolute) {
                Ok(metadata) => metadata,
                // Only `.dockerignore` may be missing here.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(ContextError::Read {
                        path: absolute,
                        source,
                    })
                }
            };
            if let Some(entry) = entry_for(path.clone(), &metadata) {
                present.insert(path);
                entries.push(entry);
            }
        }
    }

    entries.sort_by(|left, right| left.path.cmp(&right.path));
    let mut listing = ContextListing {
        entries,
        files: 0,
        bytes: 0,
    };
    for entry in &listing.entries {
        if entry.kind != EntryKind::Directory {
            listing.files += 1;
            listing.bytes += entry.size;
        }
    }
    Ok(listing)
}

fn check_context_dir(context_dir: &Path) -> Result<(), ContextError> {
    match fs::metadata(context_dir) {
        Ok(metadata) if metadata.is_dir() => Ok(()),
        Ok(_) => Err(ContextError::ContextNotDirectory {
            path: context_dir.to_path_buf(),
        }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            Err(ContextError::ContextMissing {
                path: context_dir.to_path_buf(),
            })
        }
        Err(source) => Err(ContextError::Read {
            path: context_dir.to_path_buf(),
            source,
        }),
    }
}

/// Checks that the Dockerfile exists inside the context and returns its path
/// relative to the context, normalised (`./a/../Dockerfile` is `Dockerfile`;
/// an absolute path inside the context is made relative).
pub fn dockerfile_in_context(
    context_dir: &Path,
    dockerfile: &Path,
) -> Result<PathBuf, ContextError> {
    let absolute = context_dir.join(dockerfile);
    match fs::metadata(&absolute) {
        Ok(metadata) if metadata.is_file() => {}
        Ok(_) => return Err(ContextError::DockerfileNotFile { path: absolute }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(ContextError::DockerfileMissing {
                path: absolute,
                context: context_dir.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(ContextError::Read {
                path: absolute,
                source,
            })
        }
    }
    let outside = || ContextError::DockerfileOutsideContext {
        dockerfile: absolute.clone(),
        context: context_dir.to_path_buf(),
    };
    let relative = if dockerfile.is_absolute() {
        match dockerfile.strip_prefix(context_dir) {
            Ok(relative) => relative.to_path_buf(),
            Err(_) => {
                // The two may name the same directory differently (symlinks, `..`).
                let real_context =
                    fs::canonicalize(context_dir).map_err(|source| ContextError::Read {
                        path: context_dir.to_path_buf(),
                        source,
                    })?;
                let parent = absolute.parent().unwrap_or(Path::new("/"));
                let real_parent =
                    fs::canonicalize(parent).map_err(|source| ContextError::Read {
                        path: parent.to_path_buf(),
                        source,
                    })?;
                let name = absolute.file_name().ok_or_else(outside)?;
                real_parent
                    .strip_prefix(&real_context)
                    .map_err(|_| outside())?
                    .join(name)
            }
        }
    } else {
        dockerfile.to_path_buf()
    };
    normalize_relative(&relative).ok_or_else(outside)
}

/// `a/./b/../c` -> `a/c`; `None` when the path leaves its base.
fn normalize_relative(path: &Path) -> Option<PathBuf> {
    let mut normalized = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => normalized.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !normalized.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!normalized.as_os_str().is_empty()).then_some(normalized)
}

fn entry_for(path: PathBuf, metadata: &fs::Metadata) -> Option<ContextEntry> {
    let file_type = metadata.file_type();
    let (kind, size) = if file_type.is_dir() {
        (EntryKind::Directory, 0)
    } else if file_type.is_symlink() {
        (EntryKind::Symlink, 0)
    } else if file_type.is_file() {
        (EntryKind::File, metadata.len())
    } else {
        return None;
    };
    Some(ContextEntry { path, kind, size })
}

struct Walk<'a> {
    ignore: &'a DockerIgnore,
    entries: Vec<ContextEntry>,
}

impl Walk<'_> {
    /// Adds what `absolute` holds; returns whether anything was added.
    fn directory(
        &mut self,
        absolute: &Path,
        relative: &Path,
        relative_text: &str,
        parent: Option<&ParentMatches>,
    ) -> Result<bool, ContextError> {
        let read_error = |source| ContextError::Read {
            path: absolute.to_path_buf(),
            source,
        };
        let mut names = Vec::new();
        for child in fs::read_dir(absolute).map_err(read_error)? {
            names.push(child.map_err(read_error)?.file_name());
        }
        names.sort();

        let mut added = false;
        for name in names {
            let child_absolute = absolute.join(&name);
            let child_relative = relative.join(&name);
            let name_text = name.to_string_lossy();
            let child_text = if relative_text.is_empty() {
                name_text.into_owned()
            } else {
                format!("{relative_text}/{name_text}")
            };
            let metadata = match fs::symlink_metadata(&child_absolute) {
                Ok(metadata) => metadata,
                // Removed while we were looking.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(ContextError::Read {
                        path: child_absolute,
                        source,
                    })
                }
            };
            let (excluded, matches) = self.ignore.evaluate(&child_text, parent);
            let Some(entry) = entry_for(child_relative.clone(), &metadata) else {
                continue;
            };
            if entry.kind == EntryKind::Directory {
                if excluded && self.ignore.nothing_below_can_return(&child_text, &matches) {
                    continue;
                }
                let below = self.directory(
                    &child_absolute,
                    &child_relative,
                    &child_text,
                    Some(&matches),
                )?;
                if !excluded || below {
                    self.entries.push(entry);
                    added = true;
                }
            } else if !excluded {
                self.entries.push(entry);
                added = true;
            }
        }
        Ok(added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn make_tree(root: &Path, files: &[&str]) {
        for file in files {
            let path = root.join(file);
            if let Some(directory) = file.strip_suffix('/') {
                fs::create_dir_all(root.join(directory)).unwrap();
            } else {
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(&path, file.as_bytes()).unwrap();
            }
        }
    }

    fn listed(root: &Path, dockerfile: &str) -> Vec<String> {
        context_entries(root, Path::new(dockerfile))
            .unwrap()
            .into_iter()
            .map(|path| path.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn walks_filters_and_sorts() {
        let context = tempfile::tempdir().unwrap();
        let root = context.path();
        make_tree(
            root,
            &[
                "Dockerfile",
                "app.log",
                "sub/app.log",
                "build",
                "src/build/x",
                "docs/keep.md",
                "docs/other.md",
                "docs/sub/deep.md",
                "node_modules/a/b",
                "web/node_modules/c",
                "web/index.js",
                "empty/",
                "cache/f",
            ],
        );
        symlink("missing-target", root.join("dangling")).unwrap();
        fs::write(
            root.join(".dockerignore"),
            "# build output\n*.log\nbuild/\ndocs\n!docs/keep.md\n**/node_modules\ncache/**\n",
        )
        .unwrap();
        assert_eq!(
            listed(root, "Dockerfile"),
            [
                ".dockerignore",
                "Dockerfile",
                "cache",
                "dangling",
                "docs",
                "docs/keep.md",
                "empty",
                "src",
                "src/build",
                "src/build/x",
                "sub",
                "sub/app.log",
                "web",
                "web/index.js",
            ]
        );
    }

    #[test]
    fn dockerfile_and_dockerignore_are_always_sent() {
        let context = tempfile::tempdir().unwrap();
        let root = context.path();
        make_tree(
            root,
            &["docker/build/Dockerfile", "docker/build/other", "main.c"],
        );
        fs::write(root.join(".dockerignore"), "*\n").unwrap();
        assert_eq!(
            listed(root, "docker/build/Dockerfile"),
            [
                ".dockerignore",
                "docker",
                "docker/build",
                "docker/build/Dockerfile"
            ]
        );
        assert_eq!(
            listed(root, "./docker/../docker/build/Dockerfile"),
            [
                ".dockerignore",
                "docker",
                "docker/build",
                "docker/build/Dockerfile"
            ]
        );
        let absolute = root.join("docker/build/Dockerfile");
        assert_eq!(listed(root, absolute.to_str().unwrap()).len(), 4);
    }

    #[test]
    fn exceptions_reach_into_excluded_directories() {
        let context = tempfile::tempdir().unwrap();
        let root = context.path();
        make_tree(
            root,
            &[
                "Dockerfile",
                "vendor/a/keep.txt",
                "vendor/a/drop.txt",
                "vendor/b/drop.txt",
            ],
        );
        fs::write(root.join(".dockerignore"), "vendor\n!**/keep.txt\n").unwrap();
        assert_eq!(
            listed(root, "Dockerfile"),
            [
                ".dockerignore",
                "Dockerfile",
                "vendor",
                "vendor/a",
                "vendor/a/keep.txt"
            ]
        );
    }

    #[test]
    fn totals_count_files_and_bytes() {
        let context = tempfile::tempdir().unwrap();
        let root = context.path();
        fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::create_dir(root.join("dir")).unwrap();
        fs::write(root.join("dir/data"), vec![7u8; 1000]).unwrap();
        symlink("data", root.join("dir/link")).unwrap();
        let listing = scan_context(root, Path::new("Dockerfile")).unwrap();
        assert_eq!(listing.files, 3);
        assert_eq!(listing.bytes, 13 + 1000);
        let kinds: Vec<EntryKind> = listing.entries.iter().map(|entry| entry.kind).collect();
        assert_eq!(
            kinds,
            [
                EntryKind::File,
                EntryKind::Directory,
                EntryKind::File,
                EntryKind::Symlink
            ]
        );
    }

    #[test]
    fn missing_paths_are_named_with_a_hint() {
        let context = tempfile::tempdir().unwrap();
        let root = context.path();
        let missing_context = root.join("nope");
        let error = context_entries(&missing_context, Path::new("Dockerfile")).unwrap_err();
        assert!(
            matches!(error, ContextError::ContextMissing { .. }),
            "{error:?}"
        );
        assert!(error
            .to_string()
            .contains(&*missing_context.to_string_lossy()));
        assert!(error.hint().unwrap().contains("context"));

        let error = context_entries(root, Path::new("Dockerfile")).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "the Dockerfile {} does not exist",
                root.join("Dockerfile").display()
            )
        );
        assert!(error.hint().unwrap().contains("`dockerfile` in mab.toml"));

        fs::write(root.join("file"), "").unwrap();
        let error = context_entries(&root.join("file"), Path::new("Dockerfile")).unwrap_err();
        assert!(
            matches!(error, ContextError::ContextNotDirectory { .. }),
            "{error:?}"
        );

        let inner = root.join("inner");
        fs::create_dir(&inner).unwrap();
        fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        let error = context_entries(&inner, Path::new("../Dockerfile")).unwrap_err();
        assert!(
            matches!(error, ContextError::DockerfileOutsideContext { .. }),
            "{error:?}"
        );
        let error = context_entries(&inner, &root.join("Dockerfile")).unwrap_err();
        assert!(
            matches!(error, ContextError::DockerfileOutsideContext { .. }),
            "{error:?}"
        );
        let error = context_entries(root, Path::new("inner")).unwrap_err();
        assert!(
            matches!(error, ContextError::DockerfileNotFile { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn a_bad_dockerignore_names_the_file_and_line() {
        let context = tempfile::tempdir().unwrap();
        let root = context.path();
        fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(root.join(".dockerignore"), "ok\n\nsrc/[a-\n").unwrap();
        let error = context_entries(root, Path::new("Dockerfile")).unwrap_err();
        let expected_file = root.join(".dockerignore");
        match &error {
            ContextError::InvalidPattern {
                file,
                line,
                pattern,
                ..
            } => {
                assert_eq!(file, &expected_file);
                assert_eq!(*line, 3);
                assert_eq!(pattern, "src/[a-");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(error
            .hint()
            .unwrap()
            .starts_with("fix line 3 of .dockerignore"));
    }
}
