//! `mab inspect REF`: the published list, one line per platform.

use std::sync::Arc;

use mab_registry::{Repository, DOCKER_MANIFEST_LIST, OCI_INDEX};

use crate::environment::Environment;
use crate::failure::Failure;
use crate::progress::Reporter;

/// Returns what goes to stdout: the list's digest, then platform, digest
/// and size of each entry. Retried registry requests are reported to
/// `reporter`.
pub async fn inspect(
    reference: &str,
    environment: &Environment,
    reporter: &Arc<dyn Reporter>,
) -> Result<String, Failure> {
    let parsed = mab_registry::ImageReference::parse(reference).map_err(|error| {
        Failure::usage(
            error.to_string(),
            Some("write REF as registry[:port]/namespace/name[:tag] or registry[:port]/namespace/name@sha256:DIGEST, lowercase"),
        )
    })?;
    let image = parsed.name.as_str();
    let (_, credentials) = super::registry_credentials(environment, &parsed.registry).await?;
    let repository = Repository::new(image, credentials.as_ref())
        .map_err(|error| Failure::usage(error.to_string(), None))?
        .reporting_to(Arc::clone(reporter));
    let (bytes, digest) = repository
        .manifest(&parsed.tag_or_digest)
        .await
        .map_err(|error| {
            Failure::runtime(
                error.to_string(),
                Some("check the reference and that the registry is reachable"),
            )
        })?;
    let document: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|error| Failure::runtime(format!("{reference} is not JSON: {error}"), None))?;
    let media_type = document["mediaType"].as_str().unwrap_or_default();
    let mut out = format!("{image}@{digest}\n");
    if media_type != DOCKER_MANIFEST_LIST
        && media_type != OCI_INDEX
        && document.get("manifests").is_none()
    {
        out.push_str(&format!("(a single image, not a list: {media_type})\n"));
        return Ok(out);
    }
    let entries = mab_registry::list_entries(&bytes).map_err(|error| {
        Failure::runtime(
            format!("{reference} cannot be read as a manifest list or image index: {error}"),
            Some("check what the registry serves there with `skopeo inspect --raw`"),
        )
    })?;
    for entry in entries {
        // As the entry writes it (`linux/arm64/v8`), `?` for an entry without one.
        let name = entry.platform.map_or_else(
            || "?".to_owned(),
            |platform| match platform.variant {
                Some(variant) => format!("{}/{}/{variant}", platform.os, platform.architecture),
                None => format!("{}/{}", platform.os, platform.architecture),
            },
        );
        out.push_str(&format!("{name:<16} {} {:>8}\n", entry.digest, entry.size));
    }
    Ok(out)
}
