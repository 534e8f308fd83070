//! `--secret` and `[image.secrets]`: the build's secrets, read once before
//! anything is contacted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mab_config::secret::{
    ordinal, parse_secret_flag, SecretSource, MAX_SECRET_SIZE, SECRET_FLAG_HINT,
};
use mab_config::{ConfigError, Project};
use mab_engine::{SecretValue, Secrets};

use mab_context::BuildContext;

use super::metadata::canonical;
use crate::environment::Environment;
use crate::failure::Failure;

/// Where a secret was asked for, for its errors.
enum Origin<'a> {
    /// `[image.secrets]` of this manifest, at this place.
    Manifest(&'a Path, &'a mab_config::Location),
    /// A `--secret`, by its position among them (1 for the first): its
    /// text is never shown, as it may hold a value.
    Flag(usize),
}

/// Reads the secrets of `[image.secrets]` and of each `--secret` (a flag
/// replaces the manifest's secret of the same id). A relative file is
/// relative to the directory of `mab.toml` for the manifest and to the
/// current directory for a flag; `~/` is the home. Every error is exit 2
/// naming the secret's id and source (a flag by its position, never its
/// text, which may hold a value): a bad flag, an id given twice by
/// flags, a file that cannot be read, a file or variable over BuildKit's 500 KiB
/// (read at most one byte past it), an
/// unset variable, a file inside the build `context` that its ignore file
/// does not leave out (it would be sent to every runner, counted in the
/// digest a resume compares, and a `COPY` could put it in the image); the
/// manifest's point at the entry's file:line:col.
pub(super) fn read_secrets(
    project: &Project,
    flags: &[String],
    environment: &Environment,
    context: &BuildContext,
) -> Result<Secrets, Failure> {
    let mut asked: BTreeMap<String, (SecretSource, Origin<'_>)> = BTreeMap::new();
    for (id, secret) in &project.secrets {
        let origin = Origin::Manifest(&project.manifest_path, &secret.location);
        asked.insert(id.clone(), (secret.source.clone(), origin));
    }
    let mut from_flags = Vec::new();
    for (index, flag) in flags.iter().enumerate() {
        let position = index + 1;
        let spec = parse_secret_flag(flag, |name| environment.variable(name).is_some()).map_err(
            |message| {
                Failure::usage(
                    format!("the {} --secret: {message}", ordinal(position)),
                    Some(SECRET_FLAG_HINT),
                )
            },
        )?;
        if from_flags.contains(&spec.id) {
            return Err(Failure::usage(
                format!("--secret: the id `{}` is given twice", spec.id),
                Some("give each secret one --secret; ids name the secrets RUN --mount=type=secret,id=ID reads"),
            ));
        }
        from_flags.push(spec.id.clone());
        asked.insert(spec.id, (spec.source, Origin::Flag(position)));
    }
    let manifest_dir = project.manifest_path.parent().unwrap_or(Path::new("/"));
    let mut values = BTreeMap::new();
    for (id, (source, origin)) in asked {
        let (base, base_name) = match origin {
            Origin::Manifest(..) => (manifest_dir, "mab.toml's directory"),
            Origin::Flag(_) => (environment.current_dir.as_path(), "the current directory"),
        };
        // `id=NAME` alone read the file NAME as the variable NAME is unset.
        let id_alone =
            matches!(origin, Origin::Flag(_)) && source == SecretSource::File(PathBuf::from(&id));
        let value = read_one(&source, base, environment, context).map_err(|(problem, hint)| {
            let problem = if id_alone {
                format!("the variable {id} is not set, and {problem}")
            } else {
                problem
            };
            let hint = match hint {
                _ if id_alone => format!(
                    "set the variable {id}, or name the source: --secret id={id},env=VARIABLE or --secret id={id},src=FILE"
                ),
                Some(hint) => hint,
                None => format!(
                    "create the file, or name the secret's file (a relative path is relative to {base_name}, `~/` is the home)"
                ),
            };
            fail(&id, &origin, &problem, &hint)
        })?;
        values.insert(id, SecretValue::new(value));
    }
    Ok(Secrets::new(values))
}

/// The value of one source, or what is wrong and a hint (`None` for a
/// file that cannot be read: the hint then says what the path is relative to).
fn read_one(
    source: &SecretSource,
    base: &Path,
    environment: &Environment,
    context: &BuildContext,
) -> Result<Vec<u8>, (String, Option<String>)> {
    match source {
        SecretSource::Env(variable) => match environment.variable(variable) {
            Some(value) => {
                use std::os::unix::ffi::OsStrExt;
                let value = value.as_bytes().to_vec();
                check_size(&value, &format!("the variable {variable}"))?;
                Ok(value)
            }
            None => Err((
                format!("the variable {variable} is not set"),
                Some("set the variable in mab's environment, or name another source".to_owned()),
            )),
        },
        SecretSource::File(written) => {
            use std::io::Read;
            let path = resolve(written, base, &environment.home);
            let unreadable = |error: std::io::Error| {
                let why = match error.kind() {
                    std::io::ErrorKind::NotFound => "does not exist".to_owned(),
                    _ => format!("cannot be read: {error}"),
                };
                (format!("the file {} {why}", path.display()), None)
            };
            let file = std::fs::File::open(&path).map_err(unreadable)?;
            check_left_out(&path, context)?;
            // One byte over the limit is enough to refuse it, whatever the
            // file's size says (it may grow, or be a pipe).
            let mut value = Vec::new();
            file.take(MAX_SECRET_SIZE + 1)
                .read_to_end(&mut value)
                .map_err(unreadable)?;
            check_size(&value, &format!("the file {}", path.display()))?;
            Ok(value)
        }
    }
}

/// Refuses a `value` (from `source`, "the file F" or "the variable V")
/// over BuildKit's [`MAX_SECRET_SIZE`].
fn check_size(value: &[u8], source: &str) -> Result<(), (String, Option<String>)> {
    if value.len() as u64 <= MAX_SECRET_SIZE {
        return Ok(());
    }
    Err((
        format!("{source} holds over {MAX_SECRET_SIZE} bytes, BuildKit's limit for a secret"),
        Some(format!(
            "BuildKit takes secrets of at most {} KiB; pass a smaller one",
            MAX_SECRET_SIZE / 1024
        )),
    ))
}

/// Checks that the secret file at `path`, when it is inside the build
/// context, is left out of it by the context's ignore file: else it would
/// be sent to every runner (which a `COPY` could put into the image) and
/// hashed into the digest a resume compares.
fn check_left_out(path: &Path, context: &BuildContext) -> Result<(), (String, Option<String>)> {
    let path = canonical(path);
    let Ok(relative) = path.strip_prefix(canonical(context.dir())) else {
        return Ok(());
    };
    let relative = relative.to_string_lossy();
    if context.ignore().is_excluded(&relative) {
        return Ok(());
    }
    let ignore_file = context
        .ignore_file()
        .map_or_else(|| context.dir().join(".dockerignore"), Path::to_path_buf);
    Err((
        format!(
            "the file {} is inside the build context {}, and no ignore rule leaves it out: it would be sent to every runner, and a `COPY` step could put it into the image",
            path.display(),
            context.dir().display()
        ),
        Some(format!(
            "add `{relative}` to {}, or keep the secret outside the context",
            ignore_file.display()
        )),
    ))
}

/// `written` with `~/` as the home and a relative path under `base`.
pub(super) fn resolve(written: &Path, base: &Path, home: &Path) -> PathBuf {
    match written.strip_prefix("~") {
        Ok(rest) => home.join(rest),
        Err(_) => base.join(written),
    }
}

/// The exit-2 failure for secret `id` asked for at `origin`.
fn fail(id: &str, origin: &Origin<'_>, problem: &str, hint: &str) -> Failure {
    let message = format!("secret `{id}`: {problem}");
    match origin {
        Origin::Manifest(path, location) => {
            ConfigError::at(path, (*location).clone(), message, hint).into()
        }
        Origin::Flag(position) => Failure::usage(
            format!("the {} --secret: {message}", ordinal(*position)),
            Some(hint),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;

    /// A build context at `directory` with a Dockerfile and `ignore` as its
    /// .dockerignore.
    fn context(directory: &Path, ignore: &str) -> BuildContext {
        std::fs::create_dir_all(directory).unwrap();
        std::fs::write(directory.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(directory.join(".dockerignore"), ignore).unwrap();
        BuildContext::locate(directory, None).unwrap()
    }

    /// An environment whose current directory and home are `directory`.
    fn at_home(directory: &Path) -> Environment {
        Environment {
            current_dir: directory.to_owned(),
            home: directory.to_owned(),
            ..Environment::default()
        }
    }

    fn project(directory: &Path, manifest_secrets: &str) -> Project {
        let text = format!(
            "[image]\nname = \"127.0.0.1:5000/app\"\nplatforms = [\"linux/amd64\"]\n[image.secrets]\n{manifest_secrets}"
        );
        mab_config::parse_project(&directory.join("mab.toml"), &text).unwrap()
    }

    #[test]
    fn flags_go_over_the_manifest_and_paths_resolve() {
        let root = tempfile::tempdir().unwrap();
        let (manifest_dir, current, home) = (
            root.path().join("project"),
            root.path().join("here"),
            root.path().join("home"),
        );
        for (directory, content) in [(&manifest_dir, "m"), (&current, "c"), (&home, "h")] {
            std::fs::create_dir_all(directory).unwrap();
            std::fs::write(directory.join("tok"), content).unwrap();
        }
        let environment = Environment {
            current_dir: current.clone(),
            home: home.clone(),
            variables: [("TOKEN", "from env")].into_iter().collect(),
            ..Environment::default()
        };
        let project = project(
            &manifest_dir,
            "rel = { src = \"tok\" }\nhome = { src = \"~/tok\" }\nenv = { env = \"TOKEN\" }\nover = { src = \"tok\" }\n",
        );
        let flags = ["id=over,src=tok".to_owned(), "id=TOKEN".to_owned()];
        let context = context(&root.path().join("context"), "");
        let secrets = read_secrets(&project, &flags, &environment, &context).unwrap();
        let expected = Secrets::new(
            [
                ("TOKEN", "from env"),
                ("env", "from env"),
                ("home", "h"),
                ("over", "c"),
                ("rel", "m"),
            ]
            .into_iter()
            .map(|(id, value)| (id.to_owned(), SecretValue::new(value.as_bytes().to_vec())))
            .collect(),
        );
        assert_eq!(secrets, expected);
    }

    #[test]
    fn missing_sources_and_bad_flags_are_usage_errors() {
        let root = tempfile::tempdir().unwrap();
        let environment = at_home(root.path());
        let cases: [(&str, &[&str], &str); 6] = [
            (
                "gone = { src = \"nope\" }\n",
                &[],
                "secret `gone`: the file",
            ),
            (
                "tok = { env = \"UNSET\" }\n",
                &[],
                "secret `tok`: the variable UNSET is not set",
            ),
            (
                "",
                &["id=a,env=UNSET"],
                "the 1st --secret: secret `a`: the variable UNSET",
            ),
            ("", &["src=x"], "the 1st --secret: no `id`"),
            (
                "",
                &["id=a,env=A", "id=b,value=s3cr3t"],
                "the 2nd --secret: unknown key `value`",
            ),
            (
                "",
                &["id=a,env=A", "id=a,env=B"],
                "the id `a` is given twice",
            ),
        ];
        let context = context(&root.path().join("context"), "");
        for (manifest, flags, message) in cases {
            let project = project(root.path(), manifest);
            let flags: Vec<String> = flags.iter().map(|flag| (*flag).to_owned()).collect();
            let failure = read_secrets(&project, &flags, &environment, &context).unwrap_err();
            assert_eq!(failure.kind, FailureKind::Usage, "{manifest} {flags:?}");
            assert!(failure.report.contains(message), "{}", failure.report);
            assert!(!failure.report.contains("s3cr3t"), "{}", failure.report);
        }
    }

    #[test]
    fn secrets_over_the_limit_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let big = "x".repeat(MAX_SECRET_SIZE as usize + 1);
        let mut environment = at_home(root.path());
        environment.variables = [("BIG", big.as_str())].into_iter().collect();
        std::fs::write(root.path().join("big"), &big).unwrap();
        std::fs::write(root.path().join("limit"), &big[1..]).unwrap();
        let context = context(&root.path().join("context"), "");
        let project = project(root.path(), "");
        for (flag, source) in [
            ("id=a,env=BIG", "the variable BIG"),
            ("id=a,src=big", "the file "),
        ] {
            let failure =
                read_secrets(&project, &[flag.to_owned()], &environment, &context).unwrap_err();
            assert!(
                failure.report.contains(source)
                    && failure.report.contains("holds over 512000 bytes")
                    && failure.report.contains("at most 500 KiB"),
                "{}",
                failure.report
            );
        }
        let flags = ["id=a,src=limit".to_owned()];
        assert!(read_secrets(&project, &flags, &environment, &context).is_ok());
    }

    #[test]
    fn a_file_in_the_context_must_be_left_out_of_it() {
        let root = tempfile::tempdir().unwrap();
        let environment = at_home(root.path());
        let project = project(root.path(), "npm = { src = \".npmrc\" }\n");
        std::fs::write(root.path().join(".npmrc"), "token").unwrap();
        let sent = context(root.path(), "");
        let failure = read_secrets(&project, &[], &environment, &sent).unwrap_err();
        assert_eq!(failure.kind, FailureKind::Usage);
        assert!(
            failure.report.contains("is inside the build context")
                && failure.report.contains("add `.npmrc` to"),
            "{}",
            failure.report
        );
        let left_out = context(root.path(), ".npmrc\n");
        let secrets = read_secrets(&project, &[], &environment, &left_out).unwrap();
        let expected = BTreeMap::from([("npm".to_owned(), SecretValue::new(b"token".to_vec()))]);
        assert_eq!(secrets, Secrets::new(expected));
        // A secret in an excluded directory is left out with it.
        std::fs::create_dir(root.path().join("private")).unwrap();
        std::fs::write(root.path().join("private/tok"), "t").unwrap();
        let flags = ["id=tok,src=private/tok".to_owned()];
        let excluded_dir = context(root.path(), ".npmrc\nprivate\n");
        assert!(read_secrets(&project, &flags, &environment, &excluded_dir).is_ok());
        assert!(read_secrets(&project, &flags, &environment, &left_out).is_err());
    }
}
