//! The labels every image gets and the annotations of an OCI index, from
//! the source (docs/configuration.md, "Labels and annotations"): the
//! `org.opencontainers.image.*` keys of the OCI image spec's
//! "Pre-Defined Annotation Keys", as docker/metadata-action computes them
//! for buildx, then `[labels]` (or `[annotations]`) over them; and the build
//! arguments `MAB_VERSION` and `MAB_COMMIT`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use mab_registry::tags::{Reference, Source};

use crate::environment::Environment;
use crate::failure::Failure;
use crate::git::Provenance;

/// The URL of the source's repository.
pub(super) const SOURCE: &str = "org.opencontainers.image.source";
/// The full commit id.
pub(super) const REVISION: &str = "org.opencontainers.image.revision";
/// When the image's source was committed (RFC 3339, UTC).
pub(super) const CREATED: &str = "org.opencontainers.image.created";
/// The version the tag rules compute from a git tag.
pub(super) const VERSION: &str = "org.opencontainers.image.version";

/// The build argument carrying [`VERSION`]'s value.
pub(super) const VERSION_ARG: &str = "MAB_VERSION";
/// The build argument carrying [`REVISION`]'s value.
pub(super) const COMMIT_ARG: &str = "MAB_COMMIT";

/// What the source says of itself, as far as labels care.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct SourceFacts {
    /// The commit built ([`Source::commit`]).
    pub(super) commit: Option<String>,
    /// [`version`] of the source.
    pub(super) version: Option<String>,
    /// The checkout's remote URL, credentials still in it.
    pub(super) remote_url: Option<String>,
    /// HEAD's committer time, seconds since the Unix epoch.
    pub(super) commit_time: Option<i64>,
}

impl SourceFacts {
    /// The facts of `source` (the tag rules' source, `None` outside git and
    /// CI) and `provenance` (the checkout's, `None` outside git).
    pub(super) fn of(source: Option<&Source>, provenance: Option<&Provenance>) -> SourceFacts {
        SourceFacts {
            commit: source.and_then(|source| source.commit.clone()),
            version: source.and_then(version),
            remote_url: provenance.and_then(|provenance| provenance.remote_url.clone()),
            commit_time: provenance.map(|provenance| provenance.commit_time),
        }
    }
}

/// The version of a source, as the tag rules compute it
/// (`mab_registry::tags::version_of_tag`: `v1.2.3` gives `1.2.3`): only for
/// a git tag (from the CI, or at HEAD) and a clean tree, where the tag rules
/// publish under it. `--tag` does not change it: it is a fact of the source.
pub(super) fn version(source: &Source) -> Option<String> {
    match &source.reference {
        Reference::Tag(name) if source.changed.is_empty() => {
            Some(mab_registry::tags::version_of_tag(name))
        }
        _ => None,
    }
}

/// The labels of every image: [`SOURCE`] (from the remote URL by
/// [`source_url`]), [`REVISION`], [`CREATED`] and [`VERSION`],
/// each only when known, then `configured` (`[labels]`) over them, a key
/// of `[labels]` replacing a computed one. [`CREATED`] is
/// `source_date_epoch` when given (reproducible-builds.org's
/// `SOURCE_DATE_EPOCH`, whole seconds since the Unix epoch, as
/// [`source_date_epoch`] reads it), else the commit's committer time,
/// else absent (the image config's own `created` still says when it was
/// built).
pub(super) fn image_labels(
    facts: &SourceFacts,
    source_date_epoch: Option<i64>,
    configured: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    if let Some(url) = facts.remote_url.as_deref().and_then(source_url) {
        labels.insert(SOURCE.to_owned(), url);
    }
    if let Some(commit) = &facts.commit {
        labels.insert(REVISION.to_owned(), commit.clone());
    }
    let epoch = source_date_epoch.or(facts.commit_time);
    if let Some(created) = epoch.and_then(rfc3339) {
        labels.insert(CREATED.to_owned(), created);
    }
    if let Some(version) = &facts.version {
        labels.insert(VERSION.to_owned(), version.clone());
    }
    labels.extend(
        configured
            .iter()
            .map(|(key, value)| (key.clone(), value.clone())),
    );
    labels
}

/// The annotations of an OCI index: the `org.opencontainers.image.*` keys
/// of `labels` (those mab computes, or `[labels]` gives), then
/// `configured` (`[annotations]`) over them.
pub(super) fn index_annotations(
    labels: &BTreeMap<String, String>,
    configured: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut annotations: BTreeMap<String, String> = [SOURCE, REVISION, CREATED, VERSION]
        .into_iter()
        .filter_map(|key| Some((key.to_owned(), labels.get(key)?.clone())))
        .collect();
    annotations.extend(
        configured
            .iter()
            .map(|(key, value)| (key.clone(), value.clone())),
    );
    annotations
}

/// The build arguments offered to the Dockerfile: [`VERSION_ARG`] and
/// [`COMMIT_ARG`] from `facts`, each only when known and not already given
/// in `args` (`[image.args]` or `--build-arg`, which win).
pub(super) fn offer_build_args(facts: &SourceFacts, args: &mut BTreeMap<String, String>) {
    for (name, value) in [(VERSION_ARG, &facts.version), (COMMIT_ARG, &facts.commit)] {
        if let Some(value) = value {
            args.entry(name.to_owned()).or_insert_with(|| value.clone());
        }
    }
}

/// The last second RFC 3339 can write, 9999-12-31T23:59:59Z, in seconds
/// since the Unix epoch: the upper bound of `SOURCE_DATE_EPOCH`.
pub(super) const LAST_EPOCH: i64 = 253_402_300_799;

/// `SOURCE_DATE_EPOCH`'s value `text` (trimmed; unset or empty is
/// `None`) as seconds since the Unix epoch, 0 to [`LAST_EPOCH`]: the times
/// RFC 3339 can write in UTC.
///
/// Errors: anything else, naming the variable and its value (exit 2; the
/// specification asks tools to fail on a malformed value).
fn parse_source_date_epoch(text: Option<&str>) -> Result<Option<i64>, Failure> {
    let Some(text) = text.map(str::trim).filter(|text| !text.is_empty()) else {
        return Ok(None);
    };
    let refuse = |what: &str| {
        Failure::usage(
            format!("SOURCE_DATE_EPOCH is `{text}`, {what}"),
            Some("set it to the output of `git log -1 --format=%ct`, or unset it to take the commit's time"),
        )
    };
    let seconds = text.parse::<i64>().map_err(|error| match error.kind() {
        std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
            refuse(OUT_OF_RANGE)
        }
        _ => refuse("not a whole number of seconds since 1970-01-01 00:00:00 UTC"),
    })?;
    match (0..=LAST_EPOCH).contains(&seconds) {
        true => Ok(Some(seconds)),
        false => Err(refuse(OUT_OF_RANGE)),
    }
}

/// Why a whole number of seconds is refused as `SOURCE_DATE_EPOCH`.
const OUT_OF_RANGE: &str =
    "outside 0 (1970-01-01T00:00:00Z) to 253402300799 (9999-12-31T23:59:59Z)";

/// `seconds` since the Unix epoch as RFC 3339 in UTC, to the second
/// (`2024-05-01T12:00:00Z`).
/// `None` outside 0 to [`LAST_EPOCH`] (a commit time git was given by hand).
fn rfc3339(seconds: i64) -> Option<String> {
    let seconds = u64::try_from(seconds)
        .ok()
        .filter(|_| seconds <= LAST_EPOCH)?;
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds);
    Some(humantime::format_rfc3339_seconds(time).to_string())
}

/// The [`SOURCE`] label of a git remote URL (docs/publishing.md): `None`
/// for a local path or a `file://` URL, which name a directory of the
/// machine that built (`/home/alice/...`), not a public place; GitHub's
/// scp-like `git@github.com:OWNER/REPO[.git]` as
/// `https://github.com/OWNER/REPO` (the URL GitHub and ghcr.io link a
/// package to its repository by); any other URL [`without_credentials`].
/// git's rule for the forms: a URL has `://`; without it, a `:` before
/// the first `/` makes the scp-like `[user@]host:path`, else it is a path.
pub(super) fn source_url(url: &str) -> Option<String> {
    match url.split_once("://") {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("file") => None,
        Some(_) => Some(without_credentials(url)),
        None => {
            let (host, path) = url.split_once(':')?;
            if host.contains('/') {
                return None;
            }
            match (host, path.split('/').count()) {
                ("git@github.com", 2) if !path.starts_with('/') => {
                    let path = path.strip_suffix(".git").unwrap_or(path);
                    Some(format!("https://github.com/{path}"))
                }
                _ => Some(url.to_owned()),
            }
        }
    }
}

/// A remote URL without the credentials it may hold: in `scheme://user:password@host/path`
/// the password always goes, and for `http` and `https` the user too (a
/// token is often written as the user: `https://TOKEN@github.com/...`,
/// `https://x-access-token:TOKEN@...`). The user of an `ssh://` URL stays
/// (`ssh://git@host/path`), as does git's scp-like form
/// (`git@github.com:org/app.git`), which holds no password; a local path
/// stays as it is.
pub(super) fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((user_info, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let is_http = ["http", "https"]
        .iter()
        .any(|http| scheme.eq_ignore_ascii_case(http));
    let user = user_info
        .split_once(':')
        .map_or(user_info, |(user, _)| user);
    match is_http || user.is_empty() {
        true => format!("{scheme}://{host}{path}"),
        false => format!("{scheme}://{user}@{host}{path}"),
    }
}

/// `SOURCE_DATE_EPOCH` from the environment, in seconds since the Unix
/// epoch; `None` when unset, empty or not text. Read before any runner is
/// contacted.
///
/// Errors: a value that is not a whole number of seconds from 0 to
/// [`LAST_EPOCH`] (exit 2, [`parse_source_date_epoch`]).
pub(super) fn source_date_epoch(environment: &Environment) -> Result<Option<i64>, Failure> {
    parse_source_date_epoch(
        environment
            .variable("SOURCE_DATE_EPOCH")
            .and_then(|value| value.to_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_stripped_from_remote_urls() {
        // (remote URL, label)
        let cases = [
            (
                "https://user:token@github.com/org/app.git",
                "https://github.com/org/app.git",
            ),
            (
                "https://ghp_token@github.com/org/app",
                "https://github.com/org/app",
            ),
            (
                "HTTP://x-access-token:abc@host:8080/a?b#c",
                "HTTP://host:8080/a?b#c",
            ),
            (
                "https://github.com/org/app.git",
                "https://github.com/org/app.git",
            ),
            (
                "ssh://git:secret@host:2222/org/app.git",
                "ssh://git@host:2222/org/app.git",
            ),
            ("ssh://git@host/org/app.git", "ssh://git@host/org/app.git"),
            ("git@github.com:org/app.git", "git@github.com:org/app.git"),
            ("/srv/git/app.git", "/srv/git/app.git"),
            ("file:///srv/git/app.git", "file:///srv/git/app.git"),
            ("https://a@b@host/p", "https://host/p"),
            ("https://host/p@q", "https://host/p@q"),
        ];
        for (url, expected) in cases {
            assert_eq!(without_credentials(url), expected, "{url}");
        }
    }

    #[test]
    fn source_label_of_remote_urls() {
        // (remote URL, label)
        let cases = [
            ("/home/alice/src/app", None),
            ("../app.git", None),
            ("app", None),
            ("file:///home/alice/src/app.git", None),
            ("FILE:///srv/app.git", None),
            ("./dir:with/colon", None),
            (
                "git@github.com:org/app.git",
                Some("https://github.com/org/app"),
            ),
            ("git@github.com:org/app", Some("https://github.com/org/app")),
            // Not GitHub, or not OWNER/REPO: as it is.
            (
                "git@gitlab.com:group/sub/app.git",
                Some("git@gitlab.com:group/sub/app.git"),
            ),
            (
                "git@github.com:/org/app.git",
                Some("git@github.com:/org/app.git"),
            ),
            ("work-github:org/app.git", Some("work-github:org/app.git")),
            (
                "https://token@github.com/org/app.git",
                Some("https://github.com/org/app.git"),
            ),
            (
                "ssh://git@host/org/app.git",
                Some("ssh://git@host/org/app.git"),
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(source_url(url).as_deref(), expected, "{url}");
        }
        let local = SourceFacts {
            remote_url: Some("/home/alice/src/app".to_owned()),
            ..facts()
        };
        let labels = image_labels(&local, None, &BTreeMap::new());
        assert!(!labels.contains_key(SOURCE), "{labels:?}");
    }

    fn facts() -> SourceFacts {
        SourceFacts {
            commit: Some("0123456789abcdef0123456789abcdef01234567".to_owned()),
            version: Some("1.2.3".to_owned()),
            remote_url: Some("https://user:pass@example.com/app.git".to_owned()),
            commit_time: Some(1_714_564_800),
        }
    }

    #[test]
    fn labels_from_the_source_then_the_manifest() {
        let configured = BTreeMap::from([
            (VERSION.to_owned(), "custom".to_owned()),
            ("team".to_owned(), "build".to_owned()),
        ]);
        let labels = image_labels(&facts(), None, &configured);
        let expected = BTreeMap::from(
            [
                (SOURCE, "https://example.com/app.git"),
                (REVISION, "0123456789abcdef0123456789abcdef01234567"),
                (CREATED, "2024-05-01T12:00:00Z"),
                (VERSION, "custom"),
                ("team", "build"),
            ]
            .map(|(key, value)| (key.to_owned(), value.to_owned())),
        );
        assert_eq!(labels, expected);
        let annotations = index_annotations(
            &labels,
            &BTreeMap::from([("org.example.x".to_owned(), "y".to_owned())]),
        );
        assert_eq!(annotations.len(), 5, "{annotations:?}");
        assert!(!annotations.contains_key("team"));
        assert_eq!(annotations["org.example.x"], "y");

        // Outside git: none.
        let labels = image_labels(&SourceFacts::default(), None, &BTreeMap::new());
        assert!(labels.is_empty(), "{labels:?}");
    }

    #[test]
    fn source_date_epoch_sets_the_created_time() {
        // (SOURCE_DATE_EPOCH, created, or refused)
        let cases = [
            (None, Some("2024-05-01T12:00:00Z")),
            (Some(""), Some("2024-05-01T12:00:00Z")),
            (Some("0"), Some("1970-01-01T00:00:00Z")),
            (Some(" 1700000000\n"), Some("2023-11-14T22:13:20Z")),
            (Some("253402300799"), Some("9999-12-31T23:59:59Z")),
            (Some("1.5"), None),
            (Some("yesterday"), None),
            (Some("-1"), None),
            (Some("253402300800"), None),
            (Some("-9223372036854775808"), None),
            (Some("9223372036854775808"), None),
            (Some("99999999999999999999999"), None),
        ];
        for (epoch, created) in cases {
            let result = parse_source_date_epoch(epoch)
                .map(|epoch| image_labels(&facts(), epoch, &BTreeMap::new()));
            match created {
                Some(created) => assert_eq!(result.unwrap()[CREATED], created, "{epoch:?}"),
                None => {
                    let failure = result.unwrap_err();
                    assert_eq!(failure.kind.exit_code(), 2);
                    assert!(
                        failure.report.contains("SOURCE_DATE_EPOCH is `"),
                        "{epoch:?}"
                    );
                    assert!(failure.report.contains(epoch.unwrap().trim()), "{epoch:?}");
                    assert!(failure.report.contains("hint:"), "{epoch:?}");
                }
            }
        }
        let without_commit = SourceFacts {
            commit_time: None,
            ..facts()
        };
        let labels = image_labels(&without_commit, None, &BTreeMap::new());
        assert!(!labels.contains_key(CREATED));
        // A commit time out of RFC 3339's range (written by hand) is left out.
        for commit_time in [-1, LAST_EPOCH + 1, i64::MIN, i64::MAX] {
            let facts = SourceFacts {
                commit_time: Some(commit_time),
                ..facts()
            };
            let labels = image_labels(&facts, None, &BTreeMap::new());
            assert!(!labels.contains_key(CREATED), "{commit_time}");
        }
    }

    #[test]
    fn build_args_are_offered_unless_given() {
        let mut args = BTreeMap::from([(COMMIT_ARG.to_owned(), "mine".to_owned())]);
        offer_build_args(&facts(), &mut args);
        assert_eq!(args[COMMIT_ARG], "mine");
        assert_eq!(args[VERSION_ARG], "1.2.3");
        let mut args = BTreeMap::new();
        offer_build_args(&SourceFacts::default(), &mut args);
        assert!(args.is_empty());
    }

    #[test]
    fn only_a_clean_tagged_source_has_a_version() {
        let source = |reference: Reference, changed: &[&str]| Source {
            reference,
            commit: None,
            changed: changed.iter().map(|path| (*path).to_owned()).collect(),
            ci_commit_not_checked_out: None,
        };
        let cases = [
            (
                source(Reference::Tag("v1.2.3".to_owned()), &[]),
                Some("1.2.3"),
            ),
            (
                source(Reference::Tag("v1.2.3-rc1".to_owned()), &[]),
                Some("1.2.3-rc1"),
            ),
            (source(Reference::Tag("v1.2.3".to_owned()), &["a"]), None),
            (source(Reference::Other, &[]), None),
            (source(Reference::PullRequest("4".to_owned()), &[]), None),
        ];
        for (source, expected) in cases {
            assert_eq!(version(&source).as_deref(), expected, "{source:?}");
        }
    }
}
