//! The CI examples (`examples/github-actions/`, `examples/gitlab-ci/`):
//! each workflow file parses as YAML, every `mab` command line in its
//! `run:` / `script:` entries is accepted by mab's own argument parser,
//! and their `mab.toml` and `runners.toml` load. No lab needed.

use std::path::{Path, PathBuf};

use clap::Parser;
use yaml_rust2::{Yaml, YamlLoader};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The workflow files of the CI examples.
const WORKFLOWS: [&str; 2] = ["github-actions/image.yml", "gitlab-ci/.gitlab-ci.yml"];

/// The keys whose values are shell scripts: GitHub's `run`, GitLab's
/// `script`, `before_script` and `after_script` (a string or a list).
const SCRIPT_KEYS: [&str; 4] = ["run", "script", "before_script", "after_script"];

/// Every shell script in `yaml`, wherever it is nested.
fn scripts(yaml: &Yaml, found: &mut Vec<String>) {
    match yaml {
        Yaml::Hash(hash) => {
            for (key, value) in hash {
                let is_script = key.as_str().is_some_and(|key| SCRIPT_KEYS.contains(&key));
                match value {
                    Yaml::String(script) if is_script => found.push(script.clone()),
                    Yaml::Array(lines) if is_script => {
                        found.extend(lines.iter().filter_map(Yaml::as_str).map(str::to_owned))
                    }
                    other => scripts(other, found),
                }
            }
        }
        Yaml::Array(items) => items.iter().for_each(|item| scripts(item, found)),
        _ => {}
    }
}

/// The shell operators that end a simple command.
const OPERATORS: [&str; 10] = ["|", "||", "&&", ";", "&", ">", ">>", "<", "2>", "2>&1"];

/// The words that may come before a command's first word: the
/// reserved words that start a command list (bash(1), "Compound
/// Commands") and `!` (a pipeline's negation).
const PREFIXES: [&str; 9] = [
    "if", "then", "elif", "else", "while", "until", "do", "!", "{",
];

/// Whether `word` is a variable assignment before a command
/// (`NAME=value`, POSIX "Simple Commands").
fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The `mab` command lines of `script`, each as its words (quotes removed,
/// nothing expanded): lines ending in `\` joined to the next, each line
/// split into words as the shell does (a `;` ending a word is an operator
/// of its own), a command cut at a shell operator; the commands whose
/// first word, after [`PREFIXES`] and assignments, is `mab` (or a path
/// ending in `/mab`). Panics on any other `mab` word, except the package
/// name of `cargo install`: a command this cannot attribute.
fn mab_commands(script: &str) -> Vec<Vec<String>> {
    let joined = script.replace("\\\n", " ");
    let mut commands = Vec::new();
    for line in joined.lines() {
        let words: Vec<String> = shlex::split(line)
            .unwrap_or_else(|| panic!("not shell words: {line:?}"))
            .into_iter()
            .flat_map(|word| match word.strip_suffix(';') {
                Some(rest) if !rest.is_empty() => vec![rest.to_owned(), ";".to_owned()],
                _ => vec![word],
            })
            .collect();
        for command in words.split(|word| OPERATORS.contains(&word.as_str())) {
            let start = command
                .iter()
                .position(|word| !PREFIXES.contains(&word.as_str()) && !is_assignment(word))
                .unwrap_or(command.len());
            let command = &command[start..];
            let first = command.first().map(String::as_str);
            if first.is_some_and(|word| word == "mab" || word.ends_with("/mab")) {
                commands.push(command.to_vec());
            } else if first == Some("cargo") && command.get(1).is_some_and(|word| word == "install")
            {
                // `mab` there is the package's name.
            } else {
                assert!(
                    !command.iter().any(|word| word == "mab"),
                    "a `mab` word that is not a command's first word: {line:?}"
                );
            }
        }
    }
    commands
}

/// Whether mab's parser accepts `words` (`mab ...`); the error otherwise.
fn parses(words: &[String]) -> Result<(), String> {
    mab::cli::Cli::try_parse_from(words)
        .map(drop)
        .map_err(|error| error.to_string())
}

#[test]
fn every_workflow_parses_and_its_mab_commands_are_accepted() {
    for workflow in WORKFLOWS {
        let path = examples().join(workflow);
        let text = std::fs::read_to_string(&path).unwrap();
        let documents = YamlLoader::load_from_str(&text)
            .unwrap_or_else(|error| panic!("{}: not YAML: {error}", path.display()));
        assert_eq!(documents.len(), 1, "{}", path.display());
        let mut found = Vec::new();
        scripts(&documents[0], &mut found);
        let commands: Vec<Vec<String>> = found.iter().flat_map(|s| mab_commands(s)).collect();
        assert!(
            commands
                .iter()
                .any(|command| command.get(1).map(String::as_str) == Some("build")),
            "{}: no `mab build` in {found:?}",
            path.display()
        );
        for command in &commands {
            if let Err(error) = parses(command) {
                panic!("{}: {command:?} is refused:\n{error}", path.display());
            }
        }
    }
}

/// The check above fails on a misspelt flag, and finds commands the way
/// the workflows write them.
#[test]
fn a_misspelt_flag_is_refused_and_continuations_are_joined() {
    let script = "install -d ~/.ssh\nmab build \\\n  --no-psuh\n";
    let commands = mab_commands(script);
    assert_eq!(commands, [["mab", "build", "--no-psuh"]]);
    assert!(parses(&commands[0]).unwrap_err().contains("--no-psuh"));
    let folded = "mab build --metadata-file \"$RUNNER_TEMP/m.json\" > out.txt && echo done";
    let commands = mab_commands(folded);
    assert_eq!(
        commands,
        [["mab", "build", "--metadata-file", "$RUNNER_TEMP/m.json"]]
    );
    parses(&commands[0]).unwrap();
}

/// A `mab` command after `then`, `do`, `!` or an assignment is found; a
/// `mab` word that is no command's first word fails the check.
#[test]
fn mab_commands_are_found_after_prefixes_and_stray_mab_words_fail() {
    let script = "if true; then mab build --no-push; fi
                  for i in 1; do mab runners check; done
                  ! mab build --no-psuh
                  RUST_LOG=debug A=1 mab build
                  cargo install --locked --git \"$MAB_GIT\" mab
";
    let commands = mab_commands(script);
    assert_eq!(
        commands,
        [
            vec!["mab", "build", "--no-push"],
            vec!["mab", "runners", "check"],
            vec!["mab", "build", "--no-psuh"],
            vec!["mab", "build"],
        ]
    );
    for stray in ["echo mab", "time mab build", "exec mab build"] {
        let caught = std::panic::catch_unwind(|| mab_commands(stray));
        assert!(caught.is_err(), "{stray} was let through");
    }
}

#[test]
fn the_examples_projects_and_runners_files_load() {
    for example in ["github-actions", "gitlab-ci"] {
        let directory = examples().join(example);
        let manifest = directory.join("mab.toml");
        let project =
            mab_config::parse_project(&manifest, &std::fs::read_to_string(&manifest).unwrap())
                .unwrap_or_else(|error| panic!("{error}"));
        assert!(project.warnings.is_empty(), "{:?}", project.warnings);
        let file = directory.join("runners.toml");
        let runners = mab_config::parse_runners(&file, &std::fs::read_to_string(&file).unwrap())
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(runners.warnings.is_empty(), "{:?}", runners.warnings);
    }
}
