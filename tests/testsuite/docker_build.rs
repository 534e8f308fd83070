//! `mab build` against `docker build` (Debian's docker CLI 20.10 with
//! BuildKit, on the same local engine) for inputs real projects have: names
//! any byte Linux allows, every kind of file a context can hold, and the
//! ways a Dockerfile and its ignore file are found. Each case builds the
//! same directory with both and compares the images' files (names as
//! bytes, type, mode, size, link target, contents, modification time).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::support::{docker_on, mab, require_lab, Lab};

/// One entry of an image's filesystem, as its exported tar holds it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ImageFile {
    /// The name, byte for byte, shown escaped.
    path: String,
    /// The tar entry type: `0` file, `1` hard link, `2` symlink, `5`
    /// directory, ...
    kind: char,
    mode: u32,
    size: u64,
    /// A symlink's target or a hard link's first name.
    link: Option<String>,
    /// sha256 of a file's contents.
    contents: Option<String>,
    /// Seconds; directories made by the build itself are left out.
    modified: u64,
}

fn escape(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// The files of `image` in the local engine below `under/`, read from
/// `docker export` of a container made from it.
fn image_files(image: &str, under: &str) -> BTreeSet<ImageFile> {
    let created = docker_on("local", &["create", "--entrypoint", "/none", image]);
    assert!(
        created.status.success(),
        "docker create {image}: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let container = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let exported = docker_on("local", &["export", &container]);
    docker_on("local", &["rm", &container]);
    assert!(exported.status.success(), "docker export {image}");
    let mut archive = tar::Archive::new(exported.stdout.as_slice());
    let prefix = format!("{under}/");
    let mut files = BTreeSet::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path_bytes().into_owned();
        if !path.starts_with(prefix.as_bytes()) || path.len() == prefix.len() {
            continue;
        }
        let header = entry.header().clone();
        let kind = char::from(header.entry_type().as_byte());
        let link = entry.link_name_bytes().map(|link| escape(&link));
        let contents = (kind == '0').then(|| {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            format!("{:x}", Sha256::digest(&bytes))
        });
        files.insert(ImageFile {
            path: escape(path.strip_suffix(b"/").unwrap_or(&path)),
            kind,
            mode: header.mode().unwrap(),
            size: header.size().unwrap(),
            link,
            contents,
            modified: header.mtime().unwrap(),
        });
    }
    files
}

/// Builds `work/<context>` for linux/amd64 with the docker CLI (with
/// `-f <context>/<dockerfile>` when a Dockerfile is named) and returns the
/// files its image holds below `under`.
fn docker_image(
    lab: &Lab,
    work: &Path,
    context: &str,
    dockerfile: Option<&str>,
    under: &str,
) -> BTreeSet<ImageFile> {
    let context_dir = work.join(context);
    let image = format!("{}:docker-cli", lab.repository("docker-cli"));
    let mut command = lab.docker_cli();
    command
        .args(["build", "--quiet"])
        .args(["--platform", "linux/amd64", "-t", &image]);
    if let Some(dockerfile) = dockerfile {
        command.arg("-f").arg(context_dir.join(dockerfile));
    }
    let built = command.arg(&context_dir).output().unwrap();
    assert!(
        built.status.success(),
        "docker build of {context} failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    image_files(&image, under)
}

/// Builds the same with `mab build --no-push` (`dockerfile` in mab.toml
/// when named) as `repository` and returns the files its image holds below
/// `under`.
fn mab_image(
    repository: &str,
    work: &Path,
    context: &str,
    dockerfile: Option<&str>,
    under: &str,
) -> BTreeSet<ImageFile> {
    let mut manifest = format!(
        "[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\"]\ncontext = \"{context}\"\n"
    );
    if let Some(dockerfile) = dockerfile {
        manifest.push_str(&format!("dockerfile = \"{dockerfile}\"\n"));
    }
    fs::write(work.join("mab.toml"), manifest).unwrap();
    let home = tempfile::tempdir().unwrap();
    let run = mab(
        home.path(),
        work,
        &["build", "--no-push", "--progress", "plain"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    image_files(&format!("{repository}:mab-linux-amd64"), under)
}

/// Asserts that two images hold the same files.
fn assert_same(docker: &BTreeSet<ImageFile>, built_by_mab: &BTreeSet<ImageFile>) {
    let only_docker: Vec<_> = docker.difference(built_by_mab).collect();
    let only_mab: Vec<_> = built_by_mab.difference(docker).collect();
    assert!(
        only_docker.is_empty() && only_mab.is_empty(),
        "docker's image only: {only_docker:#?}\nmab's image only: {only_mab:#?}"
    );
}

/// Builds with both and asserts the images hold the same files below
/// `under`; returns them.
fn same_as_docker(
    lab: &Lab,
    work: &Path,
    context: &str,
    dockerfile: Option<&str>,
    under: &str,
) -> BTreeSet<ImageFile> {
    let docker = docker_image(lab, work, context, dockerfile, under);
    let repository = lab.repository("mab");
    assert_same(
        &docker,
        &mab_image(&repository, work, context, dockerfile, under),
    );
    docker
}

fn write(root: &Path, relative: &str, contents: &str) {
    let path = root.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
}

fn paths(files: &BTreeSet<ImageFile>) -> Vec<&str> {
    files.iter().map(|file| file.path.as_str()).collect()
}

/// Names with separators, escapes, spaces, newlines and non-ASCII letters,
/// matched by `.dockerignore` patterns by their real names; hard links, an
/// empty directory, modes, and every special file type.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn every_name_and_kind_of_file_arrives_as_docker_sends_it() {
    let lab = require_lab!();
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("context");
    write(&context, "Dockerfile", "FROM scratch\nCOPY . /ctx/\n");
    let names = [
        "back\\slash",
        "new\nline",
        " lead space",
        "trail space ",
        "tab\tx",
        "colon:star*q?",
        "#hash",
        "!bang",
        "[brackets]",
        "café",
        "%41percent",
        "+plus",
        "dir\\with\\backslashes/inner",
        "new\nline dir/inner.txt",
        "drop\\me.txt",
        "drop\nme.tmp",
        "keep\nme.tmp",
        "deep/a\\b/x.tmp",
    ];
    for name in names {
        write(&context, name, name);
    }
    // `\\` is a literal backslash; `*` and `?` match a newline in a name.
    write(
        &context,
        ".dockerignore",
        "drop\\\\me.txt\n*.tmp\n!keep?me.tmp\n**/a\\\\b/*.tmp\n",
    );
    fs::create_dir_all(context.join("empty/nested-empty")).unwrap();
    write(&context, "hard/first", "shared contents\n");
    fs::hard_link(context.join("hard/first"), context.join("hard/second")).unwrap();
    fs::hard_link(context.join("hard/first"), context.join("third-link")).unwrap();
    write(&context, "run.sh", "#!/bin/sh\n");
    fs::set_permissions(context.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    write(&context, "private", "secret\n");
    fs::set_permissions(context.join("private"), fs::Permissions::from_mode(0o600)).unwrap();
    symlink("back\\slash", context.join("link-to-backslash")).unwrap();
    symlink("no/such/target", context.join("dangling")).unwrap();
    for (name, kind) in [("fifo", "p"), ("chardev", "c"), ("blockdev", "b")] {
        let mut mknod = Command::new("mknod");
        mknod.arg(context.join(name)).arg(kind);
        if kind != "p" {
            mknod.args(["1", "3"]);
        }
        assert!(mknod.status().unwrap().success(), "mknod {name}");
    }
    let _socket = std::os::unix::net::UnixListener::bind(context.join("socket")).unwrap();

    let files = same_as_docker(lab, work.path(), "context", None, "ctx");
    let listed = paths(&files);
    for present in [
        "ctx/back\\\\slash",
        "ctx/new\\nline",
        "ctx/ lead space",
        "ctx/trail space ",
        "ctx/caf\\xc3\\xa9",
        "ctx/dir\\\\with\\\\backslashes/inner",
        "ctx/keep\\nme.tmp",
        "ctx/empty/nested-empty",
        "ctx/hard/second",
        "ctx/socket",
    ] {
        assert!(listed.contains(&present), "{present} missing: {listed:#?}");
    }
    for absent in [
        "ctx/drop\\\\me.txt",
        "ctx/drop\\nme.tmp",
        "ctx/deep/a\\\\b/x.tmp",
    ] {
        assert!(!listed.contains(&absent), "{absent} was sent: {listed:#?}");
    }
    // A hard link arrives as a link, as Docker sends it.
    assert!(
        files.iter().any(|file| file.kind == '1'),
        "no hard link in {files:#?}"
    );
}

/// A rebuild after a change sends only what changed: the engine keeps its
/// copy of the context, and hard links in it must stay what they are (no
/// stray `.tmp.*` name left by the engine re-linking an unchanged path).
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_rebuild_after_a_change_keeps_the_hard_links() {
    let lab = require_lab!();
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("context");
    write(&context, "Dockerfile", "FROM scratch\nCOPY . /ctx/\n");
    // These sizes reproduced the engine re-linking an unchanged path when
    // mab sent a hard link's size as 0.
    write(&context, "orig", "data\n");
    fs::hard_link(context.join("orig"), context.join("hardlink")).unwrap();
    // The same image name both times, as a project's rebuilds have.
    let repository = lab.repository("rebuild");
    let first = mab_image(&repository, work.path(), "context", None, "ctx");
    write(&context, "added", "new\n");
    let second = mab_image(&repository, work.path(), "context", None, "ctx");
    assert_same(
        &docker_image(lab, work.path(), "context", None, "ctx"),
        &second,
    );
    assert_eq!(
        paths(&second),
        ["ctx/Dockerfile", "ctx/added", "ctx/hardlink", "ctx/orig"]
    );
    let links: Vec<(&str, Option<&str>)> = second
        .iter()
        .filter(|file| file.kind == '1')
        .map(|file| (file.path.as_str(), file.link.as_deref()))
        .collect();
    assert_eq!(links, [("ctx/orig", Some("ctx/hardlink"))], "{second:#?}");
    assert_eq!(first.len() + 1, second.len());
}

/// Docker 20.10 sends a name that is not UTF-8; BuildKit's message types
/// cannot carry it (protobuf strings), so mab refuses it before building,
/// naming the file, unless the ignore file leaves it out.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_name_that_is_not_utf8_is_refused_before_building() {
    let lab = require_lab!();
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("context");
    write(&context, "Dockerfile", "FROM scratch\nCOPY . /ctx/\n");
    fs::write(context.join(OsStr::from_bytes(b"bad\xffname")), "x").unwrap();
    let repository = lab.repository("not-utf8");
    fs::write(
        work.path().join("mab.toml"),
        format!("[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\"]\ncontext = \"context\"\n"),
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let run = mab(
        home.path(),
        work.path(),
        &["build", "--no-push", "--progress", "plain"],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("bad\\xffname is not valid UTF-8"),
        "{run:?}"
    );
    assert!(run.stderr.contains("hint: rename it"), "{run:?}");
    let image = docker_on(
        "local",
        &["image", "inspect", &format!("{repository}:mab-linux-amd64")],
    );
    assert!(!image.status.success(), "an image was built");

    write(&context, ".dockerignore", "bad*\n");
    let run = mab(
        home.path(),
        work.path(),
        &["build", "--no-push", "--progress", "plain"],
    );
    assert_eq!(run.code, 0, "{run:?}");
}

/// BuildKit reads `<Dockerfile>.dockerignore` beside the Dockerfile instead
/// of the context's `.dockerignore`.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_dockerfile_specific_ignore_file_replaces_the_root_one() {
    let lab = require_lab!();
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("context");
    write(&context, ".dockerignore", "*\n!api/\n!build/\n");
    write(&context, "api/main.go", "package main\n");
    write(&context, "web/index.html", "<html>\n");
    write(&context, "web/app.js", "app()\n");
    write(&context, "web/draft.tmp", "draft\n");
    write(
        &context,
        "build/web.Dockerfile",
        "FROM scratch\nCOPY web/ /web/\n",
    );
    write(&context, "build/web.Dockerfile.dockerignore", "**/*.tmp\n");

    let files = same_as_docker(
        lab,
        work.path(),
        "context",
        Some("build/web.Dockerfile"),
        "web",
    );
    assert_eq!(paths(&files), ["web/app.js", "web/index.html"]);
}

/// A Dockerfile that is a symlink, to a file beside it or in a directory
/// below: the engine gets the link and what it points at.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_symlinked_dockerfile_is_followed() {
    let lab = require_lab!();
    for target in ["Dockerfile.release", "docker/Dockerfile.prod"] {
        let work = tempfile::tempdir().unwrap();
        let context = work.path().join("context");
        write(&context, target, "FROM scratch\nCOPY app.txt /app/\n");
        write(&context, "app.txt", target);
        symlink(target, context.join("Dockerfile")).unwrap();
        let files = same_as_docker(lab, work.path(), "context", None, "app");
        assert_eq!(paths(&files), ["app/app.txt"], "{target}");
    }
}

/// With no name given, `Dockerfile`, else `dockerfile`; `mab init` finds the
/// same one.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_lowercase_dockerfile_is_found_when_no_name_is_given() {
    let lab = require_lab!();
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("context");
    write(
        &context,
        "dockerfile",
        "FROM scratch\nCOPY lower.txt /found/\n",
    );
    write(&context, "lower.txt", "lower\n");
    write(&context, "upper.txt", "upper\n");
    let files = same_as_docker(lab, work.path(), "context", None, "found");
    assert_eq!(paths(&files), ["found/lower.txt"]);

    // The frontend asked for `Dockerfile`, so `Dockerfile.dockerignore` is
    // the ignore file that applies, not `dockerfile.dockerignore`.
    write(&context, "dockerfile", "FROM scratch\nCOPY . /found/\n");
    write(&context, "Dockerfile.dockerignore", "lower.txt\n");
    write(&context, "dockerfile.dockerignore", "upper.txt\n");
    let files = same_as_docker(lab, work.path(), "context", None, "found");
    let listed = paths(&files);
    assert!(listed.contains(&"found/upper.txt"), "{listed:?}");
    assert!(!listed.contains(&"found/lower.txt"), "{listed:?}");
    fs::remove_file(context.join("Dockerfile.dockerignore")).unwrap();
    fs::remove_file(context.join("dockerfile.dockerignore")).unwrap();

    write(
        &context,
        "Dockerfile",
        "FROM scratch\nCOPY upper.txt /found/\n",
    );
    let files = same_as_docker(lab, work.path(), "context", None, "found");
    assert_eq!(paths(&files), ["found/upper.txt"]);

    let fresh = tempfile::tempdir().unwrap();
    write(fresh.path(), "dockerfile", "FROM scratch\n");
    let home = tempfile::tempdir().unwrap();
    let run = mab(home.path(), fresh.path(), &["init"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(fresh.path().join("mab.toml").is_file());
}

/// `dockerfile = "../docker/Dockerfile"`: the Dockerfile travels on its own,
/// as with `docker build -f`, and its ignore file beside it applies.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_dockerfile_outside_the_context_is_used() {
    let lab = require_lab!();
    let work = tempfile::tempdir().unwrap();
    write(
        work.path(),
        "docker/Dockerfile",
        "FROM scratch\nCOPY . /ctx/\n",
    );
    write(work.path(), "docker/Dockerfile.dockerignore", "*.tmp\n");
    write(work.path(), "app/main.c", "int main;\n");
    write(work.path(), "app/scratch.tmp", "\n");
    let files = same_as_docker(lab, work.path(), "app", Some("../docker/Dockerfile"), "ctx");
    assert_eq!(paths(&files), ["ctx/main.c"]);
}
