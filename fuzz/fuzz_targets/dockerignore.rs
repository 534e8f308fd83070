//! The `.dockerignore` matcher: the input is the file's text, then a NUL,
//! then paths (one a line) to match. Parsing and matching never panic;
//! with no pattern nothing is excluded, with only `!` exceptions (and no
//! `..`) nothing is excluded either, and the context root is never
//! excluded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mab_context::DockerIgnore;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (patterns, paths) = input.split_once('\0').unwrap_or((input, ""));
    let Ok(ignore) = DockerIgnore::parse(patterns) else {
        return;
    };
    // Whether every pattern is an exception (`!...`): such a file can only
    // re-include, and nothing was excluded before it. A `..` may turn an
    // exception into an exclusion, as in Docker (`!k../../../../c` is the
    // exclusion `c`, see mab-context's
    // `an_exception_cleaned_past_its_bang_is_an_exclusion`), so a file
    // with one does not count.
    let only_exceptions = !patterns.contains("..")
        && patterns
            .strip_prefix('\u{feff}')
            .unwrap_or(patterns)
            .split('\n')
            // As in Docker, only a `#` in the first column starts a comment.
            .filter(|line| !line.starts_with('#'))
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .all(|line| line.starts_with('!'));
    for path in paths.split('\n') {
        let excluded = ignore.is_excluded(path);
        if ignore.is_empty() || only_exceptions {
            assert!(!excluded, "{path:?} excluded by {patterns:?}");
        }
    }
    for root in ["", ".", "/", "./"] {
        assert!(
            !ignore.is_excluded(root),
            "the root excluded by {patterns:?}"
        );
    }
});
