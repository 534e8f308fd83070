//! `--build-arg`, `--target` and `--tag` over what `mab.toml` says.

use mab_config::Project;

use crate::cli::BuildArgs;
use crate::environment::Environment;
use crate::failure::Failure;

/// `--build-arg`, `--target` and `--tag` over what mab.toml says.
pub(super) fn apply_overrides(
    project: &mut Project,
    args: &BuildArgs,
    environment: &Environment,
) -> Result<(), Failure> {
    // As in docker's CLI, the last flag for a name wins, even a bare one
    // whose variable is unset; only the values then go over [image.args].
    let mut build_args = std::collections::BTreeMap::new();
    for argument in &args.build_args {
        let (name, value) = build_arg(argument, environment)?;
        build_args.insert(name, value);
    }
    for (name, value) in build_args {
        if let Some(value) = value {
            project.args.insert(name, value);
        }
    }
    if let Some(target) = &args.target {
        project.target = Some(target.clone());
    }
    if let Some(timeout) = &args.timeout {
        project.timeout = Some(time_limit("--timeout", timeout)?);
    }
    for tag in &args.tags {
        if !mab_config::project::is_valid_tag(tag) {
            return Err(Failure::usage(
                format!("--tag `{tag}` is not a valid tag"),
                Some("a tag is a bare name such as `1.0` or `edge`: letters, digits, `_`, `.` and `-`, at most 128, not starting with `.` or `-`"),
            ));
        }
    }
    Ok(())
}

/// The value of a time limit flag (`--timeout`, `--deadline`), read by
/// [`mab_config::project::parse_time_limit`]; a bad one is exit 2 naming
/// the flag.
pub(super) fn time_limit(flag: &str, value: &str) -> Result<std::time::Duration, Failure> {
    mab_config::project::parse_time_limit(value).map_err(|message| {
        Failure::usage(
            format!("{flag}: {message}"),
            Some(mab_config::project::TIME_LIMIT_HINT),
        )
    })
}

/// One `--build-arg`, read as the docker CLI reads it (docker/cli
/// `opts.ValidateEnv`): `NAME=VALUE` is that value (`NAME=` an empty one);
/// a bare `NAME` takes the value of the variable `NAME` from mab's
/// environment, an empty one included, and has no value (`None`) when the
/// variable is unset, so that `[image.args]` or the Dockerfile's default
/// applies. Errors (exit 2): an empty name, or a variable that is not UTF-8.
fn build_arg(
    argument: &str,
    environment: &Environment,
) -> Result<(String, Option<String>), Failure> {
    let (name, value) = match argument.split_once('=') {
        Some((name, value)) => (name, Some(value.to_owned())),
        None => (argument, None),
    };
    if name.trim().is_empty() {
        return Err(Failure::usage(
            format!("--build-arg `{argument}` has no name"),
            Some("write it as --build-arg NAME=VALUE, or --build-arg NAME to take the value of the variable NAME"),
        ));
    }
    if value.is_some() {
        return Ok((name.to_owned(), value));
    }
    let Some(value) = environment.variable(name) else {
        return Ok((name.to_owned(), None));
    };
    match value.to_str() {
        Some(value) => Ok((name.to_owned(), Some(value.to_owned()))),
        None => Err(Failure::usage(
            format!("--build-arg `{name}`: the variable {name} in the environment is not UTF-8"),
            Some("give the value on the command line: --build-arg NAME=VALUE"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn build_args_read_as_the_docker_cli_reads_them() {
        let environment = Environment {
            variables: [("SET", "from env"), ("EMPTY", "")].into_iter().collect(),
            ..Environment::default()
        };
        let cases = [
            ("NAME=value", "NAME", Some("value")),
            ("NAME=", "NAME", Some("")),
            ("NAME=a=b", "NAME", Some("a=b")),
            ("SET=given", "SET", Some("given")),
            ("SET", "SET", Some("from env")),
            ("EMPTY", "EMPTY", Some("")),
            ("UNSET", "UNSET", None),
        ];
        for (argument, name, value) in cases {
            assert_eq!(
                build_arg(argument, &environment).unwrap(),
                (name.to_owned(), value.map(str::to_owned)),
                "{argument}"
            );
        }
        for argument in ["=value", " =value", ""] {
            let failure = build_arg(argument, &environment).unwrap_err();
            assert_eq!(
                failure.kind,
                crate::failure::FailureKind::Usage,
                "{argument}"
            );
        }
    }

    #[test]
    fn flags_go_over_the_manifest_the_last_build_arg_winning() {
        let environment = Environment {
            variables: [("SET", "from env")].into_iter().collect(),
            ..Environment::default()
        };
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from([
            "mab",
            "build",
            "--build-arg",
            "KEPT",
            "--build-arg",
            "SET",
            "--build-arg",
            "DROPPED=x",
            "--build-arg",
            "DROPPED",
            "--build-arg",
            "NEW=1",
            "--timeout",
            "2h",
        ])
        .unwrap();
        let crate::cli::Command::Build(args) = cli.command else {
            panic!("a build command");
        };
        let mut project = Project {
            manifest_path: PathBuf::from("/project/mab.toml"),
            image: "127.0.0.1:5000/app".to_owned(),
            platforms: Vec::new(),
            context: PathBuf::from("/project"),
            dockerfile: None,
            target: None,
            emulation: true,
            fallback: true,
            timeout: Some(std::time::Duration::from_secs(90 * 60)),
            args: [
                ("KEPT", "manifest"),
                ("SET", "manifest"),
                ("DROPPED", "manifest"),
            ]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
            secrets: std::collections::BTreeMap::new(),
            extra_tags: Vec::new(),
            test: None,
            verify: Default::default(),
            cache: Default::default(),
            labels: Default::default(),
            annotations: Default::default(),
            warnings: Vec::new(),
        };
        apply_overrides(&mut project, &args, &environment).unwrap();
        let expected: Vec<(&str, &str)> = vec![
            ("DROPPED", "manifest"),
            ("KEPT", "manifest"),
            ("NEW", "1"),
            ("SET", "from env"),
        ];
        let found: Vec<(&str, &str)> = project
            .args
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        assert_eq!(found, expected);
        assert_eq!(
            project.timeout,
            Some(std::time::Duration::from_secs(2 * 3600)),
            "--timeout over `timeout`"
        );
    }
}
