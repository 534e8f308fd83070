//! The `~/.ssh/config` reader: the input is the host as the user wrote it,
//! a newline, then the config's text. Reading never panics, whatever the
//! lines say. Inputs with `Include` are skipped: it reads files from the
//! machine (a glob such as `/**/*` would walk the whole disk).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (host, text) = input.split_once('\n').unwrap_or((input, ""));
    if text.to_ascii_lowercase().contains("include") {
        return;
    }
    let _ = mab_ssh::fuzzing::ssh_config(text, host);
});
