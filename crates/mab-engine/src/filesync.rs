//! The build context, served to BuildKit through the session's FileSync
//! service as `docker build` serves it: the engine asks for a directory by
//! name (`context` or `dockerfile`), mab lists it in fsutil's packet
//! protocol, and the engine then requests the contents of only the files
//! whose metadata differs from what it already holds.
//!
//! The protocol (fsutil's `send.go`/`receive.go`), sender's side:
//!
//! 1. one STAT packet per entry, depth first with each directory's entries
//!    sorted by name (a directory before what it holds), then an empty STAT;
//!    entry `n` (counting from 0, every kind) has the id `n`;
//! 2. for each REQ packet naming the id of a regular file, DATA packets with
//!    its bytes and then an empty DATA packet with that id;
//! 3. when the receiver sends FIN, a FIN back, and the transfer is over.
//!
//! Either side may send ERR with a message instead. A STAT carries Go's
//! `os.FileMode` bits in `mode` (not the Unix ones), the modification time in
//! nanoseconds, and owner 0:0 as the docker CLI sends the context.
//!
//! The request's gRPC metadata says what is sent: `include-patterns`,
//! `exclude-patterns` (`.dockerignore` patterns, matched with Docker's rules)
//! and `followpaths` (paths whose symlinks are followed and whose targets are
//! included). mab applies exactly these, as fsutil does; the frontend sends
//! the patterns of the ignore file that applies.
//!
//! Every kind of entry is sent as fsutil sends it: a file's second and later
//! hard links as links to the first (`linkname`, with the file's size), devices with their
//! numbers, sockets without their type bit, FIFOs as FIFOs. Names travel
//! byte for byte; one that is not UTF-8 cannot (protobuf strings) and is
//! refused before the build (see `mab_context::walk`). Known differences
//! from fsutil: extended attributes are not sent, and a `followpaths` entry
//! with a wildcard is used as a pattern without resolving the symlinks it
//! matches.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bollard_buildkit_proto::fsutil::types::packet::PacketType;
use bollard_buildkit_proto::fsutil::types::{Packet, Stat};
use bollard_buildkit_proto::moby::filesync::v1::file_sync_server::FileSync;
use futures_util::{stream, Stream, StreamExt};
use mab_context::{BuildContext, ContextError, DockerIgnore, Selection};
use tokio::sync::mpsc;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

/// The directory name BuildKit asks for to get the build context.
pub(crate) const CONTEXT: &str = "context";
/// The directory name BuildKit asks for to get the Dockerfile.
pub(crate) const DOCKERFILE: &str = "dockerfile";

/// The most bytes of a file in one DATA packet.
const DATA_CHUNK: usize = 64 * 1024;
/// Packets waiting for the connection before the sender waits too.
const PACKETS_IN_FLIGHT: usize = 16;

// Go's os.FileMode bits (io/fs).
const GO_MODE_DIR: u32 = 1 << 31;
const GO_MODE_SYMLINK: u32 = 1 << 27;
/// Never sent: fsutil clears it (see [`go_file_mode`]); part of the type mask.
const GO_MODE_SOCKET: u32 = 1 << 24;
/// Go's `ModeIrregular`, for files of no known type; part of the type mask.
const GO_MODE_IRREGULAR: u32 = 1 << 19;
const GO_MODE_DEVICE: u32 = 1 << 26;
const GO_MODE_NAMED_PIPE: u32 = 1 << 25;
const GO_MODE_SETUID: u32 = 1 << 23;
const GO_MODE_SETGID: u32 = 1 << 22;
const GO_MODE_CHAR_DEVICE: u32 = 1 << 21;
const GO_MODE_STICKY: u32 = 1 << 20;
/// The type bits of a Go mode (`os.ModeType`); none of them is a regular file.
const GO_MODE_TYPE: u32 = GO_MODE_DIR
    | GO_MODE_SYMLINK
    | GO_MODE_SOCKET
    | GO_MODE_NAMED_PIPE
    | GO_MODE_DEVICE
    | GO_MODE_CHAR_DEVICE
    | GO_MODE_IRREGULAR;

/// Converts a Unix `st_mode` to Go's `os.FileMode` bits, as Go's `os.Lstat`
/// reports them and fsutil sends them (sockets are sent without their type
/// bit, as fsutil clears it).
pub(crate) fn go_file_mode(unix_mode: u32) -> u32 {
    const S_IFMT: u32 = 0o170000;
    let mut mode = unix_mode & 0o777;
    mode |= match unix_mode & S_IFMT {
        0o060000 => GO_MODE_DEVICE,
        0o020000 => GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE,
        0o040000 => GO_MODE_DIR,
        0o010000 => GO_MODE_NAMED_PIPE,
        0o120000 => GO_MODE_SYMLINK,
        _ => 0,
    };
    if unix_mode & 0o4000 != 0 {
        mode |= GO_MODE_SETUID;
    }
    if unix_mode & 0o2000 != 0 {
        mode |= GO_MODE_SETGID;
    }
    if unix_mode & 0o1000 != 0 {
        mode |= GO_MODE_STICKY;
    }
    mode
}

/// Why a directory could not be served; the message goes to the engine,
/// which shows it in the build's error.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error(
        "mab shares no directory named `{0}` with the engine (only `context` and `dockerfile`)"
    )]
    UnknownDirectory(String),
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the engine asked for the unknown file id {0}")]
    UnknownId(u32),
    #[error("the engine reported: {0}")]
    Receiver(String),
    #[error("the engine ended the transfer before it was finished")]
    EndedEarly,
    #[error("the connection to the engine closed during the transfer")]
    Closed,
    #[error("the transfer broke: {0}")]
    Transport(String),
}

/// The directories a build shares with the engine: the context, and the
/// directory holding the Dockerfile.
#[derive(Clone, Debug)]
pub(crate) struct Sources {
    context: BuildContext,
    /// Bytes of file contents sent from the context directory so far
    /// (shared by every transfer of the session).
    context_bytes: Arc<AtomicU64>,
}

impl Sources {
    pub(crate) fn new(context: &BuildContext) -> Sources {
        Sources {
            context: context.clone(),
            context_bytes: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The counter of the bytes of file contents sent from the context
    /// directory (the `context` source; not the Dockerfile's), in DATA
    /// packets, over every transfer of the session.
    pub(crate) fn context_bytes(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.context_bytes)
    }

    /// The directory the engine asks for by `name`.
    fn root(&self, name: &str) -> Result<&Path, ServeError> {
        match name {
            CONTEXT => Ok(self.context.dir()),
            DOCKERFILE => Ok(self.context.dockerfile_dir()),
            other => Err(ServeError::UnknownDirectory(other.to_owned())),
        }
    }
}

/// What one transfer asks for, from the request's gRPC metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub(crate) dir_name: String,
    pub(crate) include: Vec<String>,
    pub(crate) exclude: Vec<String>,
    pub(crate) follow: Vec<String>,
}

impl Wanted {
    pub(crate) fn from_metadata(metadata: &MetadataMap) -> Wanted {
        Wanted {
            dir_name: metadata_values(metadata, "dir-name")
                .into_iter()
                .next()
                .unwrap_or_default(),
            include: metadata_values(metadata, "include-patterns"),
            exclude: metadata_values(metadata, "exclude-patterns"),
            follow: metadata_values(metadata, "followpaths"),
        }
    }
}

/// All values of a metadata key; BuildKit marks values it percent-encoded
/// (non-ASCII ones) with `KEY-encoded: 1`.
fn metadata_values(metadata: &MetadataMap, key: &str) -> Vec<String> {
    let encoded = metadata
        .get(format!("{key}-encoded").as_str())
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| matches!(value, "1" | "t" | "T" | "true" | "TRUE" | "True"));
    metadata
        .get_all(key)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .map(|value| {
            if encoded {
                query_unescape(value)
            } else {
                value.to_owned()
            }
        })
        .collect()
}

/// Go's `url.QueryUnescape`, keeping a malformed escape as it is.
fn query_unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(index + 1..index + 3)
                    .and_then(|pair| std::str::from_utf8(pair).ok())
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok());
                if let Some(byte) = hex {
                    out.push(byte);
                    index += 3;
                    continue;
                }
                out.push(b'%');
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What is sent for one transfer: the STATs in order, and which ids are
/// regular files whose contents may be requested.
#[derive(Debug, Default)]
struct Listing {
    stats: Vec<Stat>,
    files: HashMap<u32, PathBuf>,
}

fn list(sources: &Sources, wanted: &Wanted) -> Result<Listing, ServeError> {
    let root = sources.root(&wanted.dir_name)?;
    let mut include = wanted.include.clone();
    include.extend(mab_context::follow_links(root, &wanted.follow));
    let matcher = |patterns: &[String], origin: &str| {
        if patterns.is_empty() {
            Ok(None)
        } else {
            DockerIgnore::from_patterns(patterns, Path::new(origin)).map(Some)
        }
    };
    let include = matcher(&include, "include-patterns")?;
    let exclude = matcher(&wanted.exclude, "exclude-patterns")?;
    let selection = Selection {
        exclude: exclude.as_ref(),
        include: include.as_ref(),
    };
    let entries = mab_context::walk_with_metadata(root, selection)?;

    let mut listing = Listing::default();
    // The first path seen of each (device, inode) with more than one link.
    let mut linked: HashMap<(u64, u64), String> = HashMap::new();
    for (entry, metadata) in entries {
        let absolute = root.join(&entry.path);
        let path = entry
            .path
            .to_str()
            .ok_or_else(|| ContextError::NameNotUtf8 {
                path: absolute.clone(),
            })?
            .to_owned();
        let mut stat = stat_for(path.clone(), &absolute, &metadata)?;
        let kind = metadata.file_type();
        if metadata.nlink() > 1 && !kind.is_dir() && !kind.is_symlink() {
            match linked.entry((metadata.dev(), metadata.ino())) {
                // The size stays the file's: fsutil's `mkstat` sets it after
                // marking the link, and the receiver compares sizes to find
                // what changed (a size of 0 makes it re-link the path on
                // every later transfer, leaving a `.tmp.*` name behind).
                std::collections::hash_map::Entry::Occupied(first) => {
                    stat.linkname = first.get().clone();
                }
                std::collections::hash_map::Entry::Vacant(vacant) => {
                    vacant.insert(path);
                }
            }
        }
        if stat.mode & GO_MODE_TYPE == 0 && stat.linkname.is_empty() {
            listing
                .files
                .insert(listing.stats.len() as u32, absolute.clone());
        }
        listing.stats.push(stat);
    }
    Ok(listing)
}

/// The STAT of one entry: Go mode bits, owner 0:0, size (0 for a
/// directory), modification time in nanoseconds, and a symlink's target.
fn stat_for(path: String, absolute: &Path, metadata: &fs::Metadata) -> Result<Stat, ServeError> {
    let mode = go_file_mode(metadata.permissions().mode());
    let linkname = if mode & GO_MODE_SYMLINK != 0 {
        let target = fs::read_link(absolute).map_err(|source| ServeError::Read {
            path: absolute.to_path_buf(),
            source,
        })?;
        target
            .into_os_string()
            .into_string()
            .map_err(|target| ContextError::LinkTargetNotUtf8 {
                path: absolute.to_path_buf(),
                target: target.into(),
            })?
    } else {
        String::new()
    };
    let (devmajor, devminor) = if mode & GO_MODE_DEVICE != 0 {
        let device = metadata.rdev();
        (
            i64::from(libc::major(device)),
            i64::from(libc::minor(device)),
        )
    } else {
        (0, 0)
    };
    Ok(Stat {
        path,
        mode,
        uid: 0,
        gid: 0,
        size: if metadata.is_dir() {
            0
        } else {
            metadata.len() as i64
        },
        mod_time: metadata
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(metadata.mtime_nsec()),
        linkname,
        devmajor,
        devminor,
        xattrs: HashMap::new(),
    })
}

fn packet(kind: PacketType) -> Packet {
    Packet {
        r#type: kind as i32,
        ..Default::default()
    }
}

/// The packets mab sends for one transfer.
pub(crate) type PacketStream = Pin<Box<dyn Stream<Item = Result<Packet, Status>> + Send>>;

/// Serves one DiffCopy: `incoming` is what the engine sends. The returned
/// stream does the work as it is polled, so dropping it (the session
/// closing) stops the transfer.
pub(crate) fn send<S>(sources: Arc<Sources>, wanted: Wanted, incoming: S) -> PacketStream
where
    S: Stream<Item = Result<Packet, Status>> + Send + Unpin + 'static,
{
    let (sender, mut receiver) = mpsc::channel(PACKETS_IN_FLIGHT);
    let work = async move {
        if let Err(error) = transfer(sources, wanted, incoming, &sender).await {
            let message = error.to_string();
            tracing::debug!("file transfer to the engine failed: {message}");
            let mut report = packet(PacketType::PacketErr);
            report.data = message.clone().into_bytes();
            let _ = sender.send(Ok(report)).await;
            let _ = sender.send(Err(Status::unknown(message))).await;
        }
    };
    let packets = stream::poll_fn(move |context| receiver.poll_recv(context));
    let work = stream::once(work).filter_map(|()| async { None });
    Box::pin(stream::select(packets, work))
}

/// What the engine asked for after the listing.
enum Asked {
    Data(u32),
    Fin,
}

async fn transfer<S>(
    sources: Arc<Sources>,
    wanted: Wanted,
    incoming: S,
    out: &mpsc::Sender<Result<Packet, Status>>,
) -> Result<(), ServeError>
where
    S: Stream<Item = Result<Packet, Status>> + Send + Unpin + 'static,
{
    let counted = (wanted.dir_name == CONTEXT).then(|| sources.context_bytes());
    let mut listing = tokio::task::spawn_blocking(move || list(&sources, &wanted))
        .await
        .map_err(|error| ServeError::Transport(error.to_string()))??;

    // The engine asks for files while the listing is still being sent, so
    // its packets are read alongside.
    let (asked_sender, mut asked) = mpsc::unbounded_channel();
    let read = read_requests(incoming, asked_sender);
    let write = async {
        let send = |packet: Packet| async move {
            out.send(Ok(packet)).await.map_err(|_| ServeError::Closed)
        };
        for stat in std::mem::take(&mut listing.stats) {
            let mut entry = packet(PacketType::PacketStat);
            entry.stat = Some(stat);
            send(entry).await?;
        }
        send(packet(PacketType::PacketStat)).await?;
        while let Some(request) = asked.recv().await {
            match request {
                Asked::Data(id) => {
                    let path = listing.files.remove(&id).ok_or(ServeError::UnknownId(id))?;
                    tracing::debug!("the engine asks for the contents of {}", path.display());
                    let sent = send_file(id, &path, out).await?;
                    if let Some(counted) = &counted {
                        counted.fetch_add(sent, Ordering::Relaxed);
                    }
                }
                Asked::Fin => return send(packet(PacketType::PacketFin)).await,
            }
        }
        Err(ServeError::EndedEarly)
    };
    tokio::pin!(read, write);
    let mut reading = true;
    loop {
        tokio::select! {
            result = &mut write => return result,
            result = &mut read, if reading => {
                result?;
                reading = false;
            }
        }
    }
}

async fn read_requests<S>(
    mut incoming: S,
    asked: mpsc::UnboundedSender<Asked>,
) -> Result<(), ServeError>
where
    S: Stream<Item = Result<Packet, Status>> + Unpin,
{
    while let Some(packet) = incoming.next().await {
        let packet = packet.map_err(|status| ServeError::Transport(status.message().to_owned()))?;
        match PacketType::try_from(packet.r#type) {
            Ok(PacketType::PacketReq) => {
                let _ = asked.send(Asked::Data(packet.id));
            }
            Ok(PacketType::PacketFin) => {
                let _ = asked.send(Asked::Fin);
            }
            Ok(PacketType::PacketErr) => {
                return Err(ServeError::Receiver(
                    String::from_utf8_lossy(&packet.data).into_owned(),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// DATA packets with the file's bytes, then an empty one. A file that can
/// no longer be opened is sent empty, as fsutil does. Returns how many
/// bytes of the file were sent.
///
/// The file is read with `std::fs` in one blocking task (see
/// [`read_batches`]), which hands its chunks over a channel in batches:
/// one hop to tokio's blocking pool per file, and one wake-up per batch
/// (a small file is one batch of one chunk), where reading through
/// `tokio::fs` costs a hop per read. When the transfer stops (the
/// connection closed), the channel closes and the task stops reading.
async fn send_file(
    id: u32,
    path: &Path,
    out: &mpsc::Sender<Result<Packet, Status>>,
) -> Result<u64, ServeError> {
    let data = |bytes: Vec<u8>| Packet {
        r#type: PacketType::PacketData as i32,
        id,
        data: bytes,
        ..Default::default()
    };
    let (batch_sender, mut batches) = mpsc::channel(BATCHES_READ_AHEAD);
    let reading = path.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || read_batches(&reading, &batch_sender));
    let mut sent = 0;
    while let Some(batch) = batches.recv().await {
        let batch = batch.map_err(|source| ServeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        for chunk in batch {
            sent += chunk.len() as u64;
            out.send(Ok(data(chunk)))
                .await
                .map_err(|_| ServeError::Closed)?;
        }
    }
    // The channel closed: the reader has returned (or panicked).
    reader
        .await
        .map_err(|error| ServeError::Transport(error.to_string()))?;
    out.send(Ok(data(Vec::new())))
        .await
        .map_err(|_| ServeError::Closed)?;
    Ok(sent)
}

/// The most chunks of [`DATA_CHUNK`] bytes read in one batch (1 MiB).
const CHUNKS_PER_BATCH: usize = 16;
/// Batches read and waiting to be sent while the reader reads the next.
const BATCHES_READ_AHEAD: usize = 2;

/// One batch of a file's chunks, or why reading failed.
type Batch = io::Result<Vec<Vec<u8>>>;

/// Reads the file at `path` into `batches`: in order, batches of at most
/// [`CHUNKS_PER_BATCH`] chunks of [`DATA_CHUNK`] bytes each (the last
/// chunk of the file may be shorter; no chunk and no batch is empty), and
/// then an error if reading failed. A file that cannot be opened gives
/// nothing. Stops early when the receiver is gone. Blocks: runs on tokio's
/// blocking pool.
fn read_batches(path: &Path, batches: &mpsc::Sender<Batch>) {
    let Ok(file) = fs::File::open(path) else {
        return;
    };
    let mut file = io::Read::take(file, 0);
    loop {
        let mut batch = Vec::new();
        let mut ended = false;
        while batch.len() < CHUNKS_PER_BATCH && !ended {
            let mut chunk = Vec::with_capacity(DATA_CHUNK);
            file.set_limit(DATA_CHUNK as u64);
            match io::Read::read_to_end(&mut file, &mut chunk) {
                // Less than a chunk: the end of the file.
                Ok(read) => ended = read < DATA_CHUNK,
                Err(error) => {
                    let _ = batches.blocking_send(Err(error));
                    return;
                }
            }
            if !chunk.is_empty() {
                batch.push(chunk);
            }
        }
        if batch.is_empty() || batches.blocking_send(Ok(batch)).is_err() || ended {
            return;
        }
    }
}

/// The FileSync service of a build's session.
#[derive(Clone, Debug)]
pub(crate) struct FileSyncService {
    sources: Arc<Sources>,
}

impl FileSyncService {
    pub(crate) fn new(sources: Sources) -> FileSyncService {
        FileSyncService {
            sources: Arc::new(sources),
        }
    }
}

#[tonic::async_trait]
impl FileSync for FileSyncService {
    type DiffCopyStream = PacketStream;

    async fn diff_copy(
        &self,
        request: Request<Streaming<Packet>>,
    ) -> Result<Response<PacketStream>, Status> {
        let wanted = Wanted::from_metadata(request.metadata());
        tracing::debug!("the engine asks for {wanted:?}");
        Ok(Response::new(send(
            Arc::clone(&self.sources),
            wanted,
            request.into_inner(),
        )))
    }

    type TarStreamStream = PacketStream;

    /// BuildKit's own senders refuse this older protocol too; mab does not
    /// offer it in the session's method list.
    async fn tar_stream(
        &self,
        _request: Request<Streaming<Packet>>,
    ) -> Result<Response<PacketStream>, Status> {
        Err(Status::unimplemented("mab sends files with DiffCopy only"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn unix_modes_become_go_file_modes() {
        // (st_mode, Go os.FileMode)
        let cases = [
            (0o100644, 0o644),
            (0o100755, 0o755),
            (0o040755, GO_MODE_DIR | 0o755),
            (0o120777, GO_MODE_SYMLINK | 0o777),
            (0o010600, GO_MODE_NAMED_PIPE | 0o600),
            (0o020620, GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE | 0o620),
            (0o060660, GO_MODE_DEVICE | 0o660),
            // A socket's type bit is cleared, as fsutil does.
            (0o140755, 0o755),
            (0o104755, GO_MODE_SETUID | 0o755),
            (0o102755, GO_MODE_SETGID | 0o755),
            (0o041777, GO_MODE_DIR | GO_MODE_STICKY | 0o777),
        ];
        for (unix, go) in cases {
            assert_eq!(go_file_mode(unix), go, "{unix:o}");
        }
        assert_eq!(GO_MODE_DIR, 0x8000_0000);
        assert_eq!(GO_MODE_SYMLINK, 0x0800_0000);
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn metadata_values_are_decoded_when_marked() {
        let mut metadata = MetadataMap::new();
        metadata.insert("dir-name", "context".parse().unwrap());
        metadata.append("exclude-patterns", "*.log".parse().unwrap());
        metadata.append("exclude-patterns", "!keep.log".parse().unwrap());
        metadata.append("include-patterns", "caf%C3%A9+x%2".parse().unwrap());
        metadata.insert("include-patterns-encoded", "1".parse().unwrap());
        let wanted = Wanted::from_metadata(&metadata);
        assert_eq!(
            wanted,
            Wanted {
                dir_name: "context".to_owned(),
                include: strings(&["café x%2"]),
                exclude: strings(&["*.log", "!keep.log"]),
                follow: Vec::new(),
            }
        );
        assert_eq!(
            Wanted::from_metadata(&MetadataMap::new()),
            Wanted::default()
        );
    }

    /// A context of a directory, a file of more than one DATA chunk, an
    /// empty file and a symlink.
    fn sample_context() -> (tempfile::TempDir, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let big: Vec<u8> = (0..DATA_CHUNK * 2 + 10).map(|n| (n % 251) as u8).collect();
        fs::write(root.join("Dockerfile"), "FROM scratch\nCOPY . /\n").unwrap();
        fs::create_dir(root.join("a")).unwrap();
        fs::write(root.join("a/big"), &big).unwrap();
        fs::write(root.join("a/empty"), "").unwrap();
        fs::write(root.join("a.txt"), "after the directory a\n").unwrap();
        symlink("a/big", root.join("link")).unwrap();
        fs::write(root.join("skip.log"), "left out\n").unwrap();
        fs::write(root.join(".dockerignore"), "*.log\n").unwrap();
        (dir, big)
    }

    /// Runs a transfer, answering the listing with `requests` (file names)
    /// and then FIN, and returns every packet sent.
    async fn run_transfer(root: &Path, wanted: Wanted, requests: &[&str]) -> Vec<Packet> {
        run_transfer_counted(root, wanted, requests).await.0
    }

    /// [`run_transfer`], and the context bytes the sources counted.
    async fn run_transfer_counted(
        root: &Path,
        wanted: Wanted,
        requests: &[&str],
    ) -> (Vec<Packet>, u64) {
        let context = BuildContext::locate(root, None).unwrap();
        let sources = Arc::new(Sources::new(&context));
        let counted = sources.context_bytes();
        let (engine, incoming) = mpsc::unbounded_channel::<Result<Packet, Status>>();
        let incoming = stream::poll_fn({
            let mut incoming = incoming;
            move |context| incoming.poll_recv(context)
        });
        let mut packets = send(sources, wanted, incoming);
        let mut sent = Vec::new();
        let mut ids = HashMap::new();
        let mut next_id = 0u32;
        // The listing, up to the empty STAT.
        while let Some(packet) = packets.next().await {
            let packet = packet.unwrap();
            sent.push(packet.clone());
            match &packet.stat {
                Some(stat) => {
                    ids.insert(stat.path.clone(), next_id);
                    next_id += 1;
                }
                None => break,
            }
        }
        for name in requests {
            let request = Packet {
                r#type: PacketType::PacketReq as i32,
                id: ids[*name],
                ..Default::default()
            };
            engine.send(Ok(request)).unwrap();
        }
        let _ = engine.send(Ok(packet(PacketType::PacketFin)));
        // An error ends the stream after its ERR packet.
        while let Some(Ok(packet)) = packets.next().await {
            sent.push(packet);
        }
        (sent, counted.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn the_bytes_of_the_context_files_sent_are_counted() {
        let (dir, big) = sample_context();
        let context = || Wanted {
            dir_name: CONTEXT.to_owned(),
            exclude: strings(&["*.log"]),
            ..Default::default()
        };
        let a_txt = "after the directory a\n".len() as u64;
        // (files asked for, bytes counted)
        let cases = [
            (vec!["a/big", "a.txt"], big.len() as u64 + a_txt),
            (vec!["a.txt", "a/empty"], a_txt),
            (vec![], 0),
        ];
        for (requests, expected) in cases {
            let (sent, counted) = run_transfer_counted(dir.path(), context(), &requests).await;
            let data: usize = sent.iter().map(|packet| packet.data.len()).sum();
            assert_eq!((counted, data as u64), (expected, expected), "{requests:?}");
        }
        // The Dockerfile's directory is not the context: not counted.
        let dockerfile = Wanted {
            dir_name: DOCKERFILE.to_owned(),
            follow: strings(&["Dockerfile"]),
            ..Default::default()
        };
        let (sent, counted) = run_transfer_counted(dir.path(), dockerfile, &["Dockerfile"]).await;
        assert!(sent.iter().any(|packet| !packet.data.is_empty()));
        assert_eq!(counted, 0);
    }

    /// Every file is read whole, in order, in chunks of `DATA_CHUNK` bytes
    /// (the last one shorter) and batches of at most `CHUNKS_PER_BATCH`; no
    /// chunk or batch is empty, and a missing file gives nothing.
    #[test]
    fn files_are_read_in_full_chunks_and_batches() {
        let dir = tempfile::tempdir().unwrap();
        let batch_bytes = DATA_CHUNK * CHUNKS_PER_BATCH;
        // (size, chunks per batch)
        let cases: [(usize, &[usize]); 6] = [
            (0, &[]),
            (10, &[1]),
            (DATA_CHUNK, &[1]),
            (DATA_CHUNK + 1, &[2]),
            (batch_bytes, &[CHUNKS_PER_BATCH]),
            (
                2 * batch_bytes + 5,
                &[CHUNKS_PER_BATCH, CHUNKS_PER_BATCH, 1],
            ),
        ];
        for (size, shape) in cases {
            let path = dir.path().join(format!("file-{size}"));
            let contents: Vec<u8> = (0..size).map(|n| (n % 253) as u8).collect();
            fs::write(&path, &contents).unwrap();
            let (sender, mut receiver) = mpsc::channel(shape.len() + 1);
            read_batches(&path, &sender);
            drop(sender);
            let mut batches = Vec::new();
            while let Ok(batch) = receiver.try_recv() {
                batches.push(batch.unwrap());
            }
            let chunks: Vec<usize> = batches.iter().map(Vec::len).collect();
            assert_eq!(chunks, shape, "{size}");
            let sizes: Vec<usize> = batches.iter().flatten().map(Vec::len).collect();
            assert!(
                sizes.iter().all(|&len| len > 0 && len <= DATA_CHUNK),
                "{size}: {sizes:?}"
            );
            let full = sizes.len().saturating_sub(1);
            assert!(
                sizes[..full].iter().all(|&len| len == DATA_CHUNK),
                "{size}: {sizes:?}"
            );
            assert_eq!(batches.concat().concat(), contents, "{size}");
        }
        let (sender, mut receiver) = mpsc::channel(1);
        read_batches(&dir.path().join("missing"), &sender);
        drop(sender);
        assert!(receiver.try_recv().is_err());
    }

    fn kind(packet: &Packet) -> PacketType {
        PacketType::try_from(packet.r#type).unwrap()
    }

    #[tokio::test]
    async fn stats_in_walk_order_then_requested_data_then_fin() {
        let (dir, big) = sample_context();
        let wanted = Wanted {
            dir_name: CONTEXT.to_owned(),
            exclude: strings(&["*.log"]),
            ..Default::default()
        };
        let sent = run_transfer(dir.path(), wanted, &["a/big", "a.txt"]).await;

        let stats: Vec<&Stat> = sent
            .iter()
            .filter_map(|packet| packet.stat.as_ref())
            .collect();
        let paths: Vec<&str> = stats.iter().map(|stat| stat.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                ".dockerignore",
                "Dockerfile",
                "a",
                "a/big",
                "a/empty",
                "a.txt",
                "link"
            ]
        );
        let directory = stats[2];
        assert_eq!(directory.mode & GO_MODE_DIR, GO_MODE_DIR);
        assert_eq!(directory.size, 0);
        let link = stats[6];
        assert_eq!(link.mode & GO_MODE_SYMLINK, GO_MODE_SYMLINK);
        assert_eq!(link.linkname, "a/big");
        let file = stats[3];
        assert_eq!((file.mode & GO_MODE_TYPE, file.size), (0, big.len() as i64));
        assert_eq!((file.uid, file.gid), (0, 0));
        let mtime = fs::metadata(dir.path().join("a/big"))
            .unwrap()
            .modified()
            .unwrap();
        let nanos = mtime
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        assert_eq!(file.mod_time as u128, nanos);

        // The empty STAT ends the listing; then the data of id 3 and id 5,
        // each ending with an empty DATA; then FIN.
        let after: Vec<(PacketType, u32, usize)> = sent[stats.len()..]
            .iter()
            .map(|packet| (kind(packet), packet.id, packet.data.len()))
            .collect();
        assert_eq!(after[0], (PacketType::PacketStat, 0, 0));
        assert!(sent[stats.len()].stat.is_none());
        assert_eq!(
            after[1..],
            [
                (PacketType::PacketData, 3, DATA_CHUNK),
                (PacketType::PacketData, 3, DATA_CHUNK),
                (PacketType::PacketData, 3, 10),
                (PacketType::PacketData, 3, 0),
                (PacketType::PacketData, 5, 22),
                (PacketType::PacketData, 5, 0),
                (PacketType::PacketFin, 0, 0),
            ]
        );
        let received: Vec<u8> = sent
            .iter()
            .filter(|packet| kind(packet) == PacketType::PacketData && packet.id == 3)
            .flat_map(|packet| packet.data.clone())
            .collect();
        assert_eq!(received, big);
    }

    #[tokio::test]
    async fn the_dockerfile_directory_holds_only_the_dockerfile_and_ignore_files() {
        let (dir, _) = sample_context();
        let root = dir.path();
        fs::write(root.join("Dockerfile.dockerignore"), "x\n").unwrap();
        let wanted = Wanted {
            dir_name: DOCKERFILE.to_owned(),
            follow: strings(&["Dockerfile", "Dockerfile.dockerignore"]),
            ..Default::default()
        };
        let sent = run_transfer(root, wanted, &["Dockerfile"]).await;
        let paths: Vec<&str> = sent
            .iter()
            .filter_map(|packet| packet.stat.as_ref().map(|stat| stat.path.as_str()))
            .collect();
        assert_eq!(paths, ["Dockerfile", "Dockerfile.dockerignore"]);
        let data: Vec<u8> = sent.iter().flat_map(|packet| packet.data.clone()).collect();
        assert_eq!(data, b"FROM scratch\nCOPY . /\n");

        // A symlinked Dockerfile comes with what it points at.
        fs::remove_file(root.join("Dockerfile")).unwrap();
        fs::create_dir(root.join("docker")).unwrap();
        fs::write(root.join("docker/Dockerfile.prod"), "FROM scratch\n").unwrap();
        symlink("docker/Dockerfile.prod", root.join("Dockerfile")).unwrap();
        let wanted = Wanted {
            dir_name: DOCKERFILE.to_owned(),
            follow: strings(&["Dockerfile", "Dockerfile.dockerignore"]),
            ..Default::default()
        };
        let sent = run_transfer(root, wanted, &["docker/Dockerfile.prod"]).await;
        let paths: Vec<&str> = sent
            .iter()
            .filter_map(|packet| packet.stat.as_ref().map(|stat| stat.path.as_str()))
            .collect();
        assert_eq!(
            paths,
            [
                "Dockerfile",
                "Dockerfile.dockerignore",
                "docker",
                "docker/Dockerfile.prod"
            ]
        );
        let data: Vec<u8> = sent.iter().flat_map(|packet| packet.data.clone()).collect();
        assert_eq!(data, b"FROM scratch\n");
    }

    #[tokio::test]
    async fn hard_links_after_the_first_are_sent_as_links() {
        let (dir, _) = sample_context();
        let root = dir.path();
        fs::hard_link(root.join("a.txt"), root.join("b.txt")).unwrap();
        let wanted = Wanted {
            dir_name: CONTEXT.to_owned(),
            include: strings(&["*.txt"]),
            ..Default::default()
        };
        let sent = run_transfer(root, wanted, &["a.txt"]).await;
        let stats: Vec<&Stat> = sent
            .iter()
            .filter_map(|packet| packet.stat.as_ref())
            .collect();
        let described: Vec<(&str, &str, i64)> = stats
            .iter()
            .map(|stat| (stat.path.as_str(), stat.linkname.as_str(), stat.size))
            .collect();
        assert_eq!(described, [("a.txt", "", 22), ("b.txt", "a.txt", 22)]);
        assert_eq!(stats[1].mode & GO_MODE_TYPE, 0);
    }

    #[tokio::test]
    async fn errors_are_reported_to_the_engine() {
        let (dir, _) = sample_context();
        // (directory name, request patterns, message fragment)
        let cases = [
            ("secrets", Vec::new(), "no directory named `secrets`"),
            (
                CONTEXT,
                strings(&["[unclosed"]),
                "exclude-patterns:1: invalid pattern",
            ),
        ];
        for (name, exclude, fragment) in cases {
            let wanted = Wanted {
                dir_name: name.to_owned(),
                exclude,
                ..Default::default()
            };
            let context = BuildContext::locate(dir.path(), None).unwrap();
            let sources = Arc::new(Sources::new(&context));
            let packets: Vec<Result<Packet, Status>> =
                send(sources, wanted, stream::pending::<Result<Packet, Status>>())
                    .collect()
                    .await;
            assert_eq!(packets.len(), 2, "{name}");
            let report = packets[0].as_ref().unwrap();
            assert_eq!(kind(report), PacketType::PacketErr);
            let message = String::from_utf8_lossy(&report.data);
            assert!(message.contains(fragment), "{message}");
            assert!(packets[1].as_ref().is_err());
        }

        // A request for an id that is not a regular file.
        let wanted = Wanted {
            dir_name: CONTEXT.to_owned(),
            ..Default::default()
        };
        let sent = run_transfer(dir.path(), wanted, &["a"]).await;
        let last = sent.last().unwrap();
        assert_eq!(kind(last), PacketType::PacketErr);
        assert!(String::from_utf8_lossy(&last.data).contains("unknown file id 2"));
    }
}
