//! `--progress json` on the lab (docs/progress.md): every stderr line is
//! one event with `"schema": 1`; the plan, the phases with their bytes,
//! the publish and the result are checked against what skopeo reads from
//! the registry and what the test counts in the context itself. Library
//! log lines (a host key learnt, `MAB_LOG=debug`) arrive as events too.

use std::path::Path;

use crate::support::{
    mab, mab_with_env, require_lab, runner_a_for_arm64, sha256, skopeo_raw, ssh_lock, Home, Lab,
    Project, Run,
};

/// A `FROM scratch` project copying its whole context, for linux/amd64 on
/// the local engine (runner `here`) and linux/arm64 on runner-a's engine
/// (runner `arm`): each platform's context goes to an engine of its own.
/// `skip.tmp` is left out by `.dockerignore`; `data.bin` is new bytes on
/// every run, so that no engine holds the files already.
fn copying_project(lab: &Lab, repository: &str) -> Project {
    let project = Project::new();
    let data: Vec<String> = (0..2000)
        .map(|line| format!("{line} {:?}\n", std::time::SystemTime::now()))
        .collect();
    project
        .file("Dockerfile", "FROM scratch\nCOPY . /\n")
        .file(".dockerignore", "*.tmp\n")
        .file("skip.tmp", "not sent\n")
        .file("data.bin", &data.concat())
        .file("sub/note.txt", "a file in a directory\n")
        .two_platforms(lab, repository);
    project
}

/// A project building `dockerfile` for `platform` into the lab repository
/// of `test`.
fn one_platform(lab: &Lab, test: &str, platform: &str, dockerfile: &str) -> Project {
    let project = Project::new();
    project.file("Dockerfile", dockerfile).file(
        "mab.toml",
        &format!(
            "[image]\nname = \"{}\"\nplatforms = [\"{platform}\"]\n",
            lab.repository(test)
        ),
    );
    project
}

/// The bytes of the regular files under `directory` that `.dockerignore`
/// (`*.tmp`) does not leave out, counted here from the file system.
fn context_bytes(directory: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(directory).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            total += context_bytes(&entry.path());
        } else if kind.is_file() && !entry.file_name().to_string_lossy().ends_with(".tmp") {
            total += entry.metadata().unwrap().len();
        }
    }
    total
}

/// The compressed size of the image `reference`: its config's and layers'
/// sizes as its manifest, read with skopeo, lists them.
fn image_size(reference: &str) -> u64 {
    let manifest: serde_json::Value = serde_json::from_slice(&skopeo_raw(reference)).unwrap();
    manifest["config"]["size"].as_u64().unwrap() + layers_size(reference)
}

/// The sizes of the layers of `reference` as its manifest lists them.
fn layers_size(reference: &str) -> u64 {
    let manifest: serde_json::Value = serde_json::from_slice(&skopeo_raw(reference)).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["size"].as_u64().unwrap())
        .sum()
}

/// The events of `run` about `platform`, as `event` or `event:phase`
/// names, in order.
fn sequence(run: &Run, platform: &str) -> Vec<String> {
    run.events()
        .iter()
        .filter(|event| event["platform"] == platform)
        // A job may wait for its runner host's slot while another test
        // builds there: `waiting` events come and go with the lab's load.
        // `context_sent` comes as often as the context's bytes grow.
        .filter(|event| {
            !matches!(
                event["event"].as_str(),
                Some("step" | "log" | "waiting" | "context_sent")
            )
        })
        .map(|event| match event["phase"].as_str() {
            Some(phase) => format!("{}:{phase}", event["event"].as_str().unwrap()),
            None => event["event"].as_str().unwrap().to_owned(),
        })
        .collect()
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_json_build_reports_its_plan_phases_publish_and_result_as_schema_1_events() {
    let lab = require_lab!();
    let repository = lab.repository("progress-json");
    let project = copying_project(lab, &repository);
    let home = Home::new(lab);
    // The frontend first reads `.dockerignore` from the context on its own
    // (BuildKit's "[internal] load .dockerignore"), then the files.
    let ignore_file = std::fs::metadata(project.path().join(".dockerignore"))
        .unwrap()
        .len();
    let expected_context = ignore_file + context_bytes(project.path());

    let _ssh = ssh_lock();
    let run = mab(
        home.path(),
        project.path(),
        &["build", "--progress", "json", "--tag", "t1"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let events = run.events();

    // The plan: platforms and runners as runners.toml places them.
    let plans = run.events_named("plan");
    assert_eq!(plans.len(), 1, "{run:?}");
    assert_eq!(events[0]["event"], "plan", "nothing before the plan");
    let plan = &plans[0];
    assert_eq!(plan["image"], repository.as_str());
    let planned: Vec<(&str, &str)> = plan["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| {
            (
                job["platform"].as_str().unwrap(),
                job["runner"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(planned, [("linux/amd64", "here"), ("linux/arm64", "arm")]);

    let list = skopeo_raw(&format!("{repository}:t1"));
    let list_digest = sha256(&list);
    let list: serde_json::Value = serde_json::from_slice(&list).unwrap();
    for (platform, runner) in planned {
        assert_eq!(
            sequence(&run, platform),
            [
                "job_started",
                "phase_started:build",
                "phase_finished:build",
                "phase_started:push",
                "phase_finished:push",
                "pushed",
                "phase_started:verify",
                "phase_finished:verify",
                "phase_started:check",
                "phase_finished:check",
                "job_finished"
            ],
            "{platform}: {run:?}"
        );
        let of_platform = |name: &str| -> Vec<serde_json::Value> {
            events
                .iter()
                .filter(|event| event["platform"] == platform && event["event"] == name)
                .cloned()
                .collect()
        };
        assert_eq!(of_platform("job_started")[0]["runner"], runner);
        // Each step once, though BuildKit repeats a running one.
        let steps: Vec<(String, bool)> = of_platform("step")
            .iter()
            .map(|step| {
                (
                    step["step"].as_str().unwrap().to_owned(),
                    step["cached"].as_bool().unwrap(),
                )
            })
            .collect();
        let copy = ("[1/1] COPY . /".to_owned(), false);
        assert_eq!(
            steps.iter().filter(|step| **step == copy).count(),
            1,
            "{platform}: {steps:?}"
        );
        let mut unique = steps.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), steps.len(), "{platform}: {steps:?}");
        let finished = of_platform("phase_finished");
        for phase in &finished {
            assert_eq!(phase["runner"], runner, "{phase}");
            assert!(phase["seconds"].as_f64().unwrap() >= 0.0, "{phase}");
        }
        // Build: the context's file bytes, every one sent to this
        // platform's engine, and the ignore file read first.
        assert_eq!(finished[0]["bytes"], expected_context, "{platform}");
        // Push: no bytes (the engine does not say what it uploaded).
        assert!(finished[1].get("bytes").is_none(), "{}", finished[1]);
        // Verify: the image's compressed size in the registry.
        let digest = of_platform("pushed")[0]["digest"]
            .as_str()
            .unwrap()
            .to_owned();
        let child = format!("{repository}@{digest}");
        assert_eq!(finished[2]["bytes"], image_size(&child), "{platform}");
        // Check: the layers' bytes, read from the registry.
        assert_eq!(finished[3]["bytes"], layers_size(&child), "{platform}");
        assert!(
            list["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .any(|entry| entry["digest"] == digest.as_str()),
            "{digest} is in the list"
        );
    }

    // The publish, with the digest on stdout and in the registry.
    assert_eq!(run.stdout.trim(), format!("{repository}@{list_digest}"));
    let published = run.events_named("published");
    assert_eq!(published.len(), 1, "{run:?}");
    assert_eq!(
        published[0],
        serde_json::json!({
            "schema": 1,
            "event": "published",
            "image": repository,
            "digest": list_digest,
            "tags": ["t1"],
            "missing": [],
        })
    );
    // The result, last.
    assert_eq!(
        run.result_event(),
        serde_json::json!({
            "schema": 1,
            "event": "result",
            "exit_code": 0,
            "digest": list_digest,
            "no_push": false,
        })
    );

    // Built again from the same files, the step comes from the cache and
    // is told once, as cached.
    let again = mab(
        home.path(),
        project.path(),
        &["build", "--progress", "json", "--tag", "t2"],
    );
    assert_eq!(again.code, 0, "{again:?}");
    for platform in ["linux/amd64", "linux/arm64"] {
        let copies: Vec<bool> = again
            .events_named("step")
            .iter()
            .filter(|step| step["platform"] == platform && step["step"] == "[1/1] COPY . /")
            .map(|step| step["cached"].as_bool().unwrap())
            .collect();
        assert_eq!(copies, [true], "{platform}: {again:?}");
    }
}

/// A failing build: the `result` event holds the report (message, hints,
/// the log's tail), and stderr holds only JSON, `MAB_LOG=debug` lines
/// included.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_failing_build_ends_in_a_result_event_with_its_report() {
    let lab = require_lab!();
    let project = one_platform(
        lab,
        "progress-fails",
        "linux/amd64",
        "FROM scratch\nRUN [\"/no-such-program\"]\n",
    );
    let home = tempfile::tempdir().unwrap();
    let run = mab_with_env(
        home.path(),
        project.path(),
        &[
            "build",
            "--progress",
            "json",
            "--no-push",
            "--network",
            "none",
        ],
        &[("MAB_LOG", Some("debug"))],
    );
    assert_eq!(run.code, 1, "{run:?}");
    let failed = run.events_named("job_failed");
    assert_eq!(failed.len(), 1, "{run:?}");
    assert_eq!(failed[0]["platform"], "linux/amd64");
    assert_eq!(failed[0]["runner"], "local");
    assert_eq!(failed[0]["kind"], "build");
    assert!(
        !run.events()
            .iter()
            .any(|event| event["event"] == "phase_finished"),
        "{run:?}"
    );
    let diagnostics = run.events_named("diagnostic");
    assert!(
        diagnostics.iter().any(|event| event["level"] == "debug"),
        "MAB_LOG=debug lines are events: {run:?}"
    );

    let result = run.result_event();
    assert_eq!(result["exit_code"], 1);
    assert_eq!(result["digest"], serde_json::Value::Null);
    assert_eq!(result["no_push"], true);
    let error = &result["error"];
    assert_eq!(
        error["message"],
        "build failed for linux/amd64 (runner local); nothing was published"
    );
    let hints = error["hints"].as_array().unwrap();
    assert_eq!(hints.len(), 1, "{error}");
    assert!(
        hints[0].as_str().unwrap().contains("fix the Dockerfile"),
        "{error}"
    );
    let details = error["details"].as_array().unwrap();
    assert!(
        details[0]
            .as_str()
            .unwrap()
            .starts_with("linux/amd64 on local: "),
        "{error}"
    );
    assert!(
        details
            .iter()
            .any(|line| line.as_str().unwrap().contains("no-such-program")),
        "the log's tail names the step: {error}"
    );
}

/// A host key learnt with `StrictHostKeyChecking accept-new` (a warning of
/// the SSH library) is a `warning:` line with plain progress and a
/// `warning` event with JSON progress.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_library_warning_goes_through_the_renderer() {
    let lab = require_lab!();
    let project = one_platform(
        lab,
        "progress-warning",
        "linux/arm64",
        "FROM scratch\nCOPY Dockerfile /\n",
    );
    project.file("runners.toml", &runner_a_for_arm64(lab));
    let home = Home::new(lab);
    let config = home.path().join(".ssh/config");
    let rest = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("Host runner-a\n    StrictHostKeyChecking accept-new\n\n{rest}"),
    )
    .unwrap();
    let learnt = "learnt the host key of ";

    let _ssh = ssh_lock();
    home.write_known_hosts("");
    let plain = mab(
        home.path(),
        project.path(),
        &["build", "--progress", "plain", "--no-push"],
    );
    assert_eq!(plain.code, 0, "{plain:?}");
    let warnings: Vec<&str> = plain
        .stderr
        .lines()
        .filter(|line| line.contains(learnt))
        .collect();
    assert_eq!(warnings.len(), 1, "{plain:?}");
    assert!(
        warnings[0].starts_with(&format!("warning: {learnt}")),
        "{plain:?}"
    );
    assert!(
        plain
            .stderr
            .ends_with("built and verified every platform; nothing was pushed (--no-push)\n"),
        "{plain:?}"
    );

    home.write_known_hosts("");
    let json = mab(
        home.path(),
        project.path(),
        &["build", "--progress", "json", "--no-push"],
    );
    assert_eq!(json.code, 0, "{json:?}");
    let warnings: Vec<serde_json::Value> = json
        .events_named("warning")
        .into_iter()
        .filter(|event| event["message"].as_str().unwrap().contains(learnt))
        .collect();
    assert_eq!(warnings.len(), 1, "{json:?}");
    assert!(
        warnings[0]["message"].as_str().unwrap().starts_with(learnt),
        "{json:?}"
    );
    assert_eq!(json.result_event()["no_push"], true);
}
