//! Pieces shared by the two file formats: deserializing with unknown keys
//! collected, spans of values, and paths.

use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use serde::de::DeserializeOwned;
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

/// Deserializes `text`, returning the value and the path of every key that
/// no field took.
pub(crate) fn deserialize<T: DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<(T, Vec<Vec<Segment>>), ConfigError> {
    let deserializer =
        toml::Deserializer::parse(text).map_err(|error| from_toml(path, text, &error))?;
    let mut ignored = Vec::new();
    let value = serde_ignored::deserialize(deserializer, |key_path| {
        let mut segments = Vec::new();
        collect_segments(&key_path, &mut segments);
        ignored.push(segments);
    })
    .map_err(|error| from_toml(path, text, &error))?;
    Ok((value, ignored))
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
