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
    let (image, tag_or_digest) = split_reference(reference);
    let registry = mab_registry::registry_of(image).map_err(|error| {
        Failure::usage(
            error.to_string(),
            Some("write REF as registry/namespace/name:tag"),
        )
    })?;
    let credentials = mab_registry::load_credentials(
        &environment.docker_config_dir().join("config.json"),
        &registry,
    )
    .map_err(|error| Failure::runtime(error.to_string(), None))?;
    let repository = Repository::new(image, credentials.as_ref())
        .map_err(|error| Failure::usage(error.to_string(), None))?
        .reporting_to(Arc::clone(reporter));
    let (bytes, digest) = repository.manifest(tag_or_digest).await.map_err(|error| {
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
    for entry in document["manifests"].as_array().into_iter().flatten() {
        let platform = &entry["platform"];
        let mut name = format!(
            "{}/{}",
            platform["os"].as_str().unwrap_or("?"),
            platform["architecture"].as_str().unwrap_or("?")
        );
        if let Some(variant) = platform["variant"].as_str() {
            name.push('/');
            name.push_str(variant);
        }
        out.push_str(&format!(
            "{name:<16} {} {:>8}\n",
            entry["digest"].as_str().unwrap_or("?"),
            entry["size"].as_u64().unwrap_or_default()
        ));
    }
    Ok(out)
}

/// `registry/name:tag` -> (`registry/name`, `tag`); `name@digest` keeps the
/// digest; no tag means `latest`.
fn split_reference(reference: &str) -> (&str, &str) {
    if let Some((image, digest)) = reference.split_once('@') {
        return (image, digest);
    }
    let last_slash = reference.rfind('/').map_or(0, |index| index + 1);
    match reference[last_slash..].rfind(':') {
        Some(colon) => (
            &reference[..last_slash + colon],
            &reference[last_slash + colon + 1..],
        ),
        None => (reference, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::split_reference;

    #[test]
    fn splits_references() {
        let cases = [
            (
                "127.0.0.1:5000/team/app:1.0",
                ("127.0.0.1:5000/team/app", "1.0"),
            ),
            (
                "127.0.0.1:5000/team/app",
                ("127.0.0.1:5000/team/app", "latest"),
            ),
            ("app@sha256:abc", ("app", "sha256:abc")),
            (
                "registry.example.com/app:edge",
                ("registry.example.com/app", "edge"),
            ),
        ];
        for (reference, expected) in cases {
            assert_eq!(split_reference(reference), expected, "{reference}");
        }
    }
}
