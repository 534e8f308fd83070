//! The build context against Docker's own: for the same directory and
//! `.dockerignore`, what Debian's docker CLI (20.10, BuildKit) sends must be
//! exactly what `mab_context::BuildContext::scan` lists, and exactly what a
//! `mab build` of that directory gets into its image (served through the
//! BuildKit session). `docker_build.rs` compares whole images the same way:
//! names byte for byte, file types, modes, hard links, contents, and the
//! Dockerfile lookups.
//!
//! The CLI builds `FROM scratch` + `COPY . /ctx/` on the lab's local engine and
//! exports the result with `--output type=local`, so the files that arrived can
//! be listed. Docker 20.10 predates some of moby's later fixes (`**foo`,
//! exceptions with wildcards, `+(){}|` in patterns), so the `.dockerignore`
//! here sticks to rules both versions agree on; the unit tests of mab-context
//! cover the rest.

use std::collections::BTreeSet;

use crate::support::{docker_on, require_lab, Lab};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `docker build` with BuildKit on the lab's local engine, exporting the
/// image's files to `output`.
fn docker_build(lab: &Lab, context: &Path, output: &Path) -> Output {
    lab.docker_cli()
        .args(["build", "--quiet", "--output"])
        .arg(format!("type=local,dest={}", output.display()))
        .arg(context)
        .output()
        .expect("the docker CLI runs")
}

/// Every path below `root`, relative to it, symlinks not followed.
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        for child in fs::read_dir(&directory).unwrap() {
            let path = child.unwrap().path();
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                pending.push(path.clone());
            }
            found.insert(path.strip_prefix(root).unwrap().to_path_buf());
        }
    }
    found
}

const DOCKERFILE: &str = "FROM scratch\nCOPY . /ctx/\n";

const DOCKERIGNORE: &str = "\
# Docker's rules, not gitignore's
   
*.log
!keep.log
/secret.txt
./tmp/
build/
**/*.bak
**/node_modules
docs
!docs/keep.md
cache/**
?.o
[ab]x.dat
[^c]y.dat
src/**/*.gen
*/nested.txt
   spaced.txt   
a/b
lib/../generated
  # not a comment
\\*star
";

const FILES: &[&str] = &[
    "app.log",
    "keep.log",
    "sub/app.log",
    "secret.txt",
    "sub/secret.txt",
    "tmp/x",
    "tmp/deep/y",
    "build",
    "sub/build/y",
    "a.bak",
    "sub/deep/a.bak",
    "sub/deep/ok.txt",
    "node_modules/m/index.js",
    "web/node_modules/pkg/index.js",
    "web/index.js",
    "docs/keep.md",
    "docs/other.md",
    "docs/sub/x.md",
    "cache/f",
    "cache/deep/g",
    "x.o",
    "xy.o",
    "sub/x.o",
    "ax.dat",
    "cx.dat",
    "ay.dat",
    "cy.dat",
    "src/main.gen",
    "src/x/y/z.gen",
    "src/keep.rs",
    "one/nested.txt",
    "one/two/nested.txt",
    "nested.txt",
    "spaced.txt",
    "a/b/c",
    "a/bc",
    "a/c",
    "generated",
    "# not a comment",
    "*star",
    "xstar",
    "with space.txt",
];

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn context_matches_what_docker_sends() {
    let lab = require_lab!();
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("context");
    for file in FILES {
        let path = context.join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, file.as_bytes()).unwrap();
    }
    fs::create_dir_all(context.join("empty")).unwrap();
    symlink("keep.log", context.join("link-to-keep")).unwrap();
    symlink("app.log", context.join("link-to-excluded")).unwrap();
    symlink("no/such/target", context.join("sub/dangling")).unwrap();
    fs::write(context.join("Dockerfile"), DOCKERFILE).unwrap();
    fs::write(context.join(".dockerignore"), DOCKERIGNORE).unwrap();

    let output = work.path().join("output");
    let built = docker_build(lab, &context, &output);
    assert!(
        built.status.success(),
        "docker build failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let sent_by_docker = tree(&output.join("ctx"));

    let listed: BTreeSet<PathBuf> = mab_context::BuildContext::locate(&context, None)
        .unwrap()
        .scan()
        .unwrap()
        .paths()
        .into_iter()
        .collect();
    let only_docker: Vec<_> = sent_by_docker.difference(&listed).collect();
    let only_mab: Vec<_> = listed.difference(&sent_by_docker).collect();
    assert!(
        only_docker.is_empty() && only_mab.is_empty(),
        "Docker sent but mab left out: {only_docker:?}\nmab sends but Docker left out: {only_mab:?}"
    );
    // The case is only worth something if the rules did cut the tree.
    assert!(listed.contains(Path::new("docs/keep.md")));
    assert!(!listed.contains(Path::new("docs/other.md")));
    assert!(listed.len() > 25, "{listed:?}");

    // What mab itself serves the engine (through the BuildKit session) for
    // the same directory, read back from the image it built.
    let sent_by_mab = built_by_mab(lab, work.path());
    let only_docker: Vec<_> = sent_by_docker.difference(&sent_by_mab).collect();
    let only_mab: Vec<_> = sent_by_mab.difference(&sent_by_docker).collect();
    assert!(
        only_docker.is_empty() && only_mab.is_empty(),
        "Docker's build got but mab's did not: {only_docker:?}\nmab's build got but Docker's did not: {only_mab:?}"
    );
}

/// Builds `work/context` with `mab build --no-push` on the lab's local
/// engine and lists what its image holds under `/ctx`.
fn built_by_mab(lab: &Lab, work: &Path) -> BTreeSet<PathBuf> {
    let repository = lab.repository("oracle");
    fs::write(
        work.join("mab.toml"),
        format!("[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\"]\ncontext = \"context\"\n"),
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let run = crate::support::mab(
        home.path(),
        work,
        &["build", "--no-push", "--progress", "plain"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let image = format!("{repository}:mab-linux-amd64");
    let created = docker_on("local", &["create", "--entrypoint", "/none", &image]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let container = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let exported = work.join("exported.tar");
    let export = docker_on(
        "local",
        &["export", "--output", exported.to_str().unwrap(), &container],
    );
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    docker_on("local", &["rm", &container]);
    let listing = Command::new("tar")
        .arg("-tf")
        .arg(&exported)
        .output()
        .unwrap();
    assert!(listing.status.success());
    String::from_utf8(listing.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix("ctx/"))
        .map(|path| path.trim_end_matches('/'))
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .collect()
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn rejected_patterns_are_the_ones_docker_rejects() {
    let lab = require_lab!();
    // (.dockerignore, whether Docker accepts it)
    let cases = [
        ("[abc\n", false),
        ("ok\n!\n", false),
        ("!/\n", false),
        ("trailing\\\n", false),
        ("[]a]\n", false),
        ("[-a]\n", false),
        ("[a-]\n", false),
        ("[a\\]]\n", true),
        ("a]b\n", true),
        ("[^a-c]x\n", true),
        ("# [unclosed in a comment\n", true),
    ];
    let work = tempfile::tempdir().unwrap();
    for (index, (text, accepted)) in cases.into_iter().enumerate() {
        let context = work.path().join(format!("context-{index}"));
        fs::create_dir_all(&context).unwrap();
        fs::write(context.join("Dockerfile"), DOCKERFILE).unwrap();
        fs::write(context.join(".dockerignore"), text).unwrap();
        let built = docker_build(lab, &context, &work.path().join(format!("output-{index}")));
        assert_eq!(
            built.status.success(),
            accepted,
            "Docker on {text:?}:\n{}",
            String::from_utf8_lossy(&built.stderr)
        );
        let parsed = mab_context::DockerIgnore::parse(text);
        assert_eq!(parsed.is_ok(), accepted, "mab on {text:?}: {parsed:?}");
    }
}
