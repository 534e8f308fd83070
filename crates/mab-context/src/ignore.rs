//! `.dockerignore` with Docker's rules (moby's `patternmatcher` and `ignorefile`).
//!
//! Reading a file: a UTF-8 byte order mark is dropped; a line whose first
//! character is `#` is a comment (a `#` after leading spaces is not); each
//! other line is trimmed, and a blank one is skipped. A leading `!` makes an
//! exception. The rest is cleaned like Go's `filepath.Clean` (`./a/` is `a`,
//! `a/../b` is `b`) and a leading `/` is dropped, since patterns are always
//! relative to the context root.
//!
//! Matching a path: the patterns are tried in order and the last one that
//! matches decides, excluding or (for `!`) re-including. A pattern also matches
//! a path when it matches one of the path's parent directories, so `build`
//! excludes `build/x` and a file named `build`, while `*.log` only reaches
//! `a.log` at the root. Parent results are carried down the tree as Docker's
//! walkers carry them (`MatchesUsingParentResults`), quirks included: a pattern
//! that was skipped for a directory because it could not change its outcome is
//! not inherited by the directory's children.

use std::path::Path;

use crate::error::ContextError;
use crate::pattern::{clean, Pattern};

/// The name of the ignore file at the context root.
pub const DOCKERIGNORE: &str = ".dockerignore";

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    rules: Vec<Rule>,
    has_exceptions: bool,
}

#[derive(Debug, Clone)]
struct Rule {
    pattern: Pattern,
    /// `!pattern`: re-includes what it matches.
    exception: bool,
}

/// Which rules matched a directory, handed down to its children.
#[derive(Debug, Clone, Default)]
pub(crate) struct ParentMatches(Vec<bool>);

impl DockerIgnore {
    /// Parses the text of a `.dockerignore`. A bad pattern (an unclosed `[`, a
    /// lone `!`) is an error naming its line.
    pub fn parse(text: &str) -> Result<DockerIgnore, ContextError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut ignore = DockerIgnore::default();
        for (index, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with('#') {
                continue;
            }
            ignore.push(line, Path::new(DOCKERIGNORE), index + 1)?;
        }
        Ok(ignore)
    }

    /// Builds a matcher from patterns that are already one per item, such as
    /// the exclude or include patterns BuildKit sends with a file transfer:
    /// no line is a comment, but each is trimmed and cleaned as in a file.
    /// `origin` names where they came from in an error (its `file`, with the
    /// pattern's position from 1 as the line).
    pub fn from_patterns<I, S>(patterns: I, origin: &Path) -> Result<DockerIgnore, ContextError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut ignore = DockerIgnore::default();
        for (index, pattern) in patterns.into_iter().enumerate() {
            ignore.push(pattern.as_ref(), origin, index + 1)?;
        }
        Ok(ignore)
    }

    /// Adds one non-comment line; a blank one adds nothing.
    fn push(&mut self, line: &str, file: &Path, number: usize) -> Result<(), ContextError> {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return Ok(());
        }
        let invalid = |reason: String| ContextError::InvalidPattern {
            file: file.to_path_buf(),
            line: number,
            pattern: trimmed.to_string(),
            reason,
        };
        let (exception, body) = split_exception(&normalize_line(trimmed));
        if exception && body.is_empty() {
            return Err(invalid("a `!` needs a pattern after it".to_string()));
        }
        let pattern = Pattern::compile(&body).map_err(|error| invalid(error.to_string()))?;
        self.has_exceptions |= exception;
        self.rules.push(Rule { pattern, exception });
        Ok(())
    }

    /// Reads an ignore file (`.dockerignore`, or `<Dockerfile>.dockerignore`);
    /// a file that does not exist means no patterns. A bad pattern is an
    /// error naming `path` and its line. The bytes are read as UTF-8 with
    /// invalid sequences replaced, as a pattern cannot name them anyway.
    pub fn read(path: &Path) -> Result<DockerIgnore, ContextError> {
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DockerIgnore::default())
            }
            Err(source) => {
                return Err(ContextError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        DockerIgnore::parse(&text).map_err(|error| match error {
            ContextError::InvalidPattern {
                line,
                pattern,
                reason,
                ..
            } => ContextError::InvalidPattern {
                file: path.to_path_buf(),
                line,
                pattern,
                reason,
            },
            other => other,
        })
    }

    /// Whether no pattern was given.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether the patterns leave `relative_path` ('/'-separated, relative to the
    /// context root) out of the context.
    pub fn is_excluded(&self, relative_path: &str) -> bool {
        let path = clean(relative_path.trim_start_matches('/'));
        if path == "." || self.rules.is_empty() {
            return false;
        }
        let mut parent: Option<ParentMatches> = None;
        let mut excluded = false;
        let mut end = 0;
        while end < path.len() {
            end = path[end..]
                .find('/')
                .map_or(path.len(), |offset| end + offset);
            let (this, matches) = self.evaluate(&path[..end], parent.as_ref());
            excluded = this;
            parent = Some(matches);
            end += 1;
        }
        excluded
    }

    /// Decides one path given what matched its parent directory (`None` at the
    /// top of a walk), returning the decision and what its children inherit.
    pub(crate) fn evaluate(
        &self,
        path: &str,
        parent: Option<&ParentMatches>,
    ) -> (bool, ParentMatches) {
        let mut excluded = false;
        let mut matches = vec![false; self.rules.len()];
        for (index, rule) in self.rules.iter().enumerate() {
            let mut matched = parent.is_some_and(|parent| parent.0[index]);
            if !matched {
                // A rule that cannot change the outcome is skipped (and so not
                // recorded for the children).
                if rule.exception != excluded {
                    continue;
                }
                matched = rule.pattern.matches(path)
                    || (parent.is_none() && self.matches_an_ancestor(&rule.pattern, path));
            }
            matches[index] = matched;
            if matched {
                excluded = !rule.exception;
            }
        }
        (excluded, ParentMatches(matches))
    }

    /// For an excluded directory: whether nothing below it can be re-included,
    /// so a walk need not enter it.
    pub(crate) fn nothing_below_can_return(
        &self,
        directory: &str,
        matches: &ParentMatches,
    ) -> bool {
        if !self.has_exceptions {
            return true;
        }
        self.rules.iter().zip(&matches.0).all(|(rule, &matched)| {
            !rule.exception || (!matched && !rule.pattern.may_match_below(directory))
        })
    }

    /// For patterns used to include (fsutil's include patterns): whether a
    /// path below `directory` could match one, so that a walk must enter a
    /// directory that is not itself included. It may say `true` when nothing
    /// could match, never `false` when something could.
    pub(crate) fn may_match_below(&self, directory: &str) -> bool {
        self.rules
            .iter()
            .any(|rule| !rule.exception && rule.pattern.may_match_below(directory))
    }

    fn matches_an_ancestor(&self, pattern: &Pattern, path: &str) -> bool {
        path.match_indices('/')
            .any(|(slash, _)| pattern.matches(&path[..slash]))
    }
}

/// moby's `ignorefile.ReadAll` for one trimmed, non-comment line, followed by
/// the trimming and cleaning `patternmatcher.New` applies again.
fn normalize_line(trimmed: &str) -> String {
    let (exception, rest) = match trimmed.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, trimmed),
    };
    let mut body = if rest.is_empty() {
        String::new()
    } else {
        clean(rest)
    };
    if body.len() > 1 && body.starts_with('/') {
        body.remove(0);
    }
    let line = if exception { format!("!{body}") } else { body };
    clean(line.trim())
}

fn split_exception(normalized: &str) -> (bool, String) {
    match normalized.strip_prefix('!') {
        Some(body) => (true, body.to_string()),
        None => (false, normalized.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// (.dockerignore text, path, excluded)
    const CASES: &[(&str, &str, bool)] = &[
        // `*` stays in one directory: `*.log` is for the root only.
        ("*.log", "app.log", true),
        ("*.log", "logs/app.log", false),
        ("*/*.log", "logs/app.log", true),
        ("*/*.log", "a/b/app.log", false),
        // `**` spans any number of directories, none included.
        ("**/*.go", "main.go", true),
        ("**/*.go", "cmd/tool/main.go", true),
        ("**/*.go", "main.go.txt", false),
        ("src/**/*.rs", "src/lib.rs", true),
        ("src/**/*.rs", "src/a/b/lib.rs", true),
        ("src/**/*.rs", "lib.rs", false),
        ("**/node_modules", "web/app/node_modules/pkg/index.js", true),
        ("**/tmp/**", "tmp/x", true),
        ("**/tmp/**", "a/tmp/x", true),
        ("dir/**", "dir/a/b", true),
        ("dir/**", "dir", false),
        ("**", "anything/at/all", true),
        ("**foo", "barfoo", true),
        ("foo**", "foobar", true),
        // A directory pattern excludes what is below it, and a file of that name.
        ("build/", "build", true),
        ("build/", "build/out/app", true),
        ("build", "src/build", false),
        ("a/b", "a/b/c/d", true),
        ("b", "a/b", false),
        ("dir/*", "dir/sub/file", true),
        // `?` and classes.
        ("?.o", "a.o", true),
        ("?.o", "ab.o", false),
        ("a?b", "a/b", false),
        ("[abc].md", "b.md", true),
        ("[abc].md", "d.md", false),
        ("[^abc].md", "d.md", true),
        ("[a-c]x", "bx", true),
        ("[a-c]x", "dx", false),
        ("a\\*b", "a*b", true),
        ("a\\*b", "axb", false),
        // Comments, blank lines, whitespace, BOM.
        ("# *.log\n\n   \n", "app.log", false),
        ("  # not a comment", "# not a comment", true),
        ("   *.tmp   ", "x.tmp", true),
        ("\u{feff}*.log", "app.log", true),
        ("*.log\r\n", "app.log", true),
        // Normalisation: leading `/` and `./`, `..`, duplicate slashes.
        ("/secret.txt", "secret.txt", true),
        ("./secret.txt", "secret.txt", true),
        ("docs/../secret.txt", "secret.txt", true),
        ("docs//x", "docs/x", true),
        ("/", "anything", false),
        (".", "anything", false),
        // Exceptions: the last matching line wins.
        ("*\n!keep", "keep", false),
        ("*\n!keep", "other", true),
        ("*.md\n!README.md", "README.md", false),
        ("!README.md\n*.md", "README.md", true),
        ("docs\n!docs/keep.md", "docs/keep.md", false),
        ("docs\n!docs/keep.md", "docs/other.md", true),
        ("docs\n!docs/keep.md", "docs", true),
        ("docs\n! docs/keep.md ", "docs/keep.md", false),
        ("docs\n!**/keep.md", "docs/a/b/keep.md", false),
        ("docs\n!docs/sub\ndocs/sub/x", "docs/sub/y", false),
        ("docs\n!docs/sub\ndocs/sub/x", "docs/sub/x", true),
        // moby's walkers do not hand down a rule skipped for the parent.
        ("a\n!a/b\na", "a/b", false),
        ("a\n!a/b\na", "a/c", true),
        // Paths handed in with `./` or a trailing `/`.
        ("build", "./build/", true),
        ("*.log", ".", false),
    ];

    #[test]
    fn matches_like_docker() {
        for &(text, path, expected) in CASES {
            let ignore = DockerIgnore::parse(text).unwrap();
            assert_eq!(
                ignore.is_excluded(path),
                expected,
                ".dockerignore {text:?}, path {path:?}"
            );
        }
    }

    /// Found by fuzzing (fuzz/regressions/dockerignore): Docker cleans a
    /// pattern twice, the second time with its `!` (moby's `ignorefile`,
    /// then `patternmatcher.New`), so a `..` that reaches back past the
    /// first name eats the `!`: `!k../../../../c` is cleaned to
    /// `!../../c` and then to the exclusion `c`, while `!a/../../b`
    /// (`!../b`) stays an exception that matches nothing. The docker CLI
    /// 20.10 with BuildKit left out `c` and sent `b` for this file.
    #[test]
    fn an_exception_cleaned_past_its_bang_is_an_exclusion() {
        let ignore = DockerIgnore::parse("!a/../../b\n!k../../../../c\n").unwrap();
        assert!(!ignore.is_excluded("b"));
        assert!(ignore.is_excluded("c"));
        assert!(ignore.is_excluded("c/inside"));
        assert!(!ignore.is_excluded("k/x"));
    }

    #[test]
    fn bad_patterns_name_their_line() {
        // (text, line, reason fragment)
        let cases = [
            ("*.log\n[abc\n", 2, "not closed"),
            ("ok\n\n!\n", 3, "`!` needs a pattern"),
            ("!/", 1, "`!` needs a pattern"),
            ("# c\nfoo\\", 2, "lone `\\`"),
            ("[z-a]", 1, "ends before it starts"),
        ];
        for (text, expected_line, fragment) in cases {
            match DockerIgnore::parse(text) {
                Err(ContextError::InvalidPattern { line, reason, .. }) => {
                    assert_eq!(line, expected_line, "{text:?}");
                    assert!(reason.contains(fragment), "{text:?}: {reason}");
                }
                other => panic!("{text:?} gave {other:?}"),
            }
        }
        let message = DockerIgnore::parse("a\n[b").unwrap_err().to_string();
        assert_eq!(
            message,
            ".dockerignore:2: invalid pattern `[b`: a `[` character class is not closed by `]`"
        );
    }

    #[test]
    fn patterns_one_per_item_have_no_comments() {
        // (patterns, path, excluded)
        let cases: &[(&[&str], &str, bool)] = &[
            (&["# not a comment"], "# not a comment", true),
            (&["*.log", "!keep.log"], "keep.log", false),
            (&["*.log", "!keep.log"], "app.log", true),
            (&["  ./docs/  ", ""], "docs/a.md", true),
            (&[], "anything", false),
        ];
        for &(patterns, path, expected) in cases {
            let ignore =
                DockerIgnore::from_patterns(patterns, Path::new("exclude-patterns")).unwrap();
            assert_eq!(
                ignore.is_excluded(path),
                expected,
                "{patterns:?}, path {path:?}"
            );
        }
        match DockerIgnore::from_patterns(["ok", "[x"], Path::new("exclude-patterns")) {
            Err(ContextError::InvalidPattern { file, line, .. }) => {
                assert_eq!((file, line), (PathBuf::from("exclude-patterns"), 2));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pruning_only_when_no_exception_can_reach_below() {
        // (text, directory, may skip the directory's contents)
        let cases = [
            ("docs", "docs", true),
            ("docs\n!docs/keep.md", "docs", false),
            ("docs\n!docs/keep.md", "other", true),
            ("*\n!**/keep", "anything", false),
            ("*\n!src/*.rs", "src", false),
            ("*\n!src/*.rs", "test", true),
            ("docs\n!docs", "docs", false),
        ];
        for (text, directory, expected) in cases {
            let ignore = DockerIgnore::parse(text).unwrap();
            let (_, matches) = ignore.evaluate(directory, None);
            assert_eq!(
                ignore.nothing_below_can_return(directory, &matches),
                expected,
                "{text:?} at {directory:?}"
            );
        }
    }
}
