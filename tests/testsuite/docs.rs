//! Every `toml` block in the README and `docs/` parses as the file it shows,
//! so the docs cannot drift from the code.

use std::path::{Path, PathBuf};

/// Every Markdown file of the project's own docs: the READMEs at the top,
/// of `crates/` and `tests/lab/`, and those under `docs/` and `examples/`
/// (subdirectories included).
fn documents() -> Vec<PathBuf> {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files: Vec<PathBuf> = ["README.md", "crates/README.md", "tests/lab/README.md"]
        .iter()
        .map(|name| top.join(name))
        .collect();
    let mut directories = vec![top.join("docs"), top.join("examples")];
    while let Some(directory) = directories.pop() {
        for entry in std::fs::read_dir(&directory).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                directories.push(path);
            } else if path.extension().is_some_and(|extension| extension == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
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

/// The pieces of `text` that are code: inline code spans and the lines of
/// fenced blocks, each with the line it is on.
fn code_fragments(text: &str) -> Vec<(usize, String)> {
    let mut fragments = Vec::new();
    let mut fenced = false;
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            fragments.push((index + 1, line.to_owned()));
            continue;
        }
        // Spans between single backticks (a doubled one opens a span that
        // may hold a backtick: its content is taken whole).
        let mut rest = line;
        while let Some(start) = rest.find('`') {
            let ticks = rest[start..].chars().take_while(|c| *c == '`').count();
            let after = &rest[start + ticks..];
            let fence = "`".repeat(ticks);
            let Some(end) = after.find(&fence) else { break };
            fragments.push((index + 1, after[..end].to_owned()));
            rest = &after[end + ticks..];
        }
    }
    fragments
}

/// A `mab` command line in the docs: the command's path (`runners add`)
/// and the flags written after it (`--platform`, `-C`).
#[derive(Debug)]
struct Mention {
    place: String,
    path: Vec<String>,
    flags: Vec<String>,
}

/// Every `mab ...` command line in `fragment`: after a `mab` word (not one
/// preceded by `man`, `install`, `cargo`, `which`), the words that name
/// subcommands, then the flags, until a shell separator. The word after a
/// flag that takes a value is its value, not a flag.
fn mentions(place: &str, fragment: &str) -> Vec<Mention> {
    use clap::CommandFactory;
    const SEPARATORS: [&str; 8] = ["|", "||", "&&", ";", ">", "2>", "\\", "#"];
    let root = mab::cli::Cli::command();
    let words: Vec<&str> = fragment
        .split_whitespace()
        .map(|word| word.trim_matches(|c| matches!(c, '(' | ')' | ',' | '"' | '\'')))
        .collect();
    let mut found = Vec::new();
    for (index, word) in words.iter().enumerate() {
        if *word != "mab" {
            continue;
        }
        if index > 0 && ["man", "install", "cargo", "which"].contains(&words[index - 1]) {
            continue;
        }
        let line = words[index + 1..]
            .iter()
            .take_while(|word| !SEPARATORS.contains(word));
        let mut command = &root;
        let mut path = Vec::new();
        let mut flags: Vec<String> = Vec::new();
        let mut value_next = false;
        for word in line {
            if std::mem::take(&mut value_next) {
                continue;
            }
            if !word.starts_with('-') || *word == "-" || word.starts_with("---") {
                // Subcommands come before any argument that is not a flag.
                match command.find_subcommand(word) {
                    Some(sub) if flags.iter().all(|flag| flag.starts_with('-')) => {
                        command = sub;
                        path.push(word.to_string());
                    }
                    _ => flags.push(String::new()),
                }
                continue;
            }
            let name = word.split('=').next().unwrap();
            flags.push(name.to_owned());
            value_next = !word.contains('=')
                && command.get_arguments().any(|argument| {
                    let long = name.strip_prefix("--");
                    let short = name.strip_prefix('-').and_then(|short| {
                        let mut characters = short.chars();
                        characters.next().filter(|_| characters.next().is_none())
                    });
                    (long.is_some() && argument.get_long() == long
                        || short.is_some() && argument.get_short() == short)
                        && argument.get_action().takes_values()
                });
        }
        let flags = flags
            .into_iter()
            .filter(|flag| {
                flag.starts_with('-')
                    && flag
                        .chars()
                        .skip_while(|c| *c == '-')
                        .all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
            .collect();
        found.push(Mention {
            place: place.to_owned(),
            path,
            flags,
        });
    }
    found
}

/// Runs `mab PATH --help` for every command the README and docs show, and
/// checks that each flag they write after it is in that help.
#[test]
fn every_command_and_flag_the_docs_mention_is_in_its_help() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut all = Vec::new();
    for file in documents() {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(&top).unwrap().display().to_string();
        for (line, fragment) in code_fragments(&text) {
            all.extend(mentions(&format!("{name}:{line}"), &fragment));
        }
    }
    let mut helps: std::collections::BTreeMap<Vec<String>, String> = Default::default();
    let mut problems = Vec::new();
    for mention in &all {
        let help = helps.entry(mention.path.clone()).or_insert_with(|| {
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_mab"))
                .args(&mention.path)
                .arg("--help")
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "mab {:?} --help: {output:?}",
                mention.path
            );
            String::from_utf8(output.stdout).unwrap()
        });
        for flag in &mention.flags {
            let shown = help.match_indices(flag.as_str()).any(|(at, _)| {
                let next = help[at + flag.len()..].chars().next();
                let before = help[..at].chars().last();
                !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
            });
            if !shown {
                problems.push(format!(
                    "{}: `mab {}` has no {flag} in its --help",
                    mention.place,
                    mention.path.join(" ")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    // The docs show many commands; a parser that finds none is broken.
    assert!(helps.len() >= 8, "{:?}", helps.keys());
    assert!(all.iter().map(|mention| mention.flags.len()).sum::<usize>() >= 40);
}

#[test]
fn mentions_are_read_from_command_lines() {
    let found = mentions(
        "x",
        "mab -v runners add a --host h --platform=linux/arm64 | grep x --y",
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, ["runners", "add"]);
    assert_eq!(found[0].flags, ["-v", "--host", "--platform"]);
    let found = mentions("x", "MAB_LAB=off mab build --no-push -C dir && man mab");
    assert_eq!(found[0].path, ["build"]);
    assert_eq!(found[0].flags, ["--no-push", "-C"]);
    assert_eq!(found.len(), 1);
}

/// The anchor GitHub gives a heading: its text in lower case, without
/// what is not a letter, a digit, `_`, `-` or a space, spaces made `-`;
/// a heading whose anchor was taken already gets `-1`, `-2`, … after it.
fn heading_anchor(text: &str, taken: &mut std::collections::HashMap<String, usize>) -> String {
    let base: String = text
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect();
    let count = taken.entry(base.clone()).or_insert(0);
    let anchor = match *count {
        0 => base,
        n => format!("{base}-{n}"),
    };
    *count += 1;
    anchor
}

/// A Markdown text's heading anchors, and its links with the line each is
/// on (inline, reference and autolinks; images too).
fn anchors_and_links(text: &str) -> (Vec<String>, Vec<(usize, String)>) {
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};
    let mut anchors = Vec::new();
    let mut links = Vec::new();
    let mut taken = std::collections::HashMap::new();
    let mut heading: Option<String> = None;
    for (event, range) in Parser::new(text).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::End(TagEnd::Heading(_)) => {
                let text = heading.take().unwrap_or_default();
                anchors.push(heading_anchor(&text, &mut taken));
            }
            Event::Text(part) | Event::Code(part) => {
                if let Some(text) = &mut heading {
                    text.push_str(&part);
                }
            }
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                let line = text[..range.start].matches('\n').count() + 1;
                links.push((line, dest_url.to_string()));
            }
            _ => {}
        }
    }
    (anchors, links)
}

#[test]
fn heading_anchors_are_githubs() {
    let mut taken = std::collections::HashMap::new();
    for (heading, anchor) in [
        (
            "A partial list on request (`--allow-partial`)",
            "a-partial-list-on-request---allow-partial",
        ),
        ("Preparing a Podman host", "preparing-a-podman-host"),
        (
            "`mab runners check` on a cluster runner",
            "mab-runners-check-on-a-cluster-runner",
        ),
        (
            "Errors, hints and exit codes",
            "errors-hints-and-exit-codes",
        ),
        (
            "Errors, hints and exit codes",
            "errors-hints-and-exit-codes-1",
        ),
    ] {
        let text = heading.replace('`', "");
        assert_eq!(heading_anchor(&text, &mut taken), anchor, "{heading}");
    }
}

/// Every relative link of the docs names a file or directory of the
/// project, and every `#anchor` (in the same file or another Markdown
/// file) one of that file's headings, as GitHub renders them.
#[test]
fn every_link_between_the_docs_resolves() {
    let files = documents();
    let mut anchors = std::collections::HashMap::new();
    let mut links = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let (its_anchors, its_links) = anchors_and_links(&text);
        anchors.insert(file.canonicalize().unwrap(), its_anchors);
        links.extend(
            its_links
                .into_iter()
                .map(|(line, link)| (file.clone(), line, link)),
        );
    }
    let mut broken = Vec::new();
    let mut checked = 0;
    for (file, line, link) in &links {
        if link.contains("://") || link.starts_with("mailto:") {
            continue;
        }
        checked += 1;
        let (path, anchor) = match link.split_once('#') {
            Some((path, anchor)) => (path, Some(anchor)),
            None => (link.as_str(), None),
        };
        let target = if path.is_empty() {
            file.clone()
        } else {
            file.parent().unwrap().join(path)
        };
        let place = format!("{}:{line}: {link}", file.display());
        let Ok(target) = target.canonicalize() else {
            broken.push(format!("{place}: no such file"));
            continue;
        };
        if let Some(anchor) = anchor {
            match anchors.get(&target) {
                Some(headings) if headings.iter().any(|heading| heading == anchor) => {}
                Some(_) => broken.push(format!("{place}: no heading has this anchor")),
                None => broken.push(format!(
                    "{place}: an anchor into a file that is not checked"
                )),
            }
        }
    }
    assert!(checked >= 50, "found only {checked} relative links");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
