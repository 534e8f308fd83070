//! The copy of a build context that mab keeps on a Podman runner's host
//! (docs/podman.md).
//!
//! Podman's API service has no BuildKit session to fetch the context's
//! files as it needs them: a build takes the whole context as a tar. So
//! mab keeps a copy of each project's context on the host, under the SSH
//! user's cache directory, brings it up to date before each build with
//! [`sync`], sending only what changed, and the tar the build wants is
//! then made on the host from that copy.
//!
//! A sync runs a handful of commands on the host through its
//! [`HostShell`]:
//!
//! 1. a lock holder: checks the tools, makes the copy's directory, takes
//!    `flock -x` on its lock file for the whole sync, touches its `used`
//!    file, prunes the other copies unused for [`UNUSED_FOR`], and holds
//!    the lock until its stdin closes;
//! 2. a listing of the copy (GNU `find -printf`: type, mode, size,
//!    mtime, link target and path of every entry, NUL-separated), compared
//!    with the entries mab's `.dockerignore` rules let through
//!    ([`mab_context::walk_with_metadata`]): the same type, size, mode and
//!    mtime (whole seconds) is unchanged, a symlink with the same target
//!    is unchanged;
//! 3. `sha256sum` of the regular files of the same size whose mode or
//!    mtime differ; the same contents only get their mode and mtime set;
//! 4. a `sh` script on stdin that removes what the context no longer has
//!    (and entries whose type changed), and sets modes and mtimes (making
//!    read-only directories writable for the SSH user where something in
//!    them changes; the tar sets their modes back);
//! 5. one tar stream of the new and changed entries (directories with
//!    their modes and mtimes, regular files, symlinks), along with the
//!    directories whose contents changed so that their mtimes are right
//!    again, into `tar -x -p --no-same-owner`.
//!
//! FIFOs, sockets and devices are left out of the copy (logged at debug
//! level): Docker 20.10 keeps devices and sockets as empty files and drops
//! FIFOs, and a copy made by an unprivileged user could not hold devices.
//! Hard links become separate files, as Docker 20.10's CLI sends them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mab_context::{BuildContext, EntryKind, Selection, Sha256Stream};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info};

use crate::host::HostShell;

/// How long a copy may go unused (its `used` file untouched) before a sync
/// of another copy on the same host removes it: 7 days. One that a sync or
/// a build holds (its lock) is kept however old it is.
pub const UNUSED_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// The bytes of the tar stream handed from the thread that reads the
/// context's files to the command's stdin at a time.
const TAR_CHUNK: usize = 64 * 1024;

/// Where a project's context copy lives on a host, and what a sync moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextCopy {
    /// The absolute directory on the host holding the copy: its entries
    /// are the context as mab sends it (after `.dockerignore`).
    pub root: String,
    /// The absolute path of the copy's lock file: a sync holds `flock -x`
    /// on it, a build that reads the copy should hold `flock -s`.
    pub lock: String,
    /// The bytes that crossed the host's command channels for this sync,
    /// both ways: the scripts, what was written to their stdin (lists of
    /// paths, the tar of changed entries) and what they printed on stdout
    /// (the listing of the copy, hashes). Not stderr.
    pub sent_bytes: u64,
    /// The context's entries other than directories (special files left
    /// out).
    pub files: u64,
    /// The entries (of every kind) sent because they were new or
    /// different, plus the regular files whose mode or mtime alone was set
    /// again.
    pub changed: u64,
    /// The entries of the copy removed because the context no longer has
    /// them (or has them as another type).
    pub removed: u64,
}

/// Why a context copy could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A tool the copy needs is not on the host's `PATH` (or is not the GNU
    /// one).
    #[error("{host} has no `{tool}`, which keeping a copy of the build context there needs")]
    MissingTool { host: String, tool: String },
    /// A command on the host failed.
    #[error("{step} on {host} failed ({}): {}", status_text(*.status), stderr_text(.stderr))]
    Command {
        host: String,
        /// What it was doing: `listing the context copy`.
        step: &'static str,
        status: Option<u32>,
        /// Its stderr, trimmed.
        stderr: String,
    },
    /// The connection to the host broke, or a command could not be
    /// started.
    #[error("the connection to {host} broke while {step}: {source}")]
    Connection {
        host: String,
        step: &'static str,
        #[source]
        source: io::Error,
    },
    /// The host printed what mab cannot read.
    #[error("{host} gave an answer mab cannot read while {step}: {detail}")]
    Unreadable {
        host: String,
        step: &'static str,
        detail: String,
    },
    /// A file of the context could not be read.
    #[error("cannot read {} of the build context: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The context cannot be listed (a bad `.dockerignore`, a name that
    /// is not UTF-8).
    #[error(transparent)]
    Context(#[from] mab_context::ContextError),
    /// The key names no directory (see [`copy_key`]).
    #[error("`{key}` cannot name a context copy: a key is ASCII letters, digits, `-` and `_`")]
    Key { key: String },
}

fn status_text(status: Option<u32>) -> String {
    match status {
        Some(status) => format!("exit status {status}"),
        None => "no exit status".to_owned(),
    }
}

fn stderr_text(stderr: &str) -> &str {
    match stderr.trim() {
        "" => "it printed nothing on stderr",
        said => said,
    }
}

/// The package that brings `tool` on Debian and Ubuntu.
fn package_of(tool: &str) -> &'static str {
    match tool {
        "flock" => "util-linux",
        "find" | "GNU find" | "xargs" => "findutils",
        "tar" | "GNU tar" => "tar",
        "curl" => "curl",
        "pkill" | "pgrep" => "procps",
        "grep" => "grep",
        _ => "coreutils",
    }
}

impl CopyError {
    /// Whether the fault is the context's, here (a file that cannot be
    /// read, a bad `.dockerignore`, a bad key), so that another runner
    /// would fail the same way; the others are the host's.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            CopyError::Read { .. } | CopyError::Context(_) | CopyError::Key { .. }
        )
    }

    /// A suggestion for the user, to be printed after `hint: `.
    pub fn hint(&self) -> Option<String> {
        match self {
            CopyError::MissingTool { host, tool } => Some(format!(
                "install it on {host} (Debian and Ubuntu: `apt-get install {}`); a Podman runner's \
                 host needs sh, GNU find, GNU tar, sha256sum, flock, xargs, touch, chmod, mkdir, rm, \
                 cat, curl, head, pkill, pgrep, grep and sleep \
                 (docs/podman.md)",
                package_of(tool)
            )),
            CopyError::Command { host, .. } => Some(format!(
                "the copy lives in ~/.cache/mab/contexts (or $XDG_CACHE_HOME/mab/contexts) of the \
                 SSH user on {host}: check that there is room and that the user may write there"
            )),
            CopyError::Connection { host, .. } => Some(format!(
                "check that {host} is up and reachable, then run the build again"
            )),
            CopyError::Unreadable { .. } => Some(
                "a Podman runner's host needs GNU find, GNU tar and coreutils (docs/podman.md)"
                    .to_owned(),
            ),
            CopyError::Read { .. } => Some(
                "make it readable, or leave it out of the context with .dockerignore".to_owned(),
            ),
            CopyError::Context(error) => error.hint(),
            CopyError::Key { .. } => None,
        }
    }
}

/// The key of `context`'s copy: the hex SHA-256 of this machine's host
/// name, a NUL, and the context directory's absolute path (symlinks
/// resolved when it exists). So every project directory of every
/// coordinator gets its own copy on a host, and builds of the same project
/// from the same directory share one.
pub fn copy_key(context: &BuildContext) -> String {
    let hostname = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let dir = fs::canonicalize(context.dir()).unwrap_or_else(|_| context.dir().to_path_buf());
    let mut hash = Sha256Stream::default();
    hash.update(hostname.trim().as_bytes());
    hash.update(b"\0");
    hash.update(dir.as_os_str().as_encoded_bytes());
    hash.digest().trim_start_matches("sha256:").to_owned()
}

/// `text` as one `sh` word, in single quotes.
pub(crate) fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The tools checked before anything else, in the order checked.
/// (`curl`, `head`, `pkill`, `pgrep`, `grep` and `sleep` are for the build
/// that follows, crate::podman: a host without them fails here, before
/// anything is built, rather than halfway.)
const TOOLS: [&str; 16] = [
    "find",
    "tar",
    "sha256sum",
    "flock",
    "xargs",
    "touch",
    "chmod",
    "mkdir",
    "rm",
    "cat",
    "curl",
    "head",
    "pkill",
    "pgrep",
    "grep",
    "sleep",
];

/// The shell function `remove PATH` that both host scripts use: `rm -rf`,
/// and when that fails (read-only directories, which stop a user who is
/// not root from removing what they hold), `chmod -R u+w` first.
const REMOVE_FUNCTION: &str =
    r#"remove() { rm -rf "$1" 2>/dev/null || { chmod -R u+w "$1" && rm -rf "$1"; }; }"#;

/// The lock holder (POSIX `sh`, after [`REMOVE_FUNCTION`]; `KEY` is replaced by the key,
/// `MINUTES` by [`UNUSED_FOR`] in minutes). It prints `missing TOOL` and
/// exits 1 when a tool is missing (or `find`/`tar` are not GNU's); makes
/// the copy's `files` directory; takes `flock -x` on its `lock`, checking
/// that the file it locked is still the one at that path (a prune may have
/// removed it while it waited), touches `used`; then removes every other
/// copy whose `used` file (or, without one, whose directory) is older than
/// `MINUTES`, each only while `flock -n -x` on its lock succeeds, printing
/// `pruned DIR`; prints `locked DIR` (DIR the copy's directory, absolute)
/// and holds the lock until its stdin closes.
const LOCK_SCRIPT: &str = r#"b="${XDG_CACHE_HOME:-$HOME/.cache}/mab/contexts"; k="$b/KEY"
for t in TOOLS; do command -v "$t" >/dev/null 2>&1 || { echo "missing $t"; exit 1; }; done
find . -maxdepth 0 -printf '' >/dev/null 2>&1 || { echo "missing GNU find"; exit 1; }
case "$(tar --version 2>/dev/null)" in *"GNU tar"*) ;; *) echo "missing GNU tar"; exit 1;; esac
while :; do
  mkdir -p "$k/files" || exit 1
  exec 9>>"$k/lock"
  flock -x 9 || exit 1
  [ "$k/lock" -ef /proc/$$/fd/9 ] && [ -d "$k/files" ] && break
  exec 9>&-
done
touch "$k/used" || exit 1
for d in "$b"/*/; do
  d="${d%/}"; [ "$d" = "$k" ] && continue
  u="$d/used"; [ -e "$u" ] || u="$d"
  [ -n "$(find "$u" -maxdepth 0 -mmin +MINUTES 2>/dev/null)" ] || continue
  ( flock -n -x 8 && remove "$d" && echo "pruned $d" ) 8>>"$d/lock"
done
cd "$k" && echo "locked $(pwd -P)"
exec cat >/dev/null"#;

/// One entry of the host's copy, as its listing tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HostEntry {
    /// `find`'s `%y`: `f`, `d`, `l`, or another letter for special files.
    kind: char,
    mode: u32,
    size: u64,
    mtime: i64,
    target: String,
}

/// One entry of the context as it is here.
struct LocalEntry {
    kind: EntryKind,
    metadata: fs::Metadata,
    target: String,
}

impl LocalEntry {
    fn kind_letter(&self) -> char {
        match self.kind {
            EntryKind::File => 'f',
            EntryKind::Directory => 'd',
            EntryKind::Symlink => 'l',
            EntryKind::Special => '?',
        }
    }

    fn mode(&self) -> u32 {
        self.metadata.permissions().mode() & 0o7777
    }
}

/// What a comparison of the copy with the context decided.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// Paths to remove from the copy (none below another one).
    remove: Vec<String>,
    /// Regular files of the same size whose contents are to be compared.
    compare: Vec<String>,
    /// Entries to send in the tar, new or different.
    send: BTreeSet<String>,
    /// Directories whose metadata is to be set again because what they
    /// hold changes.
    parents: BTreeSet<String>,
    /// Entries of the copy that the context no longer has.
    removed: u64,
}

/// The parent of `path` in the copy (`""` for the root's children).
fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

/// Whether `path` is `ancestor` or below it.
fn is_within(path: &str, ancestor: &str) -> bool {
    ancestor.is_empty()
        || path == ancestor
        || (path.starts_with(ancestor) && path.as_bytes().get(ancestor.len()) == Some(&b'/'))
}

/// Compares the copy with the context: what to remove, what to hash,
/// what to send.
fn plan(local: &BTreeMap<String, LocalEntry>, host: &BTreeMap<String, HostEntry>) -> Plan {
    let mut plan = Plan::default();
    for (path, theirs) in host {
        let kept = local
            .get(path)
            .is_some_and(|ours| ours.kind_letter() == theirs.kind);
        if kept {
            continue;
        }
        plan.removed += 1;
        if !path.is_empty() && !plan.remove.last().is_some_and(|last| is_within(path, last)) {
            plan.remove.push(path.clone());
            plan.parents.insert(parent_of(path).to_owned());
        }
    }
    for (path, ours) in local {
        let Some(theirs) = host
            .get(path)
            .filter(|theirs| theirs.kind == ours.kind_letter())
        else {
            plan.send.insert(path.clone());
            continue;
        };
        let same_stat = theirs.mode == ours.mode() && theirs.mtime == ours.metadata.mtime();
        match ours.kind {
            EntryKind::Directory if !same_stat => {
                plan.send.insert(path.clone());
            }
            EntryKind::Symlink if theirs.target != ours.target => {
                plan.send.insert(path.clone());
            }
            EntryKind::File if theirs.size != ours.metadata.len() => {
                plan.send.insert(path.clone());
            }
            EntryKind::File if !same_stat => plan.compare.push(path.clone()),
            _ => {}
        }
    }
    plan
}

/// The parsed output of the listing script: `%y %m %s %T@ %l %P`, each
/// field ended by a NUL.
fn parse_listing(output: &[u8]) -> Result<BTreeMap<String, HostEntry>, String> {
    let mut fields = output.split(|byte| *byte == 0);
    let mut entries = BTreeMap::new();
    while let Some(kind) = fields.next() {
        if kind.is_empty() {
            // The piece after the last NUL.
            break;
        }
        let mut next = |name: &str| {
            fields
                .next()
                .map(|field| String::from_utf8_lossy(field).into_owned())
                .ok_or_else(|| format!("an entry ends before its {name}"))
        };
        let mode = next("mode")?;
        let size = next("size")?;
        let mtime = next("mtime")?;
        let target = next("link target")?;
        let path = next("path")?;
        let bad = |name: &str, value: &str| format!("`{path}` has the {name} `{value}`");
        let kind = match kind {
            [letter] => char::from(*letter),
            _ => return Err(bad("type", &String::from_utf8_lossy(kind))),
        };
        let entry = HostEntry {
            kind,
            mode: u32::from_str_radix(&mode, 8).map_err(|_| bad("mode", &mode))?,
            size: size.parse().map_err(|_| bad("size", &size))?,
            mtime: whole_seconds(&mtime).ok_or_else(|| bad("mtime", &mtime))?,
            target,
        };
        entries.insert(path, entry);
    }
    Ok(entries)
}

/// The whole seconds of `find`'s `%T@` (`1700000000.1234567890`), rounded
/// down as `st_mtime` is.
fn whole_seconds(text: &str) -> Option<i64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let seconds: i64 = whole.parse().ok()?;
    let below = fraction.bytes().any(|digit| digit != b'0');
    Some(match whole.starts_with('-') && below {
        true => seconds - 1,
        false => seconds,
    })
}

/// The hex SHA-256 of each line of `sha256sum` output, in order (a name
/// with a `\` or a newline makes the line start with `\`).
fn parse_hashes(output: &[u8]) -> Vec<String> {
    output
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let line = line.strip_prefix(b"\\").unwrap_or(line);
            String::from_utf8_lossy(&line[..line.len().min(64)]).into_owned()
        })
        .collect()
}

/// The hex SHA-256 of a local file.
fn local_hash(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut file = fs::File::open(path)?;
    let mut hash = Sha256Stream::default();
    let mut chunk = vec![0; TAR_CHUNK];
    loop {
        match file.read(&mut chunk)? {
            0 => break,
            count => hash.update(&chunk[..count]),
        }
    }
    Ok(hash.digest().trim_start_matches("sha256:").to_owned())
}

/// The sync's commands on one host, and the bytes they moved.
struct Runner<'a> {
    host: &'a dyn HostShell,
    name: String,
    sent: u64,
}

/// Counts what a reader gives.
struct Counted<R> {
    inner: R,
    count: u64,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        self.count += (buf.filled().len() - before) as u64;
        polled
    }
}

impl Runner<'_> {
    /// Runs `script` with `input` on its stdin while reading its stdout,
    /// and returns its stdout once it exited with status 0.
    async fn run(
        &mut self,
        step: &'static str,
        script: &str,
        input: impl AsyncRead + Unpin,
    ) -> Result<Vec<u8>, CopyError> {
        let broken = |source| CopyError::Connection {
            host: self.name.clone(),
            step,
            source,
        };
        // Run by `sh` whatever the SSH user's login shell is.
        let script = format!("sh -c {}", quoted(script));
        self.sent += script.len() as u64;
        let command = self.host.start(&script).await.map_err(broken)?;
        let (mut reader, mut writer) = tokio::io::split(command);
        let mut input = Counted {
            inner: input,
            count: 0,
        };
        let write = async {
            // A command that ended early fails the write (`BrokenPipe`);
            // its exit status tells why.
            let copied = tokio::io::copy(&mut input, &mut writer).await;
            let _ = writer.shutdown().await;
            copied
        };
        let mut output = Vec::new();
        let (written, read) = tokio::join!(write, reader.read_to_end(&mut output));
        self.sent += input.count + output.len() as u64;
        let exit = reader.unsplit(writer).wait().await.map_err(broken)?;
        if !exit.success() {
            return Err(CopyError::Command {
                host: self.name.clone(),
                step,
                status: exit.status,
                stderr: exit.stderr.trim().to_owned(),
            });
        }
        read.map_err(broken)?;
        if let Err(source) = written {
            return Err(broken(source));
        }
        Ok(output)
    }
}

/// Brings the copy of `context` keyed `key` on `host` up to date (see
/// the module's documentation and docs/podman.md) and says where it is.
/// The copy's lock is held while this runs and let go when it returns.
///
/// `key` is ASCII letters, digits, `-` and `_` ([`copy_key`] gives one).
///
/// Errors: [`CopyError::MissingTool`] when the host lacks a tool;
/// [`CopyError::Command`] when a command there fails (its stderr);
/// [`CopyError::Connection`] when the connection breaks;
/// [`CopyError::Read`] and [`CopyError::Context`] when the context cannot
/// be read here.
pub async fn sync(
    host: &dyn HostShell,
    context: &BuildContext,
    key: &str,
) -> Result<ContextCopy, CopyError> {
    let valid = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_';
    if key.is_empty() || !key.bytes().all(valid) {
        return Err(CopyError::Key {
            key: key.to_owned(),
        });
    }
    let mut runner = Runner {
        host,
        name: host.name(),
        sent: 0,
    };

    // 1. The lock, held by a command that runs until its stdin closes.
    let locking = "locking the context copy";
    let script = format!("{REMOVE_FUNCTION}\n{LOCK_SCRIPT}")
        .replace("KEY", key)
        .replace("TOOLS", &TOOLS.join(" "))
        .replace("MINUTES", &(UNUSED_FOR.as_secs() / 60).to_string());
    // Run by `sh` whatever the SSH user's login shell is.
    let script = format!("sh -c {}", quoted(&script));
    runner.sent += script.len() as u64;
    let broken = |source| CopyError::Connection {
        host: runner.name.clone(),
        step: locking,
        source,
    };
    let mut holder = tokio::io::BufReader::new(host.start(&script).await.map_err(broken)?);
    let copy_dir = loop {
        let mut line = String::new();
        let read = holder.read_line(&mut line).await.map_err(broken)?;
        runner.sent += read as u64;
        let line = line.trim_end_matches('\n');
        if let Some(dir) = line.strip_prefix("locked ") {
            break dir.to_owned();
        }
        if let Some(dir) = line.strip_prefix("pruned ") {
            debug!(
                "removed the context copy {dir} on {}, unused for {UNUSED_FOR:?}",
                runner.name
            );
            continue;
        }
        if let Some(tool) = line.strip_prefix("missing ") {
            return Err(CopyError::MissingTool {
                host: runner.name.clone(),
                tool: tool.to_owned(),
            });
        }
        if read == 0 {
            let exit = holder.into_inner().wait().await.map_err(broken)?;
            return Err(CopyError::Command {
                host: runner.name.clone(),
                step: locking,
                status: exit.status,
                stderr: exit.stderr.trim().to_owned(),
            });
        }
    };
    let files_dir = format!("{copy_dir}/files");
    let in_copy = format!("cd {} && ", quoted(&files_dir));

    // 2. What the context holds here, and what the copy holds there.
    let mut local = BTreeMap::new();
    let root = fs::symlink_metadata(context.dir()).map_err(|source| CopyError::Read {
        path: context.dir().to_path_buf(),
        source,
    })?;
    local.insert(
        String::new(),
        LocalEntry {
            kind: EntryKind::Directory,
            metadata: root,
            target: String::new(),
        },
    );
    let selection = Selection {
        exclude: Some(context.ignore()),
        include: None,
    };
    let mut files = 0;
    for (entry, metadata) in mab_context::walk_with_metadata(context.dir(), selection)? {
        let path = entry.path.to_string_lossy().into_owned();
        let target = match entry.kind {
            EntryKind::Special => {
                debug!("{path} of the build context is a FIFO, socket or device: left out of the context copy");
                continue;
            }
            EntryKind::Symlink => {
                let absolute = context.dir().join(&entry.path);
                fs::read_link(&absolute)
                    .map_err(|source| CopyError::Read {
                        path: absolute,
                        source,
                    })?
                    .to_string_lossy()
                    .into_owned()
            }
            EntryKind::File | EntryKind::Directory => String::new(),
        };
        if entry.kind != EntryKind::Directory {
            files += 1;
        }
        let entry = LocalEntry {
            kind: entry.kind,
            metadata,
            target,
        };
        local.insert(path, entry);
    }
    let listing = runner
        .run(
            "listing the context copy",
            &format!(r"{in_copy}find . -printf '%y\0%m\0%s\0%T@\0%l\0%P\0'"),
            tokio::io::empty(),
        )
        .await?;
    let copied = parse_listing(&listing).map_err(|detail| CopyError::Unreadable {
        host: runner.name.clone(),
        step: "listing the context copy",
        detail,
    })?;
    let mut plan = plan(&local, &copied);

    // 3. Files whose size is the same: compare their contents.
    let mut fixes = String::new();
    let mut changed = 0;
    if !plan.compare.is_empty() {
        let list: Vec<u8> = plan
            .compare
            .iter()
            .flat_map(|path| format!("./{path}\0").into_bytes())
            .collect();
        let hashing = "hashing files of the context copy";
        let output = runner
            .run(
                hashing,
                &format!("{in_copy}xargs -0 -r sha256sum --"),
                &list[..],
            )
            .await?;
        let theirs = parse_hashes(&output);
        if theirs.len() != plan.compare.len() {
            return Err(CopyError::Unreadable {
                host: runner.name.clone(),
                step: hashing,
                detail: format!("{} hashes for {} files", theirs.len(), plan.compare.len()),
            });
        }
        for (path, theirs) in std::mem::take(&mut plan.compare).into_iter().zip(theirs) {
            let absolute = context.dir().join(&path);
            let ours = local_hash(&absolute).map_err(|source| CopyError::Read {
                path: absolute,
                source,
            })?;
            if ours != theirs {
                plan.send.insert(path);
                continue;
            }
            let entry = &local[&path];
            let host = &copied[&path];
            let word = quoted(&format!("./{path}"));
            if host.mode != entry.mode() {
                fixes.push_str(&format!("chmod {:o} {word}\n", entry.mode()));
            }
            if host.mtime != entry.metadata.mtime() {
                fixes.push_str(&format!("touch -d @{} {word}\n", entry.metadata.mtime()));
            }
            changed += 1;
        }
    }

    // 4. Removals (before the tar: an entry whose type changed is removed
    // first) and the metadata of unchanged contents. A directory of the
    // copy that the context keeps read-only is made writable for the
    // SSH user first when something in it changes (the tar sets its mode
    // again); a removed entry goes through `REMOVE_FUNCTION`.
    for path in &plan.send {
        if !path.is_empty() {
            plan.parents.insert(parent_of(path).to_owned());
        }
    }
    let mut script = String::new();
    for parent in &plan.parents {
        let read_only = copied
            .get(parent)
            .is_some_and(|entry| entry.kind == 'd' && entry.mode & 0o200 == 0);
        if read_only && local.contains_key(parent) {
            script.push_str(&format!("chmod u+w {}\n", quoted(&format!("./{parent}"))));
        }
    }
    for path in &plan.remove {
        script.push_str(&format!("remove {}\n", quoted(&format!("./{path}"))));
    }
    script.push_str(&fixes);
    if !script.is_empty() {
        let script = format!("{REMOVE_FUNCTION}\n{script}");
        runner
            .run(
                "removing from the context copy",
                &format!("{in_copy}sh -se"),
                script.as_bytes(),
            )
            .await?;
    }

    // 5. The tar of what is new or changed, with the directories whose
    // contents change (their mtimes).
    changed += plan.send.len() as u64;
    let mut entries: BTreeSet<String> = plan.send.clone();
    entries.extend(
        plan.parents
            .iter()
            .filter(|parent| local.contains_key(*parent))
            .cloned(),
    );
    if !entries.is_empty() {
        let (reading, writing) = tokio::io::duplex(TAR_CHUNK);
        let dir = context.dir().to_path_buf();
        let runtime = tokio::runtime::Handle::current();
        let writer =
            tokio::task::spawn_blocking(move || write_tar(&dir, &entries, writing, runtime));
        let sent = runner
            .run(
                "sending changes to the context copy",
                &format!("{in_copy}tar -x -p --no-same-owner -f -"),
                reading,
            )
            .await;
        let written = writer.await.unwrap_or_else(|error| {
            Err(CopyError::Read {
                path: context.dir().to_path_buf(),
                source: io::Error::other(error),
            })
        });
        match (written, sent) {
            // The command stopped reading (it failed, or the connection
            // broke): its error tells why.
            (Err(CopyError::Read { source, .. }), Err(error))
                if source.kind() == io::ErrorKind::BrokenPipe =>
            {
                return Err(error)
            }
            // A file that could not be read here cut the stream short:
            // that is the error to tell, not tar's complaint about it.
            (Err(error), _) | (Ok(()), Err(error)) => return Err(error),
            (Ok(()), Ok(_)) => {}
        }
    }

    // The lock goes with its holder.
    let holder = holder.into_inner();
    let exit = holder
        .wait()
        .await
        .map_err(|source| CopyError::Connection {
            host: runner.name.clone(),
            step: locking,
            source,
        })?;
    if !exit.success() {
        debug!(
            "the lock holder of the context copy on {} ended with {}: {}",
            runner.name,
            status_text(exit.status),
            exit.stderr.trim()
        );
    }
    info!(
        "context copy on {}: {files_dir} ({changed} entries sent, {} removed, {} bytes both ways)",
        runner.name, plan.removed, runner.sent
    );
    Ok(ContextCopy {
        lock: format!("{copy_dir}/lock"),
        root: files_dir,
        sent_bytes: runner.sent,
        files,
        changed,
        removed: plan.removed,
    })
}

/// A `std::io::Write` into an async writer, for the tar builder's thread.
struct Blocking<W> {
    inner: W,
    runtime: tokio::runtime::Handle,
}

impl<W: tokio::io::AsyncWrite + Unpin> io::Write for Blocking<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.runtime.block_on(self.inner.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.runtime.block_on(self.inner.flush())
    }
}

/// Writes the tar of `entries` (paths relative to `dir`, `""` for `dir`
/// itself) into `into`, in a blocking thread: directories, regular files
/// and symlinks with their modes and mtimes (whole seconds), owner 0:0.
fn write_tar(
    dir: &Path,
    entries: &BTreeSet<String>,
    into: tokio::io::DuplexStream,
    runtime: tokio::runtime::Handle,
) -> Result<(), CopyError> {
    let mut builder = tar::Builder::new(Blocking {
        inner: into,
        runtime,
    });
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    for path in entries {
        let absolute = dir.join(path);
        let name = match path.as_str() {
            "" => ".",
            path => path,
        };
        let failed = |source| CopyError::Read {
            path: absolute.clone(),
            source,
        };
        let metadata = fs::symlink_metadata(&absolute).map_err(failed)?;
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&metadata, tar::HeaderMode::Complete);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mode(metadata.mode() & 0o7777);
        header.set_mtime(u64::try_from(metadata.mtime()).unwrap_or(0));
        if metadata.is_file() {
            let file = fs::File::open(&absolute).map_err(failed)?;
            header.set_size(metadata.len());
            // A file that grew since is cut at its listed size.
            builder
                .append_data(&mut header, name, io::Read::take(file, metadata.len()))
                .map_err(failed)?;
        } else if metadata.is_symlink() {
            let target = fs::read_link(&absolute).map_err(failed)?;
            header.set_size(0);
            builder
                .append_link(&mut header, name, target)
                .map_err(failed)?;
        } else {
            header.set_size(0);
            builder
                .append_data(&mut header, name, io::empty())
                .map_err(failed)?;
        }
    }
    builder.into_inner().map_err(|source| CopyError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::sync::Arc;

    use super::*;
    use crate::host::{HostCommand, HostFuture, LocalShell};

    /// This machine as a host whose cache directory is `cache` and, with
    /// `path`, whose `PATH` is that.
    struct TestHost {
        cache: PathBuf,
        path: Option<PathBuf>,
        /// Text of the scripts replaced, and by what.
        rewrite: Option<(&'static str, &'static str)>,
        /// Run the scripts as user and group 65534 (`nobody`), not root.
        unprivileged: bool,
    }

    impl HostShell for TestHost {
        fn start<'a>(
            &'a self,
            script: &'a str,
        ) -> HostFuture<'a, io::Result<Box<dyn HostCommand>>> {
            let mut full = format!(
                "XDG_CACHE_HOME={}; export XDG_CACHE_HOME\n",
                quoted(&self.cache.to_string_lossy())
            );
            if let Some(path) = &self.path {
                full.push_str(&format!("PATH={}\n", quoted(&path.to_string_lossy())));
            }
            match self.rewrite {
                Some((from, to)) => full.push_str(&script.replace(from, to)),
                None => full.push_str(script),
            }
            if self.unprivileged {
                full = format!(
                    "exec setpriv --reuid=65534 --regid=65534 --clear-groups sh -c {}",
                    quoted(&full)
                );
            }
            Box::pin(async move { LocalShell.start(&full).await })
        }

        fn name(&self) -> String {
            "the test host".to_owned()
        }
    }

    /// A context directory and a host cache directory.
    struct Setup {
        _temp: tempfile::TempDir,
        context: PathBuf,
        host: TestHost,
    }

    fn setup() -> Setup {
        let temp = tempfile::tempdir().unwrap();
        let context = temp.path().join("context");
        fs::create_dir(&context).unwrap();
        fs::write(context.join("Dockerfile"), "FROM scratch\nCOPY . /\n").unwrap();
        let host = TestHost {
            cache: temp.path().join("cache"),
            path: None,
            rewrite: None,
            unprivileged: false,
        };
        Setup {
            _temp: temp,
            context,
            host,
        }
    }

    impl Setup {
        fn write(&self, path: &str, contents: &[u8]) {
            let path = self.context.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, contents).unwrap();
        }

        async fn sync(&self) -> ContextCopy {
            let context = BuildContext::locate(&self.context, None).unwrap();
            sync(&self.host, &context, "k1").await.unwrap()
        }

        /// Checks that the copy holds what the context sends, no more.
        fn assert_copied(&self, copy: &ContextCopy) {
            let context = BuildContext::locate(&self.context, None).unwrap();
            let selection = Selection {
                exclude: Some(context.ignore()),
                include: None,
            };
            let expected = describe(&self.context, selection);
            let found = describe(Path::new(&copy.root), Selection::default());
            assert_eq!(found, expected);
        }
    }

    /// Every entry of `root` that `selection` lets through, and `root`
    /// itself as `""`: its type, mode, mtime (not a symlink's), and its
    /// contents or target.
    fn describe(root: &Path, selection: Selection<'_>) -> BTreeMap<String, String> {
        let mut entries: Vec<(String, fs::Metadata)> =
            mab_context::walk_with_metadata(root, selection)
                .unwrap()
                .into_iter()
                .map(|(entry, metadata)| (entry.path.to_string_lossy().into_owned(), metadata))
                .collect();
        entries.push((String::new(), fs::symlink_metadata(root).unwrap()));
        entries
            .into_iter()
            .map(|(path, metadata)| {
                let absolute = root.join(&path);
                let mode = metadata.mode() & 0o7777;
                let text = if metadata.is_symlink() {
                    format!("link -> {}", fs::read_link(&absolute).unwrap().display())
                } else if metadata.is_dir() {
                    format!("dir {mode:o} {}", metadata.mtime())
                } else {
                    let contents = fs::read(&absolute).unwrap();
                    format!(
                        "file {mode:o} {} {}",
                        metadata.mtime(),
                        mab_context::sha256_digest(&contents)
                    )
                };
                (path, text)
            })
            .collect()
    }

    fn set_mtime(path: &Path, seconds: u64) {
        let time = std::time::UNIX_EPOCH + Duration::from_secs(seconds);
        fs::File::options()
            .write(true)
            .open(path)
            .or_else(|_| fs::File::open(path))
            .unwrap()
            .set_modified(time)
            .unwrap();
    }

    /// A first sync sends everything; a second one, with nothing changed,
    /// sends little more than the listing; `.dockerignore`d files (the
    /// Dockerfile too, when ignored) never reach the copy.
    #[tokio::test]
    async fn a_second_sync_of_an_unchanged_context_sends_only_the_listing() {
        let setup = setup();
        let big = vec![7u8; 300_000];
        setup.write("src/main.c", &big);
        setup.write("src/lib/a.h", b"int a;\n");
        setup.write("secret.txt", b"do not send");
        setup.write("logs/build.log", b"noise");
        setup.write(".dockerignore", b"secret.txt\nlogs\nDockerfile\n");
        symlink("src/main.c", setup.context.join("main")).unwrap();
        fs::set_permissions(
            setup.context.join("src/lib"),
            fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        fs::set_permissions(
            setup.context.join("src/lib/a.h"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();

        set_mtime(&setup.context, 1_600_000_000);
        let first = setup.sync().await;
        setup.assert_copied(&first);
        let root = Path::new(&first.root);
        for ignored in ["secret.txt", "logs", "Dockerfile"] {
            assert!(!root.join(ignored).exists(), "{ignored} was copied");
        }
        assert!(root.join(".dockerignore").exists());
        // .dockerignore, src/main.c, src/lib/a.h, main.
        assert_eq!(first.files, 4);
        // Those, src, src/lib and the root.
        assert_eq!((first.changed, first.removed), (7, 0));
        assert!(first.sent_bytes > big.len() as u64, "{}", first.sent_bytes);
        assert!(
            first.root.ends_with("/mab/contexts/k1/files"),
            "{}",
            first.root
        );
        assert!(
            first.lock.ends_with("/mab/contexts/k1/lock"),
            "{}",
            first.lock
        );
        assert!(Path::new(&first.lock).is_file());

        let second = setup.sync().await;
        setup.assert_copied(&second);
        assert_eq!((second.changed, second.removed), (0, 0));
        assert!(second.sent_bytes < 3_000, "{}", second.sent_bytes);
    }

    /// One changed file of a context of 1,000 sends less than 1% of the
    /// context's bytes.
    #[tokio::test]
    #[expect(clippy::print_stdout, reason = "the figures measured")]
    async fn one_changed_file_of_a_thousand_sends_under_one_percent() {
        let setup = setup();
        let size = 16 * 1024;
        for number in 0..1000 {
            let mut contents = vec![(number % 251) as u8; size];
            contents[0] = (number / 251) as u8;
            setup.write(&format!("dir{:02}/file{number:04}", number / 50), &contents);
        }
        let total = 1000 * size as u64;
        let first = setup.sync().await;
        assert!(first.sent_bytes > total, "{}", first.sent_bytes);
        let unchanged = setup.sync().await;
        setup.write("dir07/file0377", &vec![1u8; size + 10]);
        let one = setup.sync().await;
        setup.assert_copied(&one);
        assert_eq!((one.changed, one.removed), (1, 0));
        println!(
            "context of 1000 files, {total} bytes: first sync {} bytes, unchanged {} bytes, one file changed {} bytes",
            first.sent_bytes, unchanged.sent_bytes, one.sent_bytes
        );
        assert!(
            one.sent_bytes * 100 < total,
            "{} of {total}",
            one.sent_bytes
        );
        assert!(
            unchanged.sent_bytes * 100 < total,
            "{}",
            unchanged.sent_bytes
        );
    }

    /// A file whose contents changed but not its size is found by its
    /// hash and sent; one whose mtime alone changed gets only its mtime
    /// set (its contents are not sent again); one whose mode alone
    /// changed gets only its mode.
    #[tokio::test]
    async fn equal_sizes_are_told_apart_by_hash() {
        let setup = setup();
        let size = 200_000;
        setup.write("same-size", &vec![1u8; size]);
        setup.write("touched", &vec![2u8; size]);
        setup.write("chmodded", &vec![3u8; size]);
        for name in ["same-size", "touched", "chmodded"] {
            set_mtime(&setup.context.join(name), 1_600_000_000);
        }
        setup.sync().await;

        setup.write("same-size", &vec![9u8; size]);
        set_mtime(&setup.context.join("touched"), 1_700_000_000);
        fs::set_permissions(
            setup.context.join("chmodded"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let copy = setup.sync().await;
        setup.assert_copied(&copy);
        assert_eq!(copy.changed, 3);
        // The changed contents, not the others'.
        assert!(copy.sent_bytes > size as u64, "{}", copy.sent_bytes);
        assert!(copy.sent_bytes < 2 * size as u64, "{}", copy.sent_bytes);

        set_mtime(&setup.context.join("same-size"), 1_500_000_000);
        let copy = setup.sync().await;
        setup.assert_copied(&copy);
        assert!(copy.sent_bytes < 5_000, "{}", copy.sent_bytes);
    }

    /// What the context no longer has leaves the copy, whole directories
    /// too; an entry whose type changed is replaced; a symlink's new
    /// target is sent.
    #[tokio::test]
    async fn removed_and_retyped_entries_leave_the_copy() {
        let setup = setup();
        setup.write("gone/deep/file", b"1");
        setup.write("gone/other", b"2");
        setup.write("kept/stale", b"3");
        setup.write("kept/fresh", b"4");
        setup.write("was-file", b"5");
        fs::create_dir(setup.context.join("was-dir")).unwrap();
        setup.write("was-dir/inside", b"6");
        symlink("kept/fresh", setup.context.join("link")).unwrap();
        let first = setup.sync().await;
        setup.assert_copied(&first);

        fs::remove_dir_all(setup.context.join("gone")).unwrap();
        fs::remove_file(setup.context.join("kept/stale")).unwrap();
        fs::remove_file(setup.context.join("was-file")).unwrap();
        setup.write("was-file/now-inside", b"7");
        fs::remove_dir_all(setup.context.join("was-dir")).unwrap();
        setup.write("was-dir", b"8");
        fs::remove_file(setup.context.join("link")).unwrap();
        symlink("was-dir", setup.context.join("link")).unwrap();
        let copy = setup.sync().await;
        setup.assert_copied(&copy);
        // gone, gone/deep, gone/deep/file, gone/other, kept/stale,
        // was-file, was-dir, was-dir/inside.
        assert_eq!(copy.removed, 8);
        assert!(!Path::new(&copy.root).join("gone").exists());
    }

    /// An SSH user that is not root can change what read-only
    /// directories of the context hold in the copy, and remove them.
    #[tokio::test]
    async fn read_only_directories_change_for_an_unprivileged_user() {
        let mut setup = setup();
        let temp = setup.context.parent().unwrap().to_path_buf();
        fs::set_permissions(&temp, fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(&setup.host.cache).unwrap();
        std::os::unix::fs::chown(&setup.host.cache, Some(65534), Some(65534)).unwrap();
        setup.host.unprivileged = true;
        setup.write("ro/f", b"first");
        setup.write("ro/sub/g", b"deep");
        let read_only = |path: &str| {
            fs::set_permissions(setup.context.join(path), fs::Permissions::from_mode(0o555))
                .unwrap()
        };
        read_only("ro/sub");
        read_only("ro");
        let first = setup.sync().await;
        setup.assert_copied(&first);
        let owner = fs::metadata(Path::new(&first.root).join("ro/f"))
            .unwrap()
            .uid();
        assert_eq!(
            owner, 65534,
            "the copy was not made by the unprivileged user"
        );

        setup.write("ro/f", b"second, longer");
        setup.write("ro/new", b"new");
        fs::remove_dir_all(setup.context.join("ro/sub")).unwrap();
        let copy = setup.sync().await;
        setup.assert_copied(&copy);
        assert_eq!(copy.removed, 2);
    }

    /// Syncs of the same copy at the same time take turns: each leaves
    /// the copy whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_syncs_of_one_copy_take_turns() {
        let setup = Arc::new(setup());
        for number in 0..200 {
            setup.write(
                &format!("d{}/f{number}", number % 7),
                &vec![number as u8; 5000],
            );
        }
        set_mtime(&setup.context, 1_600_000_000);
        let syncs: Vec<_> = (0..4)
            .map(|_| {
                let setup = setup.clone();
                tokio::spawn(async move { setup.sync().await })
            })
            .collect();
        let mut sent = Vec::new();
        for sync in syncs {
            let copy = sync.await.unwrap();
            setup.assert_copied(&copy);
            sent.push(copy.changed);
        }
        // One of them sent everything (the files, 7 directories, the
        // Dockerfile and the root), the others nothing.
        sent.sort();
        assert_eq!(sent, [0, 0, 0, 209]);
    }

    /// Copies unused for [`UNUSED_FOR`] are removed by another copy's
    /// sync, unless their lock is held; newer ones stay.
    #[tokio::test]
    async fn syncs_prune_old_unlocked_copies() {
        let setup = setup();
        let contexts = setup.host.cache.join("mab/contexts");
        let old = std::time::SystemTime::now() - UNUSED_FOR - Duration::from_secs(3600);
        let recent = std::time::SystemTime::now() - UNUSED_FOR + Duration::from_secs(3600);
        for (name, used) in [("old", old), ("held", old), ("recent", recent)] {
            fs::create_dir_all(contexts.join(name).join("files/x")).unwrap();
            fs::write(contexts.join(name).join("used"), b"").unwrap();
            fs::File::options()
                .write(true)
                .open(contexts.join(name).join("used"))
                .unwrap()
                .set_modified(used)
                .unwrap();
        }
        let mut holder = std::process::Command::new("flock")
            .arg(contexts.join("held/lock"))
            .arg("cat")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The lock is taken once the file exists and `flock -n` fails.
        let held = || {
            std::process::Command::new("flock")
                .args(["-n"])
                .arg(contexts.join("held/lock"))
                .arg("true")
                .status()
                .is_ok_and(|status| !status.success())
        };
        while !held() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        setup.sync().await;
        assert!(!contexts.join("old").exists());
        assert!(contexts.join("held/files/x").exists());
        assert!(contexts.join("recent/files/x").exists());
        drop(holder.stdin.take());
        holder.wait().unwrap();
        // Once let go, the old one goes too.
        setup.sync().await;
        assert!(!contexts.join("held").exists());
        assert!(contexts.join("k1/files/Dockerfile").exists());
    }

    /// An SSH user that is not root prunes an old copy that holds
    /// read-only directories (as a context may have them).
    #[tokio::test]
    async fn an_unprivileged_user_prunes_a_copy_with_read_only_directories() {
        let mut setup = setup();
        let temp = setup.context.parent().unwrap().to_path_buf();
        fs::set_permissions(&temp, fs::Permissions::from_mode(0o755)).unwrap();
        let old = setup.host.cache.join("mab/contexts/old");
        fs::create_dir_all(old.join("files/ro/sub")).unwrap();
        fs::write(old.join("files/ro/sub/f"), b"kept read-only").unwrap();
        fs::write(old.join("used"), b"").unwrap();
        let status = std::process::Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(&setup.host.cache)
            .status()
            .unwrap();
        assert!(status.success());
        for dir in ["files/ro/sub", "files/ro"] {
            fs::set_permissions(old.join(dir), fs::Permissions::from_mode(0o555)).unwrap();
        }
        set_mtime(
            &old.join("used"),
            (std::time::SystemTime::now() - UNUSED_FOR - Duration::from_secs(3600))
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        );
        setup.host.unprivileged = true;
        setup.sync().await;
        assert!(!old.exists(), "the old copy was not pruned");
    }

    /// A host without `flock` is told by name, with the package that
    /// brings it.
    #[tokio::test]
    async fn a_missing_tool_is_named() {
        let mut setup = setup();
        let bin = setup.host.cache.with_file_name("bin");
        fs::create_dir_all(&bin).unwrap();
        for tool in TOOLS.iter().chain(&["sh", "dirname", "pwd"]) {
            if *tool == "flock" {
                continue;
            }
            for dir in ["/usr/bin", "/bin"] {
                let found = Path::new(dir).join(tool);
                if found.exists() {
                    let _ = symlink(found, bin.join(tool));
                    break;
                }
            }
        }
        setup.host.path = Some(bin);
        let context = BuildContext::locate(&setup.context, None).unwrap();
        let error = sync(&setup.host, &context, "k1").await.unwrap_err();
        assert!(
            matches!(&error, CopyError::MissingTool { tool, .. } if tool == "flock"),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "the test host has no `flock`, which keeping a copy of the build context there needs"
        );
        assert!(error.hint().unwrap().contains("apt-get install util-linux"));
        let error = sync(&setup.host, &context, "../k").await.unwrap_err();
        assert!(matches!(error, CopyError::Key { .. }), "{error:?}");
    }

    /// A command that fails on the host is told with its stderr, also
    /// when it stops reading a tar stream midway.
    #[tokio::test]
    async fn failures_on_the_host_are_told_with_their_stderr() {
        let mut setup = setup();
        setup.write("big", &vec![0u8; 4 * 1024 * 1024]);
        setup.host.rewrite = Some((
            "tar -x",
            "head -c 1000 >/dev/null; echo \"disk full\" >&2; exit 5; tar -x",
        ));
        let context = BuildContext::locate(&setup.context, None).unwrap();
        let error = sync(&setup.host, &context, "k1").await.unwrap_err();
        assert!(
            matches!(
                &error,
                CopyError::Command { step: "sending changes to the context copy", status: Some(5), stderr, .. }
                    if stderr == "disk full"
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "sending changes to the context copy on the test host failed (exit status 5): disk full"
        );
        assert!(error.hint().unwrap().contains("~/.cache/mab/contexts"));

        // A cache directory that cannot be made.
        setup.host.rewrite = None;
        fs::remove_dir_all(&setup.host.cache).unwrap();
        fs::write(&setup.host.cache, b"a file").unwrap();
        let error = sync(&setup.host, &context, "k1").await.unwrap_err();
        assert!(
            matches!(&error, CopyError::Command { step: "locking the context copy", stderr, .. } if stderr.contains("mkdir")),
            "{error:?}"
        );
    }

    #[test]
    fn listings_are_read_field_by_field() {
        let listing = b"d\x00755\x004096\x001700000000.5000000000\x00\x00\x00\
f\x00644\x0012\x001700000001.0000000000\x00\x00a b\nc\x00\
l\x00777\x001\x00-1.5\x00a b\nc\x00link\x00";
        let entries = parse_listing(listing).unwrap();
        let entry = |kind, mode, size, mtime, target: &str| HostEntry {
            kind,
            mode,
            size,
            mtime,
            target: target.to_owned(),
        };
        assert_eq!(
            entries,
            BTreeMap::from([
                (String::new(), entry('d', 0o755, 4096, 1_700_000_000, "")),
                (
                    "a b\nc".to_owned(),
                    entry('f', 0o644, 12, 1_700_000_001, "")
                ),
                ("link".to_owned(), entry('l', 0o777, 1, -2, "a b\nc")),
            ])
        );
        let bad = parse_listing(b"f\x00rw\x001\x001\x00\x00x\x00").unwrap_err();
        assert_eq!(bad, "`x` has the mode `rw`");
        assert!(parse_listing(b"f\x00644\x00").is_err());
    }

    #[test]
    fn hashes_are_read_in_order() {
        let one = "a".repeat(64);
        let two = "b".repeat(64);
        let output = format!("{one}  ./x\n\\{two}  ./with\\nnewline\n");
        assert_eq!(parse_hashes(output.as_bytes()), [one, two]);
    }

    #[test]
    fn paths_nest_by_whole_names() {
        // (path, ancestor, within)
        let cases = [
            ("a/b", "a", true),
            ("a", "a", true),
            ("ab", "a", false),
            ("a/b", "", true),
            ("b", "a", false),
        ];
        for (path, ancestor, within) in cases {
            assert_eq!(is_within(path, ancestor), within, "{path} in {ancestor}");
        }
        assert_eq!(parent_of("a/b/c"), "a/b");
        assert_eq!(parent_of("a"), "");
        assert_eq!(quoted("it's"), r"'it'\''s'");
    }
}
