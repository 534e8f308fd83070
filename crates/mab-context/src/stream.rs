//! The context as a tar stream, built on a thread of its own.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;

use crate::error::ContextError;
use crate::walk::{scan_context, ContextEntry, ContextListing, EntryKind};

/// The size of each chunk the stream yields (the last one may be shorter).
pub const CHUNK_SIZE: usize = 64 * 1024;

/// How many chunks may wait in the channel before the producer blocks.
pub const CHUNKS_IN_FLIGHT: usize = 4;

/// The tar of a build context, yielded in chunks of at most [`CHUNK_SIZE`]
/// bytes. The archive is written on a thread of its own that blocks while
/// [`CHUNKS_IN_FLIGHT`] chunks wait, so memory stays bounded whatever the size
/// of the context. Dropping the stream stops the thread.
///
/// A read failure midway (a file removed while it was being sent) ends the
/// stream with an `Err` naming the path.
pub struct ContextStream {
    receiver: mpsc::Receiver<Result<Bytes, io::Error>>,
    listing: ContextListing,
    produced: Arc<AtomicU64>,
}

impl ContextStream {
    /// What is being sent, with the number of files and bytes.
    pub fn listing(&self) -> &ContextListing {
        &self.listing
    }

    /// Regular files and symlinks being sent.
    pub fn files(&self) -> u64 {
        self.listing.files
    }

    /// The total length of the regular files being sent (the tar is a little longer).
    pub fn bytes(&self) -> u64 {
        self.listing.bytes
    }

    /// Bytes the producer has handed to the channel so far.
    pub fn produced_bytes(&self) -> u64 {
        self.produced.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for ContextStream {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ContextStream")
            .field("files", &self.listing.files)
            .field("bytes", &self.listing.bytes)
            .finish_non_exhaustive()
    }
}

impl Stream for ContextStream {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(context)
    }
}

/// A tar of [`context_entries`](crate::context_entries), suitable as the body of
/// a build request: modes, mtimes and symlinks (not followed) are kept, owners
/// are 0:0 like the docker CLI sends them, and directories are included.
///
/// Listing the context happens before this returns, so a missing Dockerfile or a
/// bad `.dockerignore` is an error here rather than in the stream.
pub fn tar_stream(context_dir: &Path, dockerfile: &Path) -> Result<ContextStream, ContextError> {
    let listing = scan_context(context_dir, dockerfile)?;
    let (sender, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let produced = Arc::new(AtomicU64::new(0));
    let root = context_dir.to_path_buf();
    let entries = listing.entries.clone();
    let writer = ChunkWriter {
        buffer: Vec::with_capacity(CHUNK_SIZE),
        sender,
        produced: Arc::clone(&produced),
        closed: false,
    };
    std::thread::Builder::new()
        .name("mab-context-tar".to_string())
        .spawn(move || produce(&root, &entries, writer))
        .map_err(|source| ContextError::Pack {
            path: context_dir.to_path_buf(),
            source,
        })?;
    Ok(ContextStream {
        receiver,
        listing,
        produced,
    })
}

fn produce(root: &Path, entries: &[ContextEntry], writer: ChunkWriter) {
    let sender = writer.sender.clone();
    let mut builder = tar::Builder::new(writer);
    let appended = entries
        .iter()
        .try_for_each(|entry| append_entry(&mut builder, root, entry));
    let result = match appended {
        Ok(()) => builder.into_inner().and_then(ChunkWriter::finish),
        Err(error) => {
            // Nothing may follow the error, not even the end of the archive
            // that dropping the builder writes.
            builder.get_mut().closed = true;
            Err(error)
        }
    };
    if let Err(error) = result {
        // Nobody to tell when the receiver is gone.
        let _ = sender.blocking_send(Err(error));
    }
}

fn append_entry(
    builder: &mut tar::Builder<ChunkWriter>,
    root: &Path,
    entry: &ContextEntry,
) -> io::Result<()> {
    let absolute = root.join(&entry.path);
    let with_path =
        |error: io::Error| io::Error::new(error.kind(), format!("{}: {error}", absolute.display()));
    let metadata = fs::symlink_metadata(&absolute).map_err(with_path)?;
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&metadata, tar::HeaderMode::Complete);
    header.set_mode(std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o7777);
    header.set_uid(0);
    header.set_gid(0);
    header.set_username("").map_err(with_path)?;
    header.set_groupname("").map_err(with_path)?;
    match entry.kind {
        EntryKind::Directory => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, &entry.path, io::empty())
        }
        EntryKind::Symlink => {
            let target = fs::read_link(&absolute).map_err(with_path)?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, &entry.path, target)
        }
        EntryKind::File => {
            let file = File::open(&absolute).map_err(with_path)?;
            let length = metadata.len();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(length);
            let reader = ExactReader {
                inner: file.take(length),
                remaining: length,
                path: absolute.clone(),
            };
            builder.append_data(&mut header, &entry.path, reader)
        }
    }
    .map_err(with_path)
}

/// Reads exactly the length the header announced, failing if the file shrank
/// (and ignoring what it grew by), so the archive never goes out of step.
struct ExactReader {
    inner: io::Take<File>,
    remaining: u64,
    path: PathBuf,
}

impl Read for ExactReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        if read == 0 && self.remaining > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} became shorter while it was being sent",
                    self.path.display()
                ),
            ));
        }
        self.remaining -= read as u64;
        Ok(read)
    }
}

/// Collects the archive into chunks and hands each full one to the channel.
struct ChunkWriter {
    buffer: Vec<u8>,
    sender: mpsc::Sender<Result<Bytes, io::Error>>,
    produced: Arc<AtomicU64>,
    /// Set after a failure: everything written later is refused.
    closed: bool,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_SIZE));
        let length = chunk.len() as u64;
        self.sender
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the build context is no longer being read",
                )
            })?;
        self.produced.fetch_add(length, Ordering::Relaxed);
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            Ok(())
        } else {
            self.send()
        }
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the build context stream has failed",
            ));
        }
        let taken = data.len().min(CHUNK_SIZE - self.buffer.len());
        self.buffer.extend_from_slice(&data[..taken]);
        if self.buffer.len() == CHUNK_SIZE {
            self.send()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walk::context_entries;
    use futures_util::StreamExt;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::time::Duration;

    async fn collect(mut stream: ContextStream) -> (Vec<u8>, Vec<usize>) {
        let mut archive = Vec::new();
        let mut sizes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            sizes.push(chunk.len());
            archive.extend_from_slice(&chunk);
        }
        (archive, sizes)
    }

    #[tokio::test]
    async fn round_trips_through_the_tar_crate() {
        let context = tempfile::tempdir().unwrap();
        let root = context.path();
        fs::write(root.join("Dockerfile"), "FROM scratch\nCOPY . /\n").unwrap();
        fs::write(root.join(".dockerignore"), "*.log\nsecret/\n").unwrap();
        fs::create_dir_all(root.join("bin/deep")).unwrap();
        fs::write(root.join("bin/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(root.join("bin/run.sh"), fs::Permissions::from_mode(0o751)).unwrap();
        fs::write(root.join("app.log"), "noise").unwrap();
        fs::create_dir(root.join("secret")).unwrap();
        fs::write(root.join("secret/key"), "k").unwrap();
        symlink("run.sh", root.join("bin/link")).unwrap();
        let long_name = format!("bin/deep/{}", "n".repeat(150));
        fs::write(root.join(&long_name), "long").unwrap();

        let stream = tar_stream(root, Path::new("Dockerfile")).unwrap();
        assert_eq!(stream.files(), 5);
        let (archive, _) = collect(stream).await;

        let mut read_back = Vec::new();
        let mut reader = tar::Archive::new(archive.as_slice());
        for entry in reader.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().into_owned();
            let header = entry.header().clone();
            assert_eq!(header.uid().unwrap(), 0, "{path:?}");
            assert_eq!(header.gid().unwrap(), 0, "{path:?}");
            let mut contents = String::new();
            entry.read_to_string(&mut contents).unwrap();
            read_back.push((path, header.entry_type(), header.mode().unwrap(), contents));
        }
        let paths: Vec<PathBuf> = read_back.iter().map(|(path, ..)| path.clone()).collect();
        assert_eq!(
            paths,
            context_entries(root, Path::new("Dockerfile")).unwrap()
        );

        let find = |name: &str| {
            read_back
                .iter()
                .find(|(path, ..)| path == Path::new(name))
                .unwrap()
        };
        let (_, kind, mode, contents) = find("bin/run.sh");
        assert_eq!((*kind, *mode), (tar::EntryType::Regular, 0o751));
        assert_eq!(contents, "#!/bin/sh\necho hi\n");
        assert_eq!(find("bin").1, tar::EntryType::Directory);
        assert_eq!(find("bin/link").1, tar::EntryType::Symlink);
        assert_eq!(find(&long_name).3, "long");

        let mut reader = tar::Archive::new(archive.as_slice());
        let link = reader
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|entry| entry.path().unwrap() == Path::new("bin/link"))
            .unwrap();
        assert_eq!(link.link_name().unwrap().unwrap(), Path::new("run.sh"));
        let mtime = fs::symlink_metadata(root.join("bin/link")).unwrap();
        assert_eq!(
            link.header().mtime().unwrap() as i64,
            std::os::unix::fs::MetadataExt::mtime(&mtime)
        );
    }

    #[tokio::test]
    async fn a_large_file_streams_in_bounded_chunks() {
        const LENGTH: u64 = 50 * 1024 * 1024;
        let context = tempfile::tempdir().unwrap();
        let root = context.path();
        fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        File::create(root.join("big.bin"))
            .unwrap()
            .set_len(LENGTH)
            .unwrap();

        let mut stream = tar_stream(root, Path::new("Dockerfile")).unwrap();
        assert_eq!(stream.bytes(), LENGTH + 13);
        // Nobody reads: the producer must stop after a few chunks.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let bound = ((CHUNKS_IN_FLIGHT + 1) * CHUNK_SIZE) as u64;
        assert!(
            stream.produced_bytes() <= bound,
            "{} bytes produced unread",
            stream.produced_bytes()
        );
        assert!(stream.produced_bytes() > 0);

        let mut chunks = 0usize;
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            assert!(chunk.len() <= CHUNK_SIZE);
            chunks += 1;
            total += chunk.len() as u64;
        }
        assert!(total > LENGTH);
        assert!(
            chunks as u64 >= LENGTH / CHUNK_SIZE as u64,
            "{chunks} chunks"
        );
    }

    #[tokio::test]
    async fn dropping_the_stream_stops_the_producer() {
        let context = tempfile::tempdir().unwrap();
        let root = context.path();
        fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        File::create(root.join("big.bin"))
            .unwrap()
            .set_len(8 * 1024 * 1024)
            .unwrap();
        let mut stream = tar_stream(root, Path::new("Dockerfile")).unwrap();
        stream.next().await.unwrap().unwrap();
        let produced = Arc::clone(&stream.produced);
        drop(stream);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after_drop = produced.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(produced.load(Ordering::Relaxed), after_drop);
        assert!(after_drop < 8 * 1024 * 1024);
    }

    #[test]
    fn errors_come_before_the_stream() {
        let context = tempfile::tempdir().unwrap();
        let error = tar_stream(context.path(), Path::new("Dockerfile")).unwrap_err();
        assert!(
            matches!(error, ContextError::DockerfileMissing { .. }),
            "{error:?}"
        );
    }
}
