//! `[cache] from = "registry"`: a runner that never built the project takes
//! its unchanged steps from the image the last build published (or from
//! the list `ref` names, on the open registry or on the one that needs
//! credentials, and in a `--resume`), and a missing cache is a warning.

use crate::support::{
    free_port, mab, mab_with_env, require_lab, skopeo_raw, ssh_lock, Home, Lab, Project, Run,
};

/// The project: a `RUN` step that writes the time (so a step that runs
/// again gives another layer) after a nonce no other build's cache holds,
/// built for linux/amd64 (each platform copies its own busybox); `[cache]`
/// as `cache` says.
fn write_project(project: &Project, lab: &Lab, repository: &str, nonce: &str, cache: &str) {
    project
        .with_busybox(lab, &["amd64", "arm64"])
        .file(
            "Dockerfile",
            &format!(
                "FROM scratch\nARG TARGETARCH\nCOPY busybox/${{TARGETARCH}} /bin/busybox\n\
                 RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo {nonce} > /nonce; /bin/busybox sleep 1; /bin/busybox date +%s%N > /stamp\"]\n"
            ),
        )
        .file(
            "mab.toml",
            &format!(
                "[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\"]\n{cache}"
            ),
        );
}

/// `runners.toml` with one runner, `fresh`, building linux/amd64 on
/// `host` (`local` or a lab host) with the engine at `engine`.
fn runners_on(project: &Project, host: &str, engine: &str) {
    project.file(
        "runners.toml",
        &format!(
            "[[runner]]\nname = \"fresh\"\nhost = \"{host}\"\nplatforms = [\"linux/amd64\"]\nengine = \"{engine}\"\n"
        ),
    );
}

/// `mab build --progress json --metadata-file metadata.json ARGS`; returns
/// the run and the metadata file.
fn build(home: &Home, project: &Project, arguments: &[&str]) -> (Run, serde_json::Value) {
    // Outside the context, which it would change.
    let metadata = home.path().join("metadata.json");
    let mut all = vec![
        "build",
        "--progress",
        "json",
        "--metadata-file",
        metadata.to_str().unwrap(),
    ];
    all.extend_from_slice(arguments);
    let run = mab(home.path(), project.path(), &all);
    let json = serde_json::from_str(&std::fs::read_to_string(&metadata).unwrap_or_default())
        .unwrap_or(serde_json::Value::Null);
    (run, json)
}

/// Whether the build's `RUN` step was found in the cache (its `step`
/// event's `cached`).
fn run_step_cached(run: &Run) -> bool {
    let steps = run.events_named("step");
    let step = steps
        .iter()
        .find(|event| event["step"].as_str().unwrap_or_default().contains("RUN "))
        .unwrap_or_else(|| panic!("no RUN step: {run:?}"));
    step["cached"].as_bool().unwrap()
}

/// The `source` of each `cache_source` event of the build, by platform
/// (`null` for none), in the order told.
fn cache_sources(run: &Run) -> Vec<(String, serde_json::Value)> {
    run.events_named("cache_source")
        .iter()
        .map(|event| {
            (
                event["platform"].as_str().unwrap().to_owned(),
                event["source"].clone(),
            )
        })
        .collect()
}

/// Asserts that `run` (the build of one platform, linux/amd64) ended well
/// without a warning and took its `RUN` step from `source`: the step
/// cached, and `source` named by its `cache_source` event and by the
/// `cache_from` of `metadata`.
fn assert_cached_from(run: &Run, metadata: &serde_json::Value, source: &str) {
    assert_eq!(run.code, 0, "{run:?}");
    assert!(warnings(run).is_empty(), "{run:?}");
    assert!(run_step_cached(run), "{run:?}");
    assert_eq!(metadata["platforms"][0]["cache_from"], source, "{metadata}");
    assert_eq!(
        cache_sources(run),
        [("linux/amd64".to_owned(), named(source))],
        "{run:?}"
    );
}

/// Asserts that linux/amd64's build in `run` had no cache source: its
/// `cache_source` event says `null` and `metadata` has no `cache_from`.
fn assert_no_source(run: &Run, metadata: &serde_json::Value) {
    assert!(
        metadata["platforms"][0].get("cache_from").is_none(),
        "{metadata}"
    );
    assert_eq!(
        cache_sources(run),
        [("linux/amd64".to_owned(), serde_json::Value::Null)],
        "{run:?}"
    );
}

/// The `source` a `cache_source` event names, as JSON.
fn named(source: &str) -> serde_json::Value {
    serde_json::Value::from(source)
}

/// The warnings of the build.
fn warnings(run: &Run) -> Vec<String> {
    run.events_named("warning")
        .iter()
        .map(|event| event["message"].as_str().unwrap().to_owned())
        .collect()
}

/// The image config at `reference` as the registry holds it (`skopeo
/// inspect --config --raw`: without `--raw`, skopeo keeps only the OCI
/// fields, not BuildKit's `moby.buildkit.cache.v0`).
fn raw_config(reference: &str) -> serde_json::Value {
    let output = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--config", "--raw"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo runs");
    assert!(
        output.status.success(),
        "skopeo inspect --config --raw {reference}"
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The layer digests of the image manifest at `reference`, read with skopeo.
fn layers(reference: &str) -> Vec<String> {
    let manifest: serde_json::Value = serde_json::from_slice(&skopeo_raw(reference)).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layers: {manifest}"))
        .iter()
        .map(|layer| layer["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// The digest of the linux/amd64 image of the list at `reference`.
fn amd64_digest(reference: &str) -> String {
    let list: serde_json::Value = serde_json::from_slice(&skopeo_raw(reference)).unwrap();
    list["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .find(|entry| entry["platform"]["architecture"] == "amd64")
        .map(|entry| entry["digest"].as_str().unwrap().to_owned())
        .unwrap()
}

fn nonce() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("cache-{}-{nanos:x}", std::process::id())
}

/// The first build with `[cache] from = "registry"` finds nothing (a
/// warning naming the reference and the platform) and publishes an image
/// holding inline cache metadata; a runner that never built the project
/// (runner-b, without the cache) runs the `RUN` step; another that never
/// did either (runner-a, with it) takes it from the published image: the
/// step is cached, the metadata names the source by digest, and the
/// image's layers are the first one's, as skopeo reads them.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_fresh_runner_takes_unchanged_steps_from_the_published_list() {
    let lab = require_lab!();
    let _lock = ssh_lock();
    let home = Home::new(lab);
    let repository = lab.repository("cache");
    let nonce = nonce();
    let project = Project::new();
    let cache = "\n[cache]\nfrom = \"registry\"\n";
    write_project(&project, lab, &repository, &nonce, cache);
    runners_on(&project, "local", lab.get("LOCAL_ENGINE"));

    // The first build: nothing to read.
    let (first, metadata) = build(&home, &project, &["--tag", "v1"]);
    assert_eq!(first.code, 0, "{first:?}");
    let expected = format!(
        "building linux/amd64 without a cache source: nothing is published at {repository}:v1 (as on the first build with a registry cache); hint: set `ref = \"{repository}:latest\"` under [cache] in mab.toml to read the last build's list"
    );
    assert!(warnings(&first).contains(&expected), "{first:?}");
    assert!(!run_step_cached(&first), "{first:?}");
    assert_no_source(&first, &metadata);
    let published = amd64_digest(&format!("{repository}:v1"));
    let source = format!("{repository}@{published}");
    assert!(
        raw_config(&source).get("moby.buildkit.cache.v0").is_some(),
        "the image carries inline cache metadata"
    );
    let first_layers = layers(&source);

    // Without the cache, a runner that never built it runs the step.
    write_project(&project, lab, &repository, &nonce, "");
    let b_engine = format!("unix://{}", lab.get("RUNNER_B_ENGINE_SOCKET"));
    runners_on(&project, "runner-b", &b_engine);
    let (control, _) = build(&home, &project, &["--tag", "control"]);
    assert_eq!(control.code, 0, "{control:?}");
    assert!(!run_step_cached(&control), "{control:?}");
    assert!(cache_sources(&control).is_empty(), "{control:?}");
    let control_layers = layers(&format!(
        "{repository}@{}",
        amd64_digest(&format!("{repository}:control"))
    ));
    assert_ne!(control_layers, first_layers, "the step ran again");

    // With it, another runner that never built it takes the step.
    write_project(&project, lab, &repository, &nonce, cache);
    let a_engine = format!("unix://{}", lab.get("RUNNER_A_ENGINE_SOCKET"));
    runners_on(&project, "runner-a", &a_engine);
    let (warm, metadata) = build(&home, &project, &["--tag", "v1"]);
    assert_cached_from(&warm, &metadata, &source);
    assert_eq!(metadata["platforms"][0]["runner"], "fresh");
    let rebuilt = amd64_digest(&format!("{repository}:v1"));
    assert_eq!(layers(&format!("{repository}@{rebuilt}")), first_layers);

    // A single image named by digest is its own platform's cache source.
    let (pinned, metadata) = build(
        &home,
        &project,
        &["--tag", "pinned", "--no-push", "--cache-from", &source],
    );
    assert_eq!(pinned.code, 0, "{pinned:?}");
    assert!(warnings(&pinned).is_empty(), "{pinned:?}");
    assert_eq!(metadata["platforms"][0]["cache_from"], source, "{metadata}");
}

/// `--cache-from REF` names another list; a platform that list lacks
/// builds without a cache source, with a warning naming the list and the
/// platforms it has; so does a platform whose list is on a registry that
/// does not answer, with a warning naming the reference.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_platform_the_list_lacks_or_an_unreachable_registry_is_a_warning() {
    let lab = require_lab!();
    let home = Home::new(lab);
    let repository = lab.repository("cache-lacks");
    let project = Project::new();
    write_project(&project, lab, &repository, &nonce(), "");
    runners_on(&project, "local", lab.get("LOCAL_ENGINE"));
    let (published, _) = build(&home, &project, &["--tag", "amd64"]);
    assert_eq!(published.code, 0, "{published:?}");

    // The same Dockerfile's arm64 image, with the amd64 list as its cache.
    let other = Project::new();
    write_project(&other, lab, &lab.repository("cache-arm64"), &nonce(), "");
    other.file(
        "mab.toml",
        &std::fs::read_to_string(other.path().join("mab.toml"))
            .unwrap()
            .replace("linux/amd64", "linux/arm64"),
    );
    other.file(
        "runners.toml",
        &format!(
            "[[runner]]\nname = \"here\"\nhost = \"local\"\nplatforms = [\"linux/arm64\"]\nengine = \"{}\"\n",
            lab.get("LOCAL_ENGINE")
        ),
    );
    let list = format!("{repository}:amd64");
    let (run, metadata) = build(
        &home,
        &other,
        &["--tag", "v1", "--no-push", "--cache-from", &list],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        warnings(&run),
        [format!(
            "building linux/arm64 without a cache source: {list} has no image for it (it has linux/amd64)"
        )],
        "{run:?}"
    );
    assert!(
        metadata["platforms"][0].get("cache_from").is_none(),
        "{metadata}"
    );

    // A registry where nothing answers: the same, naming the reference.
    let nowhere = format!("127.0.0.1:{}/cache:v1", free_port());
    let (run, _) = build(
        &home,
        &other,
        &["--tag", "v1", "--no-push", "--cache-from", &nowhere],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let warned = warnings(&run);
    assert_eq!(warned.len(), 1, "{run:?}");
    assert!(
        warned[0].starts_with(&format!(
            "building linux/arm64 without a cache source: cannot read {nowhere}: "
        )),
        "{run:?}"
    );

    // A registry that takes the connection and never answers: the lookup
    // gives up at its limit (shortened for the test), the build goes on.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mute = format!("127.0.0.1:{}/cache:v1", silent.local_addr().unwrap().port());
    let metadata_path = home.path().join("metadata.json");
    let started = std::time::Instant::now();
    let run = mab_with_env(
        home.path(),
        other.path(),
        &[
            "build",
            "--progress",
            "json",
            "--metadata-file",
            metadata_path.to_str().unwrap(),
            "--tag",
            "v1",
            "--no-push",
            "--cache-from",
            &mute,
        ],
        &[("MAB_TEST_CACHE_LOOKUP_SECONDS", Some("3"))],
    );
    let elapsed = started.elapsed();
    drop(silent);
    assert_eq!(run.code, 0, "{run:?}");
    let warned = warnings(&run);
    assert_eq!(warned.len(), 1, "{run:?}");
    assert!(
        warned[0].starts_with(&format!(
            "building linux/arm64 without a cache source: the registry of {mute} did not answer within 3 s; hint: "
        )),
        "{run:?}"
    );
    // The limit, not the 30 s default, ended the lookup.
    assert!(
        elapsed >= std::time::Duration::from_secs(3)
            && elapsed < std::time::Duration::from_secs(25),
        "{elapsed:?}"
    );
}

/// `ref` under [cache] in mab.toml (not --cache-from) names the list to
/// read, here another tag than the build's: a runner that never built the
/// project (runner-a) takes the `RUN` step from it, and the metadata, the
/// `cache_source` event and the build report name that list's image by
/// digest.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_ref_in_the_manifest_names_the_list_to_read() {
    let lab = require_lab!();
    let _lock = ssh_lock();
    let home = Home::new(lab);
    let repository = lab.repository("cache-ref");
    let nonce = nonce();
    let project = Project::new();
    // The list to read, published under `other` with the cache metadata.
    let cache = "\n[cache]\nfrom = \"registry\"\n";
    write_project(&project, lab, &repository, &nonce, cache);
    runners_on(&project, "local", lab.get("LOCAL_ENGINE"));
    let (first, _) = build(&home, &project, &["--tag", "other"]);
    assert_eq!(first.code, 0, "{first:?}");
    let source = format!(
        "{repository}@{}",
        amd64_digest(&format!("{repository}:other"))
    );

    let cache = format!("{cache}ref = \"{repository}:other\"\n");
    write_project(&project, lab, &repository, &nonce, &cache);
    let a_engine = format!("unix://{}", lab.get("RUNNER_A_ENGINE_SOCKET"));
    runners_on(&project, "runner-a", &a_engine);
    let report = home.path().join("report.html");
    let (warm, metadata) = build(
        &home,
        &project,
        &["--tag", "v2", "--report", report.to_str().unwrap()],
    );
    assert_cached_from(&warm, &metadata, &source);
    // The build report shows it under the platform's row.
    let page = std::fs::read_to_string(&report).unwrap();
    assert!(
        page.contains(&format!(
            "<p class=\"cache\" data-platform=\"linux/amd64\">build cache from <span class=\"mono\">{source}</span></p>"
        )),
        "{page}"
    );
}

/// A cache list on the registry that needs credentials (the lab's
/// htpasswd one), read by builds whose image is on the open registry:
/// with the credentials in the docker config of the build's HOME the list
/// is read and the engine imports it (the `RUN` step cached on runner-a,
/// which never built it); in a HOME without them the build goes on
/// without a cache source (runner-b runs the step), with a warning naming
/// the reference and a hint.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_cache_list_behind_credentials_is_read_with_them_and_warned_without() {
    use base64::Engine as _;

    let lab = require_lab!();
    let _lock = ssh_lock();
    let registry = lab.get("AUTH_REGISTRY");
    let private = format!(
        "{registry}/{}",
        lab.repository("cache-auth").split_once('/').unwrap().1
    );
    let home = Home::new(lab);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        lab.get("AUTH_USER"),
        lab.get("AUTH_PASSWORD")
    ));
    std::fs::create_dir_all(home.path().join(".docker")).unwrap();
    std::fs::write(
        home.path().join(".docker/config.json"),
        format!(r#"{{"auths":{{"{registry}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    let nonce = nonce();
    let project = Project::new();
    write_project(
        &project,
        lab,
        &private,
        &nonce,
        "\n[cache]\nfrom = \"registry\"\n",
    );
    runners_on(&project, "local", lab.get("LOCAL_ENGINE"));
    let (published, metadata) = build(&home, &project, &["--tag", "v1"]);
    assert_eq!(published.code, 0, "{published:?}");
    let digest = metadata["platforms"][0]["digest"].as_str().unwrap();
    let source = format!("{private}@{digest}");

    // The image on the open registry, the cache list on the other.
    let list = format!("{private}:v1");
    let cache = format!("\n[cache]\nfrom = \"registry\"\nref = \"{list}\"\n");
    write_project(
        &project,
        lab,
        &lab.repository("cache-auth-open"),
        &nonce,
        &cache,
    );
    let a_engine = format!("unix://{}", lab.get("RUNNER_A_ENGINE_SOCKET"));
    runners_on(&project, "runner-a", &a_engine);
    let (warm, metadata) = build(&home, &project, &["--tag", "v1", "--no-push"]);
    assert_cached_from(&warm, &metadata, &source);

    // A home without the credentials.
    let anonymous = Home::new(lab);
    let b_engine = format!("unix://{}", lab.get("RUNNER_B_ENGINE_SOCKET"));
    runners_on(&project, "runner-b", &b_engine);
    let (cold, metadata) = build(&anonymous, &project, &["--tag", "v1", "--no-push"]);
    assert_eq!(cold.code, 0, "{cold:?}");
    let warned = warnings(&cold);
    assert_eq!(warned.len(), 1, "{cold:?}");
    assert!(
        warned[0].starts_with(&format!(
            "building linux/amd64 without a cache source: cannot read {list}: "
        )) && warned[0].contains("; hint: "),
        "{cold:?}"
    );
    assert!(!run_step_cached(&cold), "{cold:?}");
    assert_no_source(&cold, &metadata);
}

/// `--resume` of a build with `[cache] from = "registry"`: the platform
/// resumed gets its cache source as in a build of its own. The list
/// `cache` holds the Dockerfile's first steps for both platforms; the
/// build of the whole Dockerfile under `--timeout 20s` fails as arm64's
/// last step sleeps past it, amd64 pushed; its resume, with arm64 on
/// runner-a (which never built it), reuses amd64 and takes arm64's first
/// `RUN` step from the list: cached, and named by the `cache_source`
/// event and the metadata.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_resumed_platform_still_gets_its_cache_source() {
    let lab = require_lab!();
    let _lock = ssh_lock();
    let home = Home::new(lab);
    let repository = lab.repository("cache-resume");
    let first_steps = format!(
        "FROM scratch\nARG TARGETARCH\nCOPY busybox/${{TARGETARCH}} /bin/busybox\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo {} > /nonce; /bin/busybox date +%s%N > /stamp\"]\n",
        nonce()
    );
    let local = lab.get("LOCAL_ENGINE");
    let runner = |name: &str, host: &str, platforms: &str, engine: &str| {
        format!(
            "[[runner]]\nname = \"{name}\"\nhost = \"{host}\"\nplatforms = [{platforms}]\nengine = \"{engine}\"\n\n"
        )
    };
    let project = Project::new();
    project
        .with_busybox(lab, &["amd64", "arm64"])
        .file("Dockerfile", &first_steps)
        // The runners change before the resume, which would refuse a
        // context that changed.
        .file(".dockerignore", "mab.toml\nrunners.toml\n")
        .file(
            "mab.toml",
            &format!(
                "[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\n\
                 [cache]\nfrom = \"registry\"\nref = \"{repository}:cache\"\n"
            ),
        )
        .file(
            "runners.toml",
            &runner("here", "local", "\"linux/amd64\", \"linux/arm64\"", local),
        );
    let (published, _) = build(&home, &project, &["--tag", "cache"]);
    assert_eq!(published.code, 0, "{published:?}");
    let list: serde_json::Value =
        serde_json::from_slice(&skopeo_raw(&format!("{repository}:cache"))).unwrap();
    let arm64 = list["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["platform"]["architecture"] == "arm64")
        .map(|entry| entry["digest"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no arm64 image: {list}"));
    let source = format!("{repository}@{arm64}");

    // arm64's last step outlasts the limit; amd64, on runner-b, ends well
    // within it (a few seconds), also on a busy machine.
    project.file(
        "Dockerfile",
        &format!(
            "{first_steps}RUN [\"/bin/busybox\", \"sh\", \"-c\", \"if test $TARGETARCH = arm64; then /bin/busybox sleep 60; fi\"]\n"
        ),
    );
    let b_engine = format!("unix://{}", lab.get("RUNNER_B_ENGINE_SOCKET"));
    project.file(
        "runners.toml",
        &(runner("b", "runner-b", "\"linux/amd64\"", &b_engine)
            + &runner("here", "local", "\"linux/arm64\"", local)),
    );
    let (failed, _) = build(&home, &project, &["--tag", "v1", "--timeout", "20s"]);
    assert_eq!(failed.code, 1, "{failed:?}");

    let a_engine = format!("unix://{}", lab.get("RUNNER_A_ENGINE_SOCKET"));
    project.file(
        "runners.toml",
        &(runner("b", "runner-b", "\"linux/amd64\"", &b_engine)
            + &runner("arm", "runner-a", "\"linux/arm64\"", &a_engine)),
    );
    let (resumed, metadata) = build(&home, &project, &["--tag", "v1", "--resume"]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    let reused: Vec<serde_json::Value> = resumed
        .events_named("reused")
        .iter()
        .map(|event| event["platform"].clone())
        .collect();
    assert_eq!(reused, ["linux/amd64"], "{resumed:?}");
    assert!(warnings(&resumed).is_empty(), "{resumed:?}");
    assert!(run_step_cached(&resumed), "{resumed:?}");
    assert_eq!(
        cache_sources(&resumed),
        [("linux/arm64".to_owned(), named(&source))],
        "{resumed:?}"
    );
    let entry = metadata["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["platform"] == "linux/arm64")
        .unwrap_or_else(|| panic!("no arm64 entry: {metadata}"));
    assert_eq!(entry["cache_from"], source, "{metadata}");
}
