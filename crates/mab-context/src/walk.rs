//! Walking a directory the way fsutil's sender walks it for a BuildKit file
//! transfer: depth first, each directory's names sorted by their bytes, with
//! exclude patterns (the ignore file's, or what the engine sends) and include
//! patterns (what the engine asks for) applied as fsutil applies them.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::ContextError;
use crate::ignore::{DockerIgnore, ParentMatches};

/// What kind of filesystem object an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file (its contents are sent when the engine asks).
    File,
    /// A directory, sent before what it holds.
    Directory,
    /// Sent as a link, never followed.
    Symlink,
    /// A FIFO, socket or device node: sent as fsutil sends it (its type and
    /// device numbers, no contents); what becomes of it is the engine's
    /// choice (Docker 20.10 keeps devices and sockets as empty files and
    /// drops FIFOs).
    Special,
}

/// One path of a directory being sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextEntry {
    /// Relative to the directory, valid UTF-8 (see [`ContextError::NameNotUtf8`]).
    pub path: PathBuf,
    /// What kind of object it is (not following a symlink).
    pub kind: EntryKind,
    /// The length of a regular file; 0 for the others.
    pub size: u64,
}

/// The entries of a context, in the order they are sent, with totals for
/// progress output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextListing {
    pub entries: Vec<ContextEntry>,
    /// Everything but directories.
    pub files: u64,
    /// The total length of the regular files.
    pub bytes: u64,
}

impl ContextListing {
    fn new(entries: Vec<ContextEntry>) -> ContextListing {
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
        listing
    }

    /// The relative paths, in order.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.entries
            .iter()
            .map(|entry| entry.path.clone())
            .collect()
    }

    /// The relative paths as text, for tests to compare.
    #[cfg(test)]
    pub(crate) fn path_texts(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|entry| entry.path.to_str().unwrap().to_owned())
            .collect()
    }
}

/// Which paths of a walk are sent: those that no exclude pattern leaves out
/// and, when there are include patterns, that one of them (or one of their
/// parent directories) matches. A directory that is not sent for itself is
/// sent when something below it is, so that its contents have a place.
#[derive(Debug, Clone, Copy, Default)]
pub struct Selection<'a> {
    /// `.dockerignore` rules, or the `exclude-patterns` of a transfer.
    pub exclude: Option<&'a DockerIgnore>,
    /// The `include-patterns` of a transfer (with its `followpaths`).
    pub include: Option<&'a DockerIgnore>,
}

/// The entries of `root` that `selection` lets through, depth first, each
/// directory's entries sorted by name (a directory before what it holds), as
/// fsutil sends them.
///
/// A directory is entered only when something below it could be sent. Every
/// name that is sent, and every symlink target, must be valid UTF-8: BuildKit's
/// file transfer carries them as protobuf strings (`fsutil.types.Stat`), so
/// another name is an error naming the file rather than a silent rename.
pub fn walk(root: &Path, selection: Selection<'_>) -> Result<ContextListing, ContextError> {
    let entries = walk_with_metadata(root, selection)?
        .into_iter()
        .map(|(entry, _)| entry)
        .collect();
    Ok(ContextListing::new(entries))
}

/// Like [`walk`], with each entry's `lstat` metadata as the walk read it, so
/// that a sender need not read it again.
pub fn walk_with_metadata(
    root: &Path,
    selection: Selection<'_>,
) -> Result<Vec<(ContextEntry, fs::Metadata)>, ContextError> {
    let mut walk = Walk {
        selection,
        entries: Vec::new(),
    };
    walk.directory(root, Path::new(""), "", None)?;
    let mut entries = walk.entries;
    entries.sort_by(|(left, _), (right, _)| left.path.cmp(&right.path));
    Ok(entries)
}

fn entry_for(path: PathBuf, metadata: &fs::Metadata) -> ContextEntry {
    let file_type = metadata.file_type();
    let (kind, size) = if file_type.is_dir() {
        (EntryKind::Directory, 0)
    } else if file_type.is_symlink() {
        (EntryKind::Symlink, 0)
    } else if file_type.is_file() {
        (EntryKind::File, metadata.len())
    } else {
        (EntryKind::Special, 0)
    };
    ContextEntry { path, kind, size }
}

/// What a directory's children inherit from the patterns that matched it.
struct Inherited {
    exclude: ParentMatches,
    /// `Some(matches)` while include patterns apply.
    include: Option<ParentMatches>,
    included: bool,
    /// The directory itself is not sent for its own sake (excluded, or not
    /// included): it is entered only for what may be let through below.
    left_out: bool,
}

struct Walk<'a> {
    selection: Selection<'a>,
    entries: Vec<(ContextEntry, fs::Metadata)>,
}

impl Walk<'_> {
    /// Adds what `absolute` holds; returns whether anything was added. A
    /// directory left out by the patterns, entered only because something
    /// below it might be let through, counts as empty when it cannot be
    /// read (as newer fsutil skips permission errors on excluded entries).
    fn directory(
        &mut self,
        absolute: &Path,
        relative: &Path,
        relative_text: &str,
        parent: Option<&Inherited>,
    ) -> Result<bool, ContextError> {
        let left_out = parent.is_some_and(|parent| parent.left_out);
        let read_error = |source| ContextError::Read {
            path: absolute.to_path_buf(),
            source,
        };
        let children = match fs::read_dir(absolute) {
            Ok(children) => children,
            Err(error) if left_out && error.kind() == io::ErrorKind::PermissionDenied => {
                return Ok(false)
            }
            Err(error) => return Err(read_error(error)),
        };
        let mut names = Vec::new();
        for child in children {
            names.push(child.map_err(read_error)?.file_name());
        }
        names.sort_by(|left, right| left.as_bytes().cmp(right.as_bytes()));

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
            let (excluded, exclude_matches) = match self.selection.exclude {
                Some(exclude) => {
                    exclude.evaluate(&child_text, parent.map(|parent| &parent.exclude))
                }
                None => (false, ParentMatches::default()),
            };
            let (included, include_matches) = match self.selection.include {
                Some(include) => {
                    let inherited = parent.and_then(|parent| parent.include.as_ref());
                    let (matched, matches) = include.evaluate(&child_text, inherited);
                    let parent_included = parent.is_some_and(|parent| parent.included);
                    (matched || parent_included, Some(matches))
                }
                None => (true, None),
            };
            let entry = entry_for(child_relative.clone(), &metadata);
            if entry.kind == EntryKind::Directory {
                let exclude_prunes = excluded
                    && self.selection.exclude.is_some_and(|exclude| {
                        exclude.nothing_below_can_return(&child_text, &exclude_matches)
                    });
                let include_prunes = !included
                    && self
                        .selection
                        .include
                        .is_some_and(|include| !include.may_match_below(&child_text));
                if exclude_prunes || include_prunes {
                    continue;
                }
                let inherited = Inherited {
                    exclude: exclude_matches,
                    include: include_matches,
                    included,
                    left_out: excluded || !included,
                };
                let below = self.directory(
                    &child_absolute,
                    &child_relative,
                    &child_text,
                    Some(&inherited),
                )?;
                if (included && !excluded) || below {
                    self.add(entry, &child_absolute, &metadata)?;
                    added = true;
                }
            } else if included && !excluded {
                self.add(entry, &child_absolute, &metadata)?;
                added = true;
            }
        }
        Ok(added)
    }

    fn add(
        &mut self,
        entry: ContextEntry,
        absolute: &Path,
        metadata: &fs::Metadata,
    ) -> Result<(), ContextError> {
        if entry.path.to_str().is_none() {
            return Err(ContextError::NameNotUtf8 {
                path: absolute.to_path_buf(),
            });
        }
        if entry.kind == EntryKind::Symlink {
            let target = fs::read_link(absolute).map_err(|source| ContextError::Read {
                path: absolute.to_path_buf(),
                source,
            })?;
            if target.to_str().is_none() {
                return Err(ContextError::LinkTargetNotUtf8 {
                    path: absolute.to_path_buf(),
                    target,
                });
            }
        }
        self.entries.push((entry, metadata.clone()));
        Ok(())
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

    fn walked(root: &Path, exclude: &[&str], include: &[&str]) -> Vec<String> {
        let origin = Path::new("patterns");
        let exclude = DockerIgnore::from_patterns(exclude, origin).unwrap();
        let include = DockerIgnore::from_patterns(include, origin).unwrap();
        let selection = Selection {
            exclude: Some(&exclude),
            include: (!include.is_empty()).then_some(&include),
        };
        walk(root, selection).unwrap().path_texts()
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
                "a.txt",
                "a/b",
            ],
        );
        symlink("missing-target", root.join("dangling")).unwrap();
        let exclude = [
            "*.log",
            "build/",
            "docs",
            "!docs/keep.md",
            "**/node_modules",
            "cache/**",
        ];
        assert_eq!(
            walked(root, &exclude, &[]),
            [
                "Dockerfile",
                "a",
                "a/b",
                "a.txt",
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
    fn include_patterns_choose_entries_and_the_directories_that_hold_them() {
        let context = tempfile::tempdir().unwrap();
        let root = context.path();
        make_tree(
            root,
            &[
                ".dockerignore",
                "Dockerfile",
                "docs/a.md",
                "docs/b.txt",
                "src/deep/x.rs",
                "src/main.rs",
                "top.md",
            ],
        );
        // (include, exclude, expected)
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            (&[".dockerignore"], &[], &[".dockerignore"]),
            (
                &["src"],
                &[],
                &["src", "src/deep", "src/deep/x.rs", "src/main.rs"],
            ),
            (
                &["**/*.rs"],
                &[],
                &["src", "src/deep", "src/deep/x.rs", "src/main.rs"],
            ),
            (&["*.md"], &[], &["top.md"]),
            (&["**/*.md"], &[], &["docs", "docs/a.md", "top.md"]),
            (
                &["src/deep/x.rs"],
                &[],
                &["src", "src/deep", "src/deep/x.rs"],
            ),
            (
                &[],
                &["docs", "src/deep"],
                &[
                    ".dockerignore",
                    "Dockerfile",
                    "src",
                    "src/main.rs",
                    "top.md",
                ],
            ),
            // The excluded directory comes back with what is re-included.
            (
                &[],
                &["docs", "!docs/a.md", "src", "*.md", ".dockerignore"],
                &["Dockerfile", "docs", "docs/a.md"],
            ),
            (
                &["src", "docs"],
                &["**/*.rs"],
                &["docs", "docs/a.md", "docs/b.txt", "src", "src/deep"],
            ),
            (&["nothing-here"], &[], &[]),
        ];
        for &(include, exclude, expected) in cases {
            assert_eq!(
                walked(root, exclude, include),
                expected,
                "include {include:?}, exclude {exclude:?}"
            );
        }
    }

    #[test]
    fn special_files_are_listed_and_totals_count_them() {
        let context = tempfile::tempdir().unwrap();
        let root = context.path();
        fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::create_dir(root.join("dir")).unwrap();
        fs::write(root.join("dir/data"), vec![7u8; 1000]).unwrap();
        symlink("data", root.join("dir/link")).unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(root.join("socket")).unwrap();
        let listing = walk(root, Selection::default()).unwrap();
        assert_eq!(listing.files, 4);
        assert_eq!(listing.bytes, 13 + 1000);
        let kinds: Vec<EntryKind> = listing.entries.iter().map(|entry| entry.kind).collect();
        assert_eq!(
            kinds,
            [
                EntryKind::File,
                EntryKind::Directory,
                EntryKind::File,
                EntryKind::Symlink,
                EntryKind::Special,
            ]
        );
    }

    #[test]
    fn names_travel_unchanged_and_names_that_are_not_utf8_are_refused() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let context = tempfile::tempdir().unwrap();
        let root = context.path();
        let names = [
            "back\\slash",
            "new\nline",
            " lead",
            "trail ",
            "tab\tx",
            "café",
            "[x]",
        ];
        for name in names {
            fs::write(root.join(name), name).unwrap();
        }
        let mut expected: Vec<&str> = names.to_vec();
        expected.sort();
        assert_eq!(walked(root, &[], &[]), expected);

        let bad = OsStr::from_bytes(b"bad\xffname");
        fs::write(root.join(bad), "x").unwrap();
        match walk(root, Selection::default()) {
            Err(error @ ContextError::NameNotUtf8 { .. }) => {
                assert!(
                    error
                        .to_string()
                        .ends_with("bad\\xffname is not valid UTF-8"),
                    "{error}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Left out by the rules, it is not refused.
        assert_eq!(walked(root, &["bad*"], &[]), expected);
        fs::remove_file(root.join(bad)).unwrap();

        symlink(bad, root.join("link")).unwrap();
        match walk(root, Selection::default()) {
            Err(error @ ContextError::LinkTargetNotUtf8 { .. }) => {
                assert!(
                    error
                        .to_string()
                        .ends_with("link points at bad\\xffname, a name that is not valid UTF-8"),
                    "{error}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
