//! Errors in mab's files, rendered the way cargo renders a TOML error: the
//! message, the file, line and column, the offending line with carets under
//! the value, and a hint.

use std::fmt::{self, Write as _};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Where in a file an error points: 1-based line and column (in characters),
/// the text of that line, and how many characters to underline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
    pub line_text: String,
    pub width: usize,
}

impl Location {
    /// The location of the byte range `span` of `text`. A span that runs
    /// past its first line is underlined to the end of that line. Any span
    /// is accepted: one past the end of `text` points at its end, and one
    /// that starts on a line end (`\n`, or either byte of `\r\n`) points
    /// just past the text of that line.
    pub fn from_span(text: &str, span: Range<usize>) -> Location {
        let mut start = span.start.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let line_start = text[..start].rfind('\n').map_or(0, |newline| newline + 1);
        let line_end = text[line_start..]
            .find('\n')
            .map_or(text.len(), |newline| line_start + newline);
        let line_text = text[line_start..line_end].trim_end_matches('\r');
        // The trimmed `\r` may lie at or before `start`; both ends stay
        // within the line's visible text (it ends on a char boundary).
        let text_end = line_start + line_text.len();
        let start = start.min(text_end);
        let end = span.end.max(start).min(text_end);
        let underlined = text.get(start..end).map_or(0, |part| part.chars().count());
        Location {
            line: text[..line_start].matches('\n').count() + 1,
            column: text[line_start..start].chars().count() + 1,
            line_text: line_text.to_owned(),
            width: underlined.max(1),
        }
    }
}

/// An error in `mab.toml` or `runners.toml`.
///
/// `Display` renders the whole report, cargo style:
///
/// ```text
/// error: unknown architecture `amd46` in platform `linux/amd46`
///  --> /src/app/mab.toml:3:28
///   |
/// 3 | platforms = ["linux/amd64", "linux/amd46"]
///   |                             ^^^^^^^^^^^^^
/// hint: did you mean `linux/amd64`?
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}", render(self))]
    Read {
        path: PathBuf,
        error: io::Error,
        hint: String,
    },
    /// The file was read but its contents are wrong: TOML syntax, a value of
    /// the wrong type, a missing key, or a value that fails validation.
    #[error("{}", render(self))]
    Invalid {
        path: PathBuf,
        message: String,
        location: Option<Location>,
        hint: Option<String>,
    },
}

impl ConfigError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ConfigError::Read { path, .. } | ConfigError::Invalid { path, .. } => path,
        }
    }

    /// The one-sentence message, without file, snippet or hint.
    pub fn message(&self) -> String {
        match self {
            ConfigError::Read { path, error, .. } => {
                format!("could not read {}: {}", path.display(), io_message(error))
            }
            ConfigError::Invalid { message, .. } => message.clone(),
        }
    }

    /// Where in the file the error points, when it points somewhere.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { location, .. } => location.as_ref(),
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> Option<&str> {
        match self {
            ConfigError::Read { hint, .. } => Some(hint),
            ConfigError::Invalid { hint, .. } => hint.as_deref(),
        }
    }

    /// An error about a value at `location` of the file `path` (one that
    /// the file names, found wrong later, such as a secret's missing file).
    pub fn at(
        path: &Path,
        location: Location,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: path.to_owned(),
            message: message.into(),
            location: Some(location),
            hint: Some(hint.into()),
        }
    }

    pub(crate) fn invalid(
        path: &Path,
        text: &str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: path.to_owned(),
            message: message.into(),
            location: span.map(|span| Location::from_span(text, span)),
            hint,
        }
    }
}

/// The io error's text without Rust's "(os error N)" suffix, for messages
/// that name a file: `No such file or directory`.
pub fn io_message(error: &io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error ") {
        Some(index) => text[..index].to_owned(),
        None => text,
    }
}

fn render(error: &ConfigError) -> String {
    let mut out = format!("error: {}", error.message());
    if let ConfigError::Invalid { path, location, .. } = error {
        match location {
            Some(location) => {
                let number = location.line.to_string();
                let gutter = " ".repeat(number.len());
                let _ = write!(
                    out,
                    "\n{gutter}--> {}:{}:{}\n{gutter} |\n{number} | {}\n{gutter} | {}{}",
                    path.display(),
                    location.line,
                    location.column,
                    location.line_text,
                    caret_indent(&location.line_text, location.column),
                    "^".repeat(location.width),
                );
            }
            None => {
                let _ = write!(out, "\n --> {}", path.display());
            }
        }
    }
    if let Some(hint) = error.hint() {
        let _ = write!(out, "\nhint: {hint}");
    }
    out
}

/// Spaces up to `column`, keeping the line's tabs so the carets line up.
fn caret_indent(line_text: &str, column: usize) -> String {
    line_text
        .chars()
        .take(column.saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect()
}

/// Reads a file mab was handed, naming it in the error.
pub(crate) fn read_file(path: &Path, hint_when_missing: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        hint: match error.kind() {
            io::ErrorKind::NotFound => hint_when_missing.to_owned(),
            io::ErrorKind::InvalidData => "save the file as UTF-8".to_owned(),
            _ => "check that the file exists and is readable".to_owned(),
        },
        error,
    })
}

/// A TOML syntax or type error, located in `text`.
pub(crate) fn from_toml(path: &Path, text: &str, error: &toml::de::Error) -> ConfigError {
    let message = error
        .message()
        .trim()
        .replace('\n', "; ")
        .replace("expected i64", "expected an integer")
        .replace("expected a sequence", "expected a list");
    // The key on the line of the error, for hints that fit it.
    let key = error
        .span()
        .and_then(|span| text.get(..span.start))
        .and_then(|before| before.rsplit('\n').next())
        .and_then(|line| line.split('=').next())
        .map(str::trim)
        .unwrap_or_default();
    let hint = if message.contains("expected an integer") {
        Some("write a whole number without quotes".to_owned())
    } else if message.contains("expected a string") && key == "timeout" {
        Some("write a duration with its unit in double quotes, e.g. `timeout = \"90m\"`".to_owned())
    } else if message.contains("expected a string") && key == "binaries" {
        Some("write one of \"error\", \"warn\" or \"off\", in double quotes, e.g. `binaries = \"warn\"` (docs/verify.md)".to_owned())
    } else if message.contains("expected a string") {
        Some("write the value in double quotes".to_owned())
    } else if message.contains("expected a boolean") {
        Some("write `true` or `false`, without quotes".to_owned())
    } else if message.contains("expected a list") && key == "run" {
        Some("write the command as an argv, one string per argument, e.g. `run = [\"/app/server\", \"--version\"]`: no shell splits it".to_owned())
    } else if message.contains("expected a list") && key == "ignore" {
        Some("write the patterns as a list of strings in square brackets, e.g. `ignore = [\"/usr/share/qemu/**\"]` (docs/verify.md)".to_owned())
    } else if message.contains("expected a list") && key == "platforms" {
        Some("write the platforms as a list of strings in square brackets, e.g. `platforms = [\"linux/amd64\", \"linux/arm64\"]`".to_owned())
    } else if message.contains("expected a list") || message.contains("expected an array") {
        Some("write a list in square brackets, e.g. `[\"a\", \"b\"]`; declare runners with `[[runner]]`".to_owned())
    } else if message.contains("must be quoted") {
        Some("write the value in double quotes, e.g. `host = \"local\"`".to_owned())
    } else {
        Some(
            "the file must be valid TOML (https://toml.io); docs/configuration.md shows every key"
                .to_owned(),
        )
    };
    // A value of the wrong type: say which key it is for, and in which
    // table, as mab's own checks of a value do ([test] `timeout`: …).
    let message = if message.starts_with("invalid type") && !key.is_empty() && !key.starts_with('[')
    {
        let table = error
            .span()
            .and_then(|span| text.get(..span.start))
            .and_then(table_header)
            .map(|header| format!("{header} "))
            .unwrap_or_default();
        format!("{table}`{key}`: {message}")
    } else {
        message
    };
    ConfigError::invalid(path, text, error.span(), message, hint)
}

/// The header of the table that the end of `before` lies in: `[test]`,
/// `[image.args]`; `None` at the top level of the file and in an array of
/// tables (`[[runner]]`, whose messages name the runner instead). The line
/// the end of `before` is on is not a header of its own table.
fn table_header(before: &str) -> Option<&str> {
    let mut lines = before.rsplit('\n');
    lines.next();
    lines
        .map(str::trim)
        .find(|line| line.starts_with('[') && line.contains(']'))
        .filter(|header| !header.starts_with("[["))
        .and_then(|header| header.get(..=header.find(']')?))
        .filter(|header| {
            header[1..header.len() - 1]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"' | ' '))
        })
}

impl fmt::Display for Location {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.line, self.column)
    }
}

/// Checks a rendered error: its message, `FILE:LINE:COL`, the offending line,
/// the carets under it, and a part of the hint (`""` when there is none).
#[cfg(test)]
pub(crate) fn assert_reported(
    text: &str,
    error: &ConfigError,
    path: &str,
    (message, position, line, carets, hint): (&str, &str, &str, &str, &str),
) {
    let rendered = error.to_string();
    let context = format!("{text}\n{rendered}");
    assert!(
        rendered.starts_with(&format!("error: {message}\n")),
        "{context}"
    );
    assert!(
        rendered.contains(&format!(" --> {path}{position}\n")),
        "{context}"
    );
    assert!(rendered.contains(&format!(" | {line}\n")), "{context}");
    assert!(
        rendered
            .lines()
            .any(|shown| shown.ends_with(&format!(" | {carets}"))),
        "{context}"
    );
    match hint {
        "" => assert_eq!(error.hint(), None, "{context}"),
        hint => assert!(
            error.hint().is_some_and(|found| found.contains(hint)) && rendered.contains("\nhint: "),
            "{context}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (text, span, (line, column, line text, carets)): any span of any
    /// text is located on a line of that text, without a panic.
    #[test]
    fn locations() {
        const TEXT: &str = "a = 1\nname = \"x y\"\r\nlast";
        const NAME: &str = "name = \"x y\"";
        let cases = [
            (TEXT, 0..1, (1, 1, "a = 1", 1)),
            (TEXT, 6..10, (2, 1, NAME, 4)),
            (TEXT, 13..18, (2, 8, NAME, 5)),
            (TEXT, 13..40, (2, 8, NAME, 5)),
            (TEXT, 20..24, (3, 1, "last", 4)),
            (TEXT, 24..24, (3, 5, "last", 1)),
            (TEXT, 99..120, (3, 5, "last", 1)),
            // On the `\r` or `\n` of a CRLF line end: just past the line's text.
            (TEXT, 18..19, (2, 13, NAME, 1)),
            (TEXT, 19..20, (2, 13, NAME, 1)),
            (TEXT, 19..19, (2, 13, NAME, 1)),
            (TEXT, 18..30, (2, 13, NAME, 1)),
            // An end before the start.
            (TEXT, Range { start: 13, end: 2 }, (2, 8, NAME, 1)),
            ("", 0..0, (1, 1, "", 1)),
            ("", 3..9, (1, 1, "", 1)),
            ("\r\n", 1..2, (1, 1, "", 1)),
            ("\r\n", 2..2, (2, 1, "", 1)),
            ("a\r\n\r\nb", 4..5, (2, 1, "", 1)),
            ("a\r\r\n", 3..4, (1, 2, "a", 1)),
            // Inside a multi-byte character, and a span counted in characters.
            ("\u{e9}t\u{e9}\r\n", 1..9, (1, 1, "\u{e9}t\u{e9}", 3)),
            ("x = \"\u{e9}\r\n", 6..7, (1, 6, "x = \"\u{e9}", 1)),
        ];
        for (text, span, (line, column, line_text, width)) in cases {
            let location = Location::from_span(text, span.clone());
            assert_eq!(
                location,
                Location {
                    line,
                    column,
                    line_text: line_text.to_owned(),
                    width
                },
                "{text:?} {span:?}"
            );
        }
    }

    #[test]
    fn renders_like_cargo() {
        let text = "[image]\nname = \"App\"\n";
        let error = ConfigError::invalid(
            Path::new("/src/mab.toml"),
            text,
            Some(15..20),
            "bad name",
            Some("use lowercase".to_owned()),
        );
        assert_eq!(
            error.to_string(),
            "error: bad name\n --> /src/mab.toml:2:8\n  |\n2 | name = \"App\"\n  |        ^^^^^\nhint: use lowercase"
        );
    }

    #[test]
    fn renders_read_errors() {
        let error = read_file(Path::new("/nonexistent/mab.toml"), "run `mab init`").unwrap_err();
        assert_eq!(
            error.to_string(),
            "error: could not read /nonexistent/mab.toml: No such file or directory\nhint: run `mab init`"
        );
    }
}
