//! A digest of what a context sends, to tell whether two builds were built
//! from the same files (`mab build --resume` compares it).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::ContextError;
use crate::walk::{ContextListing, EntryKind};

/// What a context sends, digested ([`content_digest`]): all of it, and
/// each entry at its top level, so that a change can be named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentDigest {
    /// `sha256:` and 64 hex digits over every entry.
    pub digest: String,
    /// Each top-level entry's name (`src/` for a directory, with
    /// everything below it; `README.md`) to `sha256:…` over its entries,
    /// the Dockerfile's own left out. Empty when the context has more than
    /// [`TOP_LEVEL_LIMIT`] of them, to keep the document small.
    pub top_level: BTreeMap<String, String>,
}

/// How many top-level entries [`ContentDigest::top_level`] holds at most.
pub const TOP_LEVEL_LIMIT: usize = 100;

/// Digests the entries of `listing` (as [`crate::walk`] lists `root`,
/// sorted by path): for each, its path, its kind, the owner's executable
/// bit of a regular file (the one bit git keeps of a mode), a symlink's
/// target and a regular file's content sha256. Times, owners and other
/// mode bits do not count, so that a fresh clone of the same commit gives
/// the same digest; for the same reason a `.git` directory or file at the
/// root of the context is left out, though it is sent when no ignore rule
/// excludes it: git rewrites it without the sources changing (`git
/// status` refreshes its index), and a clone's is never the same. The
/// paths `leave_out` (relative to `root`: files the build itself writes
/// there, such as its metadata file) do not count either; `dockerfile`
/// (relative to `root`, when it is inside) counts in the whole but not in
/// its top-level entry, as a change to it is told apart. Errors: a file
/// or link that cannot be read ([`ContextError::Read`], naming it).
pub fn content_digest(
    root: &Path,
    listing: &ContextListing,
    leave_out: &[PathBuf],
    dockerfile: Option<&Path>,
) -> Result<ContentDigest, ContextError> {
    let mut hasher = Sha256::new();
    let mut top_level: BTreeMap<String, Sha256> = BTreeMap::new();
    let git = Path::new(".git");
    for entry in listing
        .entries
        .iter()
        .filter(|entry| !entry.path.starts_with(git) && !leave_out.contains(&entry.path))
    {
        let line = entry_line(root, &entry.path, entry.kind)?;
        hasher.update(line.as_bytes());
        let mut components = entry.path.components();
        let first = components.next().map_or_else(String::new, |first| {
            first.as_os_str().to_string_lossy().into_owned()
        });
        let below = components.next().is_some() || entry.kind == EntryKind::Directory;
        let name = if below { format!("{first}/") } else { first };
        let own = top_level.entry(name).or_default();
        if dockerfile != Some(entry.path.as_path()) {
            own.update(line.as_bytes());
        }
    }
    let top_level = if top_level.len() > TOP_LEVEL_LIMIT {
        BTreeMap::new()
    } else {
        top_level
            .into_iter()
            .map(|(name, hasher)| (name, format!("sha256:{}", hex(&hasher.finalize()))))
            .collect()
    };
    Ok(ContentDigest {
        digest: format!("sha256:{}", hex(&hasher.finalize())),
        top_level,
    })
}

/// The line of one entry at `path` (relative to `root`) that the digests
/// take in: path, kind, executable bit, link target, content sha256.
fn entry_line(root: &Path, path: &Path, kind: EntryKind) -> Result<String, ContextError> {
    let absolute = root.join(path);
    let read_error = |source: io::Error| ContextError::Read {
        path: absolute.clone(),
        source,
    };
    let (kind, executable, target, content) = match kind {
        EntryKind::Directory => ("directory", false, String::new(), String::new()),
        EntryKind::Special => ("special", false, String::new(), String::new()),
        EntryKind::Symlink => {
            let target = fs::read_link(&absolute).map_err(read_error)?;
            let target = target.to_string_lossy().into_owned();
            ("symlink", false, target, String::new())
        }
        EntryKind::File => {
            let mut file = fs::File::open(&absolute).map_err(read_error)?;
            let mode = file.metadata().map_err(read_error)?.permissions().mode();
            let mut content = Sha256::new();
            io::copy(&mut file, &mut content).map_err(read_error)?;
            let content = hex(&content.finalize());
            ("file", mode & 0o100 != 0, String::new(), content)
        }
    };
    // NUL cannot occur in a path or a link target: the fields stay apart.
    Ok(format!(
        "{}\0{kind}\0{}\0{target}\0{content}\n",
        path.to_string_lossy(),
        u8::from(executable)
    ))
}

/// Whether `text` is a sha256 digest as OCI writes it: `sha256:` and 64
/// lowercase hex digits (the OCI image spec's "Digests").
pub fn is_sha256_digest(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    })
}

/// `sha256:` and 64 hex digits of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// A `sha256:` digest of bytes that arrive in pieces (a blob as it
/// streams): [`Sha256Stream::update`] each piece, then
/// [`Sha256Stream::digest`], which equals [`sha256_digest`] of them all.
#[derive(Clone, Default)]
pub struct Sha256Stream(Sha256);

impl Sha256Stream {
    /// Adds the next piece.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// `sha256:` and 64 hex digits of every piece so far.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex(&self.0.clone().finalize()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walk::{walk, Selection};

    #[test]
    fn a_digest_in_pieces_is_the_digest_of_the_whole() {
        let mut stream = Sha256Stream::default();
        for piece in [&b"the "[..], b"", b"layer"] {
            stream.update(piece);
        }
        assert_eq!(stream.digest(), sha256_digest(b"the layer"));
    }
    use std::os::unix::fs::symlink;

    fn digest_of(root: &Path) -> String {
        let listing = walk(root, Selection::default()).unwrap();
        content_digest(root, &listing, &[], None).unwrap().digest
    }

    fn tree() -> tempfile::TempDir {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path();
        fs::create_dir(root.join("src")).unwrap();
        fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(root.join("src/run.sh"), "echo hi\n").unwrap();
        symlink("run.sh", root.join("src/start")).unwrap();
        directory
    }

    #[test]
    fn the_same_files_elsewhere_give_the_same_digest() {
        let (one, two) = (tree(), tree());
        // Times and the other mode bits do not count.
        fs::set_permissions(
            two.path().join("Dockerfile"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let digest = digest_of(one.path());
        assert!(
            digest.starts_with("sha256:") && digest.len() == 71,
            "{digest}"
        );
        assert_eq!(digest, digest_of(two.path()));
    }

    /// A change made to a copy of [`tree`].
    type Change = fn(&Path);

    #[test]
    fn each_kind_of_change_changes_the_digest() {
        let changes: [(&str, Change); 6] = [
            ("content", |root| {
                fs::write(root.join("src/run.sh"), "echo ho\n").unwrap()
            }),
            ("executable bit", |root| {
                fs::set_permissions(root.join("src/run.sh"), fs::Permissions::from_mode(0o755))
                    .unwrap()
            }),
            ("link target", |root| {
                fs::remove_file(root.join("src/start")).unwrap();
                symlink("other.sh", root.join("src/start")).unwrap();
            }),
            ("new empty directory", |root| {
                fs::create_dir(root.join("empty")).unwrap()
            }),
            ("renamed file", |root| {
                fs::rename(root.join("src/run.sh"), root.join("src/go.sh")).unwrap()
            }),
            ("file become a directory", |root| {
                fs::remove_file(root.join("Dockerfile")).unwrap();
                fs::create_dir(root.join("Dockerfile")).unwrap();
            }),
        ];
        let unchanged = digest_of(tree().path());
        for (name, change) in changes {
            let changed = tree();
            change(changed.path());
            assert_ne!(digest_of(changed.path()), unchanged, "{name}");
        }
    }

    #[test]
    fn the_git_directory_does_not_count() {
        let (plain, cloned) = (tree(), tree());
        fs::create_dir_all(cloned.path().join(".git/objects")).unwrap();
        fs::write(cloned.path().join(".git/index"), "DIRC").unwrap();
        assert_eq!(digest_of(plain.path()), digest_of(cloned.path()));
        // Only the `.git` entry itself: a name that merely starts with
        // `.git` counts.
        fs::write(cloned.path().join(".gitignore"), "target\n").unwrap();
        assert_ne!(digest_of(plain.path()), digest_of(cloned.path()));
    }

    #[test]
    fn the_paths_left_out_do_not_count() {
        let (plain, written) = (tree(), tree());
        fs::write(written.path().join("build.json"), "{}").unwrap();
        let listing = walk(written.path(), Selection::default()).unwrap();
        let leave_out = [PathBuf::from("build.json")];
        assert_eq!(
            content_digest(written.path(), &listing, &leave_out, None)
                .unwrap()
                .digest,
            digest_of(plain.path())
        );
        assert_ne!(digest_of(written.path()), digest_of(plain.path()));
    }

    /// The top-level entries of [`tree`] changed as `change` changes it,
    /// the Dockerfile's own changes not counted.
    fn changed_top_level(change: Change) -> Vec<String> {
        let top_level = |root: &Path| {
            let listing = walk(root, Selection::default()).unwrap();
            content_digest(root, &listing, &[], Some(Path::new("Dockerfile")))
                .unwrap()
                .top_level
        };
        let before = top_level(tree().path());
        let changed = tree();
        change(changed.path());
        let after = top_level(changed.path());
        let names: std::collections::BTreeSet<&String> =
            before.keys().chain(after.keys()).collect();
        names
            .into_iter()
            .filter(|name| before.get(*name) != after.get(*name))
            .cloned()
            .collect()
    }

    #[test]
    fn each_top_level_entry_has_its_own_digest() {
        let root = tree();
        let listing = walk(root.path(), Selection::default()).unwrap();
        let names: Vec<String> = content_digest(root.path(), &listing, &[], None)
            .unwrap()
            .top_level
            .into_keys()
            .collect();
        assert_eq!(names, ["Dockerfile", "src/"]);
        let cases: [(&str, Change, &[&str]); 5] = [
            (
                "a file below src",
                |root| fs::write(root.join("src/run.sh"), "echo ho\n").unwrap(),
                &["src/"],
            ),
            (
                "a file added",
                |root| fs::write(root.join("README.md"), "hi\n").unwrap(),
                &["README.md"],
            ),
            (
                "a directory removed",
                |root| fs::remove_dir_all(root.join("src")).unwrap(),
                &["src/"],
            ),
            (
                "the Dockerfile: its own line",
                |root| fs::write(root.join("Dockerfile"), "FROM scratch\nCOPY . /\n").unwrap(),
                &[],
            ),
            (
                "an empty directory added",
                |root| fs::create_dir(root.join("empty")).unwrap(),
                &["empty/"],
            ),
        ];
        for (name, change, expected) in cases {
            assert_eq!(changed_top_level(change), expected, "{name}");
        }
    }

    #[test]
    fn a_context_with_too_many_top_level_entries_names_none() {
        let root = tempfile::tempdir().unwrap();
        for index in 0..=TOP_LEVEL_LIMIT {
            fs::write(root.path().join(format!("{index}.txt")), "").unwrap();
        }
        let listing = walk(root.path(), Selection::default()).unwrap();
        let digest = content_digest(root.path(), &listing, &[], None).unwrap();
        assert!(digest.top_level.is_empty());
        assert!(digest.digest.starts_with("sha256:"));
    }

    #[test]
    fn sha256_digests_are_recognised() {
        assert!(is_sha256_digest(&sha256_digest(b"x")));
        for bad in [
            "sha256:0",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(!is_sha256_digest(bad), "{bad}");
        }
    }

    #[test]
    fn sha256_digest_of_bytes() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
