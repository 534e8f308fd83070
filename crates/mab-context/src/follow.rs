//! Following symlinks the way fsutil's `FollowLinks` does, for the paths a
//! BuildKit frontend names in `followpaths` (the Dockerfile and its ignore
//! file): every symlink on the way to a path is followed inside the
//! directory being sent, which stands in for `/` (an absolute target is read
//! from that directory, and `..` cannot leave it).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// Symlinks followed in a row for one path before giving up, as fsutil.
const MAX_LINKS: usize = 40;

/// fsutil's `FollowLinks`: for each '/'-separated path relative to `root`,
/// the path with every symlink on the way to it followed, and the symlinks
/// themselves, sorted and without repeats. A path with a wildcard in it is
/// kept as it is from the wildcard on (fsutil would expand it; mab uses it as
/// a pattern).
pub fn follow_links(root: &Path, paths: &[String]) -> Vec<String> {
    let mut found = BTreeSet::new();
    for path in paths {
        follow(root, path, &mut found);
    }
    found.into_iter().collect()
}

/// Where `path` (relative to `root`) leads once every symlink on the way is
/// followed as [`follow_links`] follows it: the '/'-separated path relative
/// to `root` that the engine would read. It may not exist.
pub fn resolve_links(root: &Path, path: &str) -> String {
    follow(root, path, &mut BTreeSet::new())
}

/// Follows `path`, adding each symlink met and the final path to `found`;
/// returns the final path.
fn follow(root: &Path, path: &str, found: &mut BTreeSet<String>) -> String {
    let mut pending = clean_relative(path);
    for _ in 0..=MAX_LINKS {
        match first_link(root, &pending) {
            Some((link, target, rest)) => {
                found.insert(link.clone());
                let resolved = if let Some(absolute) = target.strip_prefix('/') {
                    absolute.to_owned()
                } else {
                    let parent = link.rsplit_once('/').map_or("", |(parent, _)| parent);
                    join_slash(parent, &target)
                };
                pending = clean_relative(&join_slash(&resolved, &rest));
            }
            None => break,
        }
    }
    if !pending.is_empty() {
        found.insert(pending.clone());
    }
    pending
}

/// The first symlink on the way to `path`: the link, its target and what
/// follows it in `path`. `None` when there is none before the end or before
/// a wildcard.
fn first_link(root: &Path, path: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    for index in 0..parts.len() {
        if parts[index].contains(['*', '?', '[', '\\']) {
            return None;
        }
        let current = parts[..=index].join("/");
        let absolute = root.join(&current);
        let is_link =
            fs::symlink_metadata(&absolute).is_ok_and(|metadata| metadata.file_type().is_symlink());
        if is_link {
            let target = fs::read_link(&absolute).ok()?;
            return Some((
                current,
                target.to_string_lossy().into_owned(),
                parts[index + 1..].join("/"),
            ));
        }
    }
    None
}

fn join_slash(left: &str, right: &str) -> String {
    match (left.is_empty(), right.is_empty()) {
        (true, _) => right.to_owned(),
        (_, true) => left.to_owned(),
        _ => format!("{left}/{right}"),
    }
}

/// `a/./b/../c` -> `a/c`, relative to a root that `..` cannot leave (as
/// `filepath.Join("/", p)` treats it): Go's `path.Clean` of `/p`, without
/// the leading `/`.
fn clean_relative(path: &str) -> String {
    crate::pattern::clean(&format!("/{path}"))[1..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn follows_symlinks_inside_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("real/sub")).unwrap();
        fs::write(root.join("real/sub/Dockerfile"), "FROM scratch\n").unwrap();
        symlink("real/sub/Dockerfile", root.join("Dockerfile")).unwrap();
        symlink("real", root.join("linked")).unwrap();
        symlink("/real/sub", root.join("absolute")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        symlink("../../outside/Dockerfile", root.join("escaping")).unwrap();
        // (paths, what they become)
        let cases: &[(&[&str], &[&str])] = &[
            (&["plain/file"], &["plain/file"]),
            (&["Dockerfile"], &["Dockerfile", "real/sub/Dockerfile"]),
            (&["./linked/sub/x"], &["linked", "real/sub/x"]),
            (
                &["absolute/Dockerfile"],
                &["absolute", "real/sub/Dockerfile"],
            ),
            (&["../../linked"], &["linked", "real"]),
            (&["loop"], &["loop"]),
            (&["escaping"], &["escaping", "outside/Dockerfile"]),
            (&["*.txt", "a/*/b"], &["*.txt", "a/*/b"]),
            (
                &["Dockerfile", "Dockerfile.dockerignore"],
                &[
                    "Dockerfile",
                    "Dockerfile.dockerignore",
                    "real/sub/Dockerfile",
                ],
            ),
        ];
        for &(paths, expected) in cases {
            assert_eq!(
                follow_links(root, &strings(paths)),
                strings(expected),
                "{paths:?}"
            );
        }
        assert_eq!(resolve_links(root, "Dockerfile"), "real/sub/Dockerfile");
        assert_eq!(resolve_links(root, "escaping"), "outside/Dockerfile");
        assert_eq!(resolve_links(root, "plain"), "plain");
    }
}
