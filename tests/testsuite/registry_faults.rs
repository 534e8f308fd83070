//! Transient registry faults on the real lab: a small proxy in front of
//! the lab's registry answers `503 Service Unavailable` to the first PUTs
//! of a manifest list (the coordinator's own request; the local engine's
//! pushes of layers and manifests pass through untouched), and mab must
//! retry the push and publish, or give up after its three tries. What was
//! published is read with skopeo from the real registry, not through the
//! proxy. The same proxy plays another writer that moves a tag right
//! after mab pushed it, and fails the reads of the list read back (a
//! `503` once, a `404` for an image, a read held, a stale tag), both used
//! by `readback.rs`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::{
    list_architectures, mab, require_lab, sha256, skopeo_exists, skopeo_raw, skopeo_tags, Lab,
    Project, Run,
};

/// A proxy on a loopback port, forwarding to the lab's registry. Every
/// connection carries one request: the proxy asks the registry to close it
/// after its answer (`Connection: close`), so that each request of a
/// kept-alive client comes on a new connection and is looked at. A
/// manifest list PUT (by its Content-Type, a Docker manifest list or an
/// OCI index) is answered `503` while fewer than `failures` were answered
/// so; everything else is forwarded byte for byte. A stopping proxy
/// ([`FaultyProxy::stopping`]) instead closes the first list PUT's
/// connection without an answer and stops listening, as a registry
/// stopped in the middle of the push: every later connection is refused.
/// A racing proxy ([`FaultyProxy::racing`]) forwards everything, and once
/// the registry has accepted the list PUT under one tag, moves that tag
/// in the registry itself before mab gets the answer, as another writer
/// pushing to the tag at that moment would. A proxy failing the read back
/// ([`FaultyProxy::failing_read_back`]) forwards everything, learns the
/// list's digest and its entries from the list's PUT by digest, and then
/// answers the reads (`GET` or `HEAD`) of `manifests/<digest>` of the
/// list and of its last entry as [`ReadBackFault`] says.
pub(crate) struct FaultyProxy {
    pub(crate) port: u16,
    /// Manifest list PUTs received, answered `503` or forwarded.
    list_puts: Arc<AtomicUsize>,
    /// What a proxy failing the read back learnt and did.
    read_back: Arc<Mutex<ReadBackState>>,
}

/// What a proxy failing the read back answers to reads of the list and
/// of its last entry (the linux/arm64 image), by digest, once the list is
/// pushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadBackFault {
    /// `503` to the first read of each, the others forwarded.
    UnavailableOnce,
    /// `404` to every read of the last entry.
    ChildMissing,
    /// No answer to the first read of the list for 30 s, then the
    /// connection closed: a read back that hangs.
    Hold,
    /// The first `HEAD` of this tag answers that it points at
    /// `sha256:0…0` (a stale tag); later ones are forwarded.
    StaleTag(&'static str),
}

/// What a proxy failing the read back learnt and did: the list's digest
/// and entries from its PUT, and which of them it answered once already.
#[derive(Default)]
struct ReadBackState {
    list: Option<String>,
    entries: Vec<String>,
    answered: Vec<String>,
    /// The request lines of the reads of manifests after the list's PUT.
    reads: Vec<String>,
}

/// What a [`FaultyProxy`] does to manifest list PUTs.
#[derive(Clone, Copy)]
enum ListFault {
    /// Answer `503` to the first ones, this many.
    Unavailable(usize),
    /// Stop at the first one.
    Stop,
    /// After the one under this tag, point the tag at the image manifest
    /// of the repository's `mab-staging-linux-amd64`.
    Race(&'static str),
    /// Forward them; fail the read back of what they pushed.
    ReadBack(ReadBackFault),
}

const LIST_TYPES: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
];

impl FaultyProxy {
    fn start(upstream: &str, failures: usize) -> FaultyProxy {
        FaultyProxy::with(upstream, ListFault::Unavailable(failures))
    }

    /// A proxy that stops at the first manifest list PUT.
    fn stopping(upstream: &str) -> FaultyProxy {
        FaultyProxy::with(upstream, ListFault::Stop)
    }

    /// A proxy that, right after the manifest list is pushed under `tag`,
    /// points `tag` at the repository's linux/amd64 image instead (the
    /// manifest its staging tag names), in the registry behind it.
    pub(crate) fn racing(upstream: &str, tag: &'static str) -> FaultyProxy {
        FaultyProxy::with(upstream, ListFault::Race(tag))
    }

    /// A proxy that fails the reads of the list pushed through it, and of
    /// its last entry, as `fault` says.
    pub(crate) fn failing_read_back(upstream: &str, fault: ReadBackFault) -> FaultyProxy {
        FaultyProxy::with(upstream, ListFault::ReadBack(fault))
    }

    fn with(upstream: &str, fault: ListFault) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let list_puts = Arc::new(AtomicUsize::new(0));
        let counter = list_puts.clone();
        let upstream = upstream.to_owned();
        let read_back = Arc::new(Mutex::new(ReadBackState::default()));
        let state = read_back.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if matches!(fault, ListFault::Stop) && counter.load(Ordering::SeqCst) > 0 {
                    // Stopped: dropping the listener refuses what comes next.
                    break;
                }
                let counter = counter.clone();
                let upstream = upstream.clone();
                let read_back = read_back.clone();
                std::thread::spawn(move || {
                    // A client that went away is no fault of the proxy.
                    let _ = serve(client, &upstream, &counter, fault, port, &read_back);
                });
            }
        });
        FaultyProxy {
            port,
            list_puts,
            read_back: state,
        }
    }

    pub(crate) fn list_puts(&self) -> usize {
        self.list_puts.load(Ordering::SeqCst)
    }

    /// The request lines (`HEAD /v2/…/manifests/1.0.0 HTTP/1.1`) of the
    /// reads of manifests made after the list was pushed by its digest
    /// (a proxy failing the read back only).
    pub(crate) fn reads_after_the_list(&self) -> Vec<String> {
        self.read_back.lock().unwrap().reads.clone()
    }
}

/// One connection: read the request head, then answer `503` or forward.
fn serve(
    mut client: TcpStream,
    upstream: &str,
    list_puts: &AtomicUsize,
    fault: ListFault,
    port: u16,
    read_back: &Mutex<ReadBackState>,
) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0; 8192];
        let read = client.read(&mut chunk)?;
        if read == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let header = |name: &str| header(&head, name);
    let is_list_put = head.starts_with("PUT ")
        && head.lines().next().unwrap_or("").contains("/manifests/")
        && header("content-type").is_some_and(|value| LIST_TYPES.contains(&value.as_str()));
    if is_list_put && matches!(fault, ListFault::Stop) {
        list_puts.fetch_add(1, Ordering::SeqCst);
        // Wake the accept loop so that it sees the stop and drops the
        // listener; this connection closes unanswered.
        let _ = TcpStream::connect(("127.0.0.1", port));
        return client.shutdown(Shutdown::Both);
    }
    let failures = match fault {
        ListFault::Unavailable(failures) => failures,
        ListFault::Stop | ListFault::Race(_) | ListFault::ReadBack(_) => 0,
    };
    let request_line = head.lines().next().unwrap_or("").to_owned();
    if let ListFault::ReadBack(fault) = fault {
        let reference = request_line
            .split(' ')
            .nth(1)
            .and_then(|target| target.rsplit_once("/manifests/"))
            .map(|(_, reference)| reference.to_owned())
            .unwrap_or_default();
        if is_list_put && reference.starts_with("sha256:") {
            // The list by its digest: forwarded, its entries noted.
            list_puts.fetch_add(1, Ordering::SeqCst);
            let body = whole_body(&mut client, &head, buffer[head_end..].to_vec())?;
            let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let mut state = read_back.lock().unwrap();
            state.list = Some(reference.clone());
            state.entries = list["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|entry| entry["digest"].as_str().unwrap().to_owned())
                .collect();
            drop(state);
            let answer = exchange(None, upstream, &head, body)?;
            client.write_all(&answer)?;
            return client.shutdown(Shutdown::Both);
        }
        let read = head.starts_with("GET ") || head.starts_with("HEAD ");
        let status = {
            let mut state = read_back.lock().unwrap();
            let is_list = state.list.as_deref() == Some(reference.as_str());
            let is_last = state.entries.last() == Some(&reference);
            let first = !state.answered.contains(&reference);
            if read && !reference.is_empty() && state.list.is_some() {
                state.reads.push(request_line.clone());
            }
            match fault {
                ReadBackFault::StaleTag(tag)
                    if tag == reference
                        && head.starts_with("HEAD ")
                        && state.list.is_some()
                        && first =>
                {
                    state.answered.push(reference.clone());
                    Some("stale")
                }
                _ if !read || !(is_list || is_last) => None,
                ReadBackFault::UnavailableOnce if first => {
                    state.answered.push(reference.clone());
                    Some("503 Service Unavailable")
                }
                ReadBackFault::ChildMissing if is_last => Some("404 Not Found"),
                ReadBackFault::Hold if is_list && first => {
                    state.answered.push(reference.clone());
                    Some("hold")
                }
                _ => None,
            }
        };
        if status == Some("hold") {
            std::thread::sleep(std::time::Duration::from_secs(30));
            return client.shutdown(Shutdown::Both);
        }
        if status == Some("stale") {
            write!(
                client,
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.distribution.manifest.list.v2+json\r\n\
                 Docker-Content-Digest: sha256:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                "0".repeat(64)
            )?;
            return client.shutdown(Shutdown::Write);
        }
        if let Some(status) = status {
            let code = &status[..3];
            let message = format!(
                r#"{{"errors":[{{"code":"{}","message":"injected fault"}}]}}"#,
                if code == "404" {
                    "MANIFEST_UNKNOWN"
                } else {
                    "UNAVAILABLE"
                }
            );
            // A HEAD answer has no body.
            let body = if head.starts_with("HEAD ") {
                ""
            } else {
                message.as_str()
            };
            write!(
                client,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            return client.shutdown(Shutdown::Write);
        }
    }
    if let ListFault::Race(tag) = fault {
        let target = request_line.split(' ').nth(1).unwrap_or("");
        if let Some(repository) = target.strip_suffix(&format!("/manifests/{tag}")) {
            if is_list_put {
                list_puts.fetch_add(1, Ordering::SeqCst);
                return race(
                    client,
                    upstream,
                    &head,
                    buffer[head_end..].to_vec(),
                    repository,
                    tag,
                );
            }
        }
    }
    if is_list_put && list_puts.fetch_add(1, Ordering::SeqCst) < failures {
        // Read the whole body first, so that closing does not reset the
        // connection before the client reads the answer.
        let length: usize = header("content-length")
            .and_then(|value| value.parse().ok())
            .unwrap_or(0);
        let mut body = buffer.len() - head_end;
        while body < length {
            let mut chunk = [0; 8192];
            let read = client.read(&mut chunk)?;
            if read == 0 {
                break;
            }
            body += read;
        }
        let message = r#"{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}"#;
        write!(
            client,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{message}",
            message.len()
        )?;
        return client.shutdown(Shutdown::Write);
    }
    // Forward, asking the registry to close the connection after its
    // answer: the head with its Connection header replaced, then the rest
    // byte for byte, both ways.
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(closing(&head).as_bytes())?;
    server.write_all(&buffer[head_end..])?;
    let (mut client_reader, mut server_writer) = (client.try_clone()?, server.try_clone()?);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_reader, &mut server_writer);
        let _ = server_writer.shutdown(Shutdown::Write);
    });
    std::io::copy(&mut server, &mut client)?;
    client.shutdown(Shutdown::Both)
}

/// The value of the header `name` in `head` (a request's or an answer's
/// head), case-insensitive.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// `head` (a request head, with its blank line) with its `Connection`
/// header replaced by `Connection: close`.
fn closing(head: &str) -> String {
    let mut forwarded = String::new();
    for line in head[..head.len() - 2].split_inclusive("\r\n") {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            forwarded.push_str(line);
        }
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    forwarded
}

/// The whole body of the request `head` whose start is `body`: the rest,
/// up to its `Content-Length`, read from `client`.
fn whole_body(client: &mut TcpStream, head: &str, mut body: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let length: usize = header(head, "content-length")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    while body.len() < length {
        let mut chunk = [0; 8192];
        let read = client.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    Ok(body)
}

/// One request (`head`, then `body`, of which the rest is still to be read
/// from `client` when it has a `Content-Length`) sent to `upstream`, and
/// the whole answer, head and body.
fn exchange(
    client: Option<&mut TcpStream>,
    upstream: &str,
    head: &str,
    body: Vec<u8>,
) -> std::io::Result<Vec<u8>> {
    let body = match client {
        Some(client) => whole_body(client, head, body)?,
        None => body,
    };
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(closing(head).as_bytes())?;
    server.write_all(&body)?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer)?;
    Ok(answer)
}

/// The list PUT under `tag` of `repository` (`/v2/<name>`): forwarded,
/// and once the registry has answered, another writer points the tag at
/// the image its `mab-staging-linux-amd64` tag names (read from the
/// registry with its own media type); then the registry's answer to the
/// list PUT goes back to the client.
fn race(
    mut client: TcpStream,
    upstream: &str,
    head: &str,
    body: Vec<u8>,
    repository: &str,
    tag: &str,
) -> std::io::Result<()> {
    let answer = exchange(Some(&mut client), upstream, head, body)?;
    let image = exchange(
        None,
        upstream,
        &format!(
            "GET {repository}/manifests/mab-staging-linux-amd64 HTTP/1.1\r\nHost: {upstream}\r\n\
             Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json\r\n\r\n"
        ),
        Vec::new(),
    )?;
    let split = image
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap()
        + 4;
    let image_head = String::from_utf8_lossy(&image[..split]).into_owned();
    assert!(image_head.starts_with("HTTP/1.1 200"), "{image_head}");
    let media_type = header(&image_head, "content-type").unwrap();
    let manifest = image[split..].to_vec();
    let moved = exchange(
        None,
        upstream,
        &format!(
            "PUT {repository}/manifests/{tag} HTTP/1.1\r\nHost: {upstream}\r\nContent-Type: {media_type}\r\nContent-Length: {}\r\n\r\n",
            manifest.len()
        ),
        manifest,
    )?;
    assert!(
        moved.starts_with(b"HTTP/1.1 201"),
        "{}",
        String::from_utf8_lossy(&moved)
    );
    client.write_all(&answer)?;
    client.shutdown(Shutdown::Both)
}

/// A two-platform `FROM scratch` project (amd64 native, arm64 emulated,
/// no RUN steps) for the implicit local runner, whose engine shares this
/// machine's network and so pushes through the proxy too.
pub(crate) fn project(image: &str) -> Project {
    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\nCOPY content.txt /\n")
        .file("content.txt", "retried\n")
        .file(
            "mab.toml",
            &format!(
                "[image]\nname = \"{image}\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n"
            ),
        );
    project
}

/// The lab repository `name` and the same repository through `proxy`.
pub(crate) fn names(lab: &Lab, name: &str, proxy: &FaultyProxy) -> (String, String) {
    let repository = lab.repository(name);
    let path = repository.split_once('/').unwrap().1;
    (
        repository.clone(),
        format!("127.0.0.1:{}/{path}", proxy.port),
    )
}

/// `mab build --progress PROGRESS --tag …` with a home of its own and
/// the metadata file in the project's `metadata.json`.
pub(crate) fn build(project: &Project, progress: &str, tags: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let metadata = project.path().join("metadata.json");
    let mut arguments = vec![
        "build",
        "--progress",
        progress,
        "--metadata-file",
        metadata.to_str().unwrap(),
    ];
    for tag in tags {
        arguments.extend(["--tag", tag]);
    }
    mab(home.path(), project.path(), &arguments)
}

/// Two `503`s to the list's first PUT: the third try succeeds, each retry
/// is a `retry` event naming the registry, the request and the try, and
/// the list and both tags are in the registry.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_registry_failing_twice_is_retried_and_the_list_published() {
    let lab = require_lab!();
    let proxy = FaultyProxy::start(lab.registry(), 2);
    let (repository, image) = names(lab, "retried", &proxy);
    let project = project(&image);

    let run = build(&project, "json", &["1.0.0", "stable"]);

    assert_eq!(run.code, 0, "{run:?}");
    let registry = format!("127.0.0.1:{}", proxy.port);
    let path = image.split_once('/').unwrap().1;
    let retries = run.events_named("retry");
    assert_eq!(retries.len(), 2, "{run:?}");
    for (retry, attempt) in retries.iter().zip([1, 2]) {
        assert_eq!(
            retry["target"],
            serde_json::json!({"kind": "registry", "registry": registry}),
            "{retry}"
        );
        let request = retry["request"].as_str().unwrap();
        assert!(
            request.starts_with(&format!("PUT /v2/{path}/manifests/sha256:")),
            "{retry}"
        );
        assert_eq!(retry["attempt"], attempt, "{retry}");
        assert_eq!(retry["tries"], 3, "{retry}");
        // The backoff starts at 200 ms (with jitter) and stays under 2 s.
        let delay = retry["delay_ms"].as_u64().unwrap();
        assert!((200..=4000).contains(&delay), "{retry}");
        let error = retry["error"].as_str().unwrap();
        assert!(error.contains("503 Service Unavailable"), "{retry}");
        assert!(error.contains("injected fault"), "{retry}");
    }
    // Two refused, the third by digest, then one per tag.
    assert_eq!(proxy.list_puts(), 2 + 1 + 2);

    let digest = run.stdout.trim().rsplit_once('@').unwrap().1.to_owned();
    assert_eq!(run.result_event()["digest"], digest.as_str(), "{run:?}");
    let list = skopeo_raw(&format!("{repository}:1.0.0"));
    assert_eq!(sha256(&list), digest);
    assert_eq!(skopeo_raw(&format!("{repository}:stable")), list);
    assert_eq!(list_architectures(&list), ["amd64", "arm64"]);
}

/// A registry answering `503` to every list PUT: three tries, then exit 1
/// with a message naming the registry, and no tag published.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_registry_that_keeps_failing_is_given_up_after_three_tries() {
    let lab = require_lab!();
    let proxy = FaultyProxy::start(lab.registry(), usize::MAX);
    let (repository, image) = names(lab, "given-up", &proxy);
    let project = project(&image);

    let run = build(&project, "plain", &["1.0.0", "stable"]);

    assert_eq!(run.code, 1, "{run:?}");
    let registry = format!("127.0.0.1:{}", proxy.port);
    let error = run
        .stderr
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_else(|| panic!("an error line: {run:?}"));
    assert!(error.contains(&format!("failed at {registry}:")), "{error}");
    assert!(error.contains("gave up after 3 tries"), "{error}");
    assert!(error.contains("no tag was moved"), "{error}");
    assert!(run.stderr.contains("hint: "), "{run:?}");
    // Each retry as a plain warning line naming the registry and the request.
    let path = image.split_once('/').unwrap().1;
    for try_number in [1, 2] {
        let warning = format!("warning: {registry}: PUT /v2/{path}/manifests/sha256:");
        assert!(
            run.stderr.lines().any(|line| line.starts_with(&warning)
                && line.contains(&format!("failed (try {try_number} of 3)"))),
            "{run:?}"
        );
    }
    assert_eq!(proxy.list_puts(), 3);
    for tag in ["1.0.0", "stable"] {
        assert!(
            !skopeo_exists(&format!("{repository}:{tag}")),
            "{repository}:{tag} was published"
        );
    }
}

/// The registry stops in the middle of the push: the platforms' images
/// went through, then the manifest list's PUT is cut off and every later
/// connection refused. The list push is tried three times (each retry a
/// warning), the build fails (exit 1) naming the registry, and nothing is
/// published: neither tag exists in the real registry, no tag of the
/// repository holds a manifest list, and the metadata says so (no digest,
/// both platforms pushed and missing from a list).
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_registry_stopped_during_the_push_fails_the_build_and_publishes_nothing() {
    let lab = require_lab!();
    let proxy = FaultyProxy::stopping(lab.registry());
    let (repository, image) = names(lab, "stopped", &proxy);
    let project = project(&image);

    let run = build(&project, "plain", &["1.0.0", "stable"]);

    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(proxy.list_puts(), 1, "{run:?}");
    let registry = format!("127.0.0.1:{}", proxy.port);
    let path = image.split_once('/').unwrap().1;
    for try_number in [1, 2] {
        let line = run
            .stderr
            .lines()
            .find(|line| line.contains(&format!("(try {try_number} of 3)")))
            .unwrap_or_else(|| panic!("a warning for try {try_number}: {run:?}"));
        assert!(
            line.starts_with(&format!(
                "warning: {registry}: PUT /v2/{path}/manifests/sha256:"
            )),
            "{line}"
        );
    }
    let error = run
        .stderr
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_else(|| panic!("an error line: {run:?}"));
    assert!(error.contains(&registry), "{error}");
    assert!(error.contains("gave up after 3 tries"), "{error}");
    assert!(run.stderr.contains("hint: "), "{run:?}");
    for tag in ["1.0.0", "stable"] {
        assert!(
            !skopeo_exists(&format!("{repository}:{tag}")),
            "{repository}:{tag} was published"
        );
    }
    for tag in skopeo_tags(&repository) {
        let manifest: serde_json::Value =
            serde_json::from_slice(&skopeo_raw(&format!("{repository}:{tag}"))).unwrap();
        assert!(
            manifest.get("manifests").is_none(),
            "{tag} holds a list: {manifest}"
        );
    }
    let metadata: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.path().join("metadata.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(metadata["digest"], serde_json::Value::Null, "{metadata}");
    assert_eq!(
        metadata["missing"],
        serde_json::json!(["linux/amd64", "linux/arm64"]),
        "{metadata}"
    );
    for platform in metadata["platforms"].as_array().unwrap() {
        assert_eq!(platform["state"], "pushed", "{metadata}");
    }
}
