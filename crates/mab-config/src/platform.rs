//! Platforms (`os/arch[/variant]`), normalised the way containerd does, so
//! that `linux/arm64/v8`, `linux/aarch64` and `linux/arm64` are one platform.
//!
//! Everything mab knows about an architecture is in one table,
//! [`ARCHITECTURES`]: its GOARCH name, its other spellings, the variants it
//! accepts, which variants an engine of that architecture runs itself, and
//! the QEMU handler that runs its programs on another architecture. Parsing,
//! validation, the `uname -m` mapping, [`Platform::qemu_handler`] and
//! [`Platform::runs_natively_on`] (and so the planner) all read that table.

use std::fmt;
use std::str::FromStr;

use object::elf::{
    DataEncoding, FileClass, Machine, ELFCLASS32, ELFCLASS64, ELFDATA2LSB, ELFDATA2MSB, EM_386,
    EM_AARCH64, EM_ARM, EM_LOONGARCH, EM_MIPS, EM_PPC64, EM_RISCV, EM_S390, EM_X86_64,
};

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

/// Which variants of its own architecture an engine runs without emulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NativeVariants {
    /// Every variant. BuildKit runs the processes of its own architecture
    /// directly whatever the variant (`util/archutil`, and
    /// `solver/llbsolver/ops/exec_binfmt.go`: it never emulates its own
    /// architecture): an amd64 engine runs `linux/amd64/v3`, an arm64 engine
    /// `linux/arm64/v8.2`. A level the CPU lacks fails in the `RUN` step
    /// that needs it, with BuildKit's own message.
    All,
    /// The engine's own variant and the lower ones (an `arm/v7` engine runs
    /// `arm/v6` and `arm/v5`), as containerd's platform matcher orders them
    /// (`platforms.Only`).
    UpToOwn,
}

/// An architecture mab accepts, and everything mab derives from it.
#[derive(Debug)]
pub struct Architecture {
    /// The GOARCH name, as OCI image configs spell it (`arm64`).
    pub name: &'static str,
    /// Other spellings read as this architecture (`uname -m`, Debian and
    /// GNU names), each with the variant it implies (`armhf` is `arm/v7`).
    pub aliases: &'static [(&'static str, Option<&'static str>)],
    /// Every variant accepted, lowest first; empty when the architecture
    /// has none (then a variant is an error).
    pub variants: &'static [&'static str],
    /// The variant meant when none is written (containerd: `v7` for arm,
    /// `v8` for arm64, `v1` for amd64).
    pub default_variant: Option<&'static str>,
    /// Whether a normalised platform spells the default variant out:
    /// containerd writes `linux/arm/v7` but `linux/arm64` and `linux/amd64`.
    pub shows_default: bool,
    /// Which variants of this architecture its engines run natively.
    pub native_variants: NativeVariants,
    /// Other architectures an engine of this one runs natively (PRODUCT.md:
    /// amd64 runs 386).
    pub also_runs: &'static [&'static str],
    /// The binfmt_misc entry under `/proc/sys/fs/binfmt_misc` that runs its
    /// programs on another architecture, as Debian's qemu-user-static
    /// registers it (`/usr/lib/binfmt.d/qemu-*.conf`); `None` when QEMU user
    /// emulation has none.
    pub qemu_handler: Option<&'static str>,
    /// What the ELF executables and shared objects of this architecture
    /// say of themselves; `None` where programs are not ELF (wasm).
    pub elf: Option<ElfTarget>,
    /// The 32-bit architecture whose objects a 64-bit one may also hold
    /// (i386 in amd64 images, 32-bit ARM in arm64 ones: multilib and
    /// compatibility libraries), to be warned about rather than refused.
    pub elf_compat: Option<ElfTarget>,
}

impl Architecture {
    /// An architecture without variants whose engines run only itself,
    /// whose programs are ELF objects for `elf`.
    const fn plain(
        name: &'static str,
        aliases: &'static [(&'static str, Option<&'static str>)],
        qemu_handler: Option<&'static str>,
        elf: Option<ElfTarget>,
    ) -> Architecture {
        Architecture {
            name,
            aliases,
            variants: &[],
            default_variant: None,
            shows_default: false,
            native_variants: NativeVariants::All,
            also_runs: &[],
            qemu_handler,
            elf,
            elf_compat: None,
        }
    }

    /// The architecture called `name` or one of its aliases (any case),
    /// with the variant the alias implies.
    pub fn find(name: &str) -> Option<(&'static Architecture, Option<&'static str>)> {
        let name = name.to_ascii_lowercase();
        ARCHITECTURES.iter().find_map(|architecture| {
            if architecture.name == name {
                return Some((architecture, None));
            }
            architecture
                .aliases
                .iter()
                .find(|(alias, _)| *alias == name)
                .map(|(_, variant)| (architecture, *variant))
        })
    }

    /// Every platform of this architecture on `os`, one per accepted variant
    /// (normalised, so amd64's `v1` is `linux/amd64`).
    pub fn platforms(&'static self, os: &str) -> Vec<Platform> {
        if self.variants.is_empty() {
            return vec![Platform::known(os, self, None)];
        }
        self.variants
            .iter()
            .map(|variant| Platform::known(os, self, Some(variant)))
            .collect()
    }

    /// The platform on `os` at the default variant (`linux/arm/v7`, `linux/arm64`).
    pub fn default_platform(&'static self, os: &str) -> Platform {
        Platform::known(os, self, self.default_variant)
    }

    /// The variant as containerd normalises it: a missing `v` added when
    /// that names a known variant (`7` is `v7`), a `.0` dropped (`v8.0` is
    /// `v8`), the default filled in or left out as [`shows_default`] says.
    /// Unknown variants are kept, lowercased, for the caller to refuse.
    ///
    /// [`shows_default`]: Architecture::shows_default
    fn normalise_variant(&self, variant: Option<&str>) -> Option<String> {
        let variant = variant
            .map(str::to_ascii_lowercase)
            .filter(|variant| !variant.is_empty())
            .map(|variant| {
                let short = variant.strip_suffix(".0").unwrap_or(&variant);
                let spellings = [
                    variant.clone(),
                    format!("v{variant}"),
                    short.to_owned(),
                    format!("v{short}"),
                ];
                spellings
                    .into_iter()
                    .find(|spelling| self.variants.contains(&spelling.as_str()))
                    .unwrap_or(variant)
            });
        match variant {
            None if self.shows_default => self.default_variant.map(str::to_owned),
            Some(variant)
                if !self.shows_default && Some(variant.as_str()) == self.default_variant =>
            {
                None
            }
            other => other,
        }
    }
}

/// What an ELF object says of the machine it is for, in its header
/// (System V gABI, "ELF Header"): `e_ident[EI_CLASS]` (32- or 64-bit),
/// `e_ident[EI_DATA]` (byte order) and `e_machine`. An executable or
/// shared object fits an architecture when all three equal that
/// architecture's ([`Architecture::elf`]); variants (arm v6 or v7) are not
/// told apart by these fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElfTarget {
    /// `ELFCLASS32` or `ELFCLASS64`.
    pub class: FileClass,
    /// `ELFDATA2LSB` (little-endian) or `ELFDATA2MSB` (big-endian).
    pub data: DataEncoding,
    /// `e_machine` (`EM_X86_64`, `EM_AARCH64`, ...).
    pub machine: Machine,
}

/// The CPU machines of [`ARCHITECTURES`], each by the name its vendor's
/// architecture manual gives the instruction set, without a bit width of
/// its own (the class says it): `AArch64` (Arm), `PowerPC64` (the 64-bit
/// PowerPC ELF ABI), `S/390` (IBM, `EM_S390` holds s390 and s390x).
const ELF_MACHINE_NAMES: &[(Machine, &str)] = &[
    (EM_X86_64, "x86-64"),
    (EM_386, "Intel 80386"),
    (EM_AARCH64, "AArch64"),
    (EM_ARM, "ARM"),
    (EM_PPC64, "PowerPC64"),
    (EM_S390, "S/390"),
    (EM_RISCV, "RISC-V"),
    (EM_MIPS, "MIPS"),
    (EM_LOONGARCH, "LoongArch"),
];

impl ElfTarget {
    const fn new(class: FileClass, data: DataEncoding, machine: Machine) -> ElfTarget {
        ElfTarget {
            class,
            data,
            machine,
        }
    }

    /// Whether `machine` is the CPU of an architecture mab accepts (an
    /// object for another machine, such as BPF or a GPU, is not a
    /// program of any platform).
    pub fn is_cpu(machine: Machine) -> bool {
        ELF_MACHINE_NAMES.iter().any(|(known, _)| *known == machine)
    }
}

/// Class, byte order and machine, in `file(1)`'s order with the names of
/// [`ELF_MACHINE_NAMES`]: `64-bit LSB x86-64`, `64-bit LSB AArch64`,
/// `64-bit LSB PowerPC64`, `32-bit MSB MIPS`; another machine by its
/// number (`64-bit LSB machine 247`).
impl std::fmt::Display for ElfTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bits = match self.class {
            ELFCLASS32 => "32-bit",
            ELFCLASS64 => "64-bit",
            _ => "unknown-class",
        };
        let order = match self.data {
            ELFDATA2LSB => "LSB",
            ELFDATA2MSB => "MSB",
            _ => "unknown-order",
        };
        match ELF_MACHINE_NAMES
            .iter()
            .find(|(known, _)| *known == self.machine)
        {
            Some((_, name)) => write!(f, "{bits} {order} {name}"),
            None => write!(f, "{bits} {order} machine {}", self.machine.0),
        }
    }
}

/// The operating systems of [`KNOWN_OSES`] whose programs are ELF objects
/// (the others use PE, Mach-O, XCOFF or wasm).
pub const ELF_OSES: &[&str] = &[
    "linux",
    "android",
    "freebsd",
    "netbsd",
    "openbsd",
    "dragonfly",
    "illumos",
    "solaris",
];

/// Every architecture mab accepts, in the order error messages list them.
pub const ARCHITECTURES: &[Architecture] = &[
    Architecture {
        name: "amd64",
        aliases: &[("x86_64", None), ("x86-64", None), ("x64", None)],
        variants: &["v1", "v2", "v3", "v4"],
        default_variant: Some("v1"),
        shows_default: false,
        native_variants: NativeVariants::All,
        also_runs: &["386"],
        qemu_handler: Some("qemu-x86_64"),
        elf: Some(ElfTarget::new(ELFCLASS64, ELFDATA2LSB, EM_X86_64)),
        elf_compat: Some(ElfTarget::new(ELFCLASS32, ELFDATA2LSB, EM_386)),
    },
    Architecture::plain(
        "386",
        &[
            ("i386", None),
            ("i486", None),
            ("i586", None),
            ("i686", None),
            ("x86", None),
        ],
        Some("qemu-i386"),
        Some(ElfTarget::new(ELFCLASS32, ELFDATA2LSB, EM_386)),
    ),
    Architecture {
        name: "arm64",
        aliases: &[("aarch64", None)],
        variants: &[
            "v8", "v8.1", "v8.2", "v8.3", "v8.4", "v8.5", "v8.6", "v8.7", "v8.8", "v8.9", "v9",
            "v9.1", "v9.2", "v9.3", "v9.4", "v9.5",
        ],
        default_variant: Some("v8"),
        shows_default: false,
        native_variants: NativeVariants::All,
        also_runs: &[],
        qemu_handler: Some("qemu-aarch64"),
        elf: Some(ElfTarget::new(ELFCLASS64, ELFDATA2LSB, EM_AARCH64)),
        elf_compat: Some(ElfTarget::new(ELFCLASS32, ELFDATA2LSB, EM_ARM)),
    },
    Architecture {
        name: "arm",
        aliases: &[
            ("armhf", Some("v7")),
            ("armel", Some("v6")),
            ("armv8l", Some("v8")),
            ("armv7", Some("v7")),
            ("armv7l", Some("v7")),
            ("armv6", Some("v6")),
            ("armv6l", Some("v6")),
            ("armv5", Some("v5")),
            ("armv5l", Some("v5")),
            ("armv5tel", Some("v5")),
            ("armv5tejl", Some("v5")),
        ],
        variants: &["v5", "v6", "v7", "v8"],
        default_variant: Some("v7"),
        shows_default: true,
        native_variants: NativeVariants::UpToOwn,
        also_runs: &[],
        // Debian's qemu-arm matches every 32-bit little-endian ARM ELF file,
        // whatever the variant.
        qemu_handler: Some("qemu-arm"),
        elf: Some(ElfTarget::new(ELFCLASS32, ELFDATA2LSB, EM_ARM)),
        elf_compat: None,
    },
    Architecture::plain(
        "ppc64le",
        &[("ppc64el", None)],
        Some("qemu-ppc64le"),
        Some(ElfTarget::new(ELFCLASS64, ELFDATA2LSB, EM_PPC64)),
    ),
    Architecture::plain(
        "ppc64",
        &[],
        Some("qemu-ppc64"),
        Some(ElfTarget::new(ELFCLASS64, ELFDATA2MSB, EM_PPC64)),
    ),
    Architecture::plain(
        "s390x",
        &[],
        Some("qemu-s390x"),
        Some(ElfTarget::new(ELFCLASS64, ELFDATA2MSB, EM_S390)),
    ),
    Architecture::plain(
        "riscv64",
        &[],
        Some("qemu-riscv64"),
        Some(ElfTarget::new(ELFCLASS64, ELFDATA2LSB, EM_RISCV)),
    ),
    Architecture::plain(
        "mips64le",
        &[("mips64el", None)],
        Some("qemu-mips64el"),
        Some(ElfTarget::new(ELFCLASS64, ELFDATA2LSB, EM_MIPS)),
    ),
    Architecture::plain(
        "mips64",
        &[],
        Some("qemu-mips64"),
        Some(ElfTarget::new(ELFCLASS64, ELFDATA2MSB, EM_MIPS)),
    ),
    Architecture::plain(
        "mips",
        &[],
        Some("qemu-mips"),
        Some(ElfTarget::new(ELFCLASS32, ELFDATA2MSB, EM_MIPS)),
    ),
    Architecture::plain(
        "mipsle",
        &[("mipsel", None)],
        Some("qemu-mipsel"),
        Some(ElfTarget::new(ELFCLASS32, ELFDATA2LSB, EM_MIPS)),
    ),
    Architecture::plain(
        "loong64",
        &[("loongarch64", None)],
        Some("qemu-loongarch64"),
        Some(ElfTarget::new(ELFCLASS64, ELFDATA2LSB, EM_LOONGARCH)),
    ),
    Architecture::plain("wasm", &[], None, None),
];

/// Every spelling of an architecture that [`Platform::parse`] accepts:
/// the GOARCH names first, then the aliases.
fn architecture_names() -> impl Iterator<Item = &'static str> {
    let names = ARCHITECTURES.iter().map(|architecture| architecture.name);
    let aliases = ARCHITECTURES
        .iter()
        .flat_map(|architecture| architecture.aliases.iter().map(|(alias, _)| *alias));
    names.chain(aliases)
}

/// A target platform of an image: `linux/amd64`, `linux/arm/v7`.
///
/// Always normalised (containerd's rules, see [`Architecture`]): the only
/// ways to make one are [`Platform::parse`] (text from `mab.toml` or a
/// flag), [`Platform::from_parts`] (an image config's or engine's fields)
/// and [`Platform::from_uname`] (an engine's machine name), so two values
/// for the same platform are equal. `Display` writes `os/arch[/variant]`,
/// the form Docker's `platform` parameters and mab's output use.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

/// The result of [`Platform::parse`]: the platform, and a note when the text
/// used another name for it (`linux/aarch64` read as `linux/arm64`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The platform, normalised (containerd's rules, see [`Architecture`]).
    pub platform: Platform,
    /// `` `linux/aarch64` read as `linux/arm64` `` when the text named the
    /// architecture by one of its aliases (`uname -m`, Debian or GNU
    /// names), for the caller to show; `None` when it used the GOARCH name.
    pub note: Option<String>,
}

/// Why a platform string was refused. Each case's [`PlatformError::hint`]
/// says what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// Nothing but blanks was written.
    #[error("a platform is empty")]
    Empty,
    /// Not `os/arch[/variant]`: an empty part, more than three parts, or a
    /// single word that names no architecture.
    #[error("`{text}` is not a platform")]
    Malformed {
        /// The text as written (trimmed).
        text: String,
    },
    /// A known architecture alone (`arm64`), without its `os/`.
    #[error("platform `{text}` names no operating system")]
    MissingOs {
        /// The text as written (trimmed).
        text: String,
        /// The platform on linux (`linux/arm64`), for `did you mean`.
        suggestion: String,
    },
    /// An operating system not in [`KNOWN_OSES`].
    #[error("unknown operating system `{os}` in platform `{text}`")]
    UnknownOs {
        /// The text as written (trimmed).
        text: String,
        /// The operating system part, lowercased.
        os: String,
        /// The text with the closest known operating system, when one is close.
        suggestion: Option<String>,
    },
    /// An architecture that is no name or alias in [`ARCHITECTURES`].
    #[error("unknown architecture `{architecture}` in platform `{text}`")]
    UnknownArchitecture {
        /// The text as written (trimmed).
        text: String,
        /// The architecture part, lowercased.
        architecture: String,
        /// The platform with the closest known architecture, when one is close.
        suggestion: Option<String>,
    },
    /// A variant the architecture's row of [`ARCHITECTURES`] does not list.
    #[error("unknown variant `{variant}` of {architecture} in platform `{text}`")]
    UnknownVariant {
        /// The text as written (trimmed).
        text: String,
        /// The platform without the variant (`linux/riscv64`).
        without: String,
        /// The architecture's GOARCH name.
        architecture: String,
        /// The variant, lowercased and normalised as far as it could be.
        variant: String,
        /// The variants the architecture accepts; empty when it has none.
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
            } => {
                let names: Vec<&str> = ARCHITECTURES.iter().map(|known| known.name).collect();
                format!("known architectures: {}", names.join(", "))
            }
            PlatformError::UnknownVariant {
                known: [],
                architecture,
                without,
                ..
            } => format!("{architecture} has no variants: write `{without}`"),
            PlatformError::UnknownVariant { known, .. } => {
                format!("known variants: {}", known.join(", "))
            }
        }
    }
}

impl Platform {
    /// A platform of a known architecture, its variant normalised.
    fn known(os: &str, architecture: &Architecture, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_ascii_lowercase(),
            architecture: architecture.name.to_owned(),
            variant: architecture.normalise_variant(variant),
        }
    }

    /// Parse `os/arch[/variant]` and normalise it like containerd: `arm64/v8`
    /// is `arm64`, `arm` is `arm/v7`, `arm/7` is `arm/v7`, and the aliases
    /// of [`ARCHITECTURES`] (`aarch64`, `x86_64`, `ppc64el`, `i686`, `armhf`,
    /// `armv5tel` ...) are read as the GOARCH names, with a note saying so.
    /// Only the variants the table lists are accepted.
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
        if let [architecture] = parts[..] {
            return Err(match Architecture::find(architecture) {
                Some((known, implied)) => PlatformError::MissingOs {
                    text: written.to_owned(),
                    suggestion: Platform::known("linux", known, implied).to_string(),
                },
                None => PlatformError::Malformed {
                    text: written.to_owned(),
                },
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

        let Some((known, implied)) = Architecture::find(architecture) else {
            let suggestion = closest(architecture, architecture_names())
                .and_then(Architecture::find)
                .map(|(known, implied)| {
                    Platform::known(os, known, variant.or(implied)).to_string()
                });
            return Err(PlatformError::UnknownArchitecture {
                text: written.to_owned(),
                architecture: architecture.to_owned(),
                suggestion,
            });
        };

        let platform = Platform::known(os, known, variant.or(implied));
        if let Some(variant) = &platform.variant {
            if !known.variants.contains(&variant.as_str()) {
                return Err(PlatformError::UnknownVariant {
                    text: written.to_owned(),
                    without: format!("{os}/{}", known.name),
                    architecture: known.name.to_owned(),
                    variant: variant.clone(),
                    known: known.variants,
                });
            }
        }
        let note =
            (architecture != known.name).then(|| format!("`{written}` read as `{platform}`"));
        Ok(Parsed { platform, note })
    }

    /// A platform from an image config's or engine's own fields, normalised
    /// like [`Platform::parse`]; unknown names are kept (lowercased), so
    /// that a config naming an architecture mab does not know still
    /// compares unequal to every requested platform.
    pub fn from_parts(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        match Architecture::find(architecture) {
            Some((known, implied)) => {
                let variant = variant.filter(|variant| !variant.is_empty()).or(implied);
                Platform::known(os, known, variant)
            }
            None => Platform {
                os: os.to_ascii_lowercase(),
                architecture: architecture.to_ascii_lowercase(),
                variant: variant
                    .filter(|variant| !variant.is_empty())
                    .map(str::to_ascii_lowercase),
            },
        }
    }

    /// The platform of an engine that reports `machine` the way `uname -m`
    /// does (`x86_64`, `aarch64`, `armv7l`, `i686` ...) or as a GOARCH name,
    /// through the names and aliases of [`ARCHITECTURES`]; `os` empty means
    /// linux. `None` for a machine the table does not know.
    pub fn from_uname(os: &str, machine: &str) -> Option<Platform> {
        let (known, implied) = Architecture::find(machine.trim())?;
        let os = match os.trim() {
            "" => "linux",
            os => os,
        };
        Some(Platform::known(os, known, implied))
    }

    /// The operating system (GOOS name): `linux`.
    pub fn os(&self) -> &str {
        &self.os
    }

    /// The architecture (GOARCH name): `arm64`.
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// The variant (`v7`), `None` when the normalised platform has none.
    pub fn variant(&self) -> Option<&str> {
        self.variant.as_deref()
    }

    /// The row of [`ARCHITECTURES`] for this platform's architecture;
    /// `None` for an unknown one read by [`Platform::from_parts`].
    pub fn architecture_entry(&self) -> Option<&'static Architecture> {
        ARCHITECTURES
            .iter()
            .find(|known| known.name == self.architecture)
    }

    /// What the ELF executables and shared objects of this platform say of
    /// themselves ([`Architecture::elf`]); `None` where its programs are not
    /// ELF objects (an OS other than [`ELF_OSES`], or wasm).
    pub fn elf(&self) -> Option<ElfTarget> {
        self.elf_os()?.elf
    }

    /// The 32-bit ELF objects this platform's images may also hold
    /// ([`Architecture::elf_compat`]: i386 in amd64, 32-bit ARM in arm64).
    pub fn elf_compat(&self) -> Option<ElfTarget> {
        self.elf_os()?.elf_compat
    }

    /// The architecture's entry, when this platform's OS uses ELF.
    fn elf_os(&self) -> Option<&'static Architecture> {
        ELF_OSES
            .contains(&self.os.as_str())
            .then(|| self.architecture_entry())
            .flatten()
    }

    /// The name of the binfmt_misc QEMU handler that runs this platform's
    /// binaries (`qemu-aarch64` for `linux/arm64`, `qemu-arm` for every arm
    /// variant), from [`ARCHITECTURES`]; `None` when QEMU user emulation
    /// does not apply (not linux, or an architecture without a handler).
    pub fn qemu_handler(&self) -> Option<&'static str> {
        if self.os != "linux" {
            return None;
        }
        self.architecture_entry()?.qemu_handler
    }

    /// Whether an engine whose own platform is `engine` runs this platform's
    /// programs directly, without emulation (PRODUCT.md: its own platform,
    /// and amd64 runs 386). Variants of the engine's own architecture follow
    /// the table's [`NativeVariants`]: every variant for amd64 and arm64, the
    /// engine's own and lower ones for arm.
    pub fn runs_natively_on(&self, engine: &Platform) -> bool {
        if self.os != engine.os {
            return false;
        }
        let Some(own) = engine.architecture_entry() else {
            return self == engine;
        };
        if self.architecture != engine.architecture {
            return own.also_runs.contains(&self.architecture.as_str());
        }
        match own.native_variants {
            NativeVariants::All => true,
            NativeVariants::UpToOwn => {
                let rank = |platform: &Platform| {
                    let variant = platform.variant().or(own.default_variant)?;
                    own.variants.iter().position(|known| *known == variant)
                };
                match (rank(self), rank(engine)) {
                    (Some(mine), Some(engines)) => mine <= engines,
                    _ => self == engine,
                }
            }
        }
    }
}

/// `os/arch[/variant]`; width and alignment (`{:<16}`) apply to the whole.
impl fmt::Display for Platform {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match &self.variant {
            Some(variant) => format!("{}/{}/{variant}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        };
        formatter.pad(&text)
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(text: &str) -> Result<Platform, PlatformError> {
        Platform::parse(text).map(|parsed| parsed.platform)
    }
}

/// Serialised as its `Display` string (`"linux/arm/v7"`), as mab writes
/// platforms in JSON output and the metadata file.
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

    /// The target an ELF header says, read with `object` as a verifier
    /// would: the 64-byte header of a 64-bit file, or the start of a 32-bit
    /// one.
    fn target_of(header: &[u8]) -> ElfTarget {
        use object::read::elf::FileHeader;
        use object::Endianness;
        let (class, data) = (FileClass(header[4]), DataEncoding(header[5]));
        let machine = if class == ELFCLASS64 {
            let file = object::elf::FileHeader64::<Endianness>::parse(header).unwrap();
            file.e_machine(file.endian().unwrap())
        } else {
            let file = object::elf::FileHeader32::<Endianness>::parse(header).unwrap();
            file.e_machine(file.endian().unwrap())
        };
        ElfTarget::new(class, data, machine)
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
            .collect()
    }

    /// Real headers: the first 64 bytes of the lab's static busybox for
    /// each architecture it has (`/var/lib/mab-lab/busybox/ARCH`).
    const BUSYBOX_HEADERS: &[(&str, &str)] = &[
        ("linux/amd64", "7f454c4602010103000000000000000002003e0001000000f0eb400000000000400000000000000070381e000000000000000000400038000a0040001b001a00"),
        ("linux/arm64", "7f454c460201010300000000000000000200b700010000008005400000000000400000000000000068261c00000000000000000040003800060040001a001900"),
        ("linux/ppc64le", "7f454c4602010103000000000000000002001500010000002c7f1210000000004000000000000000f8262600000000000200000040003800060040001b001a00"),
        ("linux/s390x", "7f454c4602020103000000000000000000020016000000010000000001004830000000000000004000000000001f4628000000000040003800060040001a0019"),
    ];

    #[test]
    fn real_busybox_headers_fit_their_platform_and_no_other() {
        for (platform, header) in BUSYBOX_HEADERS {
            let found = target_of(&hex(header));
            for other in ARCHITECTURES
                .iter()
                .map(|architecture| architecture.default_platform("linux"))
            {
                assert_eq!(
                    other.elf() == Some(found),
                    other.to_string() == *platform,
                    "{platform}'s busybox ({found}) and {other}"
                );
            }
        }
        assert_eq!(
            target_of(&hex(BUSYBOX_HEADERS[0].1)).to_string(),
            "64-bit LSB x86-64"
        );
    }

    /// Crafted headers: the 32-bit and big-endian architectures the lab has
    /// no busybox for, each fitting its platform only.
    #[test]
    fn crafted_headers_fit_their_platform() {
        // e_ident (class, data), e_type ET_EXEC, e_machine, in the file's
        // byte order; the rest of a 32-bit header left zero.
        let header = |class: u8, data: u8, machine: u16| {
            let mut bytes = vec![0u8; 64];
            bytes[..4].copy_from_slice(b"\x7fELF");
            bytes[4] = class;
            bytes[5] = data;
            bytes[6] = 1;
            let (kind, machine) = if data == 2 {
                (2u16.to_be_bytes(), machine.to_be_bytes())
            } else {
                (2u16.to_le_bytes(), machine.to_le_bytes())
            };
            bytes[16..18].copy_from_slice(&kind);
            bytes[18..20].copy_from_slice(&machine);
            bytes
        };
        let cases = [
            ("linux/386", header(1, 1, 3), "32-bit LSB Intel 80386"),
            ("linux/arm/v7", header(1, 1, 40), "32-bit LSB ARM"),
            ("linux/arm/v6", header(1, 1, 40), "32-bit LSB ARM"),
            ("linux/ppc64", header(2, 2, 21), "64-bit MSB PowerPC64"),
            ("linux/riscv64", header(2, 1, 243), "64-bit LSB RISC-V"),
            ("linux/mips64le", header(2, 1, 8), "64-bit LSB MIPS"),
            ("linux/mips64", header(2, 2, 8), "64-bit MSB MIPS"),
            ("linux/mips", header(1, 2, 8), "32-bit MSB MIPS"),
            ("linux/mipsle", header(1, 1, 8), "32-bit LSB MIPS"),
            ("linux/loong64", header(2, 1, 258), "64-bit LSB LoongArch"),
        ];
        for (platform, header, said) in &cases {
            let platform: Platform = platform.parse().unwrap();
            let found = target_of(header);
            assert_eq!(platform.elf(), Some(found), "{platform}");
            assert_eq!(found.to_string(), *said);
        }
        // Only one architecture per header, variants aside.
        for (_, header, _) in &cases {
            let found = target_of(header);
            let fitting = ARCHITECTURES
                .iter()
                .filter(|architecture| architecture.elf == Some(found))
                .count();
            assert_eq!(fitting, 1, "{found}");
        }
    }

    /// Every row of the table as messages and docs/verify.md name it: the
    /// bit width once, then the byte order and the machine.
    #[test]
    fn every_elf_target_reads_as_docs_verify_names_it() {
        let names: Vec<(&str, String)> = ARCHITECTURES
            .iter()
            .filter_map(|architecture| Some((architecture.name, architecture.elf?.to_string())))
            .collect();
        let expected = [
            ("amd64", "64-bit LSB x86-64"),
            ("386", "32-bit LSB Intel 80386"),
            ("arm64", "64-bit LSB AArch64"),
            ("arm", "32-bit LSB ARM"),
            ("ppc64le", "64-bit LSB PowerPC64"),
            ("ppc64", "64-bit MSB PowerPC64"),
            ("s390x", "64-bit MSB S/390"),
            ("riscv64", "64-bit LSB RISC-V"),
            ("mips64le", "64-bit LSB MIPS"),
            ("mips64", "64-bit MSB MIPS"),
            ("mips", "32-bit MSB MIPS"),
            ("mipsle", "32-bit LSB MIPS"),
            ("loong64", "64-bit LSB LoongArch"),
        ];
        assert_eq!(
            names,
            expected
                .iter()
                .map(|(name, said)| (*name, said.to_string()))
                .collect::<Vec<_>>()
        );
        for (_, said) in &names {
            assert_eq!(said.matches("-bit").count(), 1, "{said}");
        }
    }

    #[test]
    fn every_accepted_platform_has_its_elf_target_or_says_why_not() {
        for architecture in ARCHITECTURES {
            for platform in architecture.platforms("linux") {
                assert_eq!(
                    platform.elf().is_none(),
                    architecture.name == "wasm",
                    "{platform}"
                );
            }
        }
        let amd64: Platform = "linux/amd64".parse().unwrap();
        assert_eq!(
            amd64.elf_compat(),
            "linux/386".parse::<Platform>().unwrap().elf()
        );
        let arm64: Platform = "linux/arm64".parse().unwrap();
        assert_eq!(
            arm64.elf_compat(),
            "linux/arm/v7".parse::<Platform>().unwrap().elf()
        );
        for os in ["windows", "darwin", "aix", "plan9"] {
            let platform: Platform = format!("{os}/amd64").parse().unwrap();
            assert_eq!(platform.elf(), None, "{platform}");
        }
        assert!(ElfTarget::is_cpu(EM_AARCH64));
        assert!(!ElfTarget::is_cpu(object::elf::EM_BPF));
        let other = ElfTarget::new(ELFCLASS64, ELFDATA2LSB, object::elf::EM_BPF);
        assert_eq!(other.to_string(), "64-bit LSB machine 247");
    }

    fn platform(text: &str) -> Platform {
        text.parse()
            .unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    #[test]
    fn parses_and_normalises() {
        // (written, normalised, note)
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("linux/amd64", "linux/amd64", None),
            ("linux/arm64", "linux/arm64", None),
            ("linux/arm64/v8", "linux/arm64", None),
            ("linux/arm64/8", "linux/arm64", None),
            ("linux/arm64/v8.0", "linux/arm64", None),
            ("linux/arm64/v8.2", "linux/arm64/v8.2", None),
            ("linux/arm64/v9", "linux/arm64/v9", None),
            ("linux/arm64/9.0", "linux/arm64/v9", None),
            ("linux/arm", "linux/arm/v7", None),
            ("linux/arm/7", "linux/arm/v7", None),
            ("linux/arm/5", "linux/arm/v5", None),
            ("linux/arm/v6", "linux/arm/v6", None),
            ("linux/arm/v8", "linux/arm/v8", None),
            ("linux/amd64/v1", "linux/amd64", None),
            ("linux/amd64/v3", "linux/amd64/v3", None),
            ("  Linux/AMD64 ", "linux/amd64", None),
            ("linux/ppc64le", "linux/ppc64le", None),
            ("linux/s390x", "linux/s390x", None),
            ("linux/riscv64", "linux/riscv64", None),
            ("linux/mips", "linux/mips", None),
            ("linux/mipsle", "linux/mipsle", None),
            ("windows/amd64", "windows/amd64", None),
            (
                "linux/aarch64",
                "linux/arm64",
                Some("`linux/aarch64` read as `linux/arm64`"),
            ),
            (
                "linux/x86_64",
                "linux/amd64",
                Some("`linux/x86_64` read as `linux/amd64`"),
            ),
            (
                "linux/x86-64",
                "linux/amd64",
                Some("`linux/x86-64` read as `linux/amd64`"),
            ),
            (
                "linux/ppc64el",
                "linux/ppc64le",
                Some("`linux/ppc64el` read as `linux/ppc64le`"),
            ),
            (
                "linux/i386",
                "linux/386",
                Some("`linux/i386` read as `linux/386`"),
            ),
            (
                "linux/i686",
                "linux/386",
                Some("`linux/i686` read as `linux/386`"),
            ),
            (
                "linux/armhf",
                "linux/arm/v7",
                Some("`linux/armhf` read as `linux/arm/v7`"),
            ),
            (
                "linux/armel",
                "linux/arm/v6",
                Some("`linux/armel` read as `linux/arm/v6`"),
            ),
            (
                "linux/armv5tel",
                "linux/arm/v5",
                Some("`linux/armv5tel` read as `linux/arm/v5`"),
            ),
            (
                "linux/mips64el",
                "linux/mips64le",
                Some("`linux/mips64el` read as `linux/mips64le`"),
            ),
            (
                "linux/loongarch64",
                "linux/loong64",
                Some("`linux/loongarch64` read as `linux/loong64`"),
            ),
        ];
        for (text, expected, note) in cases {
            let parsed = Platform::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"));
            assert_eq!(parsed.platform.to_string(), *expected, "{text}");
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
                "armhf",
                "platform `armhf` names no operating system",
                "did you mean `linux/arm/v7`?",
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
                "known architectures: amd64, 386, arm64, arm, ppc64le, ppc64, s390x, riscv64, mips64le, mips64, mips, mipsle, loong64, wasm",
            ),
            (
                "linux/arm/v9",
                "unknown variant `v9` of arm in platform `linux/arm/v9`",
                "known variants: v5, v6, v7, v8",
            ),
            (
                "linux/amd64/v5",
                "unknown variant `v5` of amd64",
                "known variants: v1, v2, v3, v4",
            ),
            (
                "linux/arm64/v7",
                "unknown variant `v7` of arm64",
                "known variants: v8, v8.1",
            ),
            (
                "linux/riscv64/rva22u64",
                "unknown variant `rva22u64` of riscv64",
                "riscv64 has no variants: write `linux/riscv64`",
            ),
            (
                "linux/mips64le/v2",
                "unknown variant `v2` of mips64le",
                "mips64le has no variants: write `linux/mips64le`",
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
            assert_eq!(platform(text).to_string(), text);
        }
        assert_eq!(
            format!("[{:<14}]", platform("linux/arm/v5")),
            "[linux/arm/v5  ]"
        );
    }

    #[test]
    fn every_platform_of_the_table_parses_back_to_itself() {
        let mut count = 0;
        for architecture in ARCHITECTURES {
            for expected in architecture.platforms("linux") {
                let text = expected.to_string();
                assert_eq!(platform(&text), expected, "{text}");
                assert_eq!(
                    expected.architecture_entry().unwrap().name,
                    architecture.name
                );
                count += 1;
            }
        }
        // amd64 4, 386 1, arm64 16, arm 4, and ten without variants.
        assert_eq!(count, 35);
        let defaults: Vec<String> = ARCHITECTURES
            .iter()
            .map(|architecture| architecture.default_platform("linux").to_string())
            .collect();
        assert_eq!(
            defaults[..4],
            ["linux/amd64", "linux/386", "linux/arm64", "linux/arm/v7"]
        );
    }

    #[test]
    fn from_parts_normalises_image_configs() {
        let cases = [
            (("linux", "arm64", Some("v8")), "linux/arm64"),
            (("linux", "arm64", Some("")), "linux/arm64"),
            (("linux", "arm", None), "linux/arm/v7"),
            (("linux", "arm", Some("v5")), "linux/arm/v5"),
            (("linux", "arm", Some("v6")), "linux/arm/v6"),
            (("linux", "amd64", Some("v1")), "linux/amd64"),
            (("Linux", "x86_64", None), "linux/amd64"),
            (("linux", "sparc64", None), "linux/sparc64"),
            (("linux", "sparc64", Some("V9")), "linux/sparc64/v9"),
        ];
        for ((os, architecture, variant), expected) in cases {
            assert_eq!(
                Platform::from_parts(os, architecture, variant).to_string(),
                expected
            );
        }
        assert_eq!(
            Platform::from_parts("linux", "arm", Some("v5")),
            platform("linux/arm/v5")
        );
    }

    #[test]
    fn from_uname_machines() {
        let cases = [
            ("x86_64", Some("linux/amd64")),
            ("amd64", Some("linux/amd64")),
            ("aarch64", Some("linux/arm64")),
            ("arm64", Some("linux/arm64")),
            ("armv8l", Some("linux/arm/v8")),
            ("armv7l", Some("linux/arm/v7")),
            ("armv6l", Some("linux/arm/v6")),
            ("armv5tel", Some("linux/arm/v5")),
            ("i686", Some("linux/386")),
            ("ppc64le", Some("linux/ppc64le")),
            ("ppc64", Some("linux/ppc64")),
            ("s390x", Some("linux/s390x")),
            ("riscv64", Some("linux/riscv64")),
            ("mips", Some("linux/mips")),
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
        // Every platform of the table goes through its architecture's handler.
        for architecture in ARCHITECTURES {
            for platform in architecture.platforms("linux") {
                assert_eq!(
                    platform.qemu_handler(),
                    architecture.qemu_handler,
                    "{platform}"
                );
            }
        }
        let cases = [
            ("linux/amd64", Some("qemu-x86_64")),
            ("linux/amd64/v3", Some("qemu-x86_64")),
            ("linux/386", Some("qemu-i386")),
            ("linux/arm64", Some("qemu-aarch64")),
            ("linux/arm64/v9", Some("qemu-aarch64")),
            ("linux/arm/v5", Some("qemu-arm")),
            ("linux/arm/v6", Some("qemu-arm")),
            ("linux/arm/v7", Some("qemu-arm")),
            ("linux/arm/v8", Some("qemu-arm")),
            ("linux/ppc64le", Some("qemu-ppc64le")),
            ("linux/ppc64", Some("qemu-ppc64")),
            ("linux/s390x", Some("qemu-s390x")),
            ("linux/riscv64", Some("qemu-riscv64")),
            ("linux/mips64le", Some("qemu-mips64el")),
            ("linux/mips64", Some("qemu-mips64")),
            ("linux/mips", Some("qemu-mips")),
            ("linux/mipsle", Some("qemu-mipsel")),
            ("linux/loong64", Some("qemu-loongarch64")),
            ("linux/wasm", None),
            ("windows/amd64", None),
            ("windows/arm64", None),
        ];
        for (text, expected) in cases {
            assert_eq!(platform(text).qemu_handler(), expected, "{text}");
        }
    }

    /// The handler names are the ones Debian's qemu-user-static registers:
    /// the first field of each of its `/usr/lib/binfmt.d/qemu-*.conf`, as
    /// bookworm's package (QEMU 7.2) ships them on amd64, plus the two it
    /// leaves out there because they are amd64's own. Written out here so
    /// that the test does not depend on what this machine has installed.
    #[test]
    fn handler_names_are_debians() {
        const DEBIAN: &[&str] = &[
            "qemu-aarch64",
            "qemu-alpha",
            "qemu-arm",
            "qemu-armeb",
            "qemu-cris",
            "qemu-hexagon",
            "qemu-hppa",
            "qemu-loongarch64",
            "qemu-m68k",
            "qemu-microblaze",
            "qemu-mips",
            "qemu-mips64",
            "qemu-mips64el",
            "qemu-mipsel",
            "qemu-mipsn32",
            "qemu-mipsn32el",
            "qemu-ppc",
            "qemu-ppc64",
            "qemu-ppc64le",
            "qemu-riscv32",
            "qemu-riscv64",
            "qemu-s390x",
            "qemu-sh4",
            "qemu-sh4eb",
            "qemu-sparc",
            "qemu-sparc32plus",
            "qemu-sparc64",
            "qemu-xtensa",
            "qemu-xtensaeb",
            "qemu-x86_64",
            "qemu-i386",
        ];
        for architecture in ARCHITECTURES {
            let platform = architecture.default_platform("linux");
            if let Some(handler) = architecture.qemu_handler {
                assert!(DEBIAN.contains(&handler), "{handler} ({platform})");
            }
        }
    }

    #[test]
    fn what_an_engine_runs_natively() {
        // (engine's own platform, platform, runs natively)
        let cases = [
            ("linux/amd64", "linux/amd64", true),
            ("linux/amd64", "linux/amd64/v2", true),
            ("linux/amd64", "linux/amd64/v4", true),
            ("linux/amd64", "linux/386", true),
            ("linux/amd64", "linux/arm64", false),
            ("linux/amd64", "windows/amd64", false),
            ("linux/386", "linux/amd64", false),
            ("linux/arm64", "linux/arm64", true),
            ("linux/arm64", "linux/arm64/v8.2", true),
            ("linux/arm64", "linux/arm64/v9.5", true),
            ("linux/arm64", "linux/arm/v7", false),
            ("linux/arm/v7", "linux/arm/v7", true),
            ("linux/arm/v7", "linux/arm/v6", true),
            ("linux/arm/v7", "linux/arm/v5", true),
            ("linux/arm/v7", "linux/arm/v8", false),
            ("linux/arm/v5", "linux/arm/v6", false),
            ("linux/ppc64le", "linux/ppc64le", true),
            ("linux/ppc64le", "linux/ppc64", false),
            ("linux/mips64le", "linux/mips64", false),
        ];
        for (engine, wanted, expected) in cases {
            assert_eq!(
                platform(wanted).runs_natively_on(&platform(engine)),
                expected,
                "{wanted} on {engine}"
            );
        }
        let unknown = Platform::from_parts("linux", "sparc64", None);
        assert!(unknown.runs_natively_on(&unknown));
        assert!(!platform("linux/amd64").runs_natively_on(&unknown));
    }
}
