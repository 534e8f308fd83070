//! The known_hosts reader: the input is `host port` (or a host alone, port
//! 22), a newline, then the file's text. Reading never panics, and each
//! key it finds is on a line of the text, in order.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (first, text) = input.split_once('\n').unwrap_or((input, ""));
    let (host, port) = match first.split_once(' ') {
        Some((host, port)) => (host, port.parse().unwrap_or(22)),
        None => (first, 22),
    };
    if let Ok(lines) = mab_ssh::fuzzing::known_hosts(text, host, port) {
        let count = text.lines().count();
        assert!(lines.windows(2).all(|pair| pair[0] < pair[1]), "{lines:?}");
        assert!(
            lines.iter().all(|&line| (1..=count).contains(&line)),
            "{lines:?}"
        );
    }
});
