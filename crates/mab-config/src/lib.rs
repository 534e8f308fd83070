//! mab-config: the files mab reads, as values.
//!
//! - [`host`]: the runner `host`, `local` or `[user@]host[:port]`, the one
//!   parser of it (runners.toml and mab-ssh both use it).
//! - [`platform`]: `os/arch[/variant]` parsing and containerd-style normalisation.
//! - [`project`]: `mab.toml`, the project manifest, and where to find it.
//! - [`runners`]: `runners.toml`, the runner registry, and where to find it.
//! - [`secret`]: build secrets and SSH agents: `--secret`, `--ssh` and
//!   `[image.secrets]` sources (never their values).
//! - [`ConfigError`]: every error names the file, line and column, shows the
//!   offending line and ends with a hint, the way cargo reports TOML errors.
//!
//! An unknown key close to a known one of its table (a likely typo, such as
//! `taget` or `[image.arg]`) is an error, so that a build never runs without
//! the setting meant; other unknown keys come back as warnings, so a newer
//! file still loads.
//!
//! Nothing here does I/O beyond reading the file it is handed and checking
//! whether a candidate path exists while looking files up.

mod document;
mod edit;
mod error;
pub mod host;
pub mod platform;
pub mod project;
pub mod runners;
pub mod secret;
mod suggest;

pub use edit::{add_runner, remove_runner, NewRunner};
pub use error::{io_message, ConfigError, Location};
pub use host::{HostError, HostSpec};
pub use platform::{Parsed, Platform, PlatformError};
pub use project::{
    check_label_key, find_manifest, load_project, parse_project, Binaries, Cache, CacheFrom,
    Expect, Project, SmokeTest, Verify,
};
pub use runners::{
    implicit_runners, load_runners, locate_runners, parse_runners, NetworkMode, Runner, RunnerHost,
    RunnersFile, DEFAULT_ENGINE_SOCKET,
};
