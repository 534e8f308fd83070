//! Every bad input gets one clear message (file:line:col or the host, and
//! a hint) and the exit code PRODUCT.md gives it, before anything is built.
//! The messages are snapshots, so wording is reviewed like code.

use crate::support::{credential_helper_script, mab, mab_with_env, GitProblem, Project, Run};

const DOCKERFILE: &str = "FROM scratch\nCOPY Dockerfile /\n";

fn project(manifest: &str) -> Project {
    let project = Project::new();
    project
        .file("Dockerfile", DOCKERFILE)
        .file("mab.toml", manifest);
    project
}

const GOOD_MANIFEST: &str =
    "[image]\nname = \"127.0.0.1:5000/tests/bad-input\"\nplatforms = [\"linux/amd64\"]\n";

/// Runs `mab ARGS` in the project with an empty home; returns the run with
/// the project's path replaced by `[PROJECT]`.
fn run(project: &Project, arguments: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut run = mab(home.path(), project.path(), arguments);
    let path = project.path().to_str().unwrap();
    run.stderr = run.stderr.replace(path, "[PROJECT]");
    run
}

/// The exit code and the message, with warnings (which name temporary
/// paths) kept. docs/errors.md shows each of these snapshots in a row
/// (`docs::every_bad_input_snapshot_is_a_row_of_docs_errors`).
fn check(name: &str, run: &Run, code: i32) {
    assert_eq!(run.code, code, "{name}: {run:?}");
    assert!(run.stdout.is_empty(), "{name}: nothing on stdout: {run:?}");
    assert!(!run.stderr.contains("panicked"), "{name}: {run:?}");
    assert!(run.stderr.contains("hint: "), "{name}: a hint: {run:?}");
    insta::assert_snapshot!(
        name,
        format!("exit code: {code}\n{}", run.stderr.trim_end())
    );
}

#[test]
fn malformed_mab_toml() {
    let project = project("[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/amd64\"\n");
    let run = run(&project, &["build"]);
    assert!(run.stderr.contains("[PROJECT]/mab.toml:3:"), "{run:?}");
    check("malformed_mab_toml", &run, 2);
}

#[test]
fn unknown_platform_in_mab_toml() {
    let project = project(
        "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/amd64\", \"linux/arm46\"]\n",
    );
    let run = run(&project, &["build"]);
    assert!(run.stderr.contains("[PROJECT]/mab.toml:3:29"), "{run:?}");
    check("unknown_platform_in_mab_toml", &run, 2);
}

#[test]
fn unknown_platform_flag() {
    let project = project(GOOD_MANIFEST);
    check(
        "unknown_platform_flag",
        &run(
            &project,
            &["build", "--platform", "linux/amd64,linux/sparc"],
        ),
        2,
    );
}

#[test]
fn unknown_variant_in_mab_toml() {
    let project =
        project("[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/riscv64/rva22u64\"]\n");
    let run = run(&project, &["build"]);
    assert!(run.stderr.contains("[PROJECT]/mab.toml:3:14"), "{run:?}");
    check("unknown_variant_in_mab_toml", &run, 2);
}

/// A runner that lists a platform whose QEMU handler its host lacks:
/// refused before building, naming it. runner-a lists only the lab's
/// handlers (its own view of binfmt_misc, set up by tests/lab/host-main),
/// whatever this machine registers, and qemu-mips64el is not among them.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn platform_without_its_handler() {
    let lab = crate::support::require_lab!();
    let project =
        project("[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/mips64el\"]\n");
    project.file(
        "runners.toml",
        &format!(
            "[[runner]]\nname = \"here\"\nhost = \"runner-a\"\nplatforms = [\"linux/mips64le\"]\nengine = \"unix://{}\"\n",
            lab.get("RUNNER_A_ENGINE_SOCKET")
        ),
    );
    let home = crate::support::Home::new(lab);
    let _ssh = crate::support::ssh_lock();
    let mut planned = mab(home.path(), project.path(), &["plan"]);
    let path = project.path().to_str().unwrap();
    planned.stderr = planned.stderr.replace(path, "[PROJECT]");
    check("platform_without_its_handler", &planned, 2);
}

/// `--native-only` on the implicit local runner (amd64, emulating the
/// rest): the arm64 platform is refused, naming the runner and the way out.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn native_only_without_a_native_runner() {
    let _lab = crate::support::require_lab!();
    let project = project(
        "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n",
    );
    check(
        "native_only_without_a_native_runner",
        &run(&project, &["plan", "--native-only"]),
        2,
    );
}

#[test]
fn missing_dockerfile() {
    let project = Project::new();
    project.file("mab.toml", GOOD_MANIFEST);
    check(
        "missing_dockerfile",
        &run(&project, &["build", "--no-push"]),
        2,
    );
}

#[test]
fn build_files_the_engine_could_not_read() {
    // A Dockerfile that is a symlink out of the directory it is sent from.
    let linked = Project::new();
    linked.file("Dockerfile.shared", DOCKERFILE).file(
        "app/mab.toml",
        &format!("{GOOD_MANIFEST}dockerfile = \"Dockerfile.link\"\n"),
    );
    std::os::unix::fs::symlink(
        "../Dockerfile.shared",
        linked.path().join("app/Dockerfile.link"),
    )
    .unwrap();
    check(
        "dockerfile_link_outside",
        &run(&linked, &["build", "-C", "app", "--no-push"]),
        2,
    );

    // A bad pattern in the Dockerfile's own ignore file names that file.
    let ignoring = project(GOOD_MANIFEST);
    ignoring.file("Dockerfile.dockerignore", "ok\n[unclosed\n");
    check(
        "dockerfile_ignore_bad_pattern",
        &run(&ignoring, &["build", "--no-push"]),
        2,
    );

    // A name BuildKit's transfer cannot carry.
    let named = project(GOOD_MANIFEST);
    let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"data-\xfe.bin");
    std::fs::write(named.path().join(name), "x").unwrap();
    check("name_not_utf8", &run(&named, &["build", "--no-push"]), 2);
}

#[test]
fn no_manifest() {
    let project = Project::new();
    check("no_manifest", &run(&project, &["build"]), 2);
}

#[test]
fn malformed_runners_toml() {
    let project = project(GOOD_MANIFEST);
    project.file("runners.toml", "[[runner]]\nname = \"a\"\nhost = local\n");
    let run = run(&project, &["build"]);
    assert!(run.stderr.contains("[PROJECT]/runners.toml:3:"), "{run:?}");
    check("malformed_runners_toml", &run, 2);
}

#[test]
fn missing_runners_file() {
    let project = project(GOOD_MANIFEST);
    check(
        "missing_runners_file",
        &run(&project, &["build", "--runners", "nowhere.toml"]),
        2,
    );
}

#[test]
fn no_runner_for_a_platform() {
    let project = project(
        "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/amd64\", \"linux/s390x\"]\n",
    );
    project.file(
        "runners.toml",
        "[[runner]]\nname = \"arm\"\nhost = \"root@127.0.0.9:1\"\nplatforms = [\"linux/arm64\"]\n\n\
         [[runner]]\nname = \"here\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\n",
    );
    check("no_runner_for_a_platform", &run(&project, &["build"]), 2);
}

#[test]
fn unreachable_host() {
    let project = project("[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/arm64\"]\n");
    project.file(
        "runners.toml",
        "[[runner]]\nname = \"arm\"\nhost = \"root@127.0.0.9:1\"\nplatforms = [\"linux/arm64\"]\n",
    );
    let run = without_delays(run(&project, &["build"]));
    assert!(
        run.stderr.contains("127.0.0.9:1"),
        "names the host: {run:?}"
    );
    check("unreachable_host", &run, 1);
}

/// `run` with the jittered delays of its retry warnings as `[DELAY]`.
fn without_delays(mut run: Run) -> Run {
    run.stderr = run
        .stderr
        .lines()
        .map(|line| match line.split_once("; retrying in ") {
            Some((start, _)) => format!("{start}; retrying in [DELAY] ms\n"),
            None => format!("{line}\n"),
        })
        .collect();
    run
}

/// A registry that does not answer, and one that refuses an anonymous
/// push: each stops the build before anything is built (exit 1 for the
/// first, a runtime failure; exit 2 for the second, as credentials that
/// may not push are a configuration mistake).
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn registry_problems() {
    let lab = crate::support::require_lab!();
    let runners = "[[runner]]\nname = \"here\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\n";
    let down = project("[image]\nname = \"127.0.0.1:5999/x\"\nplatforms = [\"linux/amd64\"]\n");
    down.file("runners.toml", runners);
    let refused = without_delays(run(&down, &["build", "--tag", "t"]));
    assert!(refused.stderr.contains("nothing was built"), "{refused:?}");
    check("registry_down", &refused, 1);

    let registry = lab.get("AUTH_REGISTRY");
    let anonymous = project(&format!(
        "[image]\nname = \"{registry}/x\"\nplatforms = [\"linux/amd64\"]\n"
    ));
    anonymous.file("runners.toml", runners);
    let mut refused = run(&anonymous, &["build", "--tag", "t"]);
    refused.stderr = refused.stderr.replace(registry, "[AUTH_REGISTRY]");
    check("registry_anonymous_push", &refused, 2);
}

#[test]
fn bad_build_arg_and_tag() {
    let project = project(GOOD_MANIFEST);
    check(
        "bad_build_arg",
        &run(&project, &["build", "--build-arg", "=value"]),
        2,
    );
    check(
        "bad_tag",
        &run(&project, &["build", "--tag", "team/app:1.0"]),
        2,
    );
}

/// A secret that cannot be read, or a bad `--secret`, stops the build
/// (exit 2) before any runner is contacted (the only one is an address
/// nothing answers on), naming the secret, its source and, for
/// `[image.secrets]`, the entry's file:line:col.
#[test]
fn bad_secrets() {
    const RUNNER: &str =
        "[[runner]]\nname = \"arm\"\nhost = \"root@127.0.0.9:1\"\nplatforms = [\"linux/amd64\"]\n";
    let project = project(&format!(
        "{GOOD_MANIFEST}\n[image.secrets]\nnetrc = {{ src = \"missing.netrc\" }}\n"
    ));
    project.file("runners.toml", RUNNER);
    let cases: [(&str, &[&str]); 2] = [
        ("secret_missing_file", &["build"]),
        (
            "secret_unset_variable",
            &[
                "build",
                "--secret",
                "id=netrc,src=x",
                "--secret",
                "id=tok,env=MAB_UNSET_TOKEN",
            ],
        ),
    ];
    // `x` is inside the context: only an ignore rule lets it be a secret.
    std::fs::write(project.path().join("x"), "value").unwrap();
    std::fs::write(project.path().join(".dockerignore"), "x\n").unwrap();
    for (name, arguments) in cases {
        let run = run(&project, arguments);
        assert!(!run.stderr.contains("127.0.0.9"), "{name}: {run:?}");
        check(name, &run, 2);
    }
    let located = run(&project, &["build"]);
    assert!(
        located.stderr.contains(" --> [PROJECT]/mab.toml:6:9\n"),
        "{located:?}"
    );
    // A secret file beside mab.toml, in the default context, that no
    // ignore rule leaves out.
    let in_context = project_with_runner(RUNNER);
    in_context.file(
        "mab.toml",
        &format!("{GOOD_MANIFEST}\n[image.secrets]\nnpm = {{ src = \".npmrc\" }}\n"),
    );
    in_context.file(".npmrc", "//registry.npmjs.org/:_authToken=secret");
    let run_in_context = run(&in_context, &["build"]);
    assert!(
        !run_in_context.stderr.contains("127.0.0.9"),
        "{run_in_context:?}"
    );
    assert!(
        !run_in_context.stderr.contains("_authToken"),
        "{run_in_context:?}"
    );
    check("secret_file_in_context", &run_in_context, 2);
    let project = project_with_runner(RUNNER);
    let flags: [(&str, &[&str]); 4] = [
        (
            "secret_id_alone_unset",
            &["build", "--secret", "id=MAB_UNSET_SECRET"],
        ),
        (
            "secret_flag_unknown_key",
            &["build", "--secret", "id=tok,value=s3cr3t-token"],
        ),
        ("secret_flag_without_id", &["build", "--secret", "src=x"]),
        (
            "secret_flag_twice",
            &[
                "build",
                "--secret",
                "id=tok,env=A",
                "--secret",
                "id=tok,src=x",
            ],
        ),
    ];
    // A flag's text is never shown: it may hold a value.
    for (name, arguments) in flags {
        let run = run(&project, arguments);
        assert!(!run.stderr.contains("s3cr3t"), "{name}: {run:?}");
        check(name, &run, 2);
    }
}

/// `--ssh` that cannot be served stops the build (exit 2) before any
/// runner is contacted: no agent for `default`, a missing key file, an
/// encrypted key, a socket among key files, an agent's socket where
/// nothing answers.
#[test]
fn bad_ssh_flags() {
    let project = project_with_runner(
        "[[runner]]\nname = \"arm\"\nhost = \"root@127.0.0.9:1\"\nplatforms = [\"linux/amd64\"]\n",
    );
    crate::support::keygen(&project.path().join("locked"), "locked", "secret");
    let cases: [(&str, &[&str]); 4] = [
        ("ssh_default_without_agent", &["build", "--ssh", "default"]),
        (
            "ssh_missing_key_file",
            &["build", "--ssh", "git=missing_key"],
        ),
        ("ssh_encrypted_key", &["build", "--ssh", "git=locked"]),
        (
            "ssh_socket_and_key_file",
            &["build", "--ssh", "git=agent.sock,locked"],
        ),
    ];
    let _socket =
        std::os::unix::net::UnixListener::bind(project.path().join("agent.sock")).unwrap();
    for (name, arguments) in cases {
        let run = run(&project, arguments);
        assert!(!run.stderr.contains("127.0.0.9"), "{name}: {run:?}");
        check(name, &run, 2);
    }

    // The socket of an agent that ended: the file is there, nothing answers.
    let ended = project.path().join("ended.sock");
    drop(std::os::unix::net::UnixListener::bind(&ended).unwrap());
    let home = tempfile::tempdir().unwrap();
    let mut run = mab_with_env(
        home.path(),
        project.path(),
        &["build", "--ssh", "default"],
        &[("SSH_AUTH_SOCK", Some(ended.to_str().unwrap()))],
    );
    run.stderr = run
        .stderr
        .replace(project.path().to_str().unwrap(), "[PROJECT]");
    assert!(!run.stderr.contains("127.0.0.9"), "{run:?}");
    check("ssh_agent_not_answering", &run, 2);
}

/// `--ssh` for a platform whose only runner's engine is Podman's API
/// service, which has no way to forward an SSH agent to a build: the plan
/// refuses the runner (exit 2) before anything is built, after only the
/// engine's version report was read.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn ssh_forwarding_on_a_podman_runner() {
    let lab = crate::support::require_lab!();
    let project = project(&GOOD_MANIFEST.replace("linux/amd64", "linux/ppc64le"));
    let socket = format!("unix://{}", lab.get("PODMAN_SOCKET"));
    project.file(
        "runners.toml",
        &crate::support::podman_runner(lab, Some(&socket)),
    );
    crate::support::keygen(&project.path().join("deploy_key"), "deploy", "");
    let home = crate::support::Home::new(lab);
    let run = run_at_home(&project, home.path(), &["build", "--ssh", "git=deploy_key"]);
    assert!(!run.stderr.contains("STEP"), "nothing was built: {run:?}");
    check("ssh_forwarding_on_podman", &run, 2);
}

/// The good manifest with `runners` as its runners file.
fn project_with_runner(runners: &str) -> Project {
    let project = project(GOOD_MANIFEST);
    project.file("runners.toml", runners);
    project
}

/// A bad `--timeout` or `--deadline` names the flag; the flag's value goes
/// over a good `timeout` in mab.toml.
#[test]
fn bad_time_limits() {
    let project = project(&format!("{GOOD_MANIFEST}timeout = \"1h\"\n"));
    check(
        "bad_timeout_flag",
        &run(&project, &["build", "--no-push", "--timeout", "90"]),
        2,
    );
    check(
        "bad_deadline_flag",
        &run(&project, &["build", "--no-push", "--deadline", "0s"]),
        2,
    );
}

/// A `SOURCE_DATE_EPOCH` that is not a whole number of seconds, or one
/// RFC 3339 cannot write (before 1970 or after 9999), names the variable
/// and its value (exit 2), before anything is built.
#[test]
fn bad_source_date_epoch() {
    let project = project(GOOD_MANIFEST);
    for (name, value) in [
        ("malformed_source_date_epoch", "1.5"),
        ("source_date_epoch_out_of_range", "253402300800"),
    ] {
        let home = tempfile::tempdir().unwrap();
        let mut run = mab_with_env(
            home.path(),
            project.path(),
            &["build", "--no-push"],
            &[("SOURCE_DATE_EPOCH", Some(value))],
        );
        run.stderr = run
            .stderr
            .replace(project.path().to_str().unwrap(), "[PROJECT]");
        assert!(run.stderr.contains(value), "{run:?}");
        check(name, &run, 2);
    }
}

/// A build of fewer platforms than mab.toml lists would narrow the release
/// under the computed tags: refused before anything is contacted (the
/// registry named here has nothing listening), naming what is left out.
#[test]
fn partial_build_without_tags() {
    let project = project(
        "[image]\nname = \"127.0.0.1:5999/x\"\nplatforms = [\"linux/amd64\", \"linux/arm64/v8\", \"linux/ppc64le\"]\n",
    );
    let run = run(&project, &["build", "--platform", "linux/arm64"]);
    assert!(
        run.stderr.contains("leaves out linux/amd64, linux/ppc64le"),
        "{run:?}"
    );
    check("partial_build_without_tags", &run, 2);
}

/// `--allow-partial` narrows the list, so it needs `--tag`: refused
/// before anything is contacted (nothing listens at the registry named).
#[test]
fn allow_partial_without_tags() {
    let project = project(
        "[image]\nname = \"127.0.0.1:5999/x\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n",
    );
    let run = run(&project, &["build", "--allow-partial"]);
    check("allow_partial_without_tags", &run, 2);
}

/// A target the Dockerfile does not name: from mab.toml it points at the
/// key, from `--target` it names the flag; both list the stages there are.
#[test]
fn target_not_in_the_dockerfile() {
    let project = project(&format!("{GOOD_MANIFEST}target = \"runtime\"\n"));
    project.file(
        "Dockerfile",
        "FROM scratch AS Build\nCOPY Dockerfile /\n\nFROM build AS release\n",
    );
    let run_manifest = run(&project, &["build", "--no-push"]);
    assert!(
        run_manifest.stderr.contains("[PROJECT]/mab.toml:4:10"),
        "{run_manifest:?}"
    );
    check("target_not_in_the_dockerfile", &run_manifest, 2);
    check(
        "target_flag_not_in_the_dockerfile",
        &run(&project, &["build", "--no-push", "--target", "1"]),
        2,
    );
}

/// Every configuration mistake of either file: exit 2 before anything is
/// contacted, with the message as a snapshot.
#[test]
fn configuration_mistakes() {
    const RUNNER: &str =
        "[[runner]]\nname = \"a\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\n";
    let cases: [(&str, &str, &str); 25] = [
        ("empty_platforms", "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = []\n", RUNNER),
        ("unknown_os", "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linus/amd64\"]\n", RUNNER),
        ("missing_name", "[image]\nplatforms = [\"linux/amd64\"]\n", RUNNER),
        ("invalid_image_name", "[image]\nname = \"127.0.0.1:5000/Team/App\"\nplatforms = [\"linux/amd64\"]\n", RUNNER),
        ("init_placeholder_name", "[image]\nname = \"registry.example.com/CHANGE-ME/app\"   # CHANGE ME\nplatforms = [\"linux/amd64\"]\n", RUNNER),
        ("image_name_with_tag", "[image]\nname = \"127.0.0.1:5000/app:1.0\"\nplatforms = [\"linux/amd64\"]\n", RUNNER),
        ("missing_context", "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/amd64\"]\ncontext = \"nowhere\"\n", RUNNER),
        ("wrong_type", "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = \"linux/amd64\"\n", RUNNER),
        ("emulation_not_a_boolean", "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/amd64\"]\nemulation = \"no\"\n", RUNNER),
        ("fallback_not_a_boolean", "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/amd64\"]\nfallback = \"off\"\n", RUNNER),
        ("bad_timeout", "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/amd64\"]\ntimeout = \"90 minuets\"\n", RUNNER),
        ("verify_bad_binaries", "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/amd64\"]\n\n[verify]\nbinaries = \"fatal\"\n", RUNNER),
        ("verify_relative_ignore", "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/amd64\"]\n\n[verify]\nignore = [\"/usr/share/qemu/**\", \"bin/busybox\"]\n", RUNNER),
        ("verify_bad_ignore_pattern", "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/amd64\"]\n\n[verify]\nignore = [\"/opt/[tools\"]\n", RUNNER),
        ("verify_typo", "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/amd64\"]\n\n[verify]\nbinares = \"warn\"\n", RUNNER),
        ("label_not_a_string", "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/amd64\"]\n\n[labels]\n\"org.example.build\" = 42\n", RUNNER),
        ("label_dotted_key", "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/amd64\"]\n\n[labels]\norg.example.team = \"build\"\n", RUNNER),
        ("annotation_bad_key", "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/amd64\"]\n\n[annotations]\n\"build id\" = \"7\"\n", RUNNER),
        ("duplicate_runner", GOOD_MANIFEST, &"[[runner]]\nname = \"a\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\n".repeat(2)),
        ("runner_without_platforms", GOOD_MANIFEST, "[[runner]]\nname = \"a\"\nhost = \"local\"\nplatforms = []\n"),
        ("zero_jobs", GOOD_MANIFEST, "[[runner]]\nname = \"a\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\njobs = 0\n"),
        ("bad_network", GOOD_MANIFEST, "[[runner]]\nname = \"a\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\nnetwork = \"bridge\"\n"),
        ("runner_without_host", GOOD_MANIFEST, "[[runner]]\nname = \"a\"\nplatforms = [\"linux/amd64\"]\n"),
        ("bad_engine", GOOD_MANIFEST, "[[runner]]\nname = \"a\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\nengine = \"/var/run/docker.sock\"\n"),
        ("runner_platform_typo", GOOD_MANIFEST, "[[runner]]\nname = \"a\"\nhost = \"local\"\nplatforms = [\"linux/amd46\"]\n"),
    ];
    for (name, manifest, runners) in cases {
        let project = project(manifest);
        project.file("runners.toml", runners);
        let run = run(&project, &["build", "--no-push"]);
        assert!(
            run.stderr.contains(" --> [PROJECT]/"),
            "{name}: names the file: {run:?}"
        );
        check(&format!("config_{name}"), &run, 2);
    }
}

/// Mistakes in `[verify]`: exit 2 at load, pointing at the value, each
/// with a hint that fits mab.toml and keeps the pattern's meaning.
#[test]
fn verify_mistakes() {
    const RUNNER: &str =
        "[[runner]]\nname = \"a\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\n";
    const IMAGE: &str =
        "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/amd64\"]\n\n[verify]\n";
    let cases = [
        (
            "verify_negated_relative_ignore",
            "ignore = [\"/opt/**\", \"!bin/busybox\"]\n",
        ),
        ("verify_empty_ignore", "ignore = [\"\"]\n"),
        (
            "verify_bare_negation_ignore",
            "ignore = [\"/opt/**\", \"!\"]\n",
        ),
        ("verify_ignore_not_a_list", "ignore = \"/bin\"\n"),
        ("verify_binaries_not_a_string", "binaries = false\n"),
    ];
    for (name, verify) in cases {
        let project = project(&format!("{IMAGE}{verify}"));
        project.file("runners.toml", RUNNER);
        let run = run(&project, &["build", "--no-push"]);
        assert!(
            run.stderr.contains(" --> [PROJECT]/mab.toml:"),
            "{name}: points at the value: {run:?}"
        );
        assert!(!run.stderr.contains("[[runner]]"), "{name}: {run:?}");
        check(&format!("config_{name}"), &run, 2);
    }
}

/// A bad `[test]` table is exit 2 at load, pointing at the value, before
/// any runner is contacted (the only runner is an address nothing answers
/// on, which a contacted runner would name).
#[test]
fn bad_smoke_tests() {
    const RUNNER: &str =
        "[[runner]]\nname = \"a\"\nhost = \"root@127.0.0.9:1\"\nplatforms = [\"linux/amd64\"]\n";
    // (name, the [test] table, where the message points)
    let cases = [
        ("empty_run", "run = []\n", "mab.toml:6:7"),
        ("empty_program", "run = [\"\"]\n", "mab.toml:6:7"),
        ("run_not_strings", "run = [\"/app\", 1]\n", "mab.toml:6:16"),
        (
            "run_as_a_string",
            "run = \"/app --version\"\n",
            "mab.toml:6:7",
        ),
        ("no_run", "expect = \"ok\"\n", "mab.toml:5:1"),
        (
            "bad_expect",
            "run = [\"/app\"]\nexpect = \"v(1\"\n",
            "mab.toml:7:10",
        ),
        (
            "bad_timeout",
            "run = [\"/app\"]\ntimeout = \"2 minuets\"\n",
            "mab.toml:7:11",
        ),
        (
            "timeout_not_a_string",
            "run = [\"/app\"]\ntimeout = 5\n",
            "mab.toml:7:11",
        ),
        (
            "timeout_zero",
            "run = [\"/app\"]\ntimeout = \"0s\"\n",
            "mab.toml:7:11",
        ),
        (
            "timeout_under_a_second",
            "run = [\"/app\"]\ntimeout = \"500ms\"\n",
            "mab.toml:7:11",
        ),
        (
            "typo",
            "run = [\"/app\"]\nexpcet = \"ok\"\n",
            "mab.toml:7:1",
        ),
    ];
    for (name, table, position) in cases {
        let project = project(&format!("{GOOD_MANIFEST}\n[test]\n{table}"));
        project.file("runners.toml", RUNNER);
        let run = run(&project, &["build"]);
        assert!(
            run.stderr.contains(&format!(" --> [PROJECT]/{position}\n")),
            "{name}: points at the value: {run:?}"
        );
        assert!(!run.stderr.contains("127.0.0.9"), "{name}: {run:?}");
        check(&format!("test_{name}"), &run, 2);
    }
}

/// Unknown keys that are not close to a known one are warnings naming the
/// key; the command still runs.
#[test]
fn unknown_keys_are_warnings() {
    let project = project(
        "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/amd64\"]\nlabels = { team = \"x\" }\n\n[tags]\nlatest = true\n",
    );
    project.file(
        "runners.toml",
        "[[runner]]\nname = \"a\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\ncolour = \"blue\"\n",
    );
    let listed = run(&project, &["runners", "list"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    insta::assert_snapshot!("unknown_runner_key_warning", listed.stderr.trim_end());
    let planned = run(&project, &["plan", "--platform", "linux/s390x"]);
    assert_eq!(planned.code, 2, "{planned:?}");
    let warnings: Vec<&str> = planned
        .stderr
        .lines()
        .filter(|line| line.starts_with("warning:"))
        .collect();
    insta::assert_snapshot!("unknown_manifest_key_warnings", warnings.join("\n"));
}

/// A key or table close to a known one (a typo) stops `mab build` with
/// exit 2 before any runner is contacted: the only runner is an address
/// nothing answers on, which a contacted runner would name (exit 1).
#[test]
fn typos_stop_the_build() {
    const RUNNER: &str =
        "[[runner]]\nname = \"arm\"\nhost = \"root@127.0.0.9:1\"\nplatforms = [\"linux/amd64\"]\n";
    let cases: [(&str, &str, String, &str); 7] = [
        (
            "target",
            "mab.toml:4:1",
            format!("{GOOD_MANIFEST}taget = \"runtime\"\n"),
            RUNNER,
        ),
        (
            "args_table",
            "mab.toml:4:8",
            format!("{GOOD_MANIFEST}[image.arg]\nGREETING = \"hello\"\n"),
            RUNNER,
        ),
        (
            "tags_table",
            "mab.toml:4:2",
            format!("{GOOD_MANIFEST}[tag]\nextra = [\"edge\"]\n"),
            RUNNER,
        ),
        (
            "missing_platforms",
            "mab.toml:3:1",
            "[image]\nname = \"127.0.0.1:5000/x\"\nplatfroms = [\"linux/amd64\"]\n".to_owned(),
            RUNNER,
        ),
        (
            "missing_image",
            "mab.toml:1:2",
            GOOD_MANIFEST.replace("[image]", "[imgae]"),
            RUNNER,
        ),
        (
            "runner_key",
            "runners.toml:5:1",
            GOOD_MANIFEST.to_owned(),
            &format!("{RUNNER}netwrok = \"host\"\n"),
        ),
        (
            "runner_name",
            "runners.toml:2:1",
            GOOD_MANIFEST.to_owned(),
            &RUNNER.replace("name =", "nme ="),
        ),
    ];
    for (name, position, manifest, runners) in cases {
        let project = project(&manifest);
        project.file("runners.toml", runners);
        let run = run(&project, &["build"]);
        assert!(
            run.stderr.contains(&format!(" --> [PROJECT]/{position}\n")),
            "{name}: points at the key: {run:?}"
        );
        assert!(
            !run.stderr.contains("127.0.0.9"),
            "{name}: no runner contacted: {run:?}"
        );
        check(&format!("typo_{name}"), &run, 2);
    }
}

/// A mistake in the user's ssh config for a runner is a configuration error
/// (exit 2), found before anything is built.
#[test]
fn ssh_config_mistake() {
    let project = project("[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/arm64\"]\n");
    project.file(
        "runners.toml",
        "[[runner]]\nname = \"arm\"\nhost = \"arm-01\"\nplatforms = [\"linux/arm64\"]\n",
    );
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
    std::fs::write(
        home.path().join(".ssh/config"),
        "Host arm-01\n    HostName 127.0.0.9\n    ProxyCommand nc %h %p\n",
    )
    .unwrap();
    let mut run = mab(
        home.path(),
        project.path(),
        &["build", "--progress", "plain"],
    );
    run.stderr = run.stderr.replace(home.path().to_str().unwrap(), "[HOME]");
    assert!(run.stderr.contains("ProxyCommand"), "{run:?}");
    check("ssh_config_mistake", &run, 2);
}

/// A runner `host` that ssh would read as an option, or whose brackets do
/// not close, is refused where runners.toml is read (file:line:col, exit 2)
/// by the parser that connects, and `mab runners add --host` refuses it the
/// same way without touching the file. A bare IPv6 address is accepted.
#[test]
fn runner_host_mistakes() {
    let runners = |host: &str| {
        format!("[[runner]]\nname = \"a\"\nhost = \"{host}\"\nplatforms = [\"linux/amd64\"]\n")
    };
    for (name, host) in [
        ("runner_host_option", "-oProxyCommand=x"),
        ("runner_host_bracket", "builder@[2001:db8::1:22"),
    ] {
        let project = project(GOOD_MANIFEST);
        project.file("runners.toml", &runners(host));
        let built = run(&project, &["build", "--no-push"]);
        assert!(
            built.stderr.contains(" --> [PROJECT]/runners.toml:3:8"),
            "{name}: {built:?}"
        );
        check(name, &built, 2);

        let added = run(
            &project,
            &[
                "runners",
                "add",
                "b",
                "--host",
                host,
                "--platform",
                "linux/amd64",
            ],
        );
        check(&format!("{name}_flag"), &added, 2);
        assert_eq!(
            std::fs::read_to_string(project.path().join("runners.toml")).unwrap(),
            runners(host),
            "{name}: the file is unchanged"
        );
    }

    let project = project(GOOD_MANIFEST);
    project.file("runners.toml", &runners("builder@fe80::1"));
    let listed = run(&project, &["runners", "list", "--format", "json"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    let json: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(json["runners"][0]["host"], "builder@fe80::1", "{listed:?}");
}

/// A repository git cannot read stops the build before anything is built,
/// with a message naming it, never taken for "outside git": exit 2, or 1
/// when git fails unexpectedly (a corrupt index); `tags.rs` checks that
/// `--tag` and `--no-push` make each a warning.
#[test]
fn git_problems() {
    for problem in GitProblem::ALL {
        let name = problem.name().replace('-', "_");
        let project = project(GOOD_MANIFEST);
        let variables = problem.make(&project);
        let home = tempfile::tempdir().unwrap();
        let mut run = mab_with_env(home.path(), project.path(), &["build"], &variables);
        run.stderr = run
            .stderr
            .replace(project.path().to_str().unwrap(), "[PROJECT]");
        assert!(
            run.stderr.contains("[PROJECT]"),
            "{name}: names the repository: {run:?}"
        );
        assert!(
            !run.stderr.contains("not in a git repository"),
            "{name}: {run:?}"
        );
        check(&name, &run, problem.exit_code());
    }
}

/// [`run`] with `home` as HOME, shown as `[HOME]`.
fn run_at_home(project: &Project, home: &std::path::Path, arguments: &[&str]) -> Run {
    run_at_home_with(project, home, arguments, &[])
}

/// [`run_at_home`] with the environment `variables` set.
fn run_at_home_with(
    project: &Project,
    home: &std::path::Path,
    arguments: &[&str],
    variables: &[(&str, Option<&str>)],
) -> Run {
    let mut run = mab_with_env(home, project.path(), arguments, variables);
    for (path, shown) in [(project.path(), "[PROJECT]"), (home, "[HOME]")] {
        run.stderr = run.stderr.replace(path.to_str().unwrap(), shown);
    }
    run
}

/// `run` with the key of the state file it names (16 hex digits after
/// `builds/`) shown as `[KEY]`.
fn hide_state_key(mut run: Run) -> Run {
    let key = run
        .stderr
        .split("builds/")
        .nth(1)
        .and_then(|rest| rest.get(..16))
        .unwrap()
        .to_owned();
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()), "{key}");
    run.stderr = run.stderr.replace(&key, "[KEY]");
    run
}

/// `--resume` with no earlier build of the project: nothing to resume,
/// naming mab.toml and where its state would be (nothing listens at the
/// registry named: refused before it is contacted).
#[test]
fn resume_without_an_earlier_build() {
    let project = project(&GOOD_MANIFEST.replace("5000", "5999"));
    let home = tempfile::tempdir().unwrap();
    let run = run_at_home(&project, home.path(), &["build", "--resume"]);
    assert!(
        run.stderr.contains("[HOME]/.local/state/mab/builds/"),
        "{run:?}"
    );
    check("resume_without_an_earlier_build", &hide_state_key(run), 2);
}

/// `--resume FILE` naming a file that is not there, one that is not the
/// metadata of a build, or an empty one (its build was killed): the file
/// and what is wrong with it.
#[test]
fn resume_from_a_bad_file() {
    let project = project(&GOOD_MANIFEST.replace("5000", "5999"));
    let missing = run(&project, &["build", "--resume", "missing.json"]);
    check("resume_from_a_missing_file", &missing, 2);
    // As a mab that did not record the inputs wrote it.
    project.file(
        "metadata.json",
        r#"{"image": "127.0.0.1:5999/x", "digest": null, "media_type": null, "tags": [], "missing": [], "platforms": []}"#,
    );
    let invalid = run(&project, &["build", "--resume", "metadata.json"]);
    check("resume_from_an_invalid_file", &invalid, 2);
    // As a build killed (SIGKILL) after emptying its --metadata-file left it.
    project.file("metadata.json", "");
    let empty = run(&project, &["build", "--resume", "metadata.json"]);
    check("resume_from_an_empty_file", &empty, 2);
}

/// A resume publishes: `--resume --no-push` is refused.
#[test]
fn resume_with_no_push() {
    let project = project(GOOD_MANIFEST);
    let run = run(&project, &["build", "--resume", "--no-push"]);
    check("resume_with_no_push", &run, 2);
}

/// The document of an earlier build of another project (of the image
/// `127.0.0.1:5999/x`) that published nothing: its `platforms` entries,
/// and its inputs with these `build_args` and `input_platforms`.
fn earlier_build(
    platforms: serde_json::Value,
    build_args: serde_json::Value,
    input_platforms: &[&str],
) -> serde_json::Value {
    serde_json::json!({
        "image": "127.0.0.1:5999/x",
        "digest": null,
        "media_type": null,
        "tags": ["t1"],
        "missing": ["linux/amd64"],
        "platforms": platforms,
        "project": "/elsewhere/mab.toml",
        "inputs": {
            "context": "sha256:0",
            "dockerfile": {"path": "Dockerfile", "digest": "sha256:0"},
            "build_args": build_args,
            "target": null,
            "platforms": input_platforms,
            "verify": {"binaries": "error", "ignore": []},
        },
    })
}

/// A resume whose inputs changed since the earlier build is refused,
/// naming each change, before the registry is contacted.
#[test]
fn resume_after_the_inputs_changed() {
    let project = project(&GOOD_MANIFEST.replace("5000", "5999"));
    let earlier = earlier_build(
        serde_json::json!([]),
        serde_json::json!({"VERSION": "1"}),
        &["linux/amd64", "linux/arm64"],
    );
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("metadata.json");
    std::fs::write(&file, earlier.to_string()).unwrap();
    let mut run = run(&project, &["build", "--resume", file.to_str().unwrap()]);
    run.stderr = run
        .stderr
        .replace(directory.path().to_str().unwrap(), "[DIR]");
    check("resume_after_the_inputs_changed", &run, 2);
}

/// `--resume` when the state directory is inside the build context, here
/// through a symlink to the project (`XDG_STATE_HOME=[HOME]/link/state`):
/// no state is kept there, and the resume says so rather than that there
/// is none.
#[test]
fn resume_with_the_state_inside_the_context() {
    let project = project(&GOOD_MANIFEST.replace("5000", "5999"));
    let home = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(project.path(), home.path().join("link")).unwrap();
    let state_home = home.path().join("link/state");
    let run = run_at_home_with(
        &project,
        home.path(),
        &["build", "--resume"],
        &[("XDG_STATE_HOME", Some(state_home.to_str().unwrap()))],
    );
    check(
        "resume_with_the_state_inside_the_context",
        &hide_state_key(run),
        2,
    );
}

/// `--resume FILE` whose platform digest is not a sha256 digest: refused
/// at load, naming the file and the platform.
#[test]
fn resume_from_a_file_with_a_bad_digest() {
    let project = project(&GOOD_MANIFEST.replace("5000", "5999"));
    let platforms = serde_json::json!([{
        "platform": "linux/amd64", "runner": "b", "digest": "sha256:ABC",
        "emulated": false, "seconds": 1.0, "state": "pushed", "error": null,
        "moved_from": null, "reason": null,
    }]);
    let earlier = earlier_build(platforms, serde_json::json!({}), &["linux/amd64"]);
    project.file("earlier.json", &earlier.to_string());
    let run = run(&project, &["build", "--resume", "earlier.json"]);
    check("resume_from_a_file_with_a_bad_digest", &run, 2);
}

#[test]
fn bad_inspect_reference() {
    let project = Project::new();
    for (name, reference) in [
        (
            "inspect_upper_case_reference",
            "127.0.0.1:5000/Team/App:1.0",
        ),
        ("inspect_bad_tag", "127.0.0.1:5000/team/app:-bad"),
    ] {
        check(name, &run(&project, &["inspect", reference]), 2);
    }
}

/// A tag or digest the repository does not hold, and a repository the
/// registry does not know: one line naming it, with a hint, not the
/// registry client's text (exit 1: the registry's answer, not a malformed
/// input). The lab's registry answers `MANIFEST_UNKNOWN` for a manifest of
/// an unknown repository as for one of a known one; its tag list answers
/// `NAME_UNKNOWN`.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn inspect_missing_tag() {
    let lab = crate::support::lab();
    // A repository that exists: one image under the tag `pushed`. Its
    // name is fixed (the snapshot shows it); each run pushes it again.
    let repository = format!("{}/tests/inspect-known", lab.registry());
    let known = Project::new();
    known
        .file("Dockerfile", "FROM scratch\nCOPY content.txt /\n")
        .amd64_image("inspect-known", &repository);
    let home = crate::support::Home::new(lab);
    let pushed = mab(home.path(), known.path(), &["build", "--tag", "pushed"]);
    assert_eq!(pushed.code, 0, "{pushed:?}");
    let project = Project::new();
    for (name, reference) in [
        ("inspect_missing_tag", format!("{repository}:1.0")),
        ("inspect_missing_latest", repository.clone()),
        (
            "inspect_missing_digest",
            format!("{repository}@sha256:{}", "0".repeat(64)),
        ),
        (
            "inspect_missing_repository",
            "127.0.0.1:5000/tests/never-pushed:1.0".to_owned(),
        ),
        (
            "inspect_missing_repository_digest",
            format!(
                "127.0.0.1:5000/tests/never-pushed@sha256:{}",
                "0".repeat(64)
            ),
        ),
    ] {
        check(name, &run(&project, &["inspect", &reference]), 1);
    }
}

/// Credentials that cannot be had, found before anything is built: a
/// credential helper that is not on PATH and `DOCKER_AUTH_CONFIG` that is
/// not JSON (its text never shown: it holds secrets) are usage (exit 2); a
/// helper that fails, or hangs past `--deadline`, is a registry failure
/// (exit 1). The registry named does not answer: the credentials come
/// first.
#[test]
fn credentials_that_cannot_be_read() {
    let project = project(&GOOD_MANIFEST.replace("5000", "5999"));
    project.file(
        "runners.toml",
        "[[runner]]\nname = \"here\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\n",
    );
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".docker")).unwrap();
    // As docker-credential-helpers do, the error is on stdout.
    credential_helper_script(
        home.path(),
        "mabfails",
        "echo 'the keychain is locked'\nexit 1\n",
    );
    let path = credential_helper_script(home.path(), "mabhangs", "sleep 60\n");
    let config =
        |text: &str| std::fs::write(home.path().join(".docker/config.json"), text).unwrap();
    config(r#"{"credHelpers": {"127.0.0.1:5999": "mabmissing"}}"#);
    let missing = run_at_home(&project, home.path(), &["build"]);
    check("credential_helper_missing", &missing, 2);

    config(r#"{"credsStore": "mabfails"}"#);
    let failing = run_at_home_with(&project, home.path(), &["build"], &[("PATH", Some(&path))]);
    check("credential_helper_fails", &failing, 1);

    // A helper that does not answer gives way to --deadline.
    config(r#"{"credsStore": "mabhangs"}"#);
    let started = std::time::Instant::now();
    let hanging = run_at_home_with(
        &project,
        home.path(),
        &["build", "--deadline", "2s"],
        &[("PATH", Some(&path))],
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{hanging:?}"
    );
    check("credential_helper_hangs", &hanging, 1);

    let not_json = run_at_home_with(
        &project,
        home.path(),
        &["build"],
        &[(
            "DOCKER_AUTH_CONFIG",
            Some("{\"auths\": {\"127.0.0.1:5999\": s3cret"),
        )],
    );
    assert!(!not_json.stderr.contains("s3cret"), "{not_json:?}");
    check("docker_auth_config_not_json", &not_json, 2);
}

/// Mistakes in `[cache]` and `--cache-from`: exit 2 before anything is
/// contacted, pointing at the value (or naming the flag), each with a hint.
#[test]
fn cache_mistakes() {
    const RUNNER: &str =
        "[[runner]]\nname = \"a\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\n";
    const IMAGE: &str =
        "[image]\nname = \"127.0.0.1:5000/x\"\nplatforms = [\"linux/amd64\"]\n\n[cache]\n";
    let cases = [
        ("cache_bad_from", "from = \"s3\"\n"),
        ("cache_from_upper_case", "from = \"Registry\"\n"),
        (
            "cache_bad_ref",
            "from = \"registry\"\nref = \"127.0.0.1:5000/Team/App:main\"\n",
        ),
        (
            "cache_ref_without_from",
            "ref = \"127.0.0.1:5000/x:main\"\n",
        ),
        ("cache_typo", "form = \"registry\"\n"),
    ];
    for (name, table) in cases {
        let project = project(&format!("{IMAGE}{table}"));
        project.file("runners.toml", RUNNER);
        let run = run(&project, &["build", "--no-push"]);
        assert!(
            run.stderr.contains(" --> [PROJECT]/mab.toml:"),
            "{name}: points at the value: {run:?}"
        );
        check(&format!("config_{name}"), &run, 2);
    }
    let project = project(GOOD_MANIFEST);
    project.file("runners.toml", RUNNER);
    check(
        "cache_from_flag_bad_reference",
        &run(
            &project,
            &[
                "build",
                "--no-push",
                "--cache-from",
                "127.0.0.1:5000/x:bad tag",
            ],
        ),
        2,
    );
}
