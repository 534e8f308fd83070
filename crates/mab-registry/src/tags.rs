//! The release tags of a build (PRODUCT.md, "Tags").
//!
//! Pure: the caller finds the git ref and commit (from `GITHUB_REF` and
//! `GITHUB_SHA`, or from the repository holding the context) and passes
//! them in.

/// Where the source came from, as far as tags care.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Source {
    /// The git tag the ref names, if the ref is a tag.
    pub tag: Option<String>,
    /// The full commit id.
    pub commit: Option<String>,
}

/// The computed tags and any warning worth showing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tags {
    pub tags: Vec<String>,
    pub warning: Option<String>,
}

/// Tags for a build: `explicit` (from `--tag`) replaces everything;
/// otherwise the version, the short commit, `latest` for a plain
/// `X.Y.Z` version, then `extra`. `source` is `None` outside git.
pub fn compute_tags(source: Option<&Source>, extra: &[String], explicit: &[String]) -> Tags {
    if !explicit.is_empty() {
        return Tags {
            tags: dedup(explicit.iter().cloned()),
            warning: None,
        };
    }
    let Some(source) = source else {
        return Tags {
            tags: dedup(std::iter::once("latest".to_owned()).chain(extra.iter().cloned())),
            warning: Some(
                "the context is not in a git repository, so the only computed tag is `latest`"
                    .to_owned(),
            ),
        };
    };
    let version = source
        .tag
        .as_deref()
        .map(version_of_tag)
        .unwrap_or_else(|| "latest".to_owned());
    let mut tags = vec![version.clone()];
    if let Some(commit) = &source.commit {
        tags.push(commit.chars().take(8).collect());
    }
    if is_plain_version(&version) {
        tags.push("latest".to_owned());
    }
    tags.extend(extra.iter().cloned());
    Tags {
        tags: dedup(tags),
        warning: None,
    }
}

/// The tag a git tag name becomes: one leading `v` dropped when a digit
/// follows, characters a tag cannot hold turned into `-`.
pub fn version_of_tag(name: &str) -> String {
    let name = match name.strip_prefix('v') {
        Some(rest) if rest.starts_with(|character: char| character.is_ascii_digit()) => rest,
        _ => name,
    };
    sanitize_tag(name)
}

/// Makes `text` a valid tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn sanitize_tag(text: &str) -> String {
    let mut tag: String = text
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || matches!(character, '_' | '.' | '-') {
                character
            } else {
                '-'
            }
        })
        .take(128)
        .collect();
    if tag.starts_with(['.', '-']) {
        tag.replace_range(0..1, "_");
    }
    if tag.is_empty() {
        tag.push_str("latest");
    }
    tag
}

/// `^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$`
fn is_plain_version(version: &str) -> bool {
    let parts: Vec<&str> = version.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|part| {
            (1..=3).contains(&part.len()) && part.bytes().all(|byte| byte.is_ascii_digit())
        })
}

/// Of several tags pointing at one commit: the highest `vX.Y.Z`, else the
/// last by name.
pub fn pick_tag(names: &[String]) -> Option<&str> {
    let semantic = names
        .iter()
        .filter_map(|name| semantic_version(name).map(|version| (version, name)))
        .max_by_key(|(version, _)| *version);
    match semantic {
        Some((_, name)) => Some(name),
        None => names.iter().max().map(String::as_str),
    }
}

fn semantic_version(name: &str) -> Option<(u64, u64, u64)> {
    let parts: Vec<&str> = name.strip_prefix('v')?.split('.').collect();
    match parts.as_slice() {
        [major, minor, patch] => Some((
            major.parse().ok()?,
            minor.parse().ok()?,
            patch.parse().ok()?,
        )),
        _ => None,
    }
}

fn dedup(tags: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = Vec::new();
    for tag in tags {
        if !seen.contains(&tag) {
            seen.push(tag);
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn source(tag: Option<&str>) -> Source {
        Source {
            tag: tag.map(str::to_owned),
            commit: Some(COMMIT.to_owned()),
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn computes_tags_per_ref() {
        let cases: [(&str, Option<&str>, &[&str]); 7] = [
            ("branch push", None, &["latest", "01234567"]),
            ("release", Some("v1.2.3"), &["1.2.3", "01234567", "latest"]),
            (
                "release candidate",
                Some("v1.2.3-rc1"),
                &["1.2.3-rc1", "01234567"],
            ),
            (
                "named release",
                Some("release-3"),
                &["release-3", "01234567"],
            ),
            (
                "v without digit",
                Some("version-2"),
                &["version-2", "01234567"],
            ),
            ("no v", Some("2.4.1"), &["2.4.1", "01234567", "latest"]),
            (
                "too many digits",
                Some("v1.2.3456"),
                &["1.2.3456", "01234567"],
            ),
        ];
        for (name, tag, expected) in cases {
            let tags = compute_tags(Some(&source(tag)), &[], &[]);
            assert_eq!(tags.tags, strings(expected), "{name}");
            assert_eq!(tags.warning, None, "{name}");
        }
    }

    #[test]
    fn extra_tags_are_added_and_explicit_tags_replace() {
        let tags = compute_tags(
            Some(&source(Some("v2.4.1"))),
            &strings(&["edge", "latest"]),
            &[],
        );
        assert_eq!(tags.tags, strings(&["2.4.1", "01234567", "latest", "edge"]));
        let tags = compute_tags(
            Some(&source(Some("v2.4.1"))),
            &strings(&["edge"]),
            &strings(&["1.0"]),
        );
        assert_eq!(tags.tags, strings(&["1.0"]));
    }

    #[test]
    fn outside_git_only_latest_with_a_warning() {
        let tags = compute_tags(None, &strings(&["edge"]), &[]);
        assert_eq!(tags.tags, strings(&["latest", "edge"]));
        assert!(tags.warning.unwrap().contains("not in a git repository"));
    }

    #[test]
    fn sanitizes_tag_names() {
        let cases = [
            ("feature/x", "feature-x"),
            ("v1.0+build", "1.0-build"),
            ("-dash", "_dash"),
            ("ok_1.2-3", "ok_1.2-3"),
            ("", "latest"),
        ];
        for (input, expected) in cases {
            assert_eq!(version_of_tag(input), expected, "{input}");
        }
        assert_eq!(sanitize_tag(&"a".repeat(200)).len(), 128);
        for input in ["feature/x", "-dash", ".dot", "a+b"] {
            let tag = sanitize_tag(input);
            assert!(mab_config::project::is_valid_tag(&tag), "{input} -> {tag}");
        }
    }

    #[test]
    fn picks_the_highest_release_among_several_tags() {
        let cases: [(&[&str], Option<&str>); 5] = [
            (&["v1.2.3", "v1.10.0", "v1.9.9"], Some("v1.10.0")),
            (&["nightly", "v0.1.0"], Some("v0.1.0")),
            (&["beta", "alpha"], Some("beta")),
            (&["v2.0.0-rc1", "stable"], Some("v2.0.0-rc1")),
            (&[], None),
        ];
        for (names, expected) in cases {
            assert_eq!(pick_tag(&strings(names)), expected, "{names:?}");
        }
    }
}
