//! mab-config: the files mab reads, as values.
//!
//! - [`platform`]: `os/arch[/variant]` parsing and containerd-style normalisation.
//!
//! Nothing here does I/O beyond reading the file it is handed and checking
//! whether a candidate path exists while looking files up.

pub mod platform;
mod suggest;

pub use platform::{Parsed, Platform, PlatformError};
