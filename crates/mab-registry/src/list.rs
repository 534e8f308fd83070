//! Per-platform descriptors, the platform check, and the manifest list.

use std::borrow::Cow;

use mab_config::Platform;
use serde::{Deserialize, Serialize};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The platform fields of an OCI image config or descriptor (`os`,
/// `architecture`, `variant`, as the image spec names them): the one place
/// where a [`Platform`] is read from or written to those JSON documents.
#[derive(Serialize, Deserialize)]
struct OciPlatform<'a> {
    architecture: Cow<'a, str>,
    os: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    variant: Option<Cow<'a, str>>,
}

impl<'a> From<&'a Platform> for OciPlatform<'a> {
    fn from(platform: &'a Platform) -> OciPlatform<'a> {
        OciPlatform {
            architecture: platform.architecture().into(),
            os: platform.os().into(),
            variant: platform.variant().map(Cow::from),
        }
    }
}

/// The platform an image config (the JSON blob a manifest's `config`
/// points at) says it is, normalised by [`Platform::from_parts`].
pub fn config_platform(config: &[u8]) -> Result<Platform, serde_json::Error> {
    let fields: OciPlatform<'_> = serde_json::from_slice(config)?;
    Ok(Platform::from_parts(
        &fields.os,
        &fields.architecture,
        fields.variant.as_deref(),
    ))
}

/// One platform's image as the registry holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    /// What its image config says it is (normalised).
    pub platform: Platform,
}

/// The image config's platform differs from the requested one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the image built for {requested} says it is {found} in its config")]
pub struct PlatformMismatch {
    pub requested: Platform,
    pub found: Platform,
}

/// Checks that the platform an image's config names (read with
/// [`Platform::from_parts`], so `linux/arm64` and `linux/arm64/v8` are the
/// same) is the requested one (PRODUCT.md: a mismatch fails the platform).
pub fn check_platform(requested: &Platform, found: &Platform) -> Result<(), Box<PlatformMismatch>> {
    if found == requested {
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
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryJson<'a> {
    media_type: &'a str,
    digest: &'a str,
    size: u64,
    platform: OciPlatform<'a>,
}

/// The list's media type and bytes: a Docker manifest list when every
/// child is a Docker schema 2 manifest, an OCI index when every child is an
/// OCI manifest. Mixed children get an OCI index, which may hold both.
pub fn manifest_list(children: &[Child]) -> (&'static str, Vec<u8>) {
    let all_docker = children
        .iter()
        .all(|child| child.media_type == DOCKER_MANIFEST);
    let media_type = if all_docker {
        DOCKER_MANIFEST_LIST
    } else {
        OCI_INDEX
    };
    let list = ListJson {
        schema_version: 2,
        media_type,
        manifests: children
            .iter()
            .map(|child| EntryJson {
                media_type: &child.media_type,
                digest: &child.digest,
                size: child.size,
                platform: OciPlatform::from(&child.platform),
            })
            .collect(),
    };
    let bytes = serde_json::to_vec_pretty(&list).expect("a manifest list always serialises");
    (media_type, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image config with these platform fields, read back.
    fn config(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
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
    fn a_mismatch_names_both_platforms() {
        let error =
            check_platform(&platform("linux/arm64"), &config("linux", "amd64", None)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the image built for linux/arm64 says it is linux/amd64 in its config"
        );
    }

    fn child(media_type: &str, digest_byte: &str, architecture: &str) -> Child {
        Child {
            media_type: media_type.to_owned(),
            digest: format!("sha256:{}", digest_byte.repeat(64)),
            size: 528,
            platform: Platform::from_parts("linux", architecture, None),
        }
    }

    #[test]
    fn docker_children_make_a_docker_list() {
        let children = [
            child(DOCKER_MANIFEST, "a", "amd64"),
            child(DOCKER_MANIFEST, "b", "arm64"),
        ];
        let (media_type, bytes) = manifest_list(&children);
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
        let children = [
            Child {
                platform: config("linux", "arm", Some("v5")),
                ..child(OCI_MANIFEST, "a", "arm")
            },
            Child {
                platform: config("linux", "arm64", Some("v8")),
                ..child(OCI_MANIFEST, "b", "arm64")
            },
        ];
        let (_, bytes) = manifest_list(&children);
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            json["manifests"][0]["platform"],
            serde_json::json!({"architecture": "arm", "os": "linux", "variant": "v5"})
        );
        assert_eq!(
            json["manifests"][1]["platform"],
            serde_json::json!({"architecture": "arm64", "os": "linux"})
        );
    }

    #[test]
    fn a_config_without_os_is_refused() {
        assert!(config_platform(br#"{"architecture": "amd64"}"#).is_err());
    }

    #[test]
    fn oci_children_make_an_oci_index() {
        let children = [
            child(OCI_MANIFEST, "a", "amd64"),
            child(OCI_MANIFEST, "b", "s390x"),
        ];
        assert_eq!(manifest_list(&children).0, OCI_INDEX);
    }
}
