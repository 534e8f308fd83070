//! `mab runners`, `mab plan` and `mab init`, as a cluster admin and a
//! developer use them.

use crate::support::{
    checked_runner, mab, require_lab, runners_check_json, ssh_lock, Home, Project, Run,
};

/// Replaces a temporary directory in stdout and stderr.
fn filtered(mut run: Run, directory: &std::path::Path, placeholder: &str) -> Run {
    let path = directory.to_str().unwrap();
    run.stdout = run.stdout.replace(path, placeholder);
    run.stderr = run.stderr.replace(path, placeholder);
    run
}

#[test]
fn add_list_and_remove_edit_the_file_in_place() {
    let home = tempfile::tempdir().unwrap();
    let here = Project::new();
    let run = |arguments: &[&str]| {
        filtered(
            mab(home.path(), here.path(), arguments),
            home.path(),
            "[HOME]",
        )
    };

    // No runners file anywhere: `add` creates ~/.config/mab/runners.toml.
    let listed = run(&["runners", "list"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(
        listed.stdout.contains("implicit `local` runner"),
        "{listed:?}"
    );
    let added = run(&[
        "runners",
        "add",
        "power9-01",
        "--host",
        "builder@p9-01:2222",
        "--platform",
        "linux/ppc64le",
    ]);
    assert_eq!(added.code, 0, "{added:?}");
    assert_eq!(
        added.stdout,
        "added runner `power9-01` to [HOME]/.config/mab/runners.toml\n"
    );
    let file = home.path().join(".config/mab/runners.toml");

    // A comment the admin wrote survives the next edits.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        format!("# Rack 3, managed by the build team.\n\n{text}"),
    )
    .unwrap();
    let second = run(&[
        "runners",
        "add",
        "arm-01",
        "--host",
        "arm-01",
        "--platform",
        "linux/arm64,linux/arm/v7",
        "--jobs",
        "2",
        "--network",
        "host",
    ]);
    assert_eq!(second.code, 0, "{second:?}");
    insta::assert_snapshot!(
        "runners_file_after_add",
        std::fs::read_to_string(&file).unwrap()
    );

    let table = run(&["runners", "list"]);
    assert_eq!(table.code, 0, "{table:?}");
    insta::assert_snapshot!("runners_list", table.stdout);
    let json = run(&["runners", "list", "--format", "json"]).json();
    assert_eq!(json["runners"][1]["name"], "arm-01");
    assert_eq!(json["runners"][1]["jobs"], 2);
    assert_eq!(json["runners"][1]["network"], "host");
    assert_eq!(
        json["runners"][1]["platforms"],
        serde_json::json!(["linux/arm64", "linux/arm/v7"])
    );

    // Mistakes change nothing and say why.
    let before = std::fs::read_to_string(&file).unwrap();
    let duplicate = run(&[
        "runners",
        "add",
        "arm-01",
        "--host",
        "x",
        "--platform",
        "linux/arm64",
    ]);
    assert_eq!(duplicate.code, 2, "{duplicate:?}");
    insta::assert_snapshot!("runners_add_duplicate", duplicate.stderr);
    let bad_platform = run(&[
        "runners",
        "add",
        "z",
        "--host",
        "z",
        "--platform",
        "linux/arm46",
    ]);
    assert_eq!(bad_platform.code, 2, "{bad_platform:?}");
    insta::assert_snapshot!("runners_add_bad_platform", bad_platform.stderr);
    let bad_jobs = run(&[
        "runners",
        "add",
        "z",
        "--host",
        "z",
        "--platform",
        "linux/arm64",
        "--jobs",
        "0",
    ]);
    assert_eq!(bad_jobs.code, 2, "{bad_jobs:?}");
    let unknown = run(&["runners", "remove", "arm-10"]);
    assert_eq!(unknown.code, 2, "{unknown:?}");
    insta::assert_snapshot!("runners_remove_unknown", unknown.stderr);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);

    let removed = run(&["runners", "remove", "power9-01"]);
    assert_eq!(removed.code, 0, "{removed:?}");
    let after = std::fs::read_to_string(&file).unwrap();
    assert!(
        after.starts_with("# Rack 3, managed by the build team.\n"),
        "{after}"
    );
    assert!(
        !after.contains("power9-01") && after.contains("arm-01"),
        "{after}"
    );
}

#[test]
fn init_writes_a_manifest_once() {
    let home = tempfile::tempdir().unwrap();
    let project = Project::new();
    let missing = filtered(
        mab(home.path(), project.path(), &["init"]),
        project.path(),
        "[PROJECT]",
    );
    assert_eq!(missing.code, 2, "{missing:?}");
    insta::assert_snapshot!("init_without_dockerfile", missing.stderr);
    project.file("Dockerfile", "FROM scratch\n");
    let written = mab(
        home.path(),
        project.path(),
        &[
            "init",
            "--image",
            "registry.example.com/team/app",
            "--platform",
            "linux/amd64,linux/s390x",
        ],
    );
    assert_eq!(written.code, 0, "{written:?}");
    insta::assert_snapshot!(
        "init_manifest",
        std::fs::read_to_string(project.path().join("mab.toml")).unwrap()
    );
    let again = filtered(
        mab(home.path(), project.path(), &["init"]),
        project.path(),
        "[PROJECT]",
    );
    assert_eq!(again.code, 2, "{again:?}");
    insta::assert_snapshot!("init_refuses_to_overwrite", again.stderr);
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn check_reports_what_each_runner_can_build() {
    let lab = require_lab!();
    let home = Home::new(lab);
    let project = Project::new();
    project.file(
        "runners.toml",
        &format!(
            "[[runner]]\nname = \"arm\"\nhost = \"runner-a\"\nplatforms = [\"linux/arm64\", \"linux/s390x\"]\nengine = \"unix://{socket}\"\n\n\
             [[runner]]\nname = \"here\"\nhost = \"local\"\nplatforms = [\"linux/amd64\", \"linux/386\"]\nengine = \"{local}\"\n\n\
             [[runner]]\nname = \"gone\"\nhost = \"root@127.0.0.9:1\"\nplatforms = [\"linux/arm64\"]\n\n\
             [[runner]]\nname = \"riscv\"\nhost = \"runner-b\"\nplatforms = [\"linux/riscv64\"]\nengine = \"unix://{socket_b}\"\n",
            socket = lab.get("RUNNER_A_ENGINE_SOCKET"),
            socket_b = lab.get("RUNNER_B_ENGINE_SOCKET"),
            local = lab.get("LOCAL_ENGINE"),
        ),
    );
    // runner-b lists only the lab's QEMU handlers (its own view of
    // binfmt_misc, set up by tests/lab/host-main), whatever this machine
    // registers: qemu-riscv64 is not among them.
    let _ssh = ssh_lock();
    let run = runners_check_json(home.path(), project.path());
    assert_eq!(run.code, 1, "two runners are unusable: {run:?}");
    assert!(
        run.stderr.contains("2 of 4 runner(s) cannot be used"),
        "{run:?}"
    );
    let json = run.json();
    let runner = |name: &str| checked_runner(&json, name);
    let arm = runner("arm");
    assert_eq!(arm["ok"], true, "{arm}");
    assert_eq!(arm["arch"], "amd64");
    assert_eq!(arm["api_version"], "1.41");
    assert_eq!(arm["engine_kind"], "docker", "{arm}");
    assert!(
        arm["engine_version"].as_str().unwrap().starts_with("20.10"),
        "{arm}"
    );
    assert!(arm["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(arm["disk_free_bytes"].as_u64().unwrap() > 0);
    assert_eq!(
        arm["platforms"],
        serde_json::json!({"linux/arm64": "emulated", "linux/s390x": "emulated"})
    );
    assert_eq!(
        runner("here")["platforms"],
        serde_json::json!({"linux/amd64": "native", "linux/386": "native"})
    );
    // The slots on each host (runner-a's may be in use by other tests).
    assert_eq!(
        runner("here")["slots"],
        serde_json::json!({"jobs": 1, "in_use": 0})
    );
    assert_eq!(arm["slots"]["jobs"], 1, "{arm}");
    assert!(arm["slots"]["in_use"].is_u64(), "{arm}");
    assert_eq!(runner("gone")["slots"], serde_json::Value::Null);
    let gone = runner("gone");
    assert_eq!(gone["engine_kind"], serde_json::Value::Null, "{gone}");
    assert_eq!(
        (gone["ok"].clone(), gone["error_kind"].clone()),
        (false.into(), "refused".into()),
        "{gone}"
    );
    assert!(
        gone["error"].as_str().unwrap().contains("127.0.0.9:1"),
        "{gone}"
    );
    let riscv = runner("riscv");
    assert_eq!(
        (riscv["ok"].clone(), riscv["error_kind"].clone()),
        (false.into(), "engine".into()),
        "{riscv}"
    );
    assert_eq!(riscv["platforms"]["linux/riscv64"], "unavailable");
    assert!(riscv["hint"].as_str().unwrap().contains("QEMU"), "{riscv}");

    let only = mab(
        home.path(),
        project.path(),
        &["runners", "check", "here", "--runners", "runners.toml"],
    );
    assert_eq!(only.code, 0, "{only:?}");
    assert!(
        only.stdout.contains("linux/amd64 native") && !only.stdout.contains("arm"),
        "{only:?}"
    );
    assert!(only.stdout.contains("  0 of 1 in use  "), "{only:?}");
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn plan_says_which_runner_builds_what_and_why() {
    let lab = require_lab!();
    let home = Home::new(lab);
    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\n")
        .file(
            "mab.toml",
            "[image]\nname = \"127.0.0.1:5000/tests/plan\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n",
        )
        .file(
            "runners.toml",
            &format!(
                "[[runner]]\nname = \"arm\"\nhost = \"runner-a\"\nplatforms = [\"linux/arm64\"]\nengine = \"unix://{socket}\"\n\n\
                 [[runner]]\nname = \"here\"\nhost = \"local\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\nengine = \"{local}\"\n",
                socket = lab.get("RUNNER_A_ENGINE_SOCKET"),
                local = lab.get("LOCAL_ENGINE"),
            ),
        );
    let _ssh = ssh_lock();
    let run = mab(home.path(), project.path(), &["plan", "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    insta::assert_snapshot!("plan_json", run.stdout);
    let human = mab(home.path(), project.path(), &["plan"]);
    assert_eq!(human.code, 0, "{human:?}");
    insta::assert_snapshot!("plan_human", human.stdout);
}

/// Runner entries that name one host share its SSH connection: twenty
/// entries on two hosts (ten each, as an admin lists one entry per slot
/// group or team) and two on a host that refuses connections. `mab
/// runners check`, `mab plan` and `mab build` each open one SSH
/// connection per host, counted from the logins the hosts' sshd accepted
/// (docs/runners.md); `check` gives each entry its own report in
/// runners.toml order, and both entries on the refusing host say so.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn entries_naming_one_host_share_its_connection() {
    let lab = require_lab!();
    let home = Home::new(lab);
    let project = Project::new();
    let entry = |index: usize, host: &str, platform: &str| {
        let socket = lab.get(&format!(
            "{}_ENGINE_SOCKET",
            host.to_uppercase().replace('-', "_")
        ));
        format!(
            "[[runner]]\nname = \"{host}-{index}\"\nhost = \"{host}\"\nplatforms = [\"{platform}\"]\nengine = \"unix://{socket}\"\n\n"
        )
    };
    let mut runners: String = (0..10)
        .flat_map(|index| {
            [
                entry(index, "runner-a", "linux/arm64"),
                entry(index, "runner-b", "linux/ppc64le"),
            ]
        })
        .collect();
    // They list a platform the build does not ask for: only `check`
    // contacts them.
    for index in 0..2 {
        runners.push_str(&format!(
            "[[runner]]\nname = \"gone-{index}\"\nhost = \"root@127.0.0.9:1\"\nplatforms = [\"linux/s390x\"]\n\n"
        ));
    }
    project
        .file("Dockerfile", "FROM scratch\nCOPY content.txt /\n")
        .file("content.txt", "shared\n")
        .file(
            "mab.toml",
            "[image]\nname = \"127.0.0.1:5000/tests/shared-hosts\"\nplatforms = [\"linux/arm64\", \"linux/ppc64le\"]\n",
        )
        .file("runners.toml", &runners);
    let (runner_a, runner_b) = (lab.host("runner-a"), lab.host("runner-b"));
    let _ssh = ssh_lock();
    let logins = |arguments: &[&str]| {
        let before = (runner_a.logins(), runner_b.logins());
        let run = mab(home.path(), project.path(), arguments);
        let after = (runner_a.logins(), runner_b.logins());
        ((after.0 - before.0, after.1 - before.1), run)
    };

    let (opened, check) = logins(&["runners", "check", "--format", "json"]);
    assert_eq!(opened, (1, 1), "check: one connection per host: {check:?}");
    assert_eq!(check.code, 1, "two runners are unusable: {check:?}");
    assert!(
        check.stderr.contains("2 of 22 runner(s) cannot be used"),
        "{check:?}"
    );
    let json = check.json();
    let reports = json["runners"].as_array().unwrap();
    let listed: Vec<(String, bool, serde_json::Value)> = reports
        .iter()
        .map(|runner| {
            (
                runner["name"].as_str().unwrap().to_owned(),
                runner["ok"].as_bool().unwrap(),
                runner["error_kind"].clone(),
            )
        })
        .collect();
    let mut expected: Vec<(String, bool, serde_json::Value)> = (0..10)
        .flat_map(|index| {
            ["runner-a", "runner-b"]
                .map(|host| (format!("{host}-{index}"), true, serde_json::Value::Null))
        })
        .collect();
    expected.extend((0..2).map(|index| (format!("gone-{index}"), false, "refused".into())));
    assert_eq!(listed, expected, "{json}");
    for report in &reports[..20] {
        let platform = match report["name"].as_str().unwrap().starts_with("runner-a") {
            true => "linux/arm64",
            false => "linux/ppc64le",
        };
        assert_eq!(report["platforms"][platform], "emulated", "{report}");
    }

    let (opened, plan) = logins(&["plan", "--format", "json"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let planned: Vec<(String, String)> = plan.json()["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| {
            let field = |name: &str| job[name].as_str().unwrap().to_owned();
            (field("platform"), field("runner"))
        })
        .collect();
    let first = |platform: &str, runner: &str| (platform.to_owned(), runner.to_owned());
    assert_eq!(
        planned,
        [
            first("linux/arm64", "runner-a-0"),
            first("linux/ppc64le", "runner-b-0")
        ],
        "{plan:?}"
    );
    assert_eq!(opened, (1, 1), "plan: one connection per host: {plan:?}");

    let (opened, build) = logins(&["build", "--no-push"]);
    assert_eq!(build.code, 0, "{build:?}");
    assert_eq!(opened, (1, 1), "build: one connection per host: {build:?}");
}

/// Entries that can hold more build slots at once on one host than its
/// one SSH connection holds (eight): `mab plan` and `mab runners check`
/// warn once, naming the host, its entries and the slots, with a hint.
/// Two entries naming two engines add up (the second names runner-a's
/// socket by another path, which gives it slot files of its own); naming
/// one engine they share its slots, so 5 + 5 there is not warned about,
/// nor is 4 + 4 on two engines.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn more_slots_on_a_host_than_its_connection_holds_are_warned_about() {
    let lab = require_lab!();
    let home = Home::new(lab);
    let project = Project::new();
    let socket = lab.get("RUNNER_A_ENGINE_SOCKET");
    // The same socket by another path: another engine to the slots.
    let (directory, file) = socket.rsplit_once('/').unwrap();
    let other = format!("{directory}/./{file}");
    let runners = |jobs: u32, engines: [&str; 2]| -> String {
        ["arm", "arm-too"]
            .iter()
            .zip(engines)
            .map(|(name, engine)| {
                format!(
                    "[[runner]]\nname = \"{name}\"\nhost = \"runner-a\"\nplatforms = [\"linux/arm64\"]\nengine = \"unix://{engine}\"\njobs = {jobs}\n\n"
                )
            })
            .collect()
    };
    project
        .file("Dockerfile", "FROM scratch\n")
        .file(
            "mab.toml",
            "[image]\nname = \"127.0.0.1:5000/tests/crowded-host\"\nplatforms = [\"linux/arm64\"]\n",
        )
        .file("runners.toml", &runners(5, [socket, other.as_str()]));
    let _ssh = ssh_lock();
    let slot_warnings = |run: &Run| -> Vec<String> {
        run.stderr
            .lines()
            .filter(|line| line.contains("build slots"))
            .map(str::to_owned)
            .collect()
    };
    for arguments in [
        &["plan", "--format", "json"][..],
        &["runners", "check", "--format", "json"],
    ] {
        let run = mab(home.path(), project.path(), arguments);
        assert_eq!(run.code, 0, "{arguments:?}: {run:?}");
        let warnings = slot_warnings(&run);
        assert_eq!(warnings.len(), 1, "{arguments:?}: once per host: {run:?}");
        let warning = &warnings[0];
        for part in [
            "warning: host `runner-a` (",
            "is given 10 build slots at once by runners `arm` (jobs = 5), `arm-too` (jobs = 5), \
             but one SSH connection holds at most 8 at once: at most 8 builds run at once on that host",
            "; hint: lower the `jobs` of those runners so that at most 8 are held at once",
        ] {
            assert!(warning.contains(part), "{arguments:?}: `{part}` missing in {warning}");
        }
    }

    for (jobs, engines) in [(5, [socket, socket]), (4, [socket, other.as_str()])] {
        project.file("runners.toml", &runners(jobs, engines));
        let run = mab(home.path(), project.path(), &["plan", "--format", "json"]);
        assert_eq!(run.code, 0, "{jobs} + {jobs}: {run:?}");
        assert_eq!(
            slot_warnings(&run),
            Vec::<String>::new(),
            "{jobs} + {jobs}: {run:?}"
        );
    }
}
