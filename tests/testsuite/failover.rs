//! Failover on the real lab: the first runner listed for the platforms
//! points at an address where nothing listens, the second is a lab runner.
//! The platforms move (the warning names both runners and the reason, the
//! metadata records it, the registry holds the list, read with skopeo);
//! with `--no-fallback` the build fails naming the runner, writes the
//! metadata with each platform's state and error, and leaves the
//! registry's tags as they were. A second test moves a platform at run
//! time, off a runner whose engine drops the build request (a proxy in
//! front of the local engine).

use std::fs;

use crate::support::{
    mab, require_lab, sha256, skopeo_raw, skopeo_tags, ssh_lock, Home, Lab, Project,
};

/// A port on 127.0.0.1 where nothing listens: bound, then let go.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A `FROM scratch` project for linux/amd64 and linux/386 (both native on
/// runner-b); `down` (nothing listens at its address) is listed before
/// `b` (runner-b) for both.
fn project(lab: &Lab, repository: &str, port: u16) -> Project {
    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\nCOPY content.txt /\n")
        .file("content.txt", "failover\n")
        .file(
            "mab.toml",
            &format!(
                "[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\", \"linux/386\"]\n"
            ),
        )
        .file(
            "runners.toml",
            &format!(
                "[[runner]]\nname = \"down\"\nhost = \"root@127.0.0.1:{port}\"\nplatforms = [\"linux/amd64\", \"linux/386\"]\n\n\
                 [[runner]]\nname = \"b\"\nhost = \"runner-b\"\nplatforms = [\"linux/amd64\", \"linux/386\"]\nengine = \"unix://{b}\"\n",
                b = lab.get("RUNNER_B_ENGINE_SOCKET"),
            ),
        );
    project
}

/// `mab build --progress PROGRESS --metadata-file metadata.json ARGS`:
/// the run and the metadata file's JSON (written whether it failed or not).
fn build(
    home: &Home,
    project: &Project,
    progress: &str,
    arguments: &[&str],
) -> (crate::support::Run, serde_json::Value) {
    let metadata = project.path().join("metadata.json");
    let mut all = vec![
        "build",
        "--progress",
        progress,
        "--metadata-file",
        metadata.to_str().unwrap(),
    ];
    all.extend_from_slice(arguments);
    let run = mab(home.path(), project.path(), &all);
    let json = serde_json::from_str(&fs::read_to_string(&metadata).unwrap())
        .unwrap_or_else(|error| panic!("the metadata file is JSON ({error}): {run:?}"));
    (run, json)
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn platforms_move_off_an_unreachable_runner_unless_fallback_is_off() {
    let lab = require_lab!();
    let repository = lab.repository("failover");
    let port = free_port();
    let project = project(lab, &repository, port);
    let home = Home::new(lab);
    let _ssh = ssh_lock();

    let (run, metadata) = build(&home, &project, "plain", &["--tag", "moved"]);
    assert_eq!(run.code, 0, "{run:?}");
    let platforms = metadata["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 2, "{metadata:#}");
    let reason = platforms[0]["reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains(&format!("127.0.0.1:{port}")) && reason.contains("refused"),
        "{reason}"
    );
    for (entry, platform) in platforms.iter().zip(["linux/amd64", "linux/386"]) {
        assert_eq!(entry["platform"], platform, "{metadata:#}");
        assert_eq!(entry["runner"], "b", "{metadata:#}");
        assert_eq!(entry["state"], "published", "{metadata:#}");
        assert_eq!(entry["emulated"], false, "{metadata:#}");
        assert_eq!(entry["moved_from"], "down", "{metadata:#}");
        assert_eq!(entry["reason"], reason.as_str(), "{metadata:#}");
        assert_eq!(entry["error"], serde_json::Value::Null, "{metadata:#}");
        let warning = format!(
            "warning: {platform} moved from runner `down` to runner `b` (native): {reason}"
        );
        assert_eq!(
            run.stderr.lines().filter(|line| *line == warning).count(),
            1,
            "{warning:?} once in {run:?}"
        );
    }
    assert_eq!(metadata["missing"], serde_json::json!([]));

    // The registry holds the list under the tag, with both platforms' images
    // as the metadata names them.
    let raw = skopeo_raw(&format!("{repository}:moved"));
    assert_eq!(metadata["digest"], sha256(&raw), "{metadata:#}");
    let list: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let children: Vec<(String, String)> = list["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|child| {
            (
                child["platform"]["architecture"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                child["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        children,
        [
            (
                "amd64".to_owned(),
                platforms[0]["digest"].as_str().unwrap().to_owned()
            ),
            (
                "386".to_owned(),
                platforms[1]["digest"].as_str().unwrap().to_owned()
            ),
        ]
    );
    let tags_before = skopeo_tags(&repository);
    let list_before = sha256(&skopeo_raw(&format!("{repository}:moved")));

    // --no-fallback, and then `fallback = false` under [image]: exit 1
    // naming the runner, nothing built or published, the metadata written.
    let manifest = fs::read_to_string(project.path().join("mab.toml")).unwrap();
    let keyed = format!("{manifest}fallback = false\n");
    for (how, arguments, toml) in [
        (
            "--no-fallback",
            vec!["--tag", "stranded", "--no-fallback"],
            &manifest,
        ),
        ("fallback = false", vec!["--tag", "stranded"], &keyed),
    ] {
        project.file("mab.toml", toml);
        let (run, metadata) = build(&home, &project, "plain", &arguments);
        assert_eq!(run.code, 1, "{how}: {run:?}");
        let error = run
            .stderr
            .lines()
            .find(|line| line.starts_with("error: "))
            .unwrap_or_else(|| panic!("{how}: no error line in {run:?}"));
        assert_eq!(
            error,
            "error: build failed for linux/amd64 (runner down), linux/386 (runner down); nothing was published",
            "{how}"
        );
        for platform in ["linux/amd64", "linux/386"] {
            assert!(
                run.stderr
                    .contains(&format!("  | {platform} on down: {reason}")),
                "{how}: {run:?}"
            );
        }
        assert!(
            run.stderr.contains(
                "hint: check runner `down` with `mab runners check`, or let another runner build it: take --no-fallback off the command line"
            ),
            "{how}: {run:?}"
        );
        assert!(
            !run.stderr.contains(" moved from runner "),
            "{how}: {run:?}"
        );
        assert!(
            !run.stderr.contains("job_started") && !run.stderr.contains("started ("),
            "{how}: nothing started: {run:?}"
        );
        assert_eq!(metadata["digest"], serde_json::Value::Null, "{how}");
        assert_eq!(
            metadata["missing"],
            serde_json::json!(["linux/amd64", "linux/386"]),
            "{how}"
        );
        for (entry, platform) in metadata["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .zip(["linux/amd64", "linux/386"])
        {
            assert_eq!(entry["platform"], platform, "{how}: {metadata:#}");
            assert_eq!(entry["runner"], "down", "{how}: {metadata:#}");
            assert_eq!(entry["state"], "failed", "{how}: {metadata:#}");
            assert_eq!(
                entry["error"],
                serde_json::json!({ "kind": "runner", "message": reason }),
                "{how}: {metadata:#}"
            );
            assert_eq!(entry["digest"], serde_json::Value::Null, "{how}");
            assert_eq!(entry["moved_from"], serde_json::Value::Null, "{how}");
        }
        assert_eq!(
            skopeo_tags(&repository),
            tags_before,
            "{how}: tags unchanged"
        );
        assert_eq!(
            sha256(&skopeo_raw(&format!("{repository}:moved"))),
            list_before,
            "{how}: the list unchanged"
        );
    }
}

/// A runner's engine that answers every request but the ones that start a
/// build: a TCP proxy in front of the local engine's socket that closes
/// the connection of `POST /session` and `POST /build` without an answer,
/// as an engine does that refuses or resets them. Returns its port.
fn engine_refusing_builds(socket: &str) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let socket = socket.to_owned();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let socket = socket.clone();
            std::thread::spawn(move || {
                // The request's head, to see what it asks for.
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match client.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let path = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                let path = path.split('?').next().unwrap_or_default();
                if line.starts_with("POST ")
                    && (path.ends_with("/session") || path.ends_with("/build"))
                {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    return;
                }
                let Ok(mut engine) = std::os::unix::net::UnixStream::connect(&socket) else {
                    return;
                };
                if engine.write_all(&head).is_err() {
                    return;
                }
                let (mut client_back, mut engine_back) =
                    (client.try_clone().unwrap(), engine.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut engine_back, &mut client_back);
                    let _ = client_back.shutdown(std::net::Shutdown::Both);
                });
                let _ = std::io::copy(&mut client, &mut engine);
                let _ = engine.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

/// A runner that passes the probes but whose engine drops every build
/// request before answering: the platform moves at run time to the next
/// runner (the job's failure on the first is a `job_failed` event, the move
/// a `moved` one); with `--no-fallback` the build fails naming it.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_runner_that_drops_the_build_request_loses_its_platform() {
    let lab = require_lab!();
    let repository = lab.repository("failover-runtime");
    let socket = lab
        .get("LOCAL_ENGINE")
        .trim_start_matches("unix://")
        .to_owned();
    let port = engine_refusing_builds(&socket);
    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\nCOPY content.txt /\n")
        .file("content.txt", "moved at run time\n")
        .file(
            "mab.toml",
            &format!("[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\"]\n"),
        )
        .file(
            "runners.toml",
            &format!(
                "[[runner]]\nname = \"flaky\"\nhost = \"local\"\nengine = \"tcp://127.0.0.1:{port}\"\nplatforms = [\"linux/amd64\"]\n\n\
                 [[runner]]\nname = \"steady\"\nhost = \"local\"\nengine = \"unix://{socket}\"\nplatforms = [\"linux/amd64\"]\n"
            ),
        );
    let home = Home::new(lab);

    let (run, metadata) = build(&home, &project, "json", &["--tag", "moved"]);
    assert_eq!(run.code, 0, "{run:?}");
    let events: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let plan = events
        .iter()
        .find(|event| event["event"] == "plan")
        .unwrap();
    assert_eq!(plan["jobs"][0]["runner"], "flaky", "{run:?}");
    let failed = events
        .iter()
        .find(|event| event["event"] == "job_failed")
        .unwrap_or_else(|| panic!("a job_failed event: {run:?}"));
    assert_eq!(failed["runner"], "flaky");
    assert_eq!(failed["kind"], "runner");
    let reason = failed["message"].as_str().unwrap().to_owned();
    assert!(
        reason.starts_with("the Docker engine of flaky did not answer POST /session"),
        "{reason}"
    );
    let moved: Vec<&serde_json::Value> = events
        .iter()
        .filter(|event| event["event"] == "moved")
        .collect();
    assert_eq!(
        moved,
        [&serde_json::json!({
            "schema": 1,
            "event": "moved",
            "platform": "linux/amd64",
            "from": "flaky",
            "to": "steady",
            "emulated": false,
            "reason": reason,
        })]
    );
    let entry = &metadata["platforms"][0];
    assert_eq!(entry["runner"], "steady", "{metadata:#}");
    assert_eq!(entry["state"], "published", "{metadata:#}");
    assert_eq!(entry["moved_from"], "flaky", "{metadata:#}");
    assert_eq!(entry["reason"], reason.as_str(), "{metadata:#}");
    let raw = skopeo_raw(&format!("{repository}:moved"));
    assert_eq!(metadata["digest"], sha256(&raw), "{metadata:#}");
    let list: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(list["manifests"][0]["digest"], entry["digest"], "{list:#}");
    let tags_before = skopeo_tags(&repository);

    let (run, metadata) = build(
        &home,
        &project,
        "plain",
        &["--tag", "stranded", "--no-fallback"],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("error: build failed for linux/amd64 (runner flaky); nothing was published\n  | linux/amd64 on flaky: the Docker engine of flaky did not answer POST /session"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains(
            "hint: check runner `flaky` with `mab runners check`, or let another runner build it: take --no-fallback off the command line"
        ),
        "{run:?}"
    );
    assert!(!run.stderr.contains(" moved from runner "), "{run:?}");
    assert_eq!(metadata["digest"], serde_json::Value::Null, "{metadata:#}");
    assert_eq!(metadata["missing"], serde_json::json!(["linux/amd64"]));
    let entry = &metadata["platforms"][0];
    assert_eq!(entry["runner"], "flaky", "{metadata:#}");
    assert_eq!(entry["state"], "failed", "{metadata:#}");
    assert_eq!(entry["error"]["kind"], "runner", "{metadata:#}");
    assert!(
        entry["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("the Docker engine of flaky did not answer POST /session"),
        "{metadata:#}"
    );
    assert_eq!(skopeo_tags(&repository), tags_before, "tags unchanged");
}
