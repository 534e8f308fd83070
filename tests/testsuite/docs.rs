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
