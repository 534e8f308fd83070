//! Pieces shared by the two file formats: deserializing with unknown keys
//! collected and located, telling a typo of a known key (an error) from an
//! unknown key (a warning), spans of values, and paths.

use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::de::{DeArray, DeTable};
use toml::Spanned;

use crate::error::{from_toml, ConfigError};
use crate::platform::Platform;
use crate::suggest::closest;

/// One step of the path to an ignored key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

/// A key that no field of the file's shape took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UnknownKey {
    /// Its path from the top of the file.
    pub(crate) segments: Vec<Segment>,
    /// Where its last key is written (in a table header for `[image.arg]`).
    pub(crate) span: Option<Range<usize>>,
    /// The keys written beside it, in its table.
    pub(crate) siblings: Vec<String>,
}

/// Deserializes `text`, returning the value and every key that no field
/// took, in the order they are written.
pub(crate) fn deserialize<T: DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<(T, Vec<UnknownKey>), ConfigError> {
    let document = DeTable::parse(text).map_err(|error| from_toml(path, text, &error))?;
    let mut ignored = Vec::new();
    let value =
        serde_ignored::deserialize(toml::Deserializer::from(document.clone()), |key_path| {
            let mut segments = Vec::new();
            collect_segments(&key_path, &mut segments);
            ignored.push(segments);
        })
        .map_err(|error| from_toml(path, text, &error))?;
    let mut unknown: Vec<UnknownKey> = ignored
        .into_iter()
        .map(|segments| locate(document.get_ref(), segments))
        .collect();
    unknown.sort_by_key(|key| key.span.as_ref().map_or(usize::MAX, |span| span.start));
    Ok((value, unknown))
}

/// Finds where the key at `segments` is written in `document`.
fn locate(document: &DeTable<'_>, segments: Vec<Segment>) -> UnknownKey {
    let mut table = Some(document);
    let mut array = None;
    let mut span = None;
    let mut siblings = Vec::new();
    for segment in &segments {
        let value = match segment {
            Segment::Key(key) => table.and_then(|table| {
                siblings = table
                    .keys()
                    .map(|known| known.get_ref().to_string())
                    .collect();
                table
                    .iter()
                    .find(|(written, _)| written.get_ref() == key)
                    .map(|(written, value)| {
                        span = Some(written.span());
                        value
                    })
            }),
            Segment::Index(index) => array.and_then(|array: &DeArray<'_>| array.get(*index)),
        };
        table = value.and_then(|value| value.get_ref().as_table());
        array = value.and_then(|value| value.get_ref().as_array());
    }
    UnknownKey {
        segments,
        span,
        siblings,
    }
}

/// What one table of a file may hold, to tell a misspelt key (an error)
/// from one mab does not know (a warning).
pub(crate) struct Table<'a> {
    /// How messages name the table after "under"/"of": `[image]`,
    /// "runner `a`"; empty for the top level of the file.
    pub(crate) name: String,
    /// Every key the table may hold.
    pub(crate) known: &'a [&'a str],
    /// The known keys the file must have in this table.
    pub(crate) required: &'a [&'a str],
}

/// The error for `unknown` when it is a near miss of a key of `table` (the
/// distance of [`closest`]): "unknown key `taget` under [image]; did you
/// mean `target`?", or, when the key it looks like is required and not
/// written, "missing required key `platforms` under [image]; `platfroms`
/// (5:1) looks like it". A key written as a table header is named as one
/// (`[image.arg]`). `Ok` when it is not close to any known key.
pub(crate) fn check_near_miss(
    path: &Path,
    text: &str,
    unknown: &UnknownKey,
    table: &Table<'_>,
) -> Result<(), ConfigError> {
    let Some(Segment::Key(key)) = unknown.segments.last() else {
        return Ok(());
    };
    let Some(known) = closest(key, table.known.iter().copied()) else {
        return Ok(());
    };
    let span = unknown.span.clone();
    let location = span
        .clone()
        .map(|span| crate::error::Location::from_span(text, span));
    // `[image.arg]` and `[[runners]]` are tables; `arg = {}` is a key.
    let header = location.as_ref().and_then(|location| {
        let line = location.line_text.trim_start();
        match (line.starts_with("[["), line.starts_with('[')) {
            (true, _) => Some(("[[", "]]")),
            (false, true) => Some(("[", "]")),
            _ => None,
        }
    });
    let parent = dotted_key(&unknown.segments[..unknown.segments.len() - 1]);
    let name = |written: &str| match header {
        Some((open, close)) if parent.is_empty() => format!("`{open}{written}{close}`"),
        Some((open, close)) => format!("`{open}{parent}.{written}{close}`"),
        None => format!("`{written}`"),
    };
    let what = if header.is_some() { "table" } else { "key" };
    let place = if table.name.is_empty() || header.is_some() {
        String::new()
    } else if table.name.starts_with('[') {
        format!(" under {}", table.name)
    } else {
        format!(" of {}", table.name)
    };
    let missing = table.required.contains(&known) && !unknown.siblings.iter().any(|s| s == known);
    let (message, hint) = if missing {
        let at = location
            .map(|location| format!(" ({location})"))
            .unwrap_or_default();
        (
            format!(
                "missing required {what} {}{place}; {}{at} looks like it",
                name(known),
                name(key)
            ),
            format!("rename {} to {}", name(key), name(known)),
        )
    } else {
        (
            format!(
                "unknown {what} {}{place}; did you mean {}?",
                name(key),
                name(known)
            ),
            format!(
                "rename it to {}, or remove it; docs/configuration.md lists every key",
                name(known)
            ),
        )
    };
    Err(ConfigError::invalid(path, text, span, message, Some(hint)))
}

fn collect_segments(path: &serde_ignored::Path<'_>, segments: &mut Vec<Segment>) {
    use serde_ignored::Path as P;
    match path {
        P::Root => {}
        P::Seq { parent, index } => {
            collect_segments(parent, segments);
            segments.push(Segment::Index(*index));
        }
        P::Map { parent, key } => {
            collect_segments(parent, segments);
            // The fields serde_spanned uses to carry a value and its span.
            if !key.starts_with("$__") {
                segments.push(Segment::Key(key.clone()));
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            collect_segments(parent, segments);
        }
    }
}

/// The dotted key of `segments`, without list indexes.
pub(crate) fn dotted_key(segments: &[Segment]) -> String {
    segments
        .iter()
        .filter_map(|segment| match segment {
            Segment::Key(key) => Some(key.as_str()),
            Segment::Index(_) => None,
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// "; did you mean `platforms`?" when `key` looks like a misspelt known key.
pub(crate) fn did_you_mean(key: &str, known: &[&str]) -> String {
    closest(key, known.iter().copied())
        .map(|known| format!("; did you mean `{known}`?"))
        .unwrap_or_default()
}

/// Parses each written platform, pointing errors at the value, turning alias
/// notes into warnings and dropping repeats (with a warning).
pub(crate) fn parse_platforms(
    path: &Path,
    text: &str,
    written: &[Spanned<String>],
    warnings: &mut Vec<String>,
) -> Result<Vec<Platform>, ConfigError> {
    let mut platforms: Vec<Platform> = Vec::new();
    for value in written {
        let parsed = Platform::parse(value.get_ref()).map_err(|error| {
            ConfigError::invalid(
                path,
                text,
                Some(value.span()),
                error.to_string(),
                Some(error.hint()),
            )
        })?;
        let at = position(path, text, value.span());
        if let Some(note) = parsed.note {
            warnings.push(format!("{at}: {note}"));
        }
        if platforms.contains(&parsed.platform) {
            warnings.push(format!(
                "{at}: platform `{}` is listed twice; building it once",
                parsed.platform
            ));
        } else {
            platforms.push(parsed.platform);
        }
    }
    Ok(platforms)
}

/// `FILE:LINE:COL` of the unknown key's name as written (of its table
/// header for `[image.arg]`), or `FILE` when it could not be located; the
/// start of its warning.
pub(crate) fn unknown_key_position(path: &Path, text: &str, unknown: &UnknownKey) -> String {
    match &unknown.span {
        Some(span) => position(path, text, span.clone()),
        None => path.display().to_string(),
    }
}

/// `FILE:LINE:COL` of a span, for warnings.
pub(crate) fn position(path: &Path, text: &str, span: Range<usize>) -> String {
    let location = crate::error::Location::from_span(text, span);
    format!("{}:{location}", path.display())
}

/// `path` made absolute against the current directory, with `.` and `..`
/// resolved by name (as cargo does), not by following links.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()
            .map(|dir| dir.join(path))
            .unwrap_or_else(|_| path.to_owned())
    };
    normalise(&joined)
}

/// Resolves `.` and `..` by name.
pub(crate) fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(component),
            },
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_paths() {
        let cases = [
            ("/a/b/./c", "/a/b/c"),
            ("/a/b/../c", "/a/c"),
            ("/a/b/", "/a/b"),
            ("/a/.", "/a"),
            ("/..", "/"),
            ("a/../..", ".."),
        ];
        for (input, expected) in cases {
            assert_eq!(normalise(Path::new(input)), Path::new(expected), "{input}");
        }
    }

    #[test]
    fn dotted_keys_skip_indexes() {
        let segments = vec![
            Segment::Key("runner".to_owned()),
            Segment::Index(1),
            Segment::Key("nme".to_owned()),
        ];
        assert_eq!(dotted_key(&segments), "runner.nme");
    }
}
