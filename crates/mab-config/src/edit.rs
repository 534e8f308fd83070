//! Editing `runners.toml` in place for `mab runners add` and `remove`,
//! keeping the user's comments and layout. Text in, text out: the caller
//! reads and writes the file.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;
use toml_edit::{value, Array, ArrayOfTables, DocumentMut, Item, Table};

use crate::document::did_you_mean;
use crate::error::ConfigError;
use crate::platform::Platform;
use crate::runners::{parse_runners, NetworkMode, RunnersFile};

/// A runner to add, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRunner {
    pub name: String,
    pub host: String,
    pub platforms: Vec<Platform>,
    pub engine: Option<String>,
    pub jobs: Option<u32>,
    pub network: Option<NetworkMode>,
}

/// `text` with `runner` appended as a new `[[runner]]` table. The result is
/// validated as a whole, so an invalid runner is never written.
pub fn add_runner(path: &Path, text: &str, runner: &NewRunner) -> Result<String, ConfigError> {
    let existing = parse_runners(path, text)?;
    if existing.runner(&runner.name).is_some() {
        return Err(ConfigError::invalid(
            path,
            text,
            name_span(text, &runner.name),
            format!("a runner named `{}` already exists", runner.name),
            Some(format!(
                "choose another name, or remove it first with `mab runners remove {}`",
                runner.name
            )),
        ));
    }
    let mut document = parse_document(path, text)?;
    let mut table = Table::new();
    table["name"] = value(runner.name.as_str());
    table["host"] = value(runner.host.as_str());
    let mut platforms = Array::new();
    for platform in &runner.platforms {
        platforms.push(platform.to_string());
    }
    table["platforms"] = value(platforms);
    if let Some(engine) = &runner.engine {
        table["engine"] = value(engine.as_str());
    }
    if let Some(jobs) = runner.jobs {
        table["jobs"] = value(i64::from(jobs));
    }
    if let Some(network) = runner.network {
        table["network"] = value(network.as_str());
    }
    match document
        .entry("runner")
        .or_insert(Item::ArrayOfTables(ArrayOfTables::new()))
    {
        Item::ArrayOfTables(runners) => runners.push(table),
        _ => {
            return Err(ConfigError::invalid(
                path,
                text,
                None,
                "`runner` in this file is not a list of `[[runner]]` tables",
                Some("declare each runner with a `[[runner]]` header".to_owned()),
            ))
        }
    }
    let edited = document.to_string();
    parse_runners(path, &edited)?;
    Ok(edited)
}

/// `text` without the runner named `name` (and the comments above it).
pub fn remove_runner(path: &Path, text: &str, name: &str) -> Result<String, ConfigError> {
    let existing: RunnersFile = parse_runners(path, text)?;
    let mut document = parse_document(path, text)?;
    let index = match document.get("runner") {
        Some(Item::ArrayOfTables(runners)) => runners
            .iter()
            .position(|table| table.get("name").and_then(Item::as_str) == Some(name)),
        _ => None,
    };
    let Some(index) = index else {
        let names: Vec<&str> = existing
            .runners
            .iter()
            .map(|runner| runner.name.as_str())
            .collect();
        let listed = if names.is_empty() {
            "it lists no runners".to_owned()
        } else {
            format!("its runners are {}", names.join(", "))
        };
        return Err(ConfigError::invalid(
            path,
            text,
            None,
            format!("there is no runner named `{name}`"),
            Some(format!("{listed}{}", did_you_mean(name, &names))),
        ));
    };
    let mut kept_text = String::new();
    if let Some(Item::ArrayOfTables(runners)) = document.get_mut("runner") {
        // Comments right above the table go with it; text separated from it
        // by a blank line (a file header, say) stays.
        let prefix = runners
            .get(index)
            .and_then(|table| table.decor().prefix())
            .and_then(|prefix| prefix.as_str())
            .unwrap_or_default()
            .to_owned();
        if let Some(end) = prefix.rfind("\n\n") {
            kept_text = prefix[..end + 2].to_owned();
        }
        runners.remove(index);
        if let Some(next) = runners.get_mut(index) {
            let next_prefix = next
                .decor()
                .prefix()
                .and_then(|prefix| prefix.as_str())
                .unwrap_or_default()
                .to_owned();
            next.decor_mut()
                .set_prefix(format!("{kept_text}{next_prefix}"));
            kept_text.clear();
        }
    }
    if !kept_text.is_empty() {
        let trailing = document.trailing().as_str().unwrap_or_default().to_owned();
        document.set_trailing(format!("{trailing}{kept_text}"));
    }
    Ok(document.to_string())
}

fn parse_document(path: &Path, text: &str) -> Result<DocumentMut, ConfigError> {
    text.parse::<DocumentMut>().map_err(|error| {
        ConfigError::invalid(
            path,
            text,
            error.span(),
            error.message().trim().to_owned(),
            Some("the file must be valid TOML (https://toml.io); docs/configuration.md shows every key".to_owned()),
        )
    })
}

/// Where the runner named `name` is named, for pointing at it.
fn name_span(text: &str, name: &str) -> Option<std::ops::Range<usize>> {
    #[derive(Deserialize)]
    struct Names {
        runner: Option<Vec<NameOnly>>,
    }
    #[derive(Deserialize)]
    struct NameOnly {
        name: Option<Spanned<String>>,
    }
    let names: Names = toml::from_str(text).ok()?;
    names
        .runner?
        .into_iter()
        .filter_map(|runner| runner.name)
        .find(|spanned| spanned.get_ref() == name)
        .map(|spanned| spanned.span())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/etc/mab/runners.toml";

    const FILE: &str = "# The team's build hosts.\n\n\
        # Power 9, rack 3\n\
        [[runner]]\n\
        name = \"power9-01\"   # the old one\n\
        host = \"builder@p9-01.example.com\"\n\
        platforms = [\"linux/ppc64le\"]\n\n\
        # arm64 server\n\
        [[runner]]\n\
        name = \"arm-01\"\n\
        host = \"arm-01\"\n\
        platforms = [\"linux/arm64\"]\n";

    fn new_runner(name: &str) -> NewRunner {
        NewRunner {
            name: name.to_owned(),
            host: "builder@s390x-01:2222".to_owned(),
            platforms: vec!["linux/s390x".parse().unwrap()],
            engine: Some("unix:///run/docker.sock".to_owned()),
            jobs: Some(2),
            network: Some(NetworkMode::Host),
        }
    }

    #[test]
    fn adding_keeps_comments_and_layout() {
        let edited = add_runner(Path::new(PATH), FILE, &new_runner("s390x-01")).unwrap();
        assert!(
            edited.starts_with(FILE),
            "the existing text is untouched:\n{edited}"
        );
        let added = &edited[FILE.len()..];
        assert_eq!(
            added,
            "\n[[runner]]\nname = \"s390x-01\"\nhost = \"builder@s390x-01:2222\"\nplatforms = [\"linux/s390x\"]\nengine = \"unix:///run/docker.sock\"\njobs = 2\nnetwork = \"host\"\n"
        );
        let runners = parse_runners(Path::new(PATH), &edited).unwrap();
        assert_eq!(runners.runners.len(), 3);
        assert_eq!(runners.runner("s390x-01").unwrap().jobs, 2);
    }

    #[test]
    fn adding_to_an_empty_file() {
        let edited = add_runner(Path::new(PATH), "", &new_runner("first")).unwrap();
        let runners = parse_runners(Path::new(PATH), &edited).unwrap();
        assert_eq!(runners.runners[0].name, "first");
    }

    #[test]
    fn adding_a_duplicate_points_at_the_existing_runner() {
        let error = add_runner(Path::new(PATH), FILE, &new_runner("arm-01")).unwrap_err();
        let rendered = error.to_string();
        assert!(
            rendered.starts_with("error: a runner named `arm-01` already exists"),
            "{rendered}"
        );
        assert!(
            rendered.contains(&format!(" --> {PATH}:11:8")),
            "{rendered}"
        );
        assert!(rendered.contains(
            "hint: choose another name, or remove it first with `mab runners remove arm-01`"
        ));
    }

    #[test]
    fn removing_takes_the_table_and_its_comments() {
        let edited = remove_runner(Path::new(PATH), FILE, "power9-01").unwrap();
        assert!(
            !edited.contains("power9-01") && !edited.contains("rack 3"),
            "{edited}"
        );
        assert!(
            edited.contains("# arm64 server") && edited.contains("# The team's build hosts."),
            "{edited}"
        );
        assert_eq!(
            parse_runners(Path::new(PATH), &edited)
                .unwrap()
                .runners
                .len(),
            1
        );
    }

    #[test]
    fn removing_an_unknown_runner_suggests_the_closest() {
        let error = remove_runner(Path::new(PATH), FILE, "arm-10").unwrap_err();
        assert_eq!(error.message(), "there is no runner named `arm-10`");
        assert_eq!(
            error.hint(),
            Some("its runners are power9-01, arm-01; did you mean `arm-01`?")
        );
    }
}
