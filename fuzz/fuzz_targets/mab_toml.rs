//! `mab.toml`: the loader's parser and validation, and the rendering of its
//! errors (file:line:col, the offending line, the hint) never panic; each
//! platform it accepts reads back as itself.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mab_config::{parse_project, Platform};

fuzz_target!(|data: &[u8]| {
    // The loader reads the file as UTF-8 and refuses anything else first.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_project(Path::new("/project/mab.toml"), text) {
        Ok(project) => {
            for platform in &project.platforms {
                let again: Platform = platform.to_string().parse().expect("a platform reads back");
                assert_eq!(&again, platform);
            }
        }
        Err(error) => {
            let _ = (error.to_string(), error.message(), error.hint());
        }
    }
});
