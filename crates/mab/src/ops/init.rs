//! `mab init`: write a starting `mab.toml` for the Dockerfile here.

use std::path::Path;

use crate::failure::Failure;

/// Platforms of a new project when `--platform` is not given: the two most
/// teams ship.
const DEFAULT_PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64"];

/// Writes `directory/mab.toml`; returns what goes to stdout.
pub fn init(
    directory: &Path,
    image: Option<&str>,
    platforms: &[String],
) -> Result<String, Failure> {
    let manifest = directory.join(mab_config::project::MANIFEST_NAME);
    if manifest.exists() {
        return Err(Failure::usage(
            format!(
                "{} already exists; mab init does not overwrite it",
                manifest.display()
            ),
            Some("edit it (`mab help init` lists every key), or remove it first"),
        ));
    }
    // The Dockerfile a build will use: `Dockerfile`, else `dockerfile`.
    let context = match mab_context::BuildContext::locate(directory, None) {
        Ok(context) => context,
        Err(error) => return Err(match error {
            mab_context::ContextError::DockerfileMissing { .. } => Failure::usage(
                format!("there is no Dockerfile in {}", directory.display()),
                Some("mab init writes a mab.toml for the Dockerfile of a directory (`Dockerfile`, or `dockerfile`): run it where one is, or pass -C DIR"),
            ),
            other => Failure::usage(other.to_string(), other.hint().as_deref()),
        }),
    };
    // Suggestions only: a Dockerfile that cannot be read suggests nothing.
    let dockerfile = std::fs::read_to_string(context.dockerfile()).unwrap_or_default();
    let name = match image {
        Some(image) => {
            mab_config::project::check_repository(image).map_err(|(message, hint)| {
                Failure::usage(format!("--image: {message}"), Some(&hint))
            })?;
            format!("name = \"{image}\"   # the repository to publish to\n")
        }
        None => format!(
            "name = \"registry.example.com/{}/{}\"   # CHANGE ME: the repository to publish to\n",
            mab_config::project::INIT_PLACEHOLDER,
            repository_name(directory),
        ),
    };
    let written: Vec<String> = if platforms.is_empty() {
        DEFAULT_PLATFORMS
            .iter()
            .map(|platform| platform.to_string())
            .collect()
    } else {
        platforms.to_vec()
    };
    let chosen = super::platform_flags(&written, &mut Vec::new())?;
    let platforms: Vec<String> = chosen
        .iter()
        .map(|platform| format!("\"{platform}\""))
        .collect();
    let text = format!(
        "# The image mab builds. `mab help init` (or `man mab-init`) lists every key;\n\
         # `mab --help` every command.\n\
         [image]\n\
         {name}\
         platforms = [{}]\n\
         {}{CHECKS_EXAMPLE}",
        platforms.join(", "),
        suggestions(&dockerfile),
    );
    // What was written must load, once its placeholder is edited.
    let edited = text.replace(mab_config::project::INIT_PLACEHOLDER, "team");
    mab_config::parse_project(&manifest, &edited)?;
    std::fs::write(&manifest, &text).map_err(|error| {
        Failure::runtime(
            format!("could not write {}: {error}", manifest.display()),
            None,
        )
    })?;
    Ok(format!("wrote {}\n", manifest.display()))
}

/// Commented suggestions from the Dockerfile `text`: its named stages for
/// `target`, and its build arguments (`ARG`, with their defaults) for
/// `[image.args]`; empty when it declares neither. Uncommented, they load.
fn suggestions(text: &str) -> String {
    let mut out = String::new();
    let stages = mab_context::stage_names(text);
    if let Some(last) = stages.last() {
        out.push_str(&format!(
            "# target = \"{last}\"   # the stage to build (default: the last); the Dockerfile has: {}\n",
            stages.join(", ")
        ));
    }
    let args = mab_context::declared_args(text);
    if !args.is_empty() {
        out.push_str(
            "\n# Build arguments the Dockerfile declares, with its defaults\n\
             # (`mab build --build-arg NAME=VALUE` sets one for one build):\n\
             # [image.args]\n",
        );
        for arg in args {
            let value = arg.default.unwrap_or_default();
            out.push_str(&format!(
                "# {} = {}\n",
                toml_edit::Key::new(arg.name.as_str()),
                toml_edit::Value::from(value.as_str())
            ));
        }
    }
    out
}

/// The end of the written mab.toml: the binary check and the smoke test,
/// commented out, so that a new project finds them where it configures
/// the image. Uncommented, they are a valid `[verify]` and `[test]`.
const CHECKS_EXAMPLE: &str = "\n\
# Each image's programs must be of its platform's architecture:\n\
# [verify]\n\
# binaries = \"error\"   # the default; \"warn\" or \"off\"\n\
\n\
# A command each platform's image runs on its runner before anything is\n\
# published; `mab build --no-test` skips it:\n\
# [test]\n\
# run = [\"/app/server\", \"--version\"]   # an argv; no shell splits it\n\
# expect = '(?m)^server v[0-9]+'       # optional: a regex its stdout must match\n\
# timeout = \"60s\"                      # the default\n";

/// A repository name from a directory name: lowercase, with characters a
/// repository cannot hold turned into `-`.
fn repository_name(directory: &Path) -> String {
    let name = directory
        .file_name()
        .map(|name| name.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let cleaned: String = name
        .chars()
        .map(|character| {
            if character.is_ascii_lowercase()
                || character.is_ascii_digit()
                || matches!(character, '.' | '_' | '-')
            {
                character
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches(|character: char| !character.is_ascii_alphanumeric());
    if trimmed.is_empty() {
        "app".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_from_directories() {
        let cases = [
            ("My App", "my-app"),
            ("service_2", "service_2"),
            ("--", "app"),
            ("Ünïcode", "n-code"),
        ];
        for (directory, expected) in cases {
            assert_eq!(
                repository_name(Path::new(directory)),
                expected,
                "{directory}"
            );
        }
    }

    /// Without --image the name is the placeholder, which every later load
    /// refuses at its line; the Dockerfile's stages and build arguments are
    /// suggested, and load once uncommented.
    #[test]
    fn suggests_from_the_dockerfile_and_writes_a_placeholder_that_fails() {
        let directory = tempfile::tempdir().unwrap();
        let project_dir = directory.path().join("My Service");
        std::fs::create_dir(&project_dir).unwrap();
        std::fs::write(
            project_dir.join("Dockerfile"),
            "ARG GO_VERSION=1.22\nFROM golang:${GO_VERSION} AS build\nARG FEATURES=\"a \\\"b\\\"\"\n\
             FROM scratch AS runtime\nARG TARGETARCH\n",
        )
        .unwrap();
        init(&project_dir, None, &[]).unwrap();
        let manifest = project_dir.join("mab.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        assert!(
            text.contains("name = \"registry.example.com/CHANGE-ME/my-service\""),
            "{text}"
        );
        assert!(
            text.contains("# target = \"runtime\"   # the stage to build (default: the last); the Dockerfile has: build, runtime\n"),
            "{text}"
        );
        assert!(
            text.contains("# [image.args]\n# GO_VERSION = \"1.22\"\n# FEATURES = 'a \"b\"'\n"),
            "{text}"
        );
        assert!(
            !text.contains("TARGETARCH") && !text.contains("docs/"),
            "{text}"
        );
        let failure =
            crate::failure::Failure::from(mab_config::load_project(&manifest).unwrap_err());
        assert!(
            failure.report.contains("image name `registry.example.com/CHANGE-ME/my-service` is the placeholder `mab init` wrote"),
            "{}", failure.report
        );
        assert!(
            failure.error.details[0].ends_with("mab.toml:4:8"),
            "{:?}",
            failure.error.details
        );
        let edited = text
            .replace("CHANGE-ME", "team")
            .replace("# target", "target")
            .replace("# [image.args]", "[image.args]")
            .replace("# GO_VERSION", "GO_VERSION")
            .replace("# FEATURES", "FEATURES");
        let project = mab_config::parse_project(&manifest, &edited).unwrap();
        assert_eq!(project.target.as_deref(), Some("runtime"));
        assert_eq!(project.args["FEATURES"], "a \"b\"");
    }

    #[test]
    fn writes_a_manifest_and_refuses_to_overwrite() {
        let directory = tempfile::tempdir().unwrap();
        let missing = init(directory.path(), None, &[]).unwrap_err();
        assert!(
            missing.report.contains("there is no Dockerfile"),
            "{}",
            missing.report
        );
        std::fs::write(directory.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        let output = init(
            directory.path(),
            Some("registry.example.com/team/app"),
            &["linux/arm64".to_owned(), "linux/ppc64le".to_owned()],
        )
        .unwrap();
        assert!(output.starts_with("wrote "));
        let project = mab_config::load_project(&directory.path().join("mab.toml")).unwrap();
        assert_eq!(project.image, "registry.example.com/team/app");
        assert_eq!(project.platforms.len(), 2);
        assert_eq!((project.test, project.warnings.len()), (None, 0));
        // The commented [verify] and [test], uncommented, load as written.
        let text = std::fs::read_to_string(directory.path().join("mab.toml")).unwrap();
        assert!(text.ends_with(CHECKS_EXAMPLE), "{text}");
        let uncommented = text
            .replace("\n# [", "\n[")
            .replace("\n# binaries", "\nbinaries");
        let uncommented = ["run", "expect", "timeout"]
            .iter()
            .fold(uncommented, |text, key| {
                text.replace(&format!("\n# {key} "), &format!("\n{key} "))
            });
        let project =
            mab_config::parse_project(&directory.path().join("mab.toml"), &uncommented).unwrap();
        let test = project.test.unwrap();
        assert_eq!(test.run, ["/app/server", "--version"]);
        assert!(test.expect.unwrap().is_match("starting\nserver v2.1\n"));
        assert_eq!(test.timeout, mab_config::project::DEFAULT_TEST_TIMEOUT);
        assert_eq!(project.verify.binaries, mab_config::Binaries::Error);
        assert!(project.warnings.is_empty(), "{:?}", project.warnings);
        let again = init(directory.path(), None, &[]).unwrap_err();
        assert_eq!(again.kind, crate::failure::FailureKind::Usage);
        assert!(
            again.report.contains("does not overwrite"),
            "{}",
            again.report
        );
    }
}
