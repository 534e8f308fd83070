//! `runners.toml`: the loader's parser and validation, and the rendering of
//! its errors never panic; each SSH `host` it accepts is one the SSH side
//! reads too (`HostSpec::parse`, the one parser of a destination), and
//! written back it reads as the same destination.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mab_config::runners::{parse_runners, RunnerHost};
use mab_config::HostSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_runners(Path::new("/home/user/.config/mab/runners.toml"), text) {
        Ok(file) => {
            for runner in &file.runners {
                if let RunnerHost::Ssh(destination) = &runner.host {
                    let spec = HostSpec::parse(destination).expect("an accepted host parses");
                    let again = HostSpec::parse(&spec.to_string()).expect("a host reads back");
                    assert_eq!(again, spec, "{destination}");
                }
            }
        }
        Err(error) => {
            let _ = (error.to_string(), error.message(), error.hint());
        }
    }
});
