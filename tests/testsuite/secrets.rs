//! Build secrets on the lab: `--secret id=tok,env=VAR` and an
//! `[image.secrets]` file reach `RUN --mount=type=secret` on every platform
//! (the local engine, runner-a and runner-b over SSH), and their values are
//! nowhere else: not in any layer or config (history included) of the
//! published images, read with skopeo, nor in mab's output (plain and
//! JSON), its metadata file or its state directory.

use std::fs;
use std::path::Path;
use std::process::Command;

use base64::prelude::{Engine, BASE64_STANDARD};

use crate::support::{
    image_dir, mab_with_env, require_lab, sha256, skopeo_raw, ssh_lock, Home, Project,
};

/// `text` in base64.
fn base64(text: &str) -> String {
    BASE64_STANDARD.encode(text)
}

/// Every blob of the image `reference` (manifest, config, layers with the
/// gzip layers decompressed), named, read with skopeo into a directory.
fn image_blobs(reference: &str) -> Vec<(String, Vec<u8>)> {
    let directory = image_dir(reference);
    let mut blobs = Vec::new();
    for entry in fs::read_dir(directory.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = fs::read(&path).unwrap();
        let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
            let output = Command::new("gzip").arg("-dc").arg(&path).output().unwrap();
            assert!(output.status.success(), "gunzip {}", path.display());
            output.stdout
        } else {
            bytes
        };
        blobs.push((path.display().to_string(), bytes));
    }
    // The config and three layers at least (busybox, the RUN's /proof).
    assert!(
        blobs.len() >= 4,
        "{reference}: {blobs:?}",
        blobs = blobs.len()
    );
    blobs
}

/// Every file under `directory`, named, with its bytes.
fn files_under(directory: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let Ok(entries) = fs::read_dir(directory) else {
        return files;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push((path.display().to_string(), fs::read(&path).unwrap()));
        }
    }
    files
}

/// Panics when any of `places` holds any of `needles`.
fn assert_absent(places: &[(String, Vec<u8>)], needles: &[String]) {
    for (name, bytes) in places {
        for needle in needles {
            let found = bytes
                .windows(needle.len())
                .any(|window| window == needle.as_bytes());
            assert!(!found, "{name} holds a secret value ({needle:?})");
        }
    }
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn secrets_reach_run_steps_on_every_platform_and_nothing_else() {
    let lab = require_lab!();
    let repository = lab.repository("secrets");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let token = format!("tok-value-{nanos:x}-from-env");
    let netrc = format!("machine example.com password netrc-{nanos:x}-from-file\n");
    let digest = |value: &str| sha256(value.as_bytes())["sha256:".len()..].to_owned();
    let (token_digest, netrc_digest) = (digest(&token), digest(&netrc));

    // The context is app/; the [image.secrets] file lies beside mab.toml,
    // outside it, named relative to mab.toml's directory.
    let project = Project::new();
    for architecture in ["amd64", "arm64", "ppc64le"] {
        project.file(&format!("app/busybox/{architecture}"), "");
        fs::copy(
            lab.busybox(architecture),
            project.path().join("app/busybox").join(architecture),
        )
        .unwrap();
    }
    // The RUN step fails unless both values are what this run gave (the
    // digests in the Dockerfile also make the step new to every cache),
    // and an optional secret the build was not given is left out (mab
    // answers NotFound, as BuildKit's own store does).
    let check = format!(
        "cd /run/secrets && /bin/busybox sha256sum tok netrc > /proof && \
         test ! -e absent && \
         test \\\"$(/bin/busybox sha256sum < tok)\\\" = \\\"{token_digest}  -\\\" && \
         test \\\"$(/bin/busybox sha256sum < netrc)\\\" = \\\"{netrc_digest}  -\\\""
    );
    project
        .file(
            "app/Dockerfile",
            &format!(
                "FROM scratch\nARG TARGETARCH\nCOPY busybox/${{TARGETARCH}} /bin/busybox\nARG ROUND\n\
                 RUN --mount=type=secret,id=tok --mount=type=secret,id=netrc --mount=type=secret,id=absent,required=false [\"/bin/busybox\", \"sh\", \"-c\", \"{check}\"]\n"
            ),
        )
        .file("netrc.txt", &netrc)
        .file(
            "mab.toml",
            &format!(
                "[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\", \"linux/arm64\", \"linux/ppc64le\"]\ncontext = \"app\"\n\n\
                 [image.secrets]\nnetrc = {{ src = \"netrc.txt\" }}\n"
            ),
        )
        .file(
            "runners.toml",
            &format!(
                "[[runner]]\nname = \"here\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\nengine = \"{local}\"\n\n\
                 [[runner]]\nname = \"arm\"\nhost = \"runner-a\"\nplatforms = [\"linux/arm64\"]\nengine = \"unix://{a}\"\n\n\
                 [[runner]]\nname = \"power\"\nhost = \"runner-b\"\nplatforms = [\"linux/ppc64le\"]\nengine = \"unix://{b}\"\n",
                local = lab.get("LOCAL_ENGINE"),
                a = lab.get("RUNNER_A_ENGINE_SOCKET"),
                b = lab.get("RUNNER_B_ENGINE_SOCKET"),
            ),
        );
    let home = Home::new(lab);
    let _ssh = ssh_lock();
    let metadata = project.path().join("metadata.json");
    let mut outputs = Vec::new();
    // Each round's build argument makes the RUN step new to every cache, so
    // both runs ask for the secrets; the JSON one logs everything
    // (`MAB_LOG=trace`), which must not show them either.
    for (progress, log) in [("plain", "info"), ("json", "trace")] {
        let variables = [
            ("MAB_TEST_TOKEN", Some(token.as_str())),
            ("MAB_LOG", Some(log)),
        ];
        let round = format!("ROUND={progress}");
        let run = mab_with_env(
            home.path(),
            project.path(),
            &[
                "build",
                "--tag",
                "secrets",
                "--progress",
                progress,
                "--metadata-file",
                metadata.to_str().unwrap(),
                "--secret",
                "id=tok,env=MAB_TEST_TOKEN",
                "--build-arg",
                &round,
            ],
            &variables,
        );
        assert_eq!(run.code, 0, "{progress}: {run:?}");
        if progress == "json" {
            // The step ran again on every platform: not cached.
            let runs: Vec<bool> = run
                .stdout
                .lines()
                .chain(run.stderr.lines())
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter(|event| {
                    event["event"] == "step"
                        && event["step"]
                            .as_str()
                            .is_some_and(|step| step.contains("sha256sum"))
                })
                .map(|event| event["cached"].as_bool().unwrap())
                .collect();
            assert_eq!(runs, [false; 3], "{run:?}");
            // Every platform's engine read both secrets from mab (the
            // session's log, by id only) and asked for the absent one.
            for read in [
                "read the secret tok",
                "read the secret netrc",
                "secret absent, which",
            ] {
                assert_eq!(run.stderr.matches(read).count(), 3, "{read}: {run:?}");
            }
        }
        outputs.push((format!("stdout ({progress})"), run.stdout.into_bytes()));
        outputs.push((format!("stderr ({progress})"), run.stderr.into_bytes()));
        outputs.push((
            format!("metadata ({progress})"),
            fs::read(&metadata).unwrap(),
        ));
    }

    // Each platform's RUN read both values: /proof holds their digests.
    let list: serde_json::Value =
        serde_json::from_slice(&skopeo_raw(&format!("{repository}:secrets"))).unwrap();
    let entries = list["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{list}");
    let mut places = outputs;
    for entry in entries {
        let reference = format!("{repository}@{}", entry["digest"].as_str().unwrap());
        let proof = crate::support::image_file(&reference, "proof");
        assert_eq!(
            proof,
            format!("{token_digest}  tok\n{netrc_digest}  netrc\n"),
            "{}",
            entry["platform"]
        );
        places.extend(image_blobs(&reference));
    }
    places.extend(files_under(&home.path().join(".local/state/mab")));
    assert!(
        places
            .iter()
            .any(|(name, _)| name.contains(".local/state/mab")),
        "the state directory was written"
    );
    let netrc_part = format!("netrc-{nanos:x}-from-file");
    let needles: Vec<String> = [token.as_str(), netrc.trim_end(), &netrc_part]
        .into_iter()
        .flat_map(|value| [value.to_owned(), base64(value)])
        .collect();
    assert_absent(&places, &needles);
}
