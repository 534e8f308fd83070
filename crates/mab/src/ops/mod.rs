//! What the commands do. Each command in `commands` parses its flags and
//! calls one function here.

pub mod build;
pub mod connect;
pub mod init;
pub mod inspect;
pub mod jobs;
pub mod plan;
pub mod prepare;
pub mod publishing;
pub mod runners;
pub mod slots;

use mab_config::{NetworkMode, Platform};

use crate::failure::Failure;

/// `--platform` values (comma-separated or repeated), parsed and without
/// repeats; alias notes (`aarch64` read as `arm64`) go to `notes`.
pub fn platform_flags(texts: &[String], notes: &mut Vec<String>) -> Result<Vec<Platform>, Failure> {
    let mut platforms = Vec::new();
    for text in texts {
        let parsed = Platform::parse(text.trim()).map_err(|error| {
            Failure::usage(format!("--platform {text}: {error}"), Some(&error.hint()))
        })?;
        notes.extend(parsed.note);
        if !platforms.contains(&parsed.platform) {
            platforms.push(parsed.platform);
        }
    }
    Ok(platforms)
}

/// A `--network` value.
pub fn network_flag(text: Option<&str>) -> Result<Option<NetworkMode>, Failure> {
    text.map(|text| {
        text.parse::<NetworkMode>().map_err(|hint| {
            Failure::usage(
                format!("--network `{text}` is not a network mode"),
                Some(&hint),
            )
        })
    })
    .transpose()
}
