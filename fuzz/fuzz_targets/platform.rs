//! The platform parser (`os/arch[/variant]`, flags and `mab.toml`): never
//! panics, its errors and hints render, and a platform it accepts is
//! normalised: written back it reads as itself, without a note, and from
//! its parts (as an image config names it) it is the same platform.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mab_config::Platform;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Platform::parse(text) {
        Ok(parsed) => {
            let platform = parsed.platform;
            let again = Platform::parse(&platform.to_string()).expect("a platform reads back");
            assert_eq!(again.platform, platform);
            assert_eq!(again.note, None, "{platform}");
            let from_parts =
                Platform::from_parts(platform.os(), platform.architecture(), platform.variant());
            assert_eq!(from_parts, platform);
        }
        Err(error) => {
            let _ = (error.to_string(), error.hint());
        }
    }
});
