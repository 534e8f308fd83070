//! Platforms (`os/arch[/variant]`), normalised the way containerd does, so
//! that `linux/arm64/v8`, `linux/aarch64` and `linux/arm64` are one platform.

use std::fmt;
use std::str::FromStr;

use crate::suggest::closest;

/// Operating systems mab accepts (GOOS names, as OCI image configs spell them).
pub const KNOWN_OSES: &[&str] = &[
    "linux",
    "windows",
    "darwin",
    "freebsd",
    "netbsd",
    "openbsd",
    "illumos",
    "solaris",
    "aix",
    "android",
    "dragonfly",
    "ios",
    "plan9",
    "js",
    "wasip1",
];

/// Architectures mab accepts (GOARCH names, as OCI image configs spell them).
pub const KNOWN_ARCHITECTURES: &[&str] = &[
    "amd64", "386", "arm64", "arm", "ppc64le", "ppc64", "s390x", "riscv64", "mips64le", "mips64",
    "mips", "mipsle", "loong64", "wasm",
];

/// Other spellings of architectures (uname, Debian, GNU), with the
/// architecture and default variant they stand for.
const ARCHITECTURE_ALIASES: &[(&str, &str, Option<&str>)] = &[
    ("aarch64", "arm64", None),
    ("x86_64", "amd64", None),
    ("x86-64", "amd64", None),
    ("ppc64el", "ppc64le", None),
    ("i386", "386", None),
    ("i686", "386", None),
    ("armhf", "arm", Some("v7")),
    ("armel", "arm", Some("v6")),
    ("armv7", "arm", Some("v7")),
    ("armv7l", "arm", Some("v7")),
    ("armv6", "arm", Some("v6")),
    ("armv6l", "arm", Some("v6")),
    ("loongarch64", "loong64", None),
];

const ARM_VARIANTS: &[&str] = &["v5", "v6", "v7", "v8"];
const AMD64_VARIANTS: &[&str] = &["v2", "v3", "v4"];
const ARM64_VARIANTS: &[&str] = &[
    "v8.1", "v8.2", "v8.3", "v8.4", "v8.5", "v8.6", "v8.7", "v8.8", "v8.9", "v9", "v9.1", "v9.2",
    "v9.3", "v9.4", "v9.5",
];

/// A target platform of an image: `linux/amd64`, `linux/arm/v7`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// The result of [`Platform::parse`]: the platform, and a note when the text
/// used another name for it (`linux/aarch64` read as `linux/arm64`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub platform: Platform,
    pub note: Option<String>,
}

/// Why a platform string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    #[error("a platform is empty")]
    Empty,
    #[error("`{text}` is not a platform")]
    Malformed { text: String },
    #[error("platform `{text}` names no operating system")]
    MissingOs { text: String, suggestion: String },
    #[error("unknown operating system `{os}` in platform `{text}`")]
    UnknownOs {
        text: String,
        os: String,
        suggestion: Option<String>,
    },
    #[error("unknown architecture `{architecture}` in platform `{text}`")]
    UnknownArchitecture {
        text: String,
        architecture: String,
        suggestion: Option<String>,
    },
    #[error("unknown variant `{variant}` of {architecture} in platform `{text}`")]
    UnknownVariant {
        text: String,
        architecture: String,
        variant: String,
        known: &'static [&'static str],
    },
}

impl PlatformError {
    /// What to do about it, for a `hint:` line.
    pub fn hint(&self) -> String {
        match self {
            PlatformError::Empty | PlatformError::Malformed { .. } => {
                "write a platform as os/arch[/variant], for example `linux/arm64` or `linux/arm/v7`"
                    .to_owned()
            }
            PlatformError::MissingOs { suggestion, .. } => {
                format!("did you mean `{suggestion}`?")
            }
            PlatformError::UnknownOs {
                suggestion: Some(suggestion),
                ..
            }
            | PlatformError::UnknownArchitecture {
                suggestion: Some(suggestion),
                ..
            } => format!("did you mean `{suggestion}`?"),
            PlatformError::UnknownOs {
                suggestion: None, ..
            } => format!("known operating systems: {}", KNOWN_OSES.join(", ")),
            PlatformError::UnknownArchitecture {
                suggestion: None, ..
            } => format!("known architectures: {}", KNOWN_ARCHITECTURES.join(", ")),
            PlatformError::UnknownVariant { known: [], .. } => {
                "a variant is written in lowercase letters, digits and dots".to_owned()
            }
            PlatformError::UnknownVariant { known, .. } => {
                format!("known variants: {}", known.join(", "))
            }
        }
    }
}

/// Architecture and variant after resolving aliases and default variants;
/// `alias` says whether another name for the architecture was used.
struct Normalised {
    architecture: String,
    variant: Option<String>,
    alias: bool,
}

fn normalise_architecture(architecture: &str, variant: Option<&str>) -> Normalised {
    let architecture = architecture.to_ascii_lowercase();
    let variant = variant
        .map(str::to_ascii_lowercase)
        .filter(|variant| !variant.is_empty());
    let (canonical, alias_variant, alias) = match ARCHITECTURE_ALIASES
        .iter()
        .find(|(alias, _, _)| *alias == architecture)
    {
        Some((_, canonical, default_variant)) => ((*canonical).to_owned(), *default_variant, true),
        None => (architecture, None, false),
    };
    let variant = variant.or_else(|| alias_variant.map(str::to_owned));
    let variant = match (canonical.as_str(), variant.as_deref()) {
        ("amd64", Some("v1")) => None,
        ("arm64", Some("8" | "v8" | "v8.0")) => None,
        ("arm", None | Some("7")) => Some("v7".to_owned()),
        ("arm", Some("5")) => Some("v5".to_owned()),
        ("arm", Some("6")) => Some("v6".to_owned()),
        ("arm", Some("8")) => Some("v8".to_owned()),
        _ => variant,
    };
    Normalised {
        architecture: canonical,
        variant,
        alias,
    }
}

fn known_variants(architecture: &str) -> Option<&'static [&'static str]> {
    match architecture {
        "arm" => Some(ARM_VARIANTS),
        "amd64" => Some(AMD64_VARIANTS),
        "arm64" => Some(ARM64_VARIANTS),
        _ => None,
    }
}

/// Every spelling of an architecture that `parse` accepts.
fn architecture_names() -> impl Iterator<Item = &'static str> {
    KNOWN_ARCHITECTURES
        .iter()
        .copied()
        .chain(ARCHITECTURE_ALIASES.iter().map(|(alias, _, _)| *alias))
}

impl Platform {
    /// A platform from already-normalised parts.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Parse `os/arch[/variant]` and normalise it like containerd: `arm64/v8`
    /// is `arm64`, `arm` is `arm/v7`, and the aliases `aarch64`, `x86_64`,
    /// `x86-64`, `ppc64el`, `i386`, `i686`, `armhf`, `armel` are read as the
    /// OCI names (with a note saying so).
    pub fn parse(text: &str) -> Result<Parsed, PlatformError> {
        let written = text.trim();
        if written.is_empty() {
            return Err(PlatformError::Empty);
        }
        let lower = written.to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        if parts.iter().any(|part| part.is_empty()) || parts.len() > 3 {
            return Err(PlatformError::Malformed {
                text: written.to_owned(),
            });
        }
        if parts.len() == 1 {
            let normalised = normalise_architecture(parts[0], None);
            if KNOWN_ARCHITECTURES.contains(&normalised.architecture.as_str()) {
                let suggestion = Platform {
                    os: "linux".to_owned(),
                    architecture: normalised.architecture,
                    variant: normalised.variant,
                };
                return Err(PlatformError::MissingOs {
                    text: written.to_owned(),
                    suggestion: suggestion.to_string(),
                });
            }
            return Err(PlatformError::Malformed {
                text: written.to_owned(),
            });
        }
        let (os, architecture, variant) = (parts[0], parts[1], parts.get(2).copied());

        if !KNOWN_OSES.contains(&os) {
            let suggestion = closest(os, KNOWN_OSES.iter().copied()).map(|os| {
                let rest = &lower[lower.find('/').unwrap_or(0)..];
                format!("{os}{rest}")
            });
            return Err(PlatformError::UnknownOs {
                text: written.to_owned(),
                os: os.to_owned(),
                suggestion,
            });
        }

        let normalised = normalise_architecture(architecture, variant);
        if !KNOWN_ARCHITECTURES.contains(&normalised.architecture.as_str()) {
            let suggestion = closest(architecture, architecture_names()).map(|name| {
                let fixed = normalise_architecture(name, variant);
                Platform {
                    os: os.to_owned(),
                    architecture: fixed.architecture,
                    variant: fixed.variant,
                }
                .to_string()
            });
            return Err(PlatformError::UnknownArchitecture {
                text: written.to_owned(),
                architecture: architecture.to_owned(),
                suggestion,
            });
        }

        if let Some(variant) = &normalised.variant {
            let valid = match known_variants(&normalised.architecture) {
                Some(known) => known.contains(&variant.as_str()),
                None => variant
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.'),
            };
            if !valid {
                return Err(PlatformError::UnknownVariant {
                    text: written.to_owned(),
                    architecture: normalised.architecture.clone(),
                    variant: variant.clone(),
                    known: known_variants(&normalised.architecture).unwrap_or(&[]),
                });
            }
        }

        let platform = Platform {
            os: os.to_owned(),
            architecture: normalised.architecture,
            variant: normalised.variant,
        };
        let note = normalised
            .alias
            .then(|| format!("`{written}` read as `{platform}`"));
        Ok(Parsed { platform, note })
    }

    /// A platform from an image config's or engine's own fields, normalised
    /// like [`Platform::parse`]; unknown names are kept (lowercased).
    pub fn from_parts(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let normalised = normalise_architecture(architecture, variant);
        Platform {
            os: os.to_ascii_lowercase(),
            architecture: normalised.architecture,
            variant: normalised.variant,
        }
    }

    /// The platform of an engine that reports `machine` the way `uname -m`
    /// does (`x86_64`, `aarch64`, `armv7l`, `i686` ...) or as a GOARCH name.
    pub fn from_uname(os: &str, machine: &str) -> Option<Platform> {
        let machine = machine.trim().to_ascii_lowercase();
        let (architecture, variant) = match machine.as_str() {
            "x86_64" | "x86-64" | "amd64" | "x64" => ("amd64", None),
            "i386" | "i486" | "i586" | "i686" | "x86" | "386" => ("386", None),
            "aarch64" | "arm64" => ("arm64", None),
            "armv7l" | "armv7" | "armhf" => ("arm", Some("v7")),
            "armv6l" | "armv6" | "armel" => ("arm", Some("v6")),
            "armv5tel" | "armv5tejl" | "armv5l" => ("arm", Some("v5")),
            "ppc64le" | "ppc64el" => ("ppc64le", None),
            "loongarch64" | "loong64" => ("loong64", None),
            other if KNOWN_ARCHITECTURES.contains(&other) && other != "arm" => (other, None),
            _ => return None,
        };
        let os = match os.trim() {
            "" => "linux".to_owned(),
            os => os.to_ascii_lowercase(),
        };
        Some(Platform {
            os,
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        })
    }

    /// The name of the binfmt_misc QEMU handler that runs this platform's
    /// binaries (`qemu-aarch64` for `linux/arm64`); `None` when QEMU user
    /// emulation does not apply.
    pub fn qemu_handler(&self) -> Option<&'static str> {
        if self.os != "linux" {
            return None;
        }
        Some(match self.architecture.as_str() {
            "amd64" => "qemu-x86_64",
            "386" => "qemu-i386",
            "arm64" => "qemu-aarch64",
            "arm" => "qemu-arm",
            "ppc64le" => "qemu-ppc64le",
            "ppc64" => "qemu-ppc64",
            "s390x" => "qemu-s390x",
            "riscv64" => "qemu-riscv64",
            "mips64le" => "qemu-mips64el",
            "mips64" => "qemu-mips64",
            "mips" => "qemu-mips",
            "mipsle" => "qemu-mipsel",
            "loong64" => "qemu-loongarch64",
            _ => return None,
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(formatter, "/{variant}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(text: &str) -> Result<Platform, PlatformError> {
        Platform::parse(text).map(|parsed| parsed.platform)
    }
}

impl serde::Serialize for Platform {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Platform {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Platform, D::Error> {
        let text = String::deserialize(deserializer)?;
        Platform::parse(&text)
            .map(|parsed| parsed.platform)
            .map_err(|error| serde::de::Error::custom(format!("{error}; {}", error.hint())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform::new(os, architecture, variant)
    }

    #[test]
    fn parses_and_normalises() {
        let cases: &[(&str, Platform, Option<&str>)] = &[
            ("linux/amd64", platform("linux", "amd64", None), None),
            ("linux/arm64", platform("linux", "arm64", None), None),
            ("linux/arm64/v8", platform("linux", "arm64", None), None),
            (
                "linux/arm64/v9",
                platform("linux", "arm64", Some("v9")),
                None,
            ),
            ("linux/arm", platform("linux", "arm", Some("v7")), None),
            ("linux/arm/7", platform("linux", "arm", Some("v7")), None),
            ("linux/arm/v6", platform("linux", "arm", Some("v6")), None),
            ("linux/amd64/v1", platform("linux", "amd64", None), None),
            (
                "linux/amd64/v3",
                platform("linux", "amd64", Some("v3")),
                None,
            ),
            ("  Linux/AMD64 ", platform("linux", "amd64", None), None),
            ("linux/ppc64le", platform("linux", "ppc64le", None), None),
            ("linux/s390x", platform("linux", "s390x", None), None),
            ("linux/riscv64", platform("linux", "riscv64", None), None),
            ("windows/amd64", platform("windows", "amd64", None), None),
            (
                "linux/aarch64",
                platform("linux", "arm64", None),
                Some("`linux/aarch64` read as `linux/arm64`"),
            ),
            (
                "linux/x86_64",
                platform("linux", "amd64", None),
                Some("`linux/x86_64` read as `linux/amd64`"),
            ),
            (
                "linux/x86-64",
                platform("linux", "amd64", None),
                Some("`linux/x86-64` read as `linux/amd64`"),
            ),
            (
                "linux/ppc64el",
                platform("linux", "ppc64le", None),
                Some("`linux/ppc64el` read as `linux/ppc64le`"),
            ),
            (
                "linux/i386",
                platform("linux", "386", None),
                Some("`linux/i386` read as `linux/386`"),
            ),
            (
                "linux/i686",
                platform("linux", "386", None),
                Some("`linux/i686` read as `linux/386`"),
            ),
            (
                "linux/armhf",
                platform("linux", "arm", Some("v7")),
                Some("`linux/armhf` read as `linux/arm/v7`"),
            ),
            (
                "linux/armel",
                platform("linux", "arm", Some("v6")),
                Some("`linux/armel` read as `linux/arm/v6`"),
            ),
        ];
        for (text, expected, note) in cases {
            let parsed = Platform::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"));
            assert_eq!(&parsed.platform, expected, "{text}");
            assert_eq!(parsed.note.as_deref(), *note, "{text}");
        }
    }

    #[test]
    fn refuses_mistakes_with_hints() {
        let cases = [
            ("", "a platform is empty", "os/arch[/variant]"),
            ("linux/", "`linux/` is not a platform", "os/arch[/variant]"),
            (
                "linux/arm/v7/x",
                "`linux/arm/v7/x` is not a platform",
                "os/arch",
            ),
            ("nonsense", "`nonsense` is not a platform", "os/arch"),
            (
                "arm64",
                "platform `arm64` names no operating system",
                "did you mean `linux/arm64`?",
            ),
            (
                "linus/amd64",
                "unknown operating system `linus` in platform `linus/amd64`",
                "did you mean `linux/amd64`?",
            ),
            (
                "plan10/amd64",
                "unknown operating system `plan10`",
                "did you mean `plan9/amd64`?",
            ),
            (
                "beos/amd64",
                "unknown operating system `beos`",
                "known operating systems: linux, windows",
            ),
            (
                "linux/amd46",
                "unknown architecture `amd46` in platform `linux/amd46`",
                "did you mean `linux/amd64`?",
            ),
            (
                "linux/aarch46",
                "unknown architecture `aarch46`",
                "did you mean `linux/arm64`?",
            ),
            (
                "linux/pp64le",
                "unknown architecture `pp64le`",
                "did you mean `linux/ppc64le`?",
            ),
            (
                "linux/sparc",
                "unknown architecture `sparc`",
                "known architectures: amd64, 386, arm64",
            ),
            (
                "linux/arm/v9",
                "unknown variant `v9` of arm in platform `linux/arm/v9`",
                "known variants: v5, v6, v7, v8",
            ),
            (
                "linux/amd64/v5",
                "unknown variant `v5` of amd64",
                "known variants: v2, v3, v4",
            ),
            (
                "linux/riscv64/rva+",
                "unknown variant `rva+` of riscv64",
                "lowercase letters",
            ),
        ];
        for (text, message, hint) in cases {
            let error = Platform::parse(text).expect_err(text);
            assert!(
                error.to_string().contains(message),
                "{text}: {error} lacks {message}"
            );
            assert!(
                error.hint().contains(hint),
                "{text}: {} lacks {hint}",
                error.hint()
            );
        }
    }

    #[test]
    fn displays_and_round_trips() {
        for text in [
            "linux/amd64",
            "linux/arm/v7",
            "linux/arm64/v9",
            "windows/amd64",
        ] {
            let platform: Platform = text.parse().unwrap();
            assert_eq!(platform.to_string(), text);
        }
    }

    #[test]
    fn from_parts_normalises_image_configs() {
        let cases = [
            (("linux", "arm64", Some("v8")), "linux/arm64"),
            (("linux", "arm64", Some("")), "linux/arm64"),
            (("linux", "arm", None), "linux/arm/v7"),
            (("linux", "arm", Some("v6")), "linux/arm/v6"),
            (("Linux", "x86_64", None), "linux/amd64"),
            (("linux", "sparc64", None), "linux/sparc64"),
        ];
        for ((os, architecture, variant), expected) in cases {
            assert_eq!(
                Platform::from_parts(os, architecture, variant).to_string(),
                expected
            );
        }
    }

    #[test]
    fn from_uname_machines() {
        let cases = [
            ("x86_64", Some("linux/amd64")),
            ("amd64", Some("linux/amd64")),
            ("aarch64", Some("linux/arm64")),
            ("arm64", Some("linux/arm64")),
            ("armv7l", Some("linux/arm/v7")),
            ("armv6l", Some("linux/arm/v6")),
            ("i686", Some("linux/386")),
            ("ppc64le", Some("linux/ppc64le")),
            ("s390x", Some("linux/s390x")),
            ("riscv64", Some("linux/riscv64")),
            ("loongarch64", Some("linux/loong64")),
            ("sparc64", None),
            ("", None),
        ];
        for (machine, expected) in cases {
            assert_eq!(
                Platform::from_uname("linux", machine)
                    .map(|platform| platform.to_string())
                    .as_deref(),
                expected,
                "{machine}"
            );
        }
    }

    #[test]
    fn qemu_handlers() {
        let cases = [
            ("linux/arm64", Some("qemu-aarch64")),
            ("linux/ppc64le", Some("qemu-ppc64le")),
            ("linux/s390x", Some("qemu-s390x")),
            ("linux/arm/v7", Some("qemu-arm")),
            ("linux/arm/v6", Some("qemu-arm")),
            ("linux/riscv64", Some("qemu-riscv64")),
            ("linux/386", Some("qemu-i386")),
            ("linux/amd64", Some("qemu-x86_64")),
            ("windows/amd64", None),
        ];
        for (text, expected) in cases {
            let platform: Platform = text.parse().unwrap();
            assert_eq!(platform.qemu_handler(), expected, "{text}");
        }
    }
}
