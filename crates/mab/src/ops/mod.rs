//! What the commands do. Each command in `commands` parses its flags and
//! calls one function here.

pub mod build;
pub mod connect;
pub mod host;
pub mod init;
pub mod inspect;
pub mod jobs;
pub mod manual;
pub mod plan;
pub mod prepare;
pub mod publishing;
pub mod runners;
pub mod slots;

use mab_config::{NetworkMode, Platform};

use crate::failure::Failure;

/// How many names a message lists ([`named_list`]); the others are
/// counted.
pub(crate) const NAMED_ENTRIES: usize = 5;

/// `names` joined with commas, the first [`NAMED_ENTRIES`] of them, then
/// `and N more`.
pub(crate) fn named_list(names: &[String]) -> String {
    let shown = names[..names.len().min(NAMED_ENTRIES)].join(", ");
    match names.len().saturating_sub(NAMED_ENTRIES) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

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

/// The credential sources of `environment` and the credentials they give
/// for `registry` (a credential helper runs off the async threads, for at
/// most [`mab_registry::HELPER_TIMEOUT`]), its errors typed: for a lookup
/// whose failure is a warning, not the build's ([`registry_credentials`]
/// makes them failures). A panic of the lookup's thread goes on here.
///
/// Errors: those of [`crate::environment::Environment::credential_sources`]
/// and [`mab_registry::CredentialSources::lookup`].
pub async fn lookup_credentials(
    environment: &crate::environment::Environment,
    registry: &str,
) -> Result<
    (
        mab_registry::CredentialSources,
        Option<mab_registry::Credentials>,
    ),
    mab_registry::RegistryError,
> {
    let sources = environment.credential_sources()?;
    let lookup = sources.clone();
    let owned = registry.to_owned();
    let credentials = tokio::task::spawn_blocking(move || lookup.lookup(&owned))
        .await
        .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))?;
    Ok((sources, credentials))
}

/// The credential sources of `environment` ([`Environment::credential_sources`])
/// and the credentials they give for `registry` (a credential helper runs
/// off the async threads, for at most [`mab_registry::HELPER_TIMEOUT`]).
/// A source that cannot be read, a helper that is not on `PATH` or does
/// not answer in its JSON, or an `auth` that is not base64 is usage (exit
/// 2), found before anything is built; a helper that fails or does not
/// answer in time is a runtime failure (exit 1): its cause may pass. Each
/// with its hint.
pub async fn registry_credentials(
    environment: &crate::environment::Environment,
    registry: &str,
) -> Result<
    (
        mab_registry::CredentialSources,
        Option<mab_registry::Credentials>,
    ),
    Failure,
> {
    let usage = |error: mab_registry::RegistryError| match error {
        mab_registry::RegistryError::CredentialHelper { .. } => {
            Failure::runtime(error.to_string(), error.credentials_hint())
        }
        _ => Failure::usage(error.to_string(), error.credentials_hint()),
    };
    lookup_credentials(environment, registry)
        .await
        .map_err(usage)
}
