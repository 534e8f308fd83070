//! Per-platform descriptors, the platform check, and the manifest list.

use mab_config::Platform;
use serde::{Deserialize, Serialize};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The platform fields of an image config, exactly as the config has them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigPlatform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl ConfigPlatform {
    /// The normalised platform, for comparing with what was requested.
    pub fn normalized(&self) -> Platform {
        Platform::from_parts(&self.os, &self.architecture, self.variant.as_deref())
    }
}

/// One platform's image as the registry holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub platform: ConfigPlatform,
}

/// The image config's platform differs from the requested one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the image built for {requested} says it is {found} in its config (os {os}, architecture {architecture}{variant})")]
pub struct PlatformMismatch {
    pub requested: String,
    pub found: String,
    pub os: String,
    pub architecture: String,
    pub variant: String,
}

/// Checks that an image config's os/architecture/variant equal the
/// requested platform (`linux/arm64` and `linux/arm64/v8` are the same).
pub fn check_platform(
    requested: &Platform,
    config: &ConfigPlatform,
) -> Result<(), PlatformMismatch> {
    let found = config.normalized();
    if &found == requested {
        return Ok(());
    }
    Err(PlatformMismatch {
        requested: requested.to_string(),
        found: found.to_string(),
        os: config.os.clone(),
        architecture: config.architecture.clone(),
        variant: config
            .variant
            .as_ref()
            .map(|variant| format!(", variant {variant}"))
            .unwrap_or_default(),
    })
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
    platform: &'a ConfigPlatform,
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
                platform: &child.platform,
            })
            .collect(),
    };
    let bytes = serde_json::to_vec_pretty(&list).expect("a manifest list always serialises");
    (media_type, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(os: &str, architecture: &str, variant: Option<&str>) -> ConfigPlatform {
        ConfigPlatform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
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
            "the image built for linux/arm64 says it is linux/amd64 in its config (os linux, architecture amd64)"
        );
    }

    fn child(media_type: &str, digest_byte: &str, architecture: &str) -> Child {
        Child {
            media_type: media_type.to_owned(),
            digest: format!("sha256:{}", digest_byte.repeat(64)),
            size: 528,
            platform: config("linux", architecture, None),
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
    fn oci_children_make_an_oci_index() {
        let children = [
            child(OCI_MANIFEST, "a", "amd64"),
            child(OCI_MANIFEST, "b", "s390x"),
        ];
        assert_eq!(manifest_list(&children).0, OCI_INDEX);
    }
}
