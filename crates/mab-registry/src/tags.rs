//! The release tags of a build (PRODUCT.md, "Tags"; docs/publishing.md
//! has the whole table).
//!
//! Pure: the caller reads the CI variables ([`CiVariables`]) and the git
//! repository holding the context ([`Checkout`]), and [`source`] makes the
//! [`Source`] of them. The rules follow the seed article's workflow for
//! versions and docker/metadata-action for pull requests (`pr-N`, never
//! `latest`; the number of a `pull_request_target` from the event payload).
//! Unlike docker/metadata-action, whose commit is always `GITHUB_SHA`, the
//! commit is the checkout's HEAD when it is known: mab builds what is
//! checked out, and the dirty check compares the sent files with HEAD.

/// What kind of ref was built, as far as tags care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// A git tag, by its name (`v1.2.3`).
    Tag(String),
    /// A pull request (GitHub) or merge request (GitLab), by its number
    /// (`42`).
    PullRequest(String),
    /// A pull request whose number is not known: a GitHub
    /// `pull_request_target` run whose event payload could not be read.
    /// Only the commit tag, never `latest` or a release tag.
    PullRequestOfUnknownNumber,
    /// A branch, or any other ref.
    Other,
}

/// Where the source came from, as far as tags care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub reference: Reference,
    /// The full commit id: HEAD of the checkout when there is one (40 hex
    /// characters from git), else what `GITHUB_SHA`/`CI_COMMIT_SHA` say.
    pub commit: Option<String>,
    /// The sent files that differ from the commit or are untracked (not
    /// ignored by git), as paths relative to the repository's top; any
    /// makes the tree dirty.
    pub changed: Vec<String>,
    /// When the CI variables name another commit than the checkout's HEAD
    /// (actions/checkout with `ref:`, a `pull_request_target` run that
    /// checks out the pull request): the variable and the commit it names,
    /// for a warning. `commit` is HEAD then.
    pub ci_commit_not_checked_out: Option<(&'static str, String)>,
}

/// The CI variables that name the ref and commit, each `None` when unset
/// or empty. GitHub Actions sets `GITHUB_REF`, `GITHUB_SHA` and
/// `GITHUB_EVENT_NAME` (with the event payload in the file
/// `GITHUB_EVENT_PATH`); GitLab CI sets `CI_COMMIT_SHA` in every pipeline,
/// `CI_COMMIT_TAG` in tag pipelines and `CI_MERGE_REQUEST_IID` in merge
/// request pipelines.
#[derive(Clone, Copy, Debug, Default)]
pub struct CiVariables<'a> {
    pub github_ref: Option<&'a str>,
    pub github_sha: Option<&'a str>,
    /// `GITHUB_EVENT_NAME`: `push`, `pull_request`, `pull_request_target`, …
    pub github_event_name: Option<&'a str>,
    /// The pull request's number in the event payload, which the caller
    /// reads for a `pull_request_target` run (`GITHUB_REF` names the base
    /// branch there); `None` when it could not be read.
    pub github_pull_request_number: Option<&'a str>,
    pub gitlab_commit_tag: Option<&'a str>,
    pub gitlab_commit_sha: Option<&'a str>,
    pub gitlab_merge_request_iid: Option<&'a str>,
}

impl CiVariables<'_> {
    /// The ref the CI names, `None` when no CI variable names one.
    /// `GITHUB_EVENT_NAME=pull_request_target` is a pull request, numbered
    /// from the event payload as docker/metadata-action numbers it (its
    /// `GITHUB_REF` is the base branch, which must not give `latest`).
    /// Else `GITHUB_REF` wins: `refs/tags/NAME` is a tag, `refs/pull/N/...`
    /// a pull request, anything else neither. Else GitLab, when any of its
    /// variables is set: `CI_MERGE_REQUEST_IID` is a merge request,
    /// `CI_COMMIT_TAG` a tag, and a pipeline with neither (a branch
    /// pipeline) is neither, even where a tag points at the commit.
    pub fn reference(&self) -> Option<Reference> {
        if self.github_event_name == Some(PULL_REQUEST_TARGET) {
            return Some(match self.github_pull_request_number {
                Some(number) => Reference::PullRequest(number.to_owned()),
                None => Reference::PullRequestOfUnknownNumber,
            });
        }
        if let Some(github_ref) = self.github_ref {
            return Some(reference_of_github_ref(github_ref));
        }
        if let Some(number) = self.gitlab_merge_request_iid {
            return Some(Reference::PullRequest(number.to_owned()));
        }
        if let Some(tag) = self.gitlab_commit_tag {
            return Some(Reference::Tag(tag.to_owned()));
        }
        self.gitlab_commit_sha.map(|_| Reference::Other)
    }

    /// The commit the CI names and the variable naming it: `GITHUB_SHA`,
    /// else `CI_COMMIT_SHA`.
    pub fn commit(&self) -> Option<(&'static str, &str)> {
        match (self.github_sha, self.gitlab_commit_sha) {
            (Some(commit), _) => Some(("GITHUB_SHA", commit)),
            (None, Some(commit)) => Some(("CI_COMMIT_SHA", commit)),
            (None, None) => None,
        }
    }
}

/// The GitHub Actions event of a workflow that runs with the base
/// repository's rights on a pull request (`GITHUB_REF` is the base branch).
pub const PULL_REQUEST_TARGET: &str = "pull_request_target";

/// What the git repository holding the context says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkout {
    /// The names of the tags pointing at HEAD.
    pub tags_at_head: Vec<String>,
    /// HEAD's full commit id.
    pub head: String,
    /// The sent files that differ from HEAD or are untracked (not ignored
    /// by git), relative to the repository's top.
    pub changed: Vec<String>,
}

/// The source of a build: the ref from the CI variables when they name one
/// (see [`CiVariables::reference`]), else from the checkout (a tag at HEAD,
/// with several the one [`pick_tag`] picks); the commit is the checkout's
/// HEAD, else [`CiVariables::commit`]; the changed files from the checkout.
/// `None` when neither says anything (outside git, not in CI).
///
/// When the CI's commit is not HEAD, the checkout is what is built: the
/// commit is HEAD (so `SHA8` names the commit the dirty check compared the
/// files with), and a tag or branch the CI names is not used, since it
/// names the CI's commit; the ref is read from the checkout as outside CI.
/// A pull request stays one: its tags are never release tags.
/// [`Source::ci_commit_not_checked_out`] keeps the CI's commit for a
/// warning.
pub fn source(ci: &CiVariables, checkout: Option<&Checkout>) -> Option<Source> {
    let ci_commit = ci.commit();
    let not_checked_out = match (ci_commit, checkout) {
        (Some((variable, commit)), Some(checkout))
            if !commit.eq_ignore_ascii_case(&checkout.head) =>
        {
            Some((variable, commit.to_owned()))
        }
        _ => None,
    };
    let checkout_reference = || {
        checkout.map(|checkout| match pick_tag(&checkout.tags_at_head) {
            Some(tag) => Reference::Tag(tag.to_owned()),
            None => Reference::Other,
        })
    };
    let reference = match ci.reference() {
        Some(reference @ (Reference::PullRequest(_) | Reference::PullRequestOfUnknownNumber)) => {
            Some(reference)
        }
        Some(_) if not_checked_out.is_some() => checkout_reference(),
        Some(reference) => Some(reference),
        None => checkout_reference(),
    };
    let commit = checkout
        .map(|checkout| checkout.head.clone())
        .or(ci_commit.map(|(_, commit)| commit.to_owned()));
    if reference.is_none() && commit.is_none() {
        return None;
    }
    Some(Source {
        reference: reference.unwrap_or(Reference::Other),
        commit,
        changed: checkout
            .map(|checkout| checkout.changed.clone())
            .unwrap_or_default(),
        ci_commit_not_checked_out: not_checked_out,
    })
}

/// What a `GITHUB_REF` names: `refs/tags/NAME` a tag, `refs/pull/N/merge`
/// (and `refs/pull/N/head`) pull request N, anything else neither.
pub fn reference_of_github_ref(github_ref: &str) -> Reference {
    if let Some(name) = github_ref.strip_prefix("refs/tags/") {
        return Reference::Tag(name.to_owned());
    }
    match github_ref
        .strip_prefix("refs/pull/")
        .and_then(|rest| rest.split('/').next())
    {
        Some(number) if !number.is_empty() => Reference::PullRequest(number.to_owned()),
        _ => Reference::Other,
    }
}

/// How many changed files a dirty-tree warning names.
const CHANGED_FILES_NAMED: usize = 3;

/// The computed tags and the warnings worth showing, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tags {
    pub tags: Vec<String>,
    pub warnings: Vec<String>,
}

/// Tags for a build. `explicit` (from `--tag`) replaces everything.
/// Otherwise, with `source` (`None` outside git and without CI variables:
/// `latest` and `extra`, with a warning):
///
/// | source | tags |
/// |---|---|
/// | changed files (a dirty tree) | `SHA8-dirty` only |
/// | pull or merge request N | `pr-N`, `SHA8` |
/// | pull request of unknown number | `SHA8` only |
/// | tag `v1.2.3` | `1.2.3`, `SHA8`, `latest`, then `extra` |
/// | tag `v1.2.3-rc1` | `1.2.3-rc1`, `SHA8`, then `extra` |
/// | branch or other ref | `latest`, `SHA8`, then `extra` |
///
/// `SHA8` is the commit's first 8 characters, left out when the commit is
/// unknown. `extra` tags are release channels, so pull requests and dirty
/// trees do not get them. A CI commit that is not HEAD
/// ([`Source::ci_commit_not_checked_out`]) is warned about, naming both.
pub fn compute_tags(source: Option<&Source>, extra: &[String], explicit: &[String]) -> Tags {
    if !explicit.is_empty() {
        return Tags {
            tags: dedup(explicit.iter().cloned()),
            warnings: Vec::new(),
        };
    }
    let Some(source) = source else {
        return Tags {
            tags: dedup(std::iter::once("latest".to_owned()).chain(extra.iter().cloned())),
            warnings: vec![
                "the context is not in a git repository, so the only computed tag is `latest`"
                    .to_owned(),
            ],
        };
    };
    let short_commit = source
        .commit
        .as_deref()
        .map(|commit| sanitize_tag(&commit.chars().take(8).collect::<String>()));
    let mut warnings = Vec::new();
    if let (Some((variable, ci_commit)), Some(head)) =
        (&source.ci_commit_not_checked_out, &source.commit)
    {
        warnings.push(format!(
            "{variable} names the commit {ci_commit}, but HEAD of the checkout is {head}; \
             the tags are computed for HEAD, which is what is built (a pull request keeps its \
             number, a tag or branch the CI names does not count)"
        ));
    }
    if !source.changed.is_empty() {
        let tag = match &short_commit {
            Some(short_commit) => format!("{short_commit}-dirty"),
            None => "dirty".to_owned(),
        };
        warnings.push(format!(
            "the working tree is dirty: files that are sent differ from the commit or are untracked \
             ({}), so the only computed tag is `{tag}`; commit them for the release tags, or give \
             the tags with --tag",
            name_a_few(&source.changed)
        ));
        return Tags {
            tags: vec![tag],
            warnings,
        };
    }
    let version = match &source.reference {
        Reference::PullRequest(number) => {
            let tags = std::iter::once(sanitize_tag(&format!("pr-{number}"))).chain(short_commit);
            return Tags {
                tags: dedup(tags),
                warnings,
            };
        }
        Reference::PullRequestOfUnknownNumber => {
            return Tags {
                tags: short_commit.into_iter().collect(),
                warnings,
            };
        }
        Reference::Tag(name) => version_of_tag(name),
        Reference::Other => "latest".to_owned(),
    };
    let mut tags = vec![version.clone()];
    tags.extend(short_commit);
    if is_plain_version(&version) {
        tags.push("latest".to_owned());
    }
    tags.extend(extra.iter().cloned());
    Tags {
        tags: dedup(tags),
        warnings,
    }
}

/// `a, b, c and 2 more`.
fn name_a_few(paths: &[String]) -> String {
    let named = paths[..paths.len().min(CHANGED_FILES_NAMED)].join(", ");
    match paths.len().saturating_sub(CHANGED_FILES_NAMED) {
        0 => named,
        more => format!("{named} and {more} more"),
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

    fn tagged(tag: Option<&str>) -> Source {
        Source {
            reference: match tag {
                Some(tag) => Reference::Tag(tag.to_owned()),
                None => Reference::Other,
            },
            commit: Some(COMMIT.to_owned()),
            changed: Vec::new(),
            ci_commit_not_checked_out: None,
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
            let tags = compute_tags(Some(&tagged(tag)), &[], &[]);
            assert_eq!(tags.tags, strings(expected), "{name}");
            assert_eq!(tags.warnings, Vec::<String>::new(), "{name}");
        }
    }

    /// The whole table of docs/publishing.md: CI variables (GitHub, GitLab,
    /// both) or the repository's own ref, through to the tags, and whether
    /// the CI's commit is warned about for not being HEAD.
    #[test]
    fn the_whole_tag_table() {
        struct Case {
            name: &'static str,
            ci: CiVariables<'static>,
            /// What the repository says: the tag at HEAD, the commit, the changed files.
            repository: Option<(Option<&'static str>, &'static str, &'static [&'static str])>,
            explicit: &'static [&'static str],
            expected: &'static [&'static str],
            /// Whether the CI names a commit other than HEAD.
            other_commit: bool,
        }
        const GITHUB_SHA: &str = "1111111122222222333333334444444455555555";
        const GITLAB_SHA: &str = "aaaaaaaabbbbbbbbccccccccddddddddeeeeeeee";
        const HEAD: &str = "9999999988888888777777776666666655555555";
        let github = |github_ref: &'static str| CiVariables {
            github_ref: Some(github_ref),
            github_sha: Some(GITHUB_SHA),
            ..CiVariables::default()
        };
        let target = |number: Option<&'static str>| CiVariables {
            github_event_name: Some("pull_request_target"),
            github_pull_request_number: number,
            ..github("refs/heads/main")
        };
        let gitlab = |tag: Option<&'static str>, merge_request: Option<&'static str>| CiVariables {
            gitlab_commit_tag: tag,
            gitlab_commit_sha: Some(GITLAB_SHA),
            gitlab_merge_request_iid: merge_request,
            ..CiVariables::default()
        };
        let none = CiVariables::default();
        #[rustfmt::skip]
        let cases = [
            Case { name: "GitHub tag", ci: github("refs/tags/v1.2.3"), repository: None, explicit: &[], expected: &["1.2.3", "11111111", "latest", "edge"], other_commit: false },
            Case { name: "GitHub tag, checked out", ci: github("refs/tags/v1.2.3"), repository: Some((Some("v1.2.3"), GITHUB_SHA, &[])), explicit: &[], expected: &["1.2.3", "11111111", "latest", "edge"], other_commit: false },
            Case { name: "GitHub pre-release tag", ci: github("refs/tags/v2.0.0-rc1"), repository: None, explicit: &[], expected: &["2.0.0-rc1", "11111111", "edge"], other_commit: false },
            Case { name: "GitHub branch", ci: github("refs/heads/main"), repository: None, explicit: &[], expected: &["latest", "11111111", "edge"], other_commit: false },
            Case { name: "GitHub branch, a tag at HEAD does not count", ci: github("refs/heads/main"), repository: Some((Some("v9.9.9"), GITHUB_SHA, &[])), explicit: &[], expected: &["latest", "11111111", "edge"], other_commit: false },
            Case { name: "GitHub pull request (merge ref)", ci: github("refs/pull/42/merge"), repository: None, explicit: &[], expected: &["pr-42", "11111111"], other_commit: false },
            Case { name: "GitHub pull request (head ref)", ci: github("refs/pull/7/head"), repository: None, explicit: &[], expected: &["pr-7", "11111111"], other_commit: false },
            Case { name: "GitHub pull request, dirty tree", ci: github("refs/pull/42/merge"), repository: Some((None, GITHUB_SHA, &["app.txt"])), explicit: &[], expected: &["11111111-dirty"], other_commit: false },
            Case { name: "GITHUB_REF alone: the commit from git", ci: CiVariables { github_ref: Some("refs/tags/v1.0.0"), ..none }, repository: Some((None, HEAD, &[])), explicit: &[], expected: &["1.0.0", "99999999", "latest", "edge"], other_commit: false },
            Case { name: "GITHUB_SHA alone: the ref from git", ci: CiVariables { github_sha: Some(GITHUB_SHA), ..none }, repository: Some((Some("v3.1.4"), GITHUB_SHA, &[])), explicit: &[], expected: &["3.1.4", "11111111", "latest", "edge"], other_commit: false },
            Case { name: "GitHub tag, another commit checked out: HEAD, and no tag at it", ci: github("refs/tags/v1.2.3"), repository: Some((None, HEAD, &[])), explicit: &[], expected: &["latest", "99999999", "edge"], other_commit: true },
            Case { name: "GitHub branch, another commit checked out: the tag at HEAD", ci: github("refs/heads/main"), repository: Some((Some("v2.0.0"), HEAD, &[])), explicit: &[], expected: &["2.0.0", "99999999", "latest", "edge"], other_commit: true },
            Case { name: "GitHub pull request, another commit checked out: still a pull request", ci: github("refs/pull/42/merge"), repository: Some((Some("v2.0.0"), HEAD, &[])), explicit: &[], expected: &["pr-42", "99999999"], other_commit: true },
            Case { name: "another commit checked out, dirty: HEAD's dirty tag", ci: github("refs/tags/v1.2.3"), repository: Some((None, HEAD, &["a"])), explicit: &[], expected: &["99999999-dirty"], other_commit: true },
            Case { name: "commits compared without case", ci: CiVariables { github_sha: Some("ABCDEF0123456789ABCDEF0123456789ABCDEF01"), ..github("refs/heads/main") }, repository: Some((None, "abcdef0123456789abcdef0123456789abcdef01", &[])), explicit: &[], expected: &["latest", "abcdef01", "edge"], other_commit: false },
            Case { name: "pull_request_target: the number from the payload, HEAD", ci: target(Some("42")), repository: Some((Some("v9.9.9"), HEAD, &[])), explicit: &[], expected: &["pr-42", "99999999"], other_commit: true },
            Case { name: "pull_request_target: the number, base checked out", ci: target(Some("42")), repository: Some((None, GITHUB_SHA, &[])), explicit: &[], expected: &["pr-42", "11111111"], other_commit: false },
            Case { name: "pull_request_target without a number: the commit only", ci: target(None), repository: Some((Some("v9.9.9"), HEAD, &[])), explicit: &[], expected: &["99999999"], other_commit: true },
            Case { name: "pull_request_target without a number, outside git", ci: target(None), repository: None, explicit: &[], expected: &["11111111"], other_commit: false },
            Case { name: "pull_request_target, dirty tree", ci: target(Some("42")), repository: Some((None, HEAD, &["a"])), explicit: &[], expected: &["99999999-dirty"], other_commit: true },
            Case { name: "another event: GITHUB_REF decides", ci: CiVariables { github_event_name: Some("push"), github_pull_request_number: Some("42"), ..github("refs/tags/v1.2.3") }, repository: None, explicit: &[], expected: &["1.2.3", "11111111", "latest", "edge"], other_commit: false },
            Case { name: "GitLab tag pipeline", ci: gitlab(Some("v1.2.3"), None), repository: None, explicit: &[], expected: &["1.2.3", "aaaaaaaa", "latest", "edge"], other_commit: false },
            Case { name: "GitLab branch pipeline", ci: gitlab(None, None), repository: Some((Some("v9.9.9"), GITLAB_SHA, &[])), explicit: &[], expected: &["latest", "aaaaaaaa", "edge"], other_commit: false },
            Case { name: "GitLab merge request", ci: gitlab(None, Some("42")), repository: None, explicit: &[], expected: &["pr-42", "aaaaaaaa"], other_commit: false },
            Case { name: "GitLab tag pipeline, another commit checked out", ci: gitlab(Some("v1.2.3"), None), repository: Some((None, HEAD, &[])), explicit: &[], expected: &["latest", "99999999", "edge"], other_commit: true },
            Case { name: "GitHub wins over GitLab", ci: CiVariables { github_ref: Some("refs/heads/main"), github_sha: Some(GITHUB_SHA), gitlab_commit_tag: Some("v1.2.3"), gitlab_commit_sha: Some(GITLAB_SHA), ..none }, repository: None, explicit: &[], expected: &["latest", "11111111", "edge"], other_commit: false },
            Case { name: "GitHub pull request wins over a GitLab tag", ci: CiVariables { github_ref: Some("refs/pull/5/merge"), gitlab_commit_tag: Some("v1.2.3"), gitlab_commit_sha: Some(GITLAB_SHA), ..none }, repository: None, explicit: &[], expected: &["pr-5", "aaaaaaaa"], other_commit: false },
            Case { name: "local tag", ci: none, repository: Some((Some("v1.2.3"), HEAD, &[])), explicit: &[], expected: &["1.2.3", "99999999", "latest", "edge"], other_commit: false },
            Case { name: "local branch", ci: none, repository: Some((None, HEAD, &[])), explicit: &[], expected: &["latest", "99999999", "edge"], other_commit: false },
            Case { name: "local dirty tree on a tag", ci: none, repository: Some((Some("v1.2.3"), HEAD, &["Dockerfile", "src/a.c"])), explicit: &[], expected: &["99999999-dirty"], other_commit: false },
            Case { name: "outside git", ci: none, repository: None, explicit: &[], expected: &["latest", "edge"], other_commit: false },
            Case { name: "--tag on a pull request", ci: github("refs/pull/42/merge"), repository: None, explicit: &["1.0", "test"], expected: &["1.0", "test"], other_commit: false },
            Case { name: "--tag on a dirty tree", ci: none, repository: Some((None, HEAD, &["a"])), explicit: &["1.0"], expected: &["1.0"], other_commit: false },
        ];
        for case in cases {
            let checkout = case.repository.map(|(tag, head, changed)| Checkout {
                tags_at_head: tag.into_iter().map(str::to_owned).collect(),
                head: head.to_owned(),
                changed: strings(changed),
            });
            let source = source(&case.ci, checkout.as_ref());
            let tags = compute_tags(
                source.as_ref(),
                &strings(&["edge"]),
                &strings(case.explicit),
            );
            assert_eq!(tags.tags, strings(case.expected), "{}", case.name);
            let warned = tags
                .warnings
                .iter()
                .any(|warning| warning.contains("HEAD of the checkout"));
            assert_eq!(
                warned, case.other_commit,
                "{}: {:?}",
                case.name, tags.warnings
            );
        }
    }

    #[test]
    fn a_ci_commit_that_is_not_head_is_named_with_head() {
        let ci = CiVariables {
            gitlab_commit_sha: Some("aaaaaaaabbbbbbbbccccccccddddddddeeeeeeee"),
            ..CiVariables::default()
        };
        let checkout = Checkout {
            tags_at_head: Vec::new(),
            head: COMMIT.to_owned(),
            changed: strings(&["a.txt"]),
        };
        let source = source(&ci, Some(&checkout)).unwrap();
        assert_eq!(source.commit.as_deref(), Some(COMMIT));
        let tags = compute_tags(Some(&source), &[], &[]);
        assert_eq!(tags.tags, strings(&["01234567-dirty"]));
        let [other_commit, dirty] = tags.warnings.as_slice() else {
            panic!("{:?}", tags.warnings);
        };
        assert!(
            other_commit.starts_with(
                "CI_COMMIT_SHA names the commit aaaaaaaabbbbbbbbccccccccddddddddeeeeeeee, \
                 but HEAD of the checkout is 0123456789abcdef0123456789abcdef01234567;"
            ),
            "{other_commit}"
        );
        assert!(dirty.contains("`01234567-dirty`"), "{dirty}");
    }

    #[test]
    fn without_ci_variables_or_checkout_there_is_no_source() {
        assert_eq!(source(&CiVariables::default(), None), None);
        let only_sha = CiVariables {
            github_sha: Some(COMMIT),
            ..CiVariables::default()
        };
        assert_eq!(
            source(&only_sha, None),
            Some(Source {
                reference: Reference::Other,
                commit: Some(COMMIT.to_owned()),
                changed: Vec::new(),
                ci_commit_not_checked_out: None,
            })
        );
        let checkout = Checkout {
            tags_at_head: strings(&["nightly", "v1.9.0", "v1.10.0"]),
            head: COMMIT.to_owned(),
            changed: Vec::new(),
        };
        assert_eq!(
            source(&CiVariables::default(), Some(&checkout)).map(|source| source.reference),
            Some(Reference::Tag("v1.10.0".to_owned()))
        );
    }

    #[test]
    fn reads_github_refs() {
        let cases = [
            ("refs/tags/v1.2.3", Reference::Tag("v1.2.3".to_owned())),
            (
                "refs/tags/release/3",
                Reference::Tag("release/3".to_owned()),
            ),
            (
                "refs/pull/42/merge",
                Reference::PullRequest("42".to_owned()),
            ),
            ("refs/pull/42/head", Reference::PullRequest("42".to_owned())),
            ("refs/pull/", Reference::Other),
            ("refs/heads/main", Reference::Other),
            ("refs/heads/refs/tags/x", Reference::Other),
            ("main", Reference::Other),
        ];
        for (github_ref, expected) in cases {
            assert_eq!(
                reference_of_github_ref(github_ref),
                expected,
                "{github_ref}"
            );
        }
    }

    #[test]
    fn a_dirty_tree_names_a_few_files() {
        let dirty = |changed: &[&str]| {
            let source = Source {
                changed: strings(changed),
                ..tagged(Some("v1.2.3"))
            };
            compute_tags(Some(&source), &strings(&["edge"]), &[])
        };
        let tags = dirty(&["Dockerfile"]);
        assert_eq!(tags.tags, strings(&["01234567-dirty"]));
        let [warning] = tags.warnings.as_slice() else {
            panic!("{:?}", tags.warnings);
        };
        assert!(warning.contains("(Dockerfile)"), "{warning}");
        assert!(warning.contains("`01234567-dirty`"), "{warning}");
        let warning = dirty(&["a", "b", "c", "d", "e"]).warnings.join("\n");
        assert!(warning.contains("(a, b, c and 2 more)"), "{warning}");
        let warning = dirty(&["a", "b", "c"]).warnings.join("\n");
        assert!(warning.contains("(a, b, c)"), "{warning}");
    }

    #[test]
    fn extra_tags_are_added_and_explicit_tags_replace() {
        let tags = compute_tags(
            Some(&tagged(Some("v2.4.1"))),
            &strings(&["edge", "latest"]),
            &[],
        );
        assert_eq!(tags.tags, strings(&["2.4.1", "01234567", "latest", "edge"]));
        let tags = compute_tags(
            Some(&tagged(Some("v2.4.1"))),
            &strings(&["edge"]),
            &strings(&["1.0"]),
        );
        assert_eq!(tags.tags, strings(&["1.0"]));
    }

    #[test]
    fn outside_git_only_latest_with_a_warning() {
        let tags = compute_tags(None, &strings(&["edge"]), &[]);
        assert_eq!(tags.tags, strings(&["latest", "edge"]));
        assert_eq!(tags.warnings.len(), 1, "{:?}", tags.warnings);
        assert!(tags.warnings[0].contains("not in a git repository"));
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
