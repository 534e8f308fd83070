//! `mab build --report FILE.html` on the lab (docs/report.md): the page is
//! loaded in headless Chromium (Debian's `chromium`, driven through the
//! DevTools protocol by playwright-core, `report/load.js`) and read from
//! its DOM: no console errors, no request but the page itself, one row per
//! platform with the runner that built it, the list digest skopeo reads,
//! build output shown as text. A screenshot of each page is kept under
//! `target/test-output/report/`. The copy in mab's state directory equals
//! the `--report` file; html5lib parses each page without a parse error.
//! A build stopped by Ctrl-C writes its page too; a page that cannot be
//! written is a warning.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::interrupt::{signal_when_sleeping, sleeping_project};
use crate::support::{
    mab, mab_command, require_lab, sha256, skopeo_raw, ssh_lock, Home, Lab, Project,
};

/// The page as headless Chromium shows it: `report/load.js`'s JSON.
/// Keeps a screenshot as `target/test-output/report/<name>.png`.
fn load_in_chromium(lab: &Lab, page: &Path, name: &str) -> serde_json::Value {
    let output_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-output/report");
    std::fs::create_dir_all(&output_dir).unwrap();
    let screenshot = output_dir.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&screenshot);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/testsuite/report/load.js");
    let output = Command::new("node")
        .arg(&script)
        .arg(page)
        .arg(&screenshot)
        .env(
            "NODE_PATH",
            Path::new(lab.get("LAB_DIR")).join("playwright/node_modules"),
        )
        .env("CHROMIUM", "/usr/bin/chromium")
        .output()
        .expect("node runs (tests/lab/up installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "load.js failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|error| panic!("load.js prints JSON ({error}): {stdout}"));
    // Loaded with no error and nothing fetched but the page itself.
    assert_eq!(shown["console_errors"], serde_json::json!([]), "{shown}");
    assert_eq!(shown["page_errors"], serde_json::json!([]), "{shown}");
    assert_eq!(shown["failed_requests"], serde_json::json!([]), "{shown}");
    assert_eq!(
        shown["requests"],
        serde_json::json!([shown["url"]]),
        "only the page itself is requested: {shown}"
    );
    assert_eq!(shown["scripts"], 0, "{shown}");
    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "a screenshot"
    );
    shown
}

/// Fails when html5lib (the HTML5 parsing algorithm) meets a parse error
/// in `page`.
fn assert_parses_as_html5(page: &Path) {
    let output = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys, html5lib; html5lib.HTMLParser(strict=True).parse(open(sys.argv[1], 'rb'))",
        ])
        .arg(page)
        .output()
        .expect("Debian's python3 runs (tests/lab/up installs it)");
    assert!(
        output.status.success(),
        "{} is not valid HTML5: {}",
        page.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The one report of mab's history in `home` (`~/.local/state/mab`).
fn history_copy(home: &Path) -> PathBuf {
    let history = home.join(".local/state/mab/history");
    let builds: Vec<PathBuf> = std::fs::read_dir(&history)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(builds.len(), 1, "{builds:?}");
    builds[0].join("report.html")
}

/// The rows as Chromium shows them: (platform, runner, native/emulated).
fn rows(shown: &serde_json::Value) -> Vec<(String, String, String)> {
    shown["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["platform"].as_str().unwrap().to_owned(),
                row["runner"].as_str().unwrap().to_owned(),
                row["how"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// linux/amd64 on the local engine (runner `here`) and linux/arm64 on
/// runner-a's (runner `arm`, an amd64 host: emulated), each image running
/// a step that prints markup.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_two_platform_build_report_loads_in_chromium_with_a_row_per_platform() {
    let lab = require_lab!();
    let repository = lab.repository("report");
    let project = Project::new();
    project
        .with_busybox(lab, &["amd64", "arm64"])
        .file(
            "Dockerfile",
            "FROM scratch\nARG TARGETARCH\nCOPY busybox/${TARGETARCH} /bin/busybox\nCOPY content.txt /\n\
             RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo '<script>alert(1)</script>' built for $(/bin/busybox uname -m)\"]\n",
        )
        // A file of this run's own: no build cache holds the steps.
        .file("content.txt", &repository)
        .two_platforms(lab, &repository);
    let home = Home::new(lab);
    let _ssh = ssh_lock();
    // --report is relative to -C DIR, as --metadata-file.
    let run = mab(
        home.path(),
        home.path(),
        &[
            "build",
            "-C",
            project.path().to_str().unwrap(),
            "--progress",
            "plain",
            "--tag",
            "t1",
            "--report",
            "page.html",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let page = project.path().join("page.html");
    let text = std::fs::read_to_string(&page).unwrap();
    assert_eq!(
        text,
        std::fs::read_to_string(history_copy(home.path())).unwrap(),
        "the copy in the state directory"
    );
    assert_parses_as_html5(&page);

    let shown = load_in_chromium(lab, &page, "two-platforms");
    assert_eq!(
        rows(&shown),
        [
            (
                "linux/amd64".to_owned(),
                "here".to_owned(),
                "native".to_owned()
            ),
            (
                "linux/arm64".to_owned(),
                "arm".to_owned(),
                "emulated".to_owned()
            ),
        ],
        "{shown}"
    );
    let list = skopeo_raw(&format!("{repository}:t1"));
    assert_eq!(shown["digest"], sha256(&list).as_str(), "{shown}");
    assert_eq!(shown["tags"], serde_json::json!(["t1"]), "{shown}");
    assert_eq!(shown["failure"], serde_json::Value::Null, "{shown}");
    let critical: Vec<&serde_json::Value> = shown["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["critical"] == true)
        .collect();
    assert_eq!(critical.len(), 1, "one critical path: {shown}");
    for (row, machine) in shown["rows"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["x86_64", "aarch64"])
    {
        let bars: Vec<&str> = row["bars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|bar| bar.as_str().unwrap())
            .collect();
        for phase in ["build", "push", "verify"] {
            assert!(bars.contains(&phase), "{phase} in {row}");
        }
        assert!(
            bars.iter().any(|bar| bar.contains("RUN")),
            "the RUN step in {row}"
        );
        // Build output is text on the page, never markup.
        let log = row["log"].as_str().unwrap();
        assert!(
            log.contains(&format!("<script>alert(1)</script> built for {machine}")),
            "{log}"
        );
    }
}

/// A build whose step fails: the page opens with the failure.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_failed_build_report_shows_the_failure_at_the_top() {
    let lab = require_lab!();
    let repository = lab.repository("report-failed");
    let project = Project::new();
    project
        .with_busybox(lab, &["amd64"])
        .file(
            "Dockerfile",
            "FROM scratch\nCOPY busybox/amd64 /bin/busybox\nCOPY content.txt /\n\
             RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo '<b>no</b>'; exit 3\"]\n",
        )
        .amd64_image(&repository, &repository);
    let home = Home::new(lab);
    let run = mab(
        home.path(),
        project.path(),
        &["build", "--progress", "plain", "--report", "page.html"],
    );
    assert_eq!(run.code, 1, "{run:?}");
    let page = project.path().join("page.html");
    assert_eq!(
        std::fs::read_to_string(&page).unwrap(),
        std::fs::read_to_string(history_copy(home.path())).unwrap()
    );
    assert_parses_as_html5(&page);
    let shown = load_in_chromium(lab, &page, "failed");
    let failure = shown["failure"].as_str().unwrap_or_default();
    assert!(
        failure.contains("linux/amd64") && run.stderr.contains(failure),
        "the failure as mab reports it: {shown} {run:?}"
    );
    assert_eq!(shown["failure_before_timeline"], true, "{shown}");
    let top = shown["failure_top"].as_f64().unwrap();
    assert!(
        top < 200.0,
        "the failure is at the top of the page: {shown}"
    );
    assert_eq!(shown["digest"], serde_json::Value::Null, "{shown}");
    assert_eq!(rows(&shown).len(), 1, "{shown}");
    assert!(
        shown["rows"][0]["log"]
            .as_str()
            .unwrap()
            .contains("<b>no</b>"),
        "{shown}"
    );
}

/// Ctrl-C while a step runs: the page is written on the way out, with the
/// interruption at the top and the build that did not finish.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn an_interrupted_build_writes_its_report() {
    let lab = require_lab!();
    let repository = lab.repository("report-interrupted");
    let project = sleeping_project(lab, &repository, "353");
    let home = Home::new(lab);
    let mut child = mab_command(
        home.path(),
        project.path(),
        &["build", "--progress", "plain", "--report", "page.html"],
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let (code, _) = signal_when_sleeping(&mut child, "353", "INT");
    assert_eq!(code, Some(130));

    let page = project.path().join("page.html");
    let text = std::fs::read_to_string(&page).unwrap();
    assert_eq!(
        text,
        std::fs::read_to_string(history_copy(home.path())).unwrap()
    );
    assert_parses_as_html5(&page);
    let failure = text
        .find("id=\"failure\"")
        .expect("the failure is on the page");
    assert!(failure < text.find("id=\"timeline\"").unwrap());
    assert!(text.contains("exit code 130"), "{text}");
    assert!(
        text.contains("interrupted; nothing was published"),
        "{text}"
    );
    assert!(text.contains(">build (did not finish)<"), "{text}");
    assert!(
        text.contains("RUN [&quot;/bin/busybox&quot;, &quot;sleep&quot;"),
        "{text}"
    );
}

/// A `--report` path in a directory that does not exist: a warning naming
/// it, the build still succeeds, and the copy in the state directory is
/// written.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_report_that_cannot_be_written_is_a_warning() {
    let lab = require_lab!();
    let repository = lab.repository("report-unwritable");
    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\nCOPY content.txt /\n")
        .amd64_image(&repository, &repository);
    let home = Home::new(lab);
    let run = mab(
        home.path(),
        project.path(),
        &["build", "--no-push", "--report", "missing/page.html"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let missing = project.path().join("missing/page.html");
    assert!(
        run.stderr.contains(&format!(
            "cannot write the build report {}: No such file or directory",
            missing.display()
        )),
        "{run:?}"
    );
    let copy = std::fs::read_to_string(history_copy(home.path())).unwrap();
    assert!(copy.contains("exit code 0"), "{copy}");
    assert!(copy.contains("nothing was published"), "{copy}");
}
