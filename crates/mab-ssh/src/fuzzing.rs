//! The readers of `~/.ssh/config` and `known_hosts` on text, for the fuzz
//! targets in `fuzz/` (feature `fuzzing`, off in the product). Each calls
//! the function the product reads the files with, so what is fuzzed is
//! the one parser of each input.

use std::path::Path;

/// Reads `text` as the ssh config `~/.ssh/config` of a home that does not
/// exist, for `host` as the user wrote it. Returns the options that apply,
/// in their `Debug` form, or the error message (file and line). An
/// `Include` in `text` still reads the files it names.
pub fn ssh_config(text: &str, host: &str) -> Result<String, String> {
    let home = Path::new("/nonexistent-home");
    crate::config::parse(&home.join(".ssh/config"), text, home, host)
        .map(|config| format!("{config:?}"))
        .map_err(|error| format!("{}: {}", error.file.display(), error.message))
}

/// The line numbers (from 1) of the keys the known_hosts text `text`
/// records for `host`:`port`, or the error message of a malformed line.
pub fn known_hosts(text: &str, host: &str, port: u16) -> Result<Vec<usize>, String> {
    crate::known_hosts::recorded_keys(text, host, port)
        .map(|keys| keys.into_iter().map(|(line, _)| line).collect())
}
