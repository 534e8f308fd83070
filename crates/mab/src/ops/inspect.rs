//! `mab inspect REF`: what a registry holds at a reference, a manifest
//! list (or OCI image index) or a single image (docs/publishing.md,
//! "Inspecting a published image").

use std::collections::BTreeMap;
use std::sync::Arc;

use mab_registry::{ConfigPlatform, RegistryError, Repository, OCI_INDEX, OCI_MANIFEST};
use serde::Serialize;

use crate::cli::Format;
use crate::environment::Environment;
use crate::failure::Failure;
use crate::progress::Reporter;

/// What `mab inspect --format json` prints (one JSON document, `schema`
/// 1); the human form shows the same.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Inspected {
    /// Always 1.
    pub schema: u32,
    /// The reference as given.
    pub reference: String,
    /// The repository, as the reference grammar reads it
    /// (`127.0.0.1:5000/team/app`).
    pub name: String,
    /// The media type of what the reference names: a list's
    /// (`application/vnd.docker.distribution.manifest.list.v2+json`,
    /// `application/vnd.oci.image.index.v1+json`) or an image manifest's;
    /// the document's own `mediaType`, else the OCI type its shape says.
    pub media_type: String,
    /// `sha256:` of the bytes served.
    pub digest: String,
    /// Their size in bytes.
    pub size: u64,
    /// Whether it is a list (`false`: a single image).
    pub list: bool,
    /// The list's (or image manifest's) `annotations`; empty when it has
    /// none, as a Docker manifest list never has. A value that is not a
    /// string (the OCI image spec allows only strings) is its JSON text.
    pub annotations: BTreeMap<String, String>,
    /// The `annotations` field as JSON text when it is there but not an
    /// object (then [`Inspected::annotations`] is empty); left out of the
    /// JSON form otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations_malformed: Option<String>,
    /// Each image: the list's entries in order, or the one image.
    pub platforms: Vec<InspectedImage>,
}

/// One image of [`Inspected`].
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct InspectedImage {
    /// `os/architecture[/variant]` as the entry writes it (the image
    /// config's, for a single image or an entry without a platform).
    pub platform: String,
    pub os: String,
    pub architecture: String,
    /// `null` when there is none.
    pub variant: Option<String>,
    /// The image manifest's media type.
    pub media_type: String,
    /// The image manifest's digest.
    pub digest: String,
    /// The image manifest's size in bytes, as served.
    pub manifest_size: u64,
    /// The image's size in bytes: its config's and layers' sizes as the
    /// manifest lists them (compressed, as pushed).
    pub image_size: u64,
    /// The config's `created` as written (RFC 3339), `null` without one.
    pub created: Option<String>,
}

/// `mab inspect REF`: returns what goes to stdout, as `format` asks, or
/// with `raw` the bytes of the manifest or list exactly as served.
/// Credentials as for `mab build`; retried requests are reported to
/// `reporter`.
///
/// Errors: a reference that does not parse (exit 2); a tag or digest the
/// repository does not hold (exit 1, one line naming it, with a hint); any
/// other registry failure (exit 1).
pub async fn inspect(
    reference: &str,
    format: Format,
    raw: bool,
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
    let manifest = repository.manifest(&parsed.tag_or_digest).await;
    let (bytes, digest) = match manifest {
        Ok(manifest) => manifest,
        Err(error @ RegistryError::NotFound { .. }) => {
            // The Docker registry answers `MANIFEST_UNKNOWN` for a manifest
            // of a repository it does not know; its tag list says which.
            let known = !error.is_name_unknown() && repository.is_known().await.unwrap_or(true);
            return Err(match known {
                true => not_found(image, &parsed.tag_or_digest, reference),
                false => repository_not_found(image),
            });
        }
        Err(error) => return Err(registry_failure(error)),
    };
    if raw {
        return String::from_utf8(bytes).map_err(|_| {
            Failure::runtime(
                format!("the registry serves {reference} as bytes that are not UTF-8 text"),
                Some("read it with `skopeo inspect --raw`"),
            )
        });
    }
    let document: serde_json::Value = serde_json::from_slice(&bytes).map_err(|error| {
        Failure::runtime(
            format!("{reference} is not JSON: {error}"),
            Some("read what the registry serves with `mab inspect --raw`"),
        )
    })?;
    let list = document.get("manifests").is_some();
    let media_type = document["mediaType"]
        .as_str()
        .unwrap_or(if list { OCI_INDEX } else { OCI_MANIFEST })
        .to_owned();
    let (annotations, annotations_malformed) = annotations(&document["annotations"]);
    let mut platforms = Vec::new();
    if list {
        let entries = mab_registry::list_entries(&bytes).map_err(|error| {
            Failure::runtime(
                format!("{reference} cannot be read as a manifest list or image index: {error}"),
                Some("read what the registry serves with `mab inspect --raw`"),
            )
        })?;
        for entry in entries {
            let (child, config) = repository
                .describe_with_config(&entry.digest)
                .await
                .map_err(registry_failure)?;
            platforms.push(described(entry.platform, &child, &config));
        }
    } else {
        let (child, config) = repository
            .describe_with_config(&digest)
            .await
            .map_err(registry_failure)?;
        platforms.push(described(None, &child, &config));
    }
    let inspected = Inspected {
        schema: 1,
        reference: reference.to_owned(),
        name: image.to_owned(),
        media_type,
        digest,
        size: bytes.len() as u64,
        list,
        annotations,
        annotations_malformed,
        platforms,
    };
    Ok(match format {
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&inspected).expect("always serialises")
        ),
        Format::Human => human(&inspected),
    })
}

/// One image: the platform `listed` (the list entry's), else its config's.
fn described(
    listed: Option<ConfigPlatform>,
    child: &mab_registry::Child,
    config: &[u8],
) -> InspectedImage {
    let platform = listed.unwrap_or_else(|| child.platform.clone());
    let config: serde_json::Value = serde_json::from_slice(config).unwrap_or_default();
    let name = match &platform.variant {
        Some(variant) => format!("{}/{}/{variant}", platform.os, platform.architecture),
        None => format!("{}/{}", platform.os, platform.architecture),
    };
    InspectedImage {
        platform: name,
        os: platform.os,
        architecture: platform.architecture,
        variant: platform.variant,
        media_type: child.media_type.clone(),
        digest: child.digest.clone(),
        manifest_size: child.size,
        image_size: child.image_size,
        created: config["created"].as_str().map(str::to_owned),
    }
}

/// The repository `name` holds no `tag_or_digest` (the registry
/// answered 404): one line naming both, with a hint. `reference` is the
/// reference as written: a tag it does not write is `latest`, and the
/// message says so, as docker's does not.
fn not_found(name: &str, tag_or_digest: &str, reference: &str) -> Failure {
    if tag_or_digest.starts_with("sha256:") {
        return Failure::runtime(
            format!("{name} has no manifest {tag_or_digest}"),
            Some("a digest names one manifest of one repository: check that it was pushed to this one (`mab build` prints IMAGE@DIGEST on stdout, and --metadata-file holds it)"),
        );
    }
    let implied = match reference.ends_with(&format!(":{tag_or_digest}")) {
        true => "",
        false => ", the tag a reference without one means",
    };
    Failure::runtime(
        format!("{name} has no tag `{tag_or_digest}`{implied}"),
        Some(&format!(
            "check the reference; `skopeo list-tags docker://{name}` lists the repository's tags"
        )),
    )
}

/// The registry knows no repository `name` (it answered `NAME_UNKNOWN`).
fn repository_not_found(name: &str) -> Failure {
    Failure::runtime(
        format!("{name}: the registry has no such repository"),
        Some("check the registry and the repository's name in the reference; a repository exists once an image is pushed to it"),
    )
}

/// The `annotations` field of a list or manifest: its entries, a value
/// that is not a string as its JSON text; or, when the field is there but
/// not an object, no entries and the field's JSON text.
fn annotations(field: &serde_json::Value) -> (BTreeMap<String, String>, Option<String>) {
    match field {
        serde_json::Value::Null => (BTreeMap::new(), None),
        serde_json::Value::Object(map) => {
            let entries = map
                .iter()
                .map(|(key, value)| {
                    let value = match value {
                        serde_json::Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    (key.clone(), value)
                })
                .collect();
            (entries, None)
        }
        other => (BTreeMap::new(), Some(other.to_string())),
    }
}

/// Any other registry failure: the client's error, with its hint about
/// credentials when it has one.
fn registry_failure(error: RegistryError) -> Failure {
    let hint = error
        .credentials_hint()
        .unwrap_or("check the reference and that the registry is reachable")
        .to_owned();
    Failure::runtime(error.to_string(), Some(&hint))
}

/// The human form: `NAME@DIGEST` (what the reference resolved to), the
/// media type and size of the list (or image manifest), its annotations,
/// then a row per image. Text from the registry has its control
/// characters escaped ([`mab_engine::escape_control_characters`]).
fn human(inspected: &Inspected) -> String {
    let shown = mab_engine::escape_control_characters;
    let mut out = format!("{}@{}\n", inspected.name, inspected.digest);
    let kind = match inspected.list {
        true => "list",
        false => "image",
    };
    out.push_str(&format!(
        "{kind:<12} {} ({} bytes)\n",
        shown(&inspected.media_type),
        inspected.size
    ));
    match (
        &inspected.annotations_malformed,
        inspected.annotations.is_empty(),
    ) {
        (Some(field), _) => out.push_str(&format!(
            "{:<12} malformed, not an object: {}\n",
            "annotations",
            shown(field)
        )),
        (None, true) => out.push_str(&format!("{:<12} none\n", "annotations")),
        (None, false) => {
            out.push_str("annotations\n");
            for (key, value) in &inspected.annotations {
                out.push_str(&format!("  {} = {}\n", shown(key), shown(value)));
            }
        }
    }
    out.push_str(&format!(
        "\n{:<16} {:<71} {:>8} {:>10}  CREATED\n",
        "PLATFORM", "DIGEST", "MANIFEST", "IMAGE"
    ));
    for image in &inspected.platforms {
        out.push_str(&format!(
            "{:<16} {:<71} {:>8} {:>10}  {}\n",
            shown(&image.platform),
            image.digest,
            image.manifest_size,
            image.image_size,
            shown(image.created.as_deref().unwrap_or("-"))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_as_the_document_has_them() {
        let read = |text: &str| annotations(&serde_json::from_str(text).unwrap());
        assert_eq!(read("null"), (BTreeMap::new(), None));
        assert_eq!(
            read(r#"{"a":"b","n":5,"o":{"x":[1]}}"#),
            (
                BTreeMap::from([
                    ("a".to_owned(), "b".to_owned()),
                    ("n".to_owned(), "5".to_owned()),
                    ("o".to_owned(), r#"{"x":[1]}"#.to_owned()),
                ]),
                None
            )
        );
        assert_eq!(
            read(r#"["a"]"#),
            (BTreeMap::new(), Some(r#"["a"]"#.to_owned()))
        );
        let mut inspected = inspected();
        inspected.annotations.clear();
        inspected.annotations_malformed = Some("\"x\"".to_owned());
        assert!(human(&inspected).contains("annotations  malformed, not an object: \"x\"\n"));
    }

    #[test]
    fn registry_text_has_its_control_characters_escaped() {
        let mut inspected = inspected();
        inspected.annotations =
            BTreeMap::from([("k\u{1b}[2J".to_owned(), "v\r\nforged line".to_owned())]);
        inspected.platforms[0].created = Some("\u{1b}]0;title\u{7}".to_owned());
        inspected.media_type = "x\u{1b}[31m".to_owned();
        let text = human(&inspected);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\r') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(
            text.contains("  k\\u{1b}[2J = v\\r\\nforged line\n"),
            "{text}"
        );
        assert!(text.contains("\\u{1b}]0;title\\u{7}\n"), "{text}");
        assert!(
            text.contains("list         x\\u{1b}[31m (700 bytes)"),
            "{text}"
        );
    }

    fn inspected() -> Inspected {
        Inspected {
            schema: 1,
            reference: "127.0.0.1:5000/app:1.0".to_owned(),
            name: "127.0.0.1:5000/app".to_owned(),
            media_type: OCI_INDEX.to_owned(),
            digest: format!("sha256:{}", "a".repeat(64)),
            size: 700,
            list: true,
            annotations: BTreeMap::from([("org.example.x".to_owned(), "y".to_owned())]),
            annotations_malformed: None,
            platforms: vec![InspectedImage {
                platform: "linux/arm/v7".to_owned(),
                os: "linux".to_owned(),
                architecture: "arm".to_owned(),
                variant: Some("v7".to_owned()),
                media_type: OCI_MANIFEST.to_owned(),
                digest: format!("sha256:{}", "b".repeat(64)),
                manifest_size: 528,
                image_size: 1234,
                created: None,
            }],
        }
    }

    #[test]
    fn the_human_form_shows_every_field() {
        let inspected = inspected();
        let text = human(&inspected);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!("127.0.0.1:5000/app@sha256:{}", "a".repeat(64))
        );
        assert_eq!(lines[1], format!("list         {OCI_INDEX} (700 bytes)"));
        assert_eq!(lines[3], "  org.example.x = y");
        let row: Vec<&str> = lines[6].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "linux/arm/v7",
                &format!("sha256:{}", "b".repeat(64)),
                "528",
                "1234",
                "-"
            ]
        );
    }
}
