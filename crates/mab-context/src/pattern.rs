//! One `.dockerignore` pattern: validation, compilation and matching.
//!
//! Docker turns a pattern into one of four matchers. A pattern without wildcards
//! compares the whole path; a pattern that is literal up to a trailing `**`
//! compares a prefix; a pattern that starts with `**` and has no other wildcard
//! compares a suffix (so `**foo` matches `barfoo`, as in moby); everything else
//! is a regular expression built from the pattern, where `*` is `[^/]*`, `?` is
//! `[^/]`, `**/` in the middle is `(.*/)?`, a trailing `**` is `.*` and `[...]`
//! is a character class (which, unlike `?` and `*`, may match `/`).
//!
//! The expression is matched here by a small memoised backtracking matcher
//! over tokens, not by a regex engine.

use std::fmt;

/// Why a pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PatternSyntaxError {
    /// `\` at the end of the pattern.
    TrailingBackslash,
    /// `[` without its closing `]`, or a class holding nothing.
    UnclosedClass,
    /// `-` or `]` where a class expects a character.
    BadClassCharacter(char),
    /// `[z-a]`: the range ends before it starts.
    ReversedRange(char, char),
}

impl fmt::Display for PatternSyntaxError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternSyntaxError::TrailingBackslash => {
                formatter.write_str("it ends with a lone `\\`")
            }
            PatternSyntaxError::UnclosedClass => {
                formatter.write_str("a `[` character class is not closed by `]`")
            }
            PatternSyntaxError::BadClassCharacter(character) => write!(
                formatter,
                "`{character}` cannot stand here in a `[...]` character class (escape it with `\\`)"
            ),
            PatternSyntaxError::ReversedRange(low, high) => write!(
                formatter,
                "the character range `{low}-{high}` ends before it starts"
            ),
        }
    }
}

/// A character class such as `[a-z]` or `[^.]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CharClass {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl CharClass {
    fn contains(&self, character: char) -> bool {
        let inside = self
            .ranges
            .iter()
            .any(|&(low, high)| low <= character && character <= high);
        inside != self.negated
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `*`: any run of characters other than `/`.
    Star,
    /// `?`: one character other than `/`.
    AnyOne,
    Class(CharClass),
    /// `**` followed by more pattern: nothing, or anything ending in `/`.
    AnyDirectories,
    /// `**` at the end: anything.
    AnyRest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Tokens(Vec<Token>),
}

/// A compiled pattern (without its `!`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    matcher: Matcher,
}

impl Pattern {
    /// Compiles a cleaned pattern (`!` already removed), rejecting what Go's
    /// `filepath.Match` rejects.
    pub(crate) fn compile(pattern: &str) -> Result<Pattern, PatternSyntaxError> {
        let characters: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut kind = Kind::Exact;
        let mut position = 0;
        let mut first = true;
        while position < characters.len() {
            let character = characters[position];
            position += 1;
            match character {
                '*' if characters.get(position) == Some(&'*') => {
                    position += 1;
                    if characters.get(position) == Some(&'/') {
                        position += 1;
                    }
                    if position == characters.len() {
                        if kind == Kind::Exact {
                            kind = Kind::Prefix;
                        } else {
                            tokens.push(Token::AnyRest);
                            kind = Kind::Tokens;
                        }
                    } else {
                        tokens.push(Token::AnyDirectories);
                        kind = Kind::Tokens;
                    }
                    if first {
                        kind = Kind::Suffix;
                    }
                }
                '*' => {
                    tokens.push(Token::Star);
                    kind = Kind::Tokens;
                }
                '?' => {
                    tokens.push(Token::AnyOne);
                    kind = Kind::Tokens;
                }
                '\\' => match characters.get(position) {
                    Some(&escaped) => {
                        position += 1;
                        tokens.push(Token::Literal(escaped));
                        kind = Kind::Tokens;
                    }
                    None => return Err(PatternSyntaxError::TrailingBackslash),
                },
                '[' => {
                    let (class, next) = parse_class(&characters, position)?;
                    position = next;
                    tokens.push(Token::Class(class));
                    kind = Kind::Tokens;
                }
                ']' => {
                    tokens.push(Token::Literal(']'));
                    kind = Kind::Tokens;
                }
                other => tokens.push(Token::Literal(other)),
            }
            first = false;
        }
        let matcher = match kind {
            Kind::Exact => Matcher::Exact(pattern.to_string()),
            // Both strip the two characters of the `**`, as moby does.
            Kind::Prefix => Matcher::Prefix(pattern[..pattern.len() - 2].to_string()),
            Kind::Suffix => Matcher::Suffix(pattern[2..].to_string()),
            Kind::Tokens => Matcher::Tokens(tokens),
        };
        Ok(Pattern { matcher })
    }

    /// Whether the whole `path` ('/'-separated, cleaned) matches.
    pub(crate) fn matches(&self, path: &str) -> bool {
        match &self.matcher {
            Matcher::Exact(exact) => path == exact,
            Matcher::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Matcher::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix
                        .strip_prefix('/')
                        .is_some_and(|without_slash| path == without_slash)
            }
            Matcher::Tokens(tokens) => {
                let characters: Vec<char> = path.chars().collect();
                TokenMatch::new(tokens, &characters, false).run()
            }
        }
    }

    /// Whether some path below `directory` could match: used to decide whether an
    /// exception can re-include anything under an excluded directory. It may say
    /// `true` when nothing could match, never `false` when something could.
    pub(crate) fn may_match_below(&self, directory: &str) -> bool {
        let directory_slash = format!("{directory}/");
        match &self.matcher {
            Matcher::Exact(exact) => exact.starts_with(&directory_slash),
            Matcher::Prefix(prefix) => {
                prefix.starts_with(&directory_slash) || directory_slash.starts_with(prefix.as_str())
            }
            Matcher::Suffix(_) => true,
            Matcher::Tokens(tokens) => {
                let characters: Vec<char> = directory_slash.chars().collect();
                TokenMatch::new(tokens, &characters, true).run()
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
    Suffix,
    Tokens,
}

/// Parses a class whose `[` is just before `start`; returns it and the position
/// after its `]`. The grammar and its errors are those of Go's `filepath.Match`.
fn parse_class(
    characters: &[char],
    start: usize,
) -> Result<(CharClass, usize), PatternSyntaxError> {
    let mut position = start;
    let negated = characters.get(position) == Some(&'^');
    if negated {
        position += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if characters.get(position) == Some(&']') && !ranges.is_empty() {
            return Ok((CharClass { negated, ranges }, position + 1));
        }
        let low = class_character(characters, &mut position)?;
        let mut high = low;
        if characters.get(position) == Some(&'-') {
            position += 1;
            high = class_character(characters, &mut position)?;
            if high < low {
                return Err(PatternSyntaxError::ReversedRange(low, high));
            }
        }
        ranges.push((low, high));
    }
}

/// One possibly escaped character of a class, which must be followed by more
/// of the pattern (at least the closing `]`).
fn class_character(characters: &[char], position: &mut usize) -> Result<char, PatternSyntaxError> {
    let mut character = match characters.get(*position) {
        None => return Err(PatternSyntaxError::UnclosedClass),
        Some(&bad @ ('-' | ']')) => return Err(PatternSyntaxError::BadClassCharacter(bad)),
        Some(&character) => character,
    };
    if character == '\\' {
        *position += 1;
        character = match characters.get(*position) {
            Some(&escaped) => escaped,
            None => return Err(PatternSyntaxError::UnclosedClass),
        };
    }
    *position += 1;
    if *position >= characters.len() {
        return Err(PatternSyntaxError::UnclosedClass);
    }
    Ok(character)
}

/// Matches tokens against a path. With `partial`, consuming the whole input is
/// enough (the pattern may continue past it).
struct TokenMatch<'a> {
    tokens: &'a [Token],
    input: &'a [char],
    partial: bool,
    /// Memo of (token, input position) pairs already known to fail.
    failed: Vec<bool>,
}

impl<'a> TokenMatch<'a> {
    fn new(tokens: &'a [Token], input: &'a [char], partial: bool) -> Self {
        TokenMatch {
            tokens,
            input,
            partial,
            failed: vec![false; (tokens.len() + 1) * (input.len() + 1)],
        }
    }

    fn run(&mut self) -> bool {
        self.at(0, 0)
    }

    fn at(&mut self, token: usize, position: usize) -> bool {
        if self.partial && position == self.input.len() {
            return true;
        }
        let memo = token * (self.input.len() + 1) + position;
        if self.failed[memo] {
            return false;
        }
        let found = self.step(token, position);
        if !found {
            self.failed[memo] = true;
        }
        found
    }

    fn step(&mut self, token: usize, position: usize) -> bool {
        let Some(current) = self.tokens.get(token) else {
            return position == self.input.len();
        };
        let next = self.input.get(position).copied();
        match current {
            Token::Literal(expected) => next == Some(*expected) && self.at(token + 1, position + 1),
            Token::AnyOne => next.is_some_and(|c| c != '/') && self.at(token + 1, position + 1),
            Token::Class(class) => {
                next.is_some_and(|c| class.contains(c)) && self.at(token + 1, position + 1)
            }
            Token::Star => {
                let mut end = position;
                loop {
                    if self.at(token + 1, end) {
                        return true;
                    }
                    match self.input.get(end) {
                        Some(&c) if c != '/' => end += 1,
                        _ => return false,
                    }
                }
            }
            // Go's `.` does not match a newline.
            Token::AnyRest => {
                self.input[position..].iter().all(|&c| c != '\n')
                    && self.at(token + 1, self.input.len())
            }
            Token::AnyDirectories => {
                if self.at(token + 1, position) {
                    return true;
                }
                for end in position..self.input.len() {
                    let character = self.input[end];
                    if character == '\n' {
                        return false;
                    }
                    if character == '/' && self.at(token + 1, end + 1) {
                        return true;
                    }
                }
                // In partial mode, `.*` may run past the end of the input.
                self.partial
            }
        }
    }
}

/// Go's `path.Clean`: the shortest equivalent '/'-separated path.
pub(crate) fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_behaves_like_go() {
        let cases = [
            ("", "."),
            (".", "."),
            ("./foo", "foo"),
            ("foo/", "foo"),
            ("foo//bar", "foo/bar"),
            ("foo/./bar/", "foo/bar"),
            ("foo/../bar", "bar"),
            ("../foo", "../foo"),
            ("foo/../../bar", "../bar"),
            ("/", "/"),
            ("/../foo", "/foo"),
            ("//foo/", "/foo"),
        ];
        for (input, expected) in cases {
            assert_eq!(clean(input), expected, "clean({input:?})");
        }
    }

    #[test]
    fn compile_picks_the_matcher_moby_picks() {
        let cases = [
            ("foo/bar", Matcher::Exact("foo/bar".into())),
            ("foo/**", Matcher::Prefix("foo/".into())),
            ("foo**", Matcher::Prefix("foo".into())),
            ("**", Matcher::Suffix(String::new())),
            ("**/foo", Matcher::Suffix("/foo".into())),
            ("**foo", Matcher::Suffix("foo".into())),
        ];
        for (pattern, expected) in cases {
            assert_eq!(
                Pattern::compile(pattern).unwrap().matcher,
                expected,
                "{pattern}"
            );
        }
        for pattern in ["*.go", "**/*.go", "a/**/b", "a?", "[ab]", "a\\*", "x/*/**"] {
            assert!(
                matches!(
                    Pattern::compile(pattern).unwrap().matcher,
                    Matcher::Tokens(_)
                ),
                "{pattern}"
            );
        }
    }

    #[test]
    fn syntax_errors_follow_filepath_match() {
        let cases = [
            ("[abc", PatternSyntaxError::UnclosedClass),
            ("[", PatternSyntaxError::UnclosedClass),
            ("[]", PatternSyntaxError::BadClassCharacter(']')),
            ("[-a]", PatternSyntaxError::BadClassCharacter('-')),
            ("[a-]", PatternSyntaxError::BadClassCharacter(']')),
            ("[\\", PatternSyntaxError::UnclosedClass),
            ("foo\\", PatternSyntaxError::TrailingBackslash),
            ("[z-a]", PatternSyntaxError::ReversedRange('z', 'a')),
            ("[]a]x", PatternSyntaxError::BadClassCharacter(']')),
        ];
        for (pattern, expected) in cases {
            assert_eq!(Pattern::compile(pattern), Err(expected), "{pattern}");
        }
        for pattern in ["[a\\]]", "a]b", "[^/]", "[a-z0-9_]x", "[[]"] {
            let compiled = Pattern::compile(pattern);
            assert!(compiled.is_ok(), "{pattern}: {compiled:?}");
        }
    }

    #[test]
    fn single_pattern_matches() {
        // (pattern, path, matches)
        let cases = [
            ("*.log", "a.log", true),
            ("*.log", "dir/a.log", false),
            ("**/*.log", "a.log", true),
            ("**/*.log", "a/b/c.log", true),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "ab", false),
            ("a**b", "a/x/b", true),
            ("a**b", "axb", false),
            ("**foo", "barfoo", true),
            ("**/foo", "foo", true),
            ("**/foo", "barfoo", false),
            ("foo/**", "foo", false),
            ("foo/**", "foo/x/y", true),
            ("*/**", "a/b", true),
            ("?", "a", true),
            ("?", "/", false),
            ("[a-c]?", "b/", false),
            ("[^a]", "/", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("a.b", "axb", false),
            ("a+b", "a+b", true),
            ("(x)|y", "(x)|y", true),
            ("*", "a\nb", true),
            ("x/**", "x/a\nb", true),
            ("x*/**", "xy/a\nb", false),
        ];
        for (pattern, path, expected) in cases {
            let compiled = Pattern::compile(pattern).unwrap();
            assert_eq!(compiled.matches(path), expected, "{pattern:?} on {path:?}");
        }
    }

    #[test]
    fn may_match_below_is_a_safe_over_approximation() {
        // (pattern, directory, could match below it)
        let cases = [
            ("docs/keep.md", "docs", true),
            ("docs/keep.md", "doc", false),
            ("docs/keep.md", "docs/sub", false),
            ("**/keep.md", "anything/deep", true),
            ("docs/**", "docs/sub", true),
            ("doc**", "docs", true),
            ("*/keep", "docs", true),
            ("*/keep", "docs/sub", false),
            ("d?cs/*.md", "docs", true),
            ("d?cs/*.md", "src", false),
            ("src/**/gen", "src/a/b", true),
            ("[a-c]x/y", "bx", true),
            ("[a-c]x/y", "dx", false),
        ];
        for (pattern, directory, expected) in cases {
            let compiled = Pattern::compile(pattern).unwrap();
            assert_eq!(
                compiled.may_match_below(directory),
                expected,
                "{pattern:?} below {directory:?}"
            );
        }
    }
}
