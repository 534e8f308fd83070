//! `mab build` under GitHub Actions (`GITHUB_ACTIONS=true`): the step's
//! outputs file, its summary and the workflow commands on stderr
//! (docs/ci.md). The digest is checked against skopeo's.

use std::collections::BTreeMap;

use base64::Engine as _;

use crate::registry_auth::texts_under;
use crate::support::{mab_with_env, require_lab, sha256, skopeo_raw, Project, Run};

/// The outputs in `text`, each `name<<DELIMITER`, its lines, `DELIMITER`,
/// parsed as GitHub's runner reads `$GITHUB_OUTPUT`; every entry must be
/// in that form.
fn parse_outputs(text: &str) -> BTreeMap<String, String> {
    let mut lines = text.lines();
    let mut outputs = BTreeMap::new();
    while let Some(line) = lines.next() {
        let (name, delimiter) = line
            .split_once("<<")
            .unwrap_or_else(|| panic!("not the multiline form: {line:?} in {text:?}"));
        let mut value = Vec::new();
        loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("{name}: no closing {delimiter} in {text:?}"));
            if line == delimiter {
                break;
            }
            value.push(line);
        }
        assert!(
            outputs.insert(name.to_owned(), value.join("\n")).is_none(),
            "{name} twice"
        );
    }
    outputs
}

/// The lines of `stderr` that GitHub's runner would read as workflow
/// commands: those outside `::stop-commands::TOKEN` … `::TOKEN::`.
fn command_lines(stderr: &str) -> Vec<String> {
    let mut stopped: Option<String> = None;
    let mut commands = Vec::new();
    for line in stderr.lines() {
        match &stopped {
            Some(token) => {
                if line == format!("::{token}::") {
                    stopped = None;
                }
            }
            None => {
                if let Some(token) = line.strip_prefix("::stop-commands::") {
                    stopped = Some(token.to_owned());
                } else if line.trim_start().starts_with("::") || line.contains("##[") {
                    commands.push(line.to_owned());
                }
            }
        }
    }
    assert_eq!(stopped, None, "the commands are resumed at the end");
    commands
}

/// What a build under GitHub Actions left: the run, the outputs parsed,
/// and the summary.
struct ActionsRun {
    run: Run,
    /// The HOME it ran with (the state directory is in it).
    home: tempfile::TempDir,
    outputs: BTreeMap<String, String>,
    summary: String,
}

/// `mab build --progress PROGRESS ARGS` in `project` with `GITHUB_ACTIONS=true`
/// and the outputs and summary files in a directory of its own, `variables`
/// set on top.
fn build_under_actions(
    project: &Project,
    progress: &str,
    arguments: &[&str],
    variables: &[(&str, Option<&str>)],
) -> ActionsRun {
    let home = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let output = files.path().join("output");
    let summary = files.path().join("summary");
    let mut all = vec!["build", "--progress", progress];
    all.extend_from_slice(arguments);
    let mut environment = vec![
        ("GITHUB_ACTIONS", Some("true")),
        ("GITHUB_OUTPUT", Some(output.to_str().unwrap())),
        ("GITHUB_STEP_SUMMARY", Some(summary.to_str().unwrap())),
    ];
    environment.extend_from_slice(variables);
    let run = mab_with_env(home.path(), project.path(), &all, &environment);
    ActionsRun {
        outputs: parse_outputs(&std::fs::read_to_string(&output).unwrap()),
        summary: std::fs::read_to_string(&summary).unwrap(),
        run,
        home,
    }
}

/// Text no earlier build used, so that a step holding it runs again
/// rather than coming from the engine's cache.
fn fresh() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A `linux/amd64` project of `repository` whose last step runs `script`
/// (busybox sh) after printing workflow commands.
fn printing_commands(
    lab: &crate::support::Lab,
    repository: &str,
    mount: &str,
    script: &str,
) -> Project {
    let project = Project::new();
    project
        .with_busybox(lab, &["amd64"])
        .file(
            "Dockerfile",
            &format!(
                "FROM scratch\nCOPY busybox/amd64 /bin/busybox\n\
                 RUN {mount} [\"/bin/busybox\", \"sh\", \"-c\", \"echo '::error::injected'; echo '::set-output name=x::y'; echo '##[set-output name=x;]y'; {script}\"]\n"
            ),
        )
        .file(
            "mab.toml",
            &format!("[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\"]\n"),
        );
    project
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn under_github_actions_the_step_gets_outputs_a_summary_and_no_injected_commands() {
    let lab = require_lab!();
    let repository = lab.repository("github-actions");
    let project = printing_commands(
        lab,
        &repository,
        "--mount=type=secret,id=token",
        &format!("/bin/busybox test -s /run/secrets/token # {}", fresh()),
    );
    let secret = "s3cret-never-echoed-5b1f";
    let ActionsRun {
        run,
        outputs,
        summary,
        ..
    } = build_under_actions(
        &project,
        "plain",
        &[
            "--tag",
            "1.0",
            "--tag",
            "latest",
            "--secret",
            "id=token,env=BUILD_TOKEN",
        ],
        &[("BUILD_TOKEN", Some(secret))],
    );
    assert_eq!(run.code, 0, "{run:?}");

    // The outputs: the digest the registry serves under each tag.
    let names: Vec<&str> = outputs.keys().map(String::as_str).collect();
    assert_eq!(names, ["digest", "image", "metadata", "tags"]);
    let served = sha256(&skopeo_raw(&format!("{repository}:1.0")));
    assert_eq!(outputs["digest"], served);
    assert_eq!(sha256(&skopeo_raw(&format!("{repository}:latest"))), served);
    assert_eq!(outputs["image"], repository);
    assert_eq!(
        outputs["tags"],
        format!("{repository}:1.0\n{repository}:latest")
    );
    let metadata: serde_json::Value = serde_json::from_str(&outputs["metadata"]).unwrap();
    assert_eq!(metadata["digest"], served.as_str());
    assert_eq!(metadata["containerimage.digest"], served.as_str());
    assert_eq!(
        metadata["containerimage.descriptor"]["digest"],
        served.as_str()
    );
    assert_eq!(
        metadata["containerimage.descriptor"]["size"],
        skopeo_raw(&format!("{repository}:1.0")).len()
    );
    assert_eq!(
        metadata["image.name"],
        format!("{repository}:1.0,{repository}:latest")
    );
    assert_eq!(run.stdout, format!("{repository}@{served}\n"));

    // The summary: a row for the platform with its digest, the list.
    let child = metadata["platforms"][0]["digest"].as_str().unwrap();
    assert!(
        summary.contains(&format!("| linux/amd64 | local | native | `{child}` |")),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("**List digest:** `{served}`")),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("- `{repository}:latest`")),
        "{summary}"
    );

    // The build output is in its group, with commands stopped around it;
    // outside the stops there are only mab's own commands.
    assert!(run.stderr.contains("::error::injected"), "{run:?}");
    assert!(
        run.stderr.contains("::group::linux/amd64 on local\n"),
        "{run:?}"
    );
    let commands = command_lines(&run.stderr);
    assert_eq!(
        commands,
        ["::group::linux/amd64 on local", "::endgroup::"],
        "{}",
        run.stderr
    );

    // Each line the build printed is in stderr once: in its group.
    let group = run
        .stderr
        .split("::group::linux/amd64 on local\n")
        .nth(1)
        .and_then(|rest| rest.split("::endgroup::").next())
        .unwrap_or_else(|| panic!("no group: {}", run.stderr));
    for line in ["::error::injected", "##[set-output name=x;]y"] {
        let count = run
            .stderr
            .lines()
            .filter(|printed| printed.ends_with(line))
            .count();
        assert_eq!(count, 1, "{line}: {}", run.stderr);
        assert!(group.contains(&format!("\n{line}\n")), "{line}: {group}");
    }

    // The secret's value is nowhere.
    for text in [&run.stderr, &run.stdout, &outputs["metadata"], &summary] {
        assert!(!text.contains(secret));
    }
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_failed_build_under_github_actions_is_annotated_and_still_gives_its_metadata() {
    let lab = require_lab!();
    let repository = lab.repository("github-actions-failed");
    let project = printing_commands(lab, &repository, "", "exit 3");
    let ActionsRun {
        run,
        outputs,
        summary,
        ..
    } = build_under_actions(&project, "plain", &["--tag", "1.0"], &[]);
    assert_eq!(run.code, 1, "{run:?}");
    let names: Vec<&str> = outputs.keys().map(String::as_str).collect();
    assert_eq!(names, ["image", "metadata"], "nothing was published");
    let metadata: serde_json::Value = serde_json::from_str(&outputs["metadata"]).unwrap();
    assert_eq!(metadata["digest"], serde_json::Value::Null);
    assert_eq!(metadata["platforms"][0]["state"], "failed");
    assert_eq!(metadata["platforms"][0]["error"]["kind"], "build");
    assert!(metadata.get("containerimage.digest").is_none());
    let message = metadata["platforms"][0]["error"]["message"]
        .as_str()
        .unwrap();

    // Outside the stops: the group, then the platform's annotation and the
    // build's, escaped; the build output's commands only inside.
    let commands = command_lines(&run.stderr);
    assert_eq!(commands.len(), 4, "{commands:#?}\n{}", run.stderr);
    assert_eq!(
        commands[..2],
        ["::group::linux/amd64 on local", "::endgroup::"]
    );
    assert_eq!(
        commands[2],
        format!(
            "::error title=linux/amd64 on local failed::{}",
            message.replace('%', "%25").replace('\n', "%0A")
        )
    );
    assert!(
        commands[3].starts_with("::error title=mab build failed::"),
        "{}",
        commands[3]
    );
    assert!(!commands[3].contains('\n'));
    assert!(
        summary.contains("| linux/amd64 | local | native | — |"),
        "{summary}"
    );
    assert!(summary.contains("**Failed:** "), "{summary}");
    assert!(!outputs["metadata"].is_empty());
}

/// With `--progress json` no line of stderr can run a workflow command:
/// there is no stop marker, and the build output's commands are in JSON
/// strings with `#` escaped; the JSON values are the lines as printed.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn under_github_actions_json_progress_carries_no_workflow_command() {
    let lab = require_lab!();
    let repository = lab.repository("github-actions-json");
    let project = printing_commands(lab, &repository, "", &format!("true # {}", fresh()));
    let ActionsRun { run, outputs, .. } =
        build_under_actions(&project, "json", &["--tag", "1.0"], &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        command_lines(&run.stderr),
        Vec::<String>::new(),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("##["), "{}", run.stderr);
    assert!(!run.stderr.contains("::stop-commands::"), "{}", run.stderr);
    let logs: Vec<String> = run
        .stderr
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|event| event["event"] == "log")
        .map(|event| event["line"].as_str().unwrap().to_owned())
        .collect();
    for line in ["::error::injected", "##[set-output name=x;]y"] {
        assert!(logs.iter().any(|log| log == line), "{line}: {logs:?}");
    }
    assert_eq!(outputs["image"], repository);
}

/// A bad `mab.toml`: the summary names no image and holds the whole
/// report (message, the file's snippet, the hint) in its code block.
#[test]
fn a_failure_before_the_image_is_known_is_summarised_whole() {
    let project = Project::new();
    project.file(
        "mab.toml",
        "[image]\nname = \"r/app\"\nplatforms = [\"linux/amd64\"\n",
    );
    let ActionsRun { run, summary, .. } = build_under_actions(&project, "plain", &[], &[]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        summary.starts_with("### mab build: failed; nothing was published\n\n**Failed:** "),
        "{summary}"
    );
    assert!(!summary.contains("the image"), "{summary}");
    for part in ["mab.toml:3:", "platforms = [\"linux/amd64\"", "^", "hint: "] {
        assert!(summary.contains(part), "{part}: {summary}");
    }
}

/// A build that publishes to the lab's password registry, its credentials
/// in `DOCKER_AUTH_CONFIG`: the password (and its base64 form) is in no
/// output: stderr, stdout, `$GITHUB_OUTPUT`, the summary, the metadata
/// file, nor any file under HOME (the state directory's history, its
/// report and logs).
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn under_github_actions_the_registry_password_is_nowhere() {
    let lab = require_lab!();
    let registry = lab.get("AUTH_REGISTRY");
    let (user, password) = (lab.get("AUTH_USER"), lab.get("AUTH_PASSWORD"));
    let repository = format!(
        "{registry}/{}",
        lab.repository("github-actions-auth")
            .split_once('/')
            .unwrap()
            .1
    );
    let project = printing_commands(lab, &repository, "", &format!("true # {}", fresh()));
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let config = format!(r#"{{"auths":{{"{registry}":{{"auth":"{encoded}"}}}}}}"#);
    let files = tempfile::tempdir().unwrap();
    let metadata = files.path().join("metadata.json");
    let built = build_under_actions(
        &project,
        "plain",
        &[
            "--tag",
            "1.0",
            "--metadata-file",
            metadata.to_str().unwrap(),
        ],
        &[("DOCKER_AUTH_CONFIG", Some(&config))],
    );
    let (run, outputs) = (built.run, built.outputs);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(outputs["digest"].starts_with("sha256:"), "{outputs:?}");
    assert_eq!(run.stdout, format!("{repository}@{}\n", outputs["digest"]));
    let mut texts = vec![
        ("stderr".into(), run.stderr.clone()),
        ("stdout".into(), run.stdout.clone()),
        ("summary".into(), built.summary),
        (
            "metadata file".into(),
            std::fs::read_to_string(&metadata).unwrap(),
        ),
    ];
    texts.extend(
        outputs
            .into_iter()
            .map(|(name, value)| (name.into(), value)),
    );
    let history = texts_under(built.home.path());
    assert!(
        history
            .iter()
            .any(|(path, _)| path.ends_with("report.html")),
        "the state directory holds the build's report: {:?}",
        history.iter().map(|(path, _)| path).collect::<Vec<_>>()
    );
    texts.extend(history);
    for (place, text) in &texts {
        assert!(!text.contains(password), "the password is in {place:?}");
        assert!(!text.contains(&encoded), "the credential is in {place:?}");
    }
}

/// `$GITHUB_OUTPUT` that cannot be written (a directory) is a warning
/// naming it, with a hint; the build's own result is unchanged.
#[test]
fn an_output_file_that_cannot_be_written_is_a_warning() {
    let project = Project::new();
    project.file(
        "mab.toml",
        "[image]\nname = \"r/app\"\nplatforms = [\"linux/amd64\"\n",
    );
    let home = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let summary = files.path().join("summary");
    let run = mab_with_env(
        home.path(),
        project.path(),
        &["build", "--progress", "plain"],
        &[
            ("GITHUB_ACTIONS", Some("true")),
            ("GITHUB_OUTPUT", Some(files.path().to_str().unwrap())),
            ("GITHUB_STEP_SUMMARY", Some(summary.to_str().unwrap())),
        ],
    );
    assert_eq!(run.code, 2, "{run:?}");
    let warning = format!(
        "warning: could not write GITHUB_OUTPUT {}: ",
        files.path().display()
    );
    let line = run
        .stderr
        .lines()
        .find(|line| line.starts_with(&warning))
        .unwrap_or_else(|| panic!("no warning: {}", run.stderr));
    assert!(
        line.ends_with("; hint: GitHub Actions sets GITHUB_OUTPUT to a writable file in each step; do not set it yourself"),
        "{line}"
    );
    assert!(std::fs::read_to_string(&summary)
        .unwrap()
        .contains("failed"));
}
