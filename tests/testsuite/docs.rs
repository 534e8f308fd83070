//! Every `toml` block in the README and `docs/` parses as the file it shows,
//! so the docs cannot drift from the code.

use std::path::{Path, PathBuf};

fn documents() -> Vec<PathBuf> {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![top.join("README.md"), top.join("crates/README.md")];
    for entry in std::fs::read_dir(top.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|extension| extension == "md") {
            files.push(path);
        }
    }
    files
}

/// The ```toml blocks of a Markdown text, with the line each starts on.
fn toml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, line) in text.lines().enumerate() {
        match &mut current {
            None if line.trim_start().starts_with("```toml") => {
                current = Some((index + 2, String::new()))
            }
            Some(_) if line.trim_start().starts_with("```") => blocks.push(current.take().unwrap()),
            Some((_, block)) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

#[test]
fn every_toml_block_in_the_docs_parses() {
    let mut checked = 0;
    for document in documents() {
        let text = std::fs::read_to_string(&document).unwrap();
        for (line, block) in toml_blocks(&text) {
            let place = format!("{}:{line}", document.display());
            let path = Path::new("/docs/example.toml");
            if block.contains("[[runner]]") {
                let runners = mab_config::parse_runners(path, &block)
                    .unwrap_or_else(|error| panic!("{place}:\n{error}"));
                assert!(
                    runners.warnings.is_empty(),
                    "{place}: {:?}",
                    runners.warnings
                );
            } else if block.contains("[image]") {
                let project = mab_config::parse_project(path, &block)
                    .unwrap_or_else(|error| panic!("{place}:\n{error}"));
                assert!(
                    project.warnings.is_empty(),
                    "{place}: {:?}",
                    project.warnings
                );
            } else {
                panic!("{place}: a toml block that is neither a mab.toml nor a runners.toml");
            }
            checked += 1;
        }
    }
    assert!(checked >= 3, "found only {checked} toml blocks");
}

#[test]
fn the_top_level_runners_file_and_the_example_parse_cleanly() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let runners = mab_config::load_runners(&top.join("runners.toml")).unwrap();
    assert!(runners.warnings.is_empty(), "{:?}", runners.warnings);
    assert_eq!(runners.runners.len(), 4);
    let project = mab_config::load_project(&top.join("examples/greeter/mab.toml")).unwrap();
    assert!(project.warnings.is_empty(), "{:?}", project.warnings);
    assert_eq!(project.platforms.len(), 3);
}

/// The snapshots of `bad_input` that hold an exit code, by name: the exit
/// code and the first `error:` line of the message (or its first line).
fn bad_input_snapshots() -> std::collections::BTreeMap<String, (String, String)> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/testsuite/snapshots");
    let mut snapshots = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap();
        let Some(name) = file
            .strip_prefix("testsuite__bad_input__")
            .and_then(|name| name.strip_suffix(".snap"))
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        // The body follows insta's header, which ends with its second `---`.
        let body = text.splitn(3, "---\n").nth(2).unwrap_or("");
        let Some((code, message)) = body
            .strip_prefix("exit code: ")
            .and_then(|rest| rest.split_once('\n'))
        else {
            continue;
        };
        let line = message
            .lines()
            .find(|line| line.starts_with("error: "))
            .or_else(|| message.lines().next())
            .unwrap_or("");
        snapshots.insert(name.to_owned(), (code.to_owned(), line.to_owned()));
    }
    snapshots
}

/// docs/errors.md has a row per bad input of the `bad_input` tests, and
/// each row shows the exit code and the first error line its snapshot
/// holds: ``| area | input | `` message `` | exit | `snapshot` |``.
#[test]
fn every_bad_input_snapshot_is_a_row_of_docs_errors() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(top.join("docs/errors.md")).unwrap();
    let mut snapshots = bad_input_snapshots();
    let mut rows = 0;
    for (number, line) in text.lines().enumerate() {
        let place = format!("docs/errors.md:{}", number + 1);
        // Cells split on `|` not escaped as `\|`.
        let line = line.replace("\\|", "\u{0}");
        let cells: Vec<String> = line
            .split('|')
            .map(|cell| cell.trim().replace('\u{0}', "|"))
            .collect();
        let [_, _, _, message, code, name, _] = cells.as_slice() else {
            continue;
        };
        let Some(name) = name
            .strip_prefix('`')
            .and_then(|name| name.strip_suffix('`'))
        else {
            continue;
        };
        let (snapshot_code, snapshot_message) = snapshots
            .remove(name)
            .unwrap_or_else(|| panic!("{place}: no bad_input snapshot `{name}` (or a second row)"));
        let message = message
            .strip_prefix("``")
            .and_then(|message| message.strip_suffix("``"))
            .unwrap_or_else(|| panic!("{place}: the message of `{name}` in a ``code span``"))
            .trim();
        assert_eq!(
            (code.as_str(), message),
            (snapshot_code.as_str(), snapshot_message.as_str()),
            "{place}: the row of `{name}` differs from its snapshot"
        );
        rows += 1;
    }
    let missing: Vec<String> = snapshots
        .iter()
        .map(|(name, (code, message))| {
            format!(
                "| ? | ? | `` {} `` | {code} | `{name}` |",
                message.replace('|', "\\|")
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "bad inputs missing from docs/errors.md:\n{}",
        missing.join("\n")
    );
    assert!(rows >= 30, "docs/errors.md has only {rows} rows");
}
