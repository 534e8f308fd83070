//! Per-platform descriptors, the platform check, and the manifest list.

use std::collections::BTreeMap;
use std::fmt;

use mab_config::Platform;
use serde::{Deserialize, Serialize};

/// Media type of a Docker image manifest, schema 2 (what Docker engines push).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media type of a Docker manifest list, the list published over
/// [`DOCKER_MANIFEST`] children.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Media type of an OCI image manifest (image spec v1).
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index, the list published over
/// [`OCI_MANIFEST`] children (or mixed ones).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The platform fields as an image config writes them (`os`,
/// `architecture`, `variant`, as the OCI image spec names them), kept
/// verbatim: the one place where those JSON fields are read (from a config)
/// and written (into a list entry's `platform`). PRODUCT.md: a list entry's
/// platform is the image config's own, with nothing invented, so an arm
/// config without a variant stays without one and an arm64 config's `v8`
/// stays. [`ConfigPlatform::platform`] gives the normalised [`Platform`]
/// for comparing with a requested one.
///
/// An empty `variant` is read as none, as the image spec's Go types
/// (`omitempty`) write and read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigPlatform {
    /// The image spec's `architecture` (a GOARCH name such as `arm64`, as
    /// the builder wrote it).
    pub architecture: String,
    /// The image spec's `os` (a GOOS name such as `linux`).
    pub os: String,
    /// The image spec's `variant` (`v7`); `None` when the config has none.
    #[serde(
        default,
        deserialize_with = "non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub variant: Option<String>,
}

/// An optional string, `""` read as absent.
fn non_empty<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    Ok(text.filter(|text| !text.is_empty()))
}

impl ConfigPlatform {
    /// These fields normalised by [`Platform::from_parts`] (containerd's
    /// rules: arm without a variant is `linux/arm/v7`, arm64's `v8` is
    /// left out), for comparing with a requested platform.
    pub fn platform(&self) -> Platform {
        Platform::from_parts(&self.os, &self.architecture, self.variant.as_deref())
    }
}

/// The fields a normalised platform writes out (`linux/arm/v7` as os
/// `linux`, architecture `arm`, variant `v7`), for where only a [`Platform`]
/// is at hand.
impl From<&Platform> for ConfigPlatform {
    fn from(platform: &Platform) -> ConfigPlatform {
        ConfigPlatform {
            architecture: platform.architecture().to_owned(),
            os: platform.os().to_owned(),
            variant: platform.variant().map(str::to_owned),
        }
    }
}

/// `os/architecture[/variant]` joined as written, then each field named:
/// `linux/arm (os linux, architecture arm, no variant)`.
impl fmt::Display for ConfigPlatform {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (os, architecture) = (&self.os, &self.architecture);
        match &self.variant {
            Some(variant) => write!(
                formatter,
                "{os}/{architecture}/{variant} (os {os}, architecture {architecture}, variant {variant})"
            ),
            None => write!(
                formatter,
                "{os}/{architecture} (os {os}, architecture {architecture}, no variant)"
            ),
        }
    }
}

/// The platform fields of an image config (the JSON blob a manifest's
/// `config` points at), verbatim; an error when `os` or `architecture` is
/// missing or not a string.
pub fn config_platform(config: &[u8]) -> Result<ConfigPlatform, serde_json::Error> {
    serde_json::from_slice(config)
}

/// One platform's image as the registry holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    /// The manifest's media type ([`DOCKER_MANIFEST`] or [`OCI_MANIFEST`]),
    /// as the manifest's own `mediaType` says.
    pub media_type: String,
    /// The manifest's digest in the registry (`sha256:` and 64 hex
    /// digits), checked against the bytes read back.
    pub digest: String,
    /// The manifest's size in bytes, as the registry served it.
    pub size: u64,
    /// What its image config says it is, verbatim.
    pub platform: ConfigPlatform,
    /// The image's compressed size in bytes: its config's and layers'
    /// `size` as the manifest lists them (OCI image manifest, `config` and
    /// `layers` descriptors), the manifest itself not included.
    pub image_size: u64,
}

/// The image config's platform differs from the requested one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the image built for {requested} says it is {found} in its config")]
pub struct PlatformMismatch {
    /// The platform the job built for.
    pub requested: Platform,
    /// The image config's own fields.
    pub found: ConfigPlatform,
}

/// Checks that the platform an image's config names (normalised with
/// [`Platform::from_parts`], so `linux/arm64` and `linux/arm64/v8` are the
/// same) is the requested one (PRODUCT.md: a mismatch fails the platform).
///
/// The error is boxed, unlike the crate's other errors, because clippy's
/// `result_large_err` refuses it unboxed: it holds a [`Platform`] and a
/// [`ConfigPlatform`], six strings, 144 bytes against the lint's limit of 128.
pub fn check_platform(
    requested: &Platform,
    found: &ConfigPlatform,
) -> Result<(), Box<PlatformMismatch>> {
    if found.platform() == *requested {
        return Ok(());
    }
    Err(Box::new(PlatformMismatch {
        requested: requested.clone(),
        found: found.clone(),
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListJson<'a> {
    schema_version: u32,
    media_type: &'a str,
    manifests: Vec<EntryJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<&'a BTreeMap<String, String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryJson<'a> {
    media_type: &'a str,
    digest: &'a str,
    size: u64,
    platform: &'a ConfigPlatform,
}

/// The media type of the list published over `children`: an OCI image
/// index when any child is not a Docker schema 2 manifest (an
/// [`OCI_MANIFEST`], as Podman's API service and BuildKit's
/// `oci-mediatypes` push them), a Docker manifest list when every child is
/// a [`DOCKER_MANIFEST`] (what Docker Engine pushes).
///
/// The rule comes from the two formats: an OCI index may hold descriptors
/// of any media type (image spec v1.0, "Image Index", `manifests`), so it
/// holds Docker and OCI children side by side; a Docker manifest list
/// (Docker's manifest list v2.2) names only Docker manifests, so it may
/// not hold an OCI one.
pub fn list_media_type(children: &[Child]) -> &'static str {
    match children
        .iter()
        .all(|child| child.media_type == DOCKER_MANIFEST)
    {
        true => DOCKER_MANIFEST_LIST,
        false => OCI_INDEX,
    }
}

/// The list's media type ([`list_media_type`]) and bytes. Each entry is
/// the child's descriptor with the child's own media type (a Docker child
/// of an OCI index stays a [`DOCKER_MANIFEST`]), its digest, its size and
/// its config's platform.
///
/// `annotations` go into an OCI index's `annotations` (image spec v1.0,
/// "Image Index"; left out when empty); a Docker manifest list has no such
/// field (Docker's manifest list v2.2), so there they are dropped, and
/// [`carries_annotations`] tells the caller beforehand.
pub fn manifest_list(
    children: &[Child],
    annotations: &BTreeMap<String, String>,
) -> (&'static str, Vec<u8>) {
    let media_type = list_media_type(children);
    let annotations = (media_type == OCI_INDEX && !annotations.is_empty()).then_some(annotations);
    let list = ListJson {
        schema_version: 2,
        media_type,
        manifests: children
            .iter()
            .map(|child| EntryJson {
                media_type: &child.media_type,
                digest: &child.digest,
                size: child.size,
                platform: &child.platform,
            })
            .collect(),
        annotations,
    };
    let bytes = serde_json::to_vec_pretty(&list).expect("a manifest list always serialises");
    (media_type, bytes)
}

/// Whether the list [`manifest_list`] makes of `children` can carry
/// annotations: only an OCI index can.
pub fn carries_annotations(children: &[Child]) -> bool {
    list_media_type(children) == OCI_INDEX
}

/// One entry of a manifest list or image index as a registry serves it
/// (OCI image index `manifests[]`, Docker manifest list v2.2): the child's
/// descriptor and the platform it claims.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListEntry {
    /// The child's media type; empty when the entry names none.
    #[serde(default)]
    pub media_type: String,
    /// The child manifest's digest (`sha256:…`).
    pub digest: String,
    /// The child manifest's size in bytes.
    #[serde(default)]
    pub size: u64,
    /// The entry's `platform`, verbatim; `None` for entries without one
    /// (the image spec makes it optional), or whose `platform` lacks `os`
    /// or `architecture`.
    #[serde(default, deserialize_with = "lenient_platform")]
    pub platform: Option<ConfigPlatform>,
}

#[derive(Deserialize)]
struct ListDocument {
    manifests: Vec<ListEntry>,
}

/// A platform object read as `None` when it is not one the image spec
/// allows (no `os`, no `architecture`).
fn lenient_platform<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ConfigPlatform>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(deserializer)?;
    Ok(value.and_then(|value| serde_json::from_value(value).ok()))
}

/// The entries of a manifest list or image index (`bytes` as the registry
/// serves them), in the list's order; an error when it is not JSON or has
/// no `manifests` array of descriptors with a `digest` (a single image's
/// manifest is not a list).
pub fn list_entries(bytes: &[u8]) -> Result<Vec<ListEntry>, serde_json::Error> {
    serde_json::from_slice::<ListDocument>(bytes).map(|list| list.manifests)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image config with these platform fields, read back.
    fn config(os: &str, architecture: &str, variant: Option<&str>) -> ConfigPlatform {
        let mut json = serde_json::json!({
            "os": os,
            "architecture": architecture,
            "rootfs": {"type": "layers", "diff_ids": []},
        });
        if let Some(variant) = variant {
            json["variant"] = variant.into();
        }
        config_platform(&serde_json::to_vec(&json).unwrap()).unwrap()
    }

    fn platform(text: &str) -> Platform {
        text.parse().unwrap()
    }

    #[test]
    fn checks_config_platform_against_the_request() {
        let cases = [
            ("linux/arm64", config("linux", "arm64", None), true),
            ("linux/arm64", config("linux", "arm64", Some("v8")), true),
            ("linux/arm64/v8", config("linux", "arm64", None), true),
            ("linux/amd64", config("linux", "amd64", None), true),
            ("linux/ppc64le", config("linux", "ppc64le", None), true),
            ("linux/arm/v7", config("linux", "arm", Some("v7")), true),
            ("linux/arm/v7", config("linux", "arm", None), true),
            ("linux/arm/v5", config("linux", "arm", Some("v5")), true),
            ("linux/arm/v5", config("linux", "arm", Some("v7")), false),
            ("linux/mips64le", config("linux", "mips64le", None), true),
            ("linux/amd64", config("linux", "sparc64", None), false),
            ("linux/arm64", config("linux", "amd64", None), false),
            ("linux/arm/v7", config("linux", "arm", Some("v6")), false),
            ("linux/amd64", config("windows", "amd64", None), false),
        ];
        for (requested, config, matches) in cases {
            let result = check_platform(&platform(requested), &config);
            assert_eq!(result.is_ok(), matches, "{requested} vs {config:?}");
        }
    }

    #[test]
    fn a_mismatch_names_the_configs_own_fields() {
        let cases = [
            (
                "linux/arm64",
                config("linux", "amd64", None),
                "the image built for linux/arm64 says it is linux/amd64 \
                 (os linux, architecture amd64, no variant) in its config",
            ),
            (
                "linux/arm/v6",
                config("linux", "arm", None),
                "the image built for linux/arm/v6 says it is linux/arm \
                 (os linux, architecture arm, no variant) in its config",
            ),
            (
                "linux/amd64",
                config("linux", "arm64", Some("v8")),
                "the image built for linux/amd64 says it is linux/arm64/v8 \
                 (os linux, architecture arm64, variant v8) in its config",
            ),
        ];
        for (requested, config, message) in cases {
            let error = check_platform(&platform(requested), &config).unwrap_err();
            assert_eq!(error.to_string(), message);
        }
    }

    #[test]
    fn config_fields_are_read_verbatim() {
        assert_eq!(
            config("linux", "arm", None),
            ConfigPlatform {
                os: "linux".to_owned(),
                architecture: "arm".to_owned(),
                variant: None,
            }
        );
        assert_eq!(
            config("linux", "arm64", Some("v8")).variant.as_deref(),
            Some("v8")
        );
        assert_eq!(config("linux", "amd64", Some("")).variant, None);
        assert_eq!(
            config("linux", "arm", None).platform(),
            platform("linux/arm/v7")
        );
    }

    fn child(media_type: &str, digest_byte: &str, architecture: &str) -> Child {
        Child {
            media_type: media_type.to_owned(),
            digest: format!("sha256:{}", digest_byte.repeat(64)),
            size: 528,
            platform: config("linux", architecture, None),
            image_size: 4096,
        }
    }

    #[test]
    fn docker_children_make_a_docker_list() {
        let children = [
            child(DOCKER_MANIFEST, "a", "amd64"),
            child(DOCKER_MANIFEST, "b", "arm64"),
        ];
        let (media_type, bytes) = manifest_list(&children, &BTreeMap::new());
        assert_eq!(media_type, DOCKER_MANIFEST_LIST);
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["mediaType"], DOCKER_MANIFEST_LIST);
        assert_eq!(json["schemaVersion"], 2);
        assert_eq!(json["manifests"][1]["platform"]["architecture"], "arm64");
        assert_eq!(json["manifests"][1]["digest"], children[1].digest);
        assert_eq!(json["manifests"][0]["size"], 528);
        assert!(json["manifests"][0]["platform"].get("variant").is_none());
    }

    #[test]
    fn entries_carry_the_configs_platform_fields() {
        let cases = [
            (
                config("linux", "arm", Some("v5")),
                serde_json::json!({"architecture": "arm", "os": "linux", "variant": "v5"}),
            ),
            // Kept, although `linux/arm64` and `linux/arm64/v8` are one platform.
            (
                config("linux", "arm64", Some("v8")),
                serde_json::json!({"architecture": "arm64", "os": "linux", "variant": "v8"}),
            ),
            // Not given the `v7` that `linux/arm` means.
            (
                config("linux", "arm", None),
                serde_json::json!({"architecture": "arm", "os": "linux"}),
            ),
            (
                config("linux", "arm64", None),
                serde_json::json!({"architecture": "arm64", "os": "linux"}),
            ),
        ];
        let children: Vec<Child> = cases
            .iter()
            .map(|(platform, _)| Child {
                platform: platform.clone(),
                ..child(OCI_MANIFEST, "a", "amd64")
            })
            .collect();
        let (_, bytes) = manifest_list(&children, &BTreeMap::new());
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        for (index, (_, expected)) in cases.iter().enumerate() {
            assert_eq!(&json["manifests"][index]["platform"], expected, "{json}");
        }
    }

    #[test]
    fn a_config_without_os_is_refused() {
        assert!(config_platform(br#"{"architecture": "amd64"}"#).is_err());
    }

    /// The list is an OCI index as soon as one child is OCI, a Docker
    /// manifest list only when all are Docker; each entry keeps its
    /// child's own media type, and the document says the list's.
    #[test]
    fn the_list_type_follows_the_children_and_each_entry_keeps_its_own() {
        // (children's media types, the list's)
        let cases = [
            (
                &[DOCKER_MANIFEST, DOCKER_MANIFEST][..],
                DOCKER_MANIFEST_LIST,
            ),
            (&[DOCKER_MANIFEST][..], DOCKER_MANIFEST_LIST),
            (&[OCI_MANIFEST, OCI_MANIFEST][..], OCI_INDEX),
            (&[OCI_MANIFEST][..], OCI_INDEX),
            // Docker's engine for one platform, Podman's for the others.
            (
                &[DOCKER_MANIFEST, OCI_MANIFEST, OCI_MANIFEST][..],
                OCI_INDEX,
            ),
            (&[OCI_MANIFEST, DOCKER_MANIFEST][..], OCI_INDEX),
        ];
        let architectures = ["amd64", "arm64", "s390x"];
        for (media_types, list_type) in cases {
            let children: Vec<Child> = media_types
                .iter()
                .zip(architectures)
                .map(|(media_type, architecture)| child(media_type, "a", architecture))
                .collect();
            assert_eq!(list_media_type(&children), list_type, "{media_types:?}");
            let (media_type, bytes) = manifest_list(&children, &BTreeMap::new());
            assert_eq!(media_type, list_type, "{media_types:?}");
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(json["mediaType"], list_type, "{json}");
            assert_eq!(json["schemaVersion"], 2, "{json}");
            let entries: Vec<(&str, &str)> = json["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|entry| {
                    (
                        entry["mediaType"].as_str().unwrap(),
                        entry["platform"]["architecture"].as_str().unwrap(),
                    )
                })
                .collect();
            let expected: Vec<(&str, &str)> =
                media_types.iter().copied().zip(architectures).collect();
            assert_eq!(entries, expected, "{json}");
            // Read back as a registry serves it, the entries are the same.
            let read: Vec<String> = list_entries(&bytes)
                .unwrap()
                .into_iter()
                .map(|entry| entry.media_type)
                .collect();
            assert_eq!(read, *media_types, "{json}");
        }
    }

    #[test]
    fn only_an_oci_index_carries_annotations() {
        let annotations = BTreeMap::from([(
            "org.opencontainers.image.revision".to_owned(),
            "0123abcd".to_owned(),
        )]);
        // (children's media types, the list's, annotations written)
        let cases = [
            (&[OCI_MANIFEST, OCI_MANIFEST][..], OCI_INDEX, true),
            (&[OCI_MANIFEST, DOCKER_MANIFEST][..], OCI_INDEX, true),
            (
                &[DOCKER_MANIFEST, DOCKER_MANIFEST][..],
                DOCKER_MANIFEST_LIST,
                false,
            ),
        ];
        for (media_types, list_type, written) in cases {
            let children: Vec<Child> = media_types
                .iter()
                .map(|media_type| child(media_type, "a", "amd64"))
                .collect();
            assert_eq!(carries_annotations(&children), written);
            let (media_type, bytes) = manifest_list(&children, &annotations);
            assert_eq!(media_type, list_type);
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            match written {
                true => assert_eq!(
                    json["annotations"],
                    serde_json::json!({"org.opencontainers.image.revision": "0123abcd"})
                ),
                false => assert!(json.get("annotations").is_none(), "{json}"),
            }
            // No annotations, no field.
            let (_, bytes) = manifest_list(&children, &BTreeMap::new());
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert!(json.get("annotations").is_none(), "{json}");
        }
    }

    #[test]
    fn a_published_list_reads_back_as_its_entries() {
        let children = [
            child(DOCKER_MANIFEST, "a", "amd64"),
            Child {
                platform: config("linux", "arm", Some("v7")),
                ..child(DOCKER_MANIFEST, "b", "arm")
            },
        ];
        let (_, bytes) = manifest_list(&children, &BTreeMap::new());
        let entries = list_entries(&bytes).unwrap();
        let read: Vec<(String, u64, Option<ConfigPlatform>)> = entries
            .into_iter()
            .map(|entry| (entry.digest, entry.size, entry.platform))
            .collect();
        let written: Vec<(String, u64, Option<ConfigPlatform>)> = children
            .iter()
            .map(|child| {
                (
                    child.digest.clone(),
                    child.size,
                    Some(child.platform.clone()),
                )
            })
            .collect();
        assert_eq!(read, written);
    }

    #[test]
    fn list_entries_without_a_usable_platform_have_none() {
        let bytes = br#"{"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:aa", "size": 1,
             "platform": {"architecture": "unknown", "os": "unknown"}},
            {"digest": "sha256:bb", "size": 2},
            {"digest": "sha256:cc", "size": 3, "platform": {"os": "linux"}}
        ]}"#;
        let entries = list_entries(bytes).unwrap();
        assert_eq!(entries[0].platform.as_ref().unwrap().os, "unknown");
        assert_eq!(entries[1].platform, None);
        assert_eq!(entries[1].media_type, "");
        assert_eq!(entries[2].platform, None);
    }

    #[test]
    fn a_single_manifest_is_no_list() {
        let manifest = br#"{"schemaVersion": 2, "config": {"digest": "sha256:aa"}, "layers": []}"#;
        assert!(list_entries(manifest).is_err());
        assert!(list_entries(b"not json").is_err());
    }
}
