//! mab-verify: whether the programs in an image are for its platform.
//!
//! An image's layers are read in order, as tar streams (uncompressed, gzip
//! or zstd, [`Compression`]: every gzip member and every zstd frame), each
//! entry applied as it arrives, as containerd's applier does: the OCI
//! image spec's whiteouts (`layer.md`, "Whiteouts": a `.wh.NAME` entry
//! deletes `NAME` and everything under it from the layers below; a
//! `.wh..wh..opq` entry makes its directory opaque, deleting what the
//! layers below hold in it) delete from the layers below at once; any
//! other entry replaces its own path (the last entry of a path in a layer
//! wins), a non-directory everything below its path too, and a directory
//! a lower file at its path. Every regular file that starts with the ELF
//! magic is inspected by its header alone ([`object`]), so memory is
//! bounded by the number of ELF files, not by the number of other files
//! nor by any file's or layer's size: only a verdict per ELF path is kept
//! (paths as the bytes of their tar names), with, while a layer is read,
//! the verdicts it deleted (to undo a layer that fails midway).
//!
//! The rules ([`Check`]), from the platform's ELF target in mab-config's
//! one architecture table ([`Platform::elf`], [`Platform::elf_compat`]):
//! - an executable or shared object (`ET_EXEC`, `ET_DYN`) must have the
//!   platform's class, byte order and machine; one of the 32-bit
//!   compatibility target (i386 in amd64, 32-bit ARM in arm64) is a
//!   warning, since multilib images hold them legitimately; one of a
//!   machine that is no CPU (`EM_NONE`, BPF, GPUs) is skipped,
//!   and any other machine, in mab's table or not, is a mismatch;
//! - a relocatable object (`ET_REL`) counts only when its machine is a CPU
//!   of the table ([`ElfTarget::is_cpu`]): BPF or GPU objects are skipped;
//! - other types (`ET_CORE`, processor-specific ones) are skipped;
//! - variants (arm v6 or v7) are not told apart by the header;
//! - paths under the `ignore` patterns (absolute image paths, matched with
//!   `.dockerignore`'s rules, [`DockerIgnore`]) are not inspected.
//!
//! Symbolic links are not followed (their target is checked where it is a
//! file); a hard link is the file it links to as its layer has left it so
//! far, and shares its verdict (so it is not inspected either when that
//! file is ignored).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use mab_config::platform::ElfTarget;
use mab_config::Platform;
use mab_context::DockerIgnore;
use object::elf::{
    DataEncoding, FileClass, FileHeader32, FileHeader64, FileType, Machine, ELFCLASS32, ELFCLASS64,
    ET_DYN, ET_EXEC, ET_REL,
};
use object::read::elf::FileHeader;
use object::Endianness;
use serde::{Deserialize, Serialize};

/// The ELF magic, `e_ident[EI_MAG0..=EI_MAG3]`.
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

/// The size of an ELF64 header, the most a header read takes.
const HEADER_SIZE: usize = 64;

/// The prefix of a whiteout entry's name (OCI image spec, `layer.md`).
const WHITEOUT: &[u8] = b".wh.";

/// The name of the entry that makes its directory opaque.
const OPAQUE: &[u8] = b".wh..wh..opq";

/// What went wrong reading an image's layers.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A layer's media type is not a tar stream mab can read.
    #[error("layer {digest} has media type `{media_type}`, which is not a tar layer (uncompressed, gzip or zstd)")]
    MediaType { digest: String, media_type: String },
    /// Reading or decompressing a layer failed (a broken stream, a bad
    /// archive, a connection lost midway).
    #[error("reading layer {layer}: {source}")]
    Read {
        /// The layer's digest or, in a `docker save` archive, its file.
        layer: String,
        source: std::io::Error,
    },
    /// A `docker save` archive that cannot be read, or whose
    /// `manifest.json` does not name layers it holds.
    #[error("reading the exported image: {source}")]
    Saved { source: std::io::Error },
    /// The exported image's config names another platform than the one
    /// checked for.
    #[error("the exported image is {found}, not {expected}: the engine's store gave another image under its name")]
    SavedPlatform { found: String, expected: String },
    /// The blocking task that read a layer ended abnormally.
    #[error("the check of layer {layer} stopped: {message}")]
    Task { layer: String, message: String },
}

/// How a layer's tar stream is compressed, from its media type (OCI image
/// spec `media-types.md`, and Docker's image manifest v2 schema 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// `application/vnd.oci.image.layer.v1.tar` (a `docker save` layer).
    None,
    /// `…tar+gzip`, `application/vnd.docker.image.rootfs.diff.tar.gzip`.
    Gzip,
    /// `…tar+zstd`, `application/vnd.docker.image.rootfs.diff.tar.zstd`.
    Zstd,
}

impl Compression {
    /// The compression of a layer of `media_type` (OCI layer types,
    /// non-distributable ones included, and Docker's `rootfs.diff` and
    /// `rootfs.foreign.diff` types); `None` for any other type (an
    /// attestation, a Helm chart, ...).
    pub fn of_media_type(media_type: &str) -> Option<Compression> {
        const OCI: &str = "application/vnd.oci.image.layer.";
        const DOCKER: &str = "application/vnd.docker.image.rootfs.";
        let rest = media_type
            .strip_prefix(OCI)
            .and_then(|rest| {
                rest.strip_prefix("v1.")
                    .or_else(|| rest.strip_prefix("nondistributable.v1."))
            })
            .or_else(|| {
                media_type.strip_prefix(DOCKER).and_then(|rest| {
                    rest.strip_prefix("diff.")
                        .or_else(|| rest.strip_prefix("foreign.diff."))
                })
            })?;
        match rest {
            "tar" => Some(Compression::None),
            "tar+gzip" | "tar.gzip" => Some(Compression::Gzip),
            "tar+zstd" | "tar.zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// What `[verify]` asks of a check: which files are not inspected.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    /// `[verify] ignore`: absolute image paths with `.dockerignore`'s
    /// pattern rules (the leading `/` is dropped, as a `.dockerignore`
    /// pattern is relative to its root).
    pub ignore: DockerIgnore,
}

impl Rules {
    /// Rules ignoring `patterns` (`[verify] ignore`); a bad pattern (an
    /// unclosed `[`) is an error naming `origin` and its position from 1.
    pub fn ignoring<I, S>(patterns: I, origin: &Path) -> Result<Rules, mab_context::ContextError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(Rules {
            ignore: DockerIgnore::from_patterns(patterns, origin)?,
        })
    }
}

/// An ELF file whose header does not fit the platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Its absolute path in the image (`/bin/busybox`).
    pub path: String,
    /// What it is: `ELF`, its [`ElfTarget`] and its type (`ELF 64-bit LSB x86-64 executable`).
    pub found: String,
    /// What the platform needs: `64-bit LSB AArch64`.
    pub expected: String,
}

/// The result of checking one image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// How many ELF files of the final file system (after whiteouts, not
    /// ignored) were held to the rules: executables, shared objects and
    /// relocatable objects of a CPU.
    pub checked: u64,
    /// The files that do not fit the platform, by path.
    pub mismatches: Vec<Finding>,
    /// The files of the platform's 32-bit compatibility target, by path.
    pub warnings: Vec<Finding>,
    /// Why nothing was checked (a platform whose programs are not ELF).
    #[serde(skip)]
    pub note: Option<String>,
}

/// The kind of an ELF object, from `e_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Executable,
    SharedObject,
    Relocatable,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Executable => "executable",
            Kind::SharedObject => "shared object",
            Kind::Relocatable => "relocatable",
        }
    }
}

/// The verdict kept for one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// An ELF file held to the rules that fits.
    Fits,
    /// The compatibility target: a warning.
    Compat(ElfTarget, Kind),
    /// Another target: a mismatch.
    Mismatch(ElfTarget, Kind),
}

/// A check of one image against one platform: feed it the layers in
/// order ([`Check::layer`], or [`Check::layer_async`] over an async
/// stream), then take its [`Check::report`].
pub struct Check {
    /// The platform checked for.
    platform: Platform,
    expected: Option<(ElfTarget, Option<ElfTarget>)>,
    rules: Rules,
    /// The verdicts of the layers read so far, merged, by absolute path
    /// as the bytes of its tar name (two names that are not UTF-8 never
    /// collide; they are shown lossily).
    files: BTreeMap<Vec<u8>, Verdict>,
    note: Option<String>,
}

impl Check {
    /// A check for `platform`'s images. A platform whose programs are not
    /// ELF objects (an OS outside [`mab_config::platform::ELF_OSES`], or
    /// wasm) checks nothing: its report has a note saying so.
    pub fn new(platform: &Platform, rules: Rules) -> Check {
        let expected = platform.elf().map(|target| (target, platform.elf_compat()));
        let note = expected.is_none().then(|| {
            format!("{platform} programs are not ELF objects: their architecture is not checked")
        });
        Check {
            platform: platform.clone(),
            expected,
            rules,
            files: BTreeMap::new(),
            note,
        }
    }

    /// Whether the check inspects anything: `false` for a platform whose
    /// programs are not ELF objects, whose layers need not be read.
    pub fn inspects(&self) -> bool {
        self.expected.is_some()
    }

    /// Reads the next layer, `reader` being its bytes as stored
    /// (`compression`), named `layer` (its digest) in errors. Reads the
    /// stream once, to its end (the decompressed archive and the stored
    /// bytes), keeping the header bytes of ELF files only. The check is
    /// changed only by a layer read whole: after an error it is as it was
    /// before, so the same layer can be read again from its start.
    pub fn layer(
        &mut self,
        layer: &str,
        mut reader: impl Read,
        compression: Compression,
    ) -> Result<(), VerifyError> {
        let Some(expected) = self.expected else {
            return Ok(());
        };
        let mut applier = Applier {
            expected,
            ignore: &self.rules.ignore,
            lower: &mut self.files,
            own: BTreeMap::new(),
            removed: Vec::new(),
        };
        let read = decode(&mut reader, compression).and_then(|decoded| applier.read(decoded));
        // The stored bytes to their end too, past what the decompressor
        // needed, so that a reader checking a digest at the end does.
        let read = read.and_then(|()| std::io::copy(&mut reader, &mut std::io::sink()));
        let Applier {
            lower,
            own,
            removed,
            ..
        } = applier;
        match read {
            Ok(_) => {
                lower.extend(own);
                Ok(())
            }
            Err(source) => {
                lower.extend(removed);
                Err(VerifyError::Read {
                    layer: layer.to_owned(),
                    source,
                })
            }
        }
    }

    /// [`Check::layer`] on a blocking thread (`spawn_blocking`) over an
    /// async byte stream, bridged with [`tokio_util::io::SyncIoBridge`];
    /// gives the check back, whether the layer was read or not (then as
    /// it was before, with the error), unless the thread itself failed.
    /// Dropping the future stops the reading at its next read of the
    /// stream (a cancelled job stops its check).
    pub async fn layer_async<R>(
        mut self,
        layer: String,
        reader: R,
        compression: Compression,
    ) -> Result<Check, LayerFailed>
    where
        R: tokio::io::AsyncRead + Send + Unpin + 'static,
    {
        let name = layer.clone();
        let cancelled = Cancelled::default();
        let reader = Cancellable {
            reader: tokio_util::io::SyncIoBridge::new(reader),
            cancelled: cancelled.0.clone(),
        };
        let read = tokio::task::spawn_blocking(move || {
            let read = self.layer(&layer, reader, compression);
            (self, read)
        })
        .await;
        drop(cancelled);
        match read {
            Ok((check, Ok(()))) => Ok(check),
            Ok((check, Err(error))) => Err(LayerFailed {
                check: Some(Box::new(check)),
                error,
            }),
            Err(error) => Err(LayerFailed {
                check: None,
                error: VerifyError::Task {
                    layer: name,
                    message: error.to_string(),
                },
            }),
        }
    }

    /// The verdicts of the image's final file system, by path.
    pub fn report(self) -> Report {
        let mut report = Report {
            note: self.note,
            ..Report::default()
        };
        let Some((expected, compat)) = self.expected else {
            return report;
        };
        for (path, verdict) in self.files {
            report.checked += 1;
            let finding = |target: ElfTarget, kind: Kind, expected: ElfTarget| Finding {
                path: String::from_utf8_lossy(&path).into_owned(),
                found: format!("ELF {target} {}", kind.name()),
                expected: expected.to_string(),
            };
            match verdict {
                Verdict::Fits => {}
                Verdict::Compat(target, kind) => {
                    report
                        .warnings
                        .push(finding(target, kind, compat.unwrap_or(expected)));
                }
                Verdict::Mismatch(target, kind) => {
                    report.mismatches.push(finding(target, kind, expected));
                }
            }
        }
        report
    }
}

/// A layer that could not be read: the error, and the check as it was
/// before the layer (`None` when the thread reading it failed).
#[derive(Debug)]
pub struct LayerFailed {
    pub check: Option<Box<Check>>,
    pub error: VerifyError,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check")
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

/// Set when dropped: the flag a [`Cancellable`] reader checks.
#[derive(Default)]
struct Cancelled(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for Cancelled {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A reader that fails (`Interrupted`) once its flag is set.
struct Cancellable<R> {
    reader: R,
    cancelled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<R: Read> Read for Cancellable<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.cancelled.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "the check was cancelled",
            ));
        }
        self.reader.read(buffer)
    }
}

/// The decompressed archive of a layer stored as `compression`.
fn decode<'r>(
    reader: &'r mut dyn Read,
    compression: Compression,
) -> std::io::Result<Box<dyn Read + 'r>> {
    Ok(match compression {
        Compression::None => Box::new(reader),
        // Every member of a multi-member gzip stream, as Go's
        // compress/gzip (and so containerd) reads them.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(ZstdFrames {
            source: std::io::BufReader::new(reader),
            frame: ruzstd::decoding::FrameDecoder::new(),
            in_frame: false,
        }),
    })
}

/// Every frame of a zstd stream, one after the other, to the stream's end
/// (RFC 8878, section 3: a stream is any number of frames; a skippable
/// frame's content is skipped by its length), as the zstd library (and so
/// containerd) decodes a layer.
struct ZstdFrames<R> {
    source: R,
    frame: ruzstd::decoding::FrameDecoder,
    /// Whether a frame's header was read and its blocks may follow.
    in_frame: bool,
}

impl<R: std::io::BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
        use ruzstd::decoding::BlockDecodingStrategy;
        if buffer.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_frame {
                while self.frame.can_collect() < buffer.len() && !self.frame.is_finished() {
                    let wanted = buffer.len() - self.frame.can_collect();
                    self.frame
                        .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(wanted))
                        .map_err(std::io::Error::other)?;
                }
                let read = self.frame.read(buffer)?;
                if read > 0 {
                    return Ok(read);
                }
                self.in_frame = false;
            }
            if self.source.fill_buf()?.is_empty() {
                return Ok(0);
            }
            match self.frame.reset(&mut self.source) {
                Ok(()) => self.in_frame = true,
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped = std::io::copy(
                        &mut (&mut self.source).take(u64::from(length)),
                        &mut std::io::sink(),
                    )?;
                    if skipped < u64::from(length) {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(error) => return Err(std::io::Error::other(error)),
            }
        }
    }
}

/// One layer applied over the verdicts of the layers below it, entry by
/// entry, as containerd's applier does (`archive.Apply`): every entry
/// first replaces its own path in this layer; a whiteout deletes from
/// the layers below at once; a non-directory entry takes its path and
/// everything below it; a directory takes a lower file at its path.
/// Memory is bounded by the ELF files: the lower verdicts it deletes are
/// kept (`removed`) to put back should the layer fail midway.
struct Applier<'a> {
    expected: (ElfTarget, Option<ElfTarget>),
    ignore: &'a DockerIgnore,
    /// The verdicts of the layers below.
    lower: &'a mut BTreeMap<Vec<u8>, Verdict>,
    /// This layer's own verdicts.
    own: BTreeMap<Vec<u8>, Verdict>,
    /// The lower verdicts this layer deleted so far.
    removed: Vec<(Vec<u8>, Verdict)>,
}

impl Applier<'_> {
    /// The layer's entries, in archive order, to the end of the stream.
    fn read(&mut self, reader: impl Read) -> std::io::Result<()> {
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = image_path(&entry.path_bytes());
            let (directory, name) = match path.iter().rposition(|&byte| byte == b'/') {
                Some(slash) => (&path[..slash], &path[slash + 1..]),
                None => (&path[..0], &path[..]),
            };
            if name == OPAQUE {
                let directory = directory.to_vec();
                self.remove_lower_below(&directory);
                continue;
            }
            if let Some(deleted) = name.strip_prefix(WHITEOUT) {
                let mut target = directory.to_vec();
                target.push(b'/');
                target.extend_from_slice(deleted);
                self.remove_lower(&target);
                self.remove_lower_below(&target);
                continue;
            }
            self.own.remove(&path);
            self.remove_lower(&path);
            let entry_type = entry.header().entry_type();
            if !entry_type.is_dir() {
                // A file, link or device replaces a directory at its path,
                // with everything below it, in this layer too.
                self.remove_lower_below(&path);
                remove_below(&mut self.own, &path);
            }
            if !(entry_type.is_hard_link() || entry_type.is_file()) {
                continue;
            }
            if self.ignore.is_excluded(&String::from_utf8_lossy(&path)) {
                continue;
            }
            let verdict = if entry_type.is_hard_link() {
                // The file it links to as this layer has left it so far.
                entry
                    .link_name_bytes()
                    .map(|target| image_path(&target))
                    .and_then(|target| self.own.get(&target).or_else(|| self.lower.get(&target)))
                    .copied()
            } else {
                inspect(self.expected, &mut entry)?
            };
            if let Some(verdict) = verdict {
                self.own.insert(path, verdict);
            }
        }
        // Whatever follows the archive's end marker is read too, so that
        // the stream (and its digest, where the reader checks one) ends.
        std::io::copy(&mut archive.into_inner(), &mut std::io::sink())?;
        Ok(())
    }

    fn remove_lower(&mut self, path: &[u8]) {
        if let Some(verdict) = self.lower.remove(path) {
            self.removed.push((path.to_vec(), verdict));
        }
    }

    fn remove_lower_below(&mut self, directory: &[u8]) {
        let removed = remove_below(self.lower, directory);
        self.removed.extend(removed);
    }
}

/// The verdict on a regular file for a platform `expected` (its target
/// and 32-bit compatibility target), from its first bytes; `None` when it
/// is not an ELF object the rules hold to.
fn inspect(
    (expected, compat): (ElfTarget, Option<ElfTarget>),
    file: &mut impl Read,
) -> std::io::Result<Option<Verdict>> {
    let mut header = [0u8; HEADER_SIZE];
    let mut length = 0;
    while length < HEADER_SIZE {
        match file.read(&mut header[length..])? {
            0 => break,
            read => length += read,
        }
    }
    let Some((target, kind)) = elf_header(&header[..length]) else {
        return Ok(None);
    };
    if kind == Kind::Relocatable && !ElfTarget::is_cpu(target.machine) {
        return Ok(None);
    }
    Ok(Some(if target == expected {
        Verdict::Fits
    } else if Some(target) == compat {
        Verdict::Compat(target, kind)
    } else if NOT_CPUS.contains(&target.machine) {
        // A program for a BPF VM or a GPU is no program of any platform.
        return Ok(None);
    } else {
        Verdict::Mismatch(target, kind)
    }))
}

/// The `e_machine` values of executables and shared objects that run on
/// no CPU of a platform, which the check skips: no machine (`EM_NONE`,
/// firmware blobs), BPF programs (`EM_BPF`), and GPU code (`EM_CUDA`,
/// `EM_AMDGPU`, Intel's `EM_INTELGT`, 205). Any other machine outside the
/// platform's target (32-bit PowerPC in a ppc64le image, SPARC) is a
/// mismatch.
const NOT_CPUS: &[Machine] = &[
    object::elf::EM_NONE,
    object::elf::EM_BPF,
    object::elf::EM_CUDA,
    object::elf::EM_AMDGPU,
    Machine(205),
];

/// Removes the paths below `directory` from `files` and returns them: the
/// keys from `directory/` up to `directory0` (`0` follows `/` in byte
/// order), found by the map's order rather than by visiting every path.
fn remove_below(
    files: &mut BTreeMap<Vec<u8>, Verdict>,
    directory: &[u8],
) -> Vec<(Vec<u8>, Verdict)> {
    let bound = |last: u8| {
        let mut bound = directory.to_vec();
        bound.push(last);
        bound
    };
    let below: Vec<Vec<u8>> = files
        .range(bound(b'/')..bound(b'0'))
        .map(|(path, _)| path.clone())
        .collect();
    below
        .into_iter()
        .filter_map(|path| files.remove(&path).map(|verdict| (path, verdict)))
        .collect()
}

/// Checks the image in a `docker save` archive (`file`): its
/// `manifest.json` names the layers in order (`Layers`: `<id>/layer.tar`,
/// or `blobs/sha256/<hex>` in the OCI layout of newer engines), each a
/// tar entry of the archive, which may be a symbolic link to another
/// layer's file. The archive is read twice (its entries, then each layer
/// where it lies), never whole; a layer's compression is told by its
/// first bytes (gzip and zstd magic numbers), since the archive gives no
/// media type. Reads from the file's start, wherever its cursor is.
pub fn check_saved(file: &std::fs::File, mut check: Check) -> Result<Report, VerifyError> {
    use std::io::{BufRead, Seek};
    let failed = |source: std::io::Error| VerifyError::Saved { source };
    let mut start = file;
    start.rewind().map_err(failed)?;
    let mut archive = tar::Archive::new(file);
    let mut files = BTreeMap::new();
    let mut links = BTreeMap::new();
    let mut manifest = String::new();
    for entry in archive.entries_with_seek().map_err(failed)? {
        let mut entry = entry.map_err(failed)?;
        let path = image_path(&entry.path_bytes());
        let entry_type = entry.header().entry_type();
        if path == b"/manifest.json" {
            entry.read_to_string(&mut manifest).map_err(failed)?;
        } else if entry_type.is_symlink() || entry_type.is_hard_link() {
            if let Some(target) = entry.link_name_bytes() {
                let target = String::from_utf8_lossy(&target).into_owned();
                let directory = String::from_utf8_lossy(&path);
                let directory = directory
                    .rsplit_once('/')
                    .map_or("", |(directory, _)| directory);
                let resolved = if entry_type.is_symlink() && !target.starts_with('/') {
                    normalise(&format!("{directory}/{target}")).into_bytes()
                } else {
                    image_path(target.as_bytes())
                };
                links.insert(path, resolved);
            }
        } else if entry_type.is_file() {
            files.insert(path, (entry.raw_file_position(), entry.size()));
        }
    }
    let (config, layers) = saved_image(&manifest).ok_or_else(|| {
        failed(std::io::Error::other(
            "its manifest.json does not name the image's config and layers",
        ))
    })?;
    let resolve = |name: &str| {
        let mut path = image_path(name.as_bytes());
        for _ in 0..8 {
            match links.get(&path) {
                Some(target) => path = target.clone(),
                None => break,
            }
        }
        files.get(&path).copied().ok_or_else(|| {
            failed(std::io::Error::other(format!(
                "its manifest.json names {name}, which it does not hold"
            )))
        })
    };
    // The engine's store could hold another image under the name (a
    // containerd store keeps one per platform): the config must say the
    // platform checked for.
    let (offset, size) = resolve(&config)?;
    let mut reader = file;
    reader
        .seek(std::io::SeekFrom::Start(offset))
        .map_err(failed)?;
    let config: SavedConfig = serde_json::from_reader(reader.take(size)).map_err(|error| {
        failed(std::io::Error::other(format!(
            "its config {config}: {error}"
        )))
    })?;
    if config.os != check.platform.os() || config.architecture != check.platform.architecture() {
        return Err(VerifyError::SavedPlatform {
            found: format!("{}/{}", config.os, config.architecture),
            expected: check.platform.to_string(),
        });
    }
    for layer in layers {
        let (offset, size) = resolve(&layer)?;
        let mut reader = file;
        reader
            .seek(std::io::SeekFrom::Start(offset))
            .map_err(failed)?;
        let mut reader = std::io::BufReader::new(reader.take(size));
        let start = reader.fill_buf().map_err(failed)?;
        let compression = if start.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if start.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        };
        check.layer(&layer, reader, compression)?;
    }
    Ok(check.report())
}

/// The `Config` and `Layers` of the first image of a `docker save`
/// `manifest.json`.
fn saved_image(manifest: &str) -> Option<(String, Vec<String>)> {
    #[derive(serde::Deserialize)]
    struct Saved {
        #[serde(rename = "Config")]
        config: String,
        #[serde(rename = "Layers")]
        layers: Vec<String>,
    }
    let saved: Vec<Saved> = serde_json::from_str(manifest).ok()?;
    saved
        .into_iter()
        .next()
        .map(|saved| (saved.config, saved.layers))
}

/// The platform fields of an image config (OCI image spec `config.md`).
#[derive(serde::Deserialize)]
struct SavedConfig {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

/// `/a/./b/../c` as `/a/c`: a path with its `.` and `..` resolved.
fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// A tar entry's name as an absolute image path, in bytes: `./bin/sh`,
/// `bin/sh` and `/bin/sh` are `/bin/sh`; a directory's trailing `/` is
/// dropped.
fn image_path(name: &[u8]) -> Vec<u8> {
    let mut name = name;
    while let Some(rest) = name.strip_prefix(b"./") {
        name = rest;
    }
    while let Some(rest) = name.strip_prefix(b"/") {
        name = rest;
    }
    while let Some(rest) = name.strip_suffix(b"/") {
        name = rest;
    }
    let mut path = Vec::with_capacity(name.len() + 1);
    path.push(b'/');
    path.extend_from_slice(name);
    path
}

/// The target and kind of an ELF header in `bytes` (the file's first
/// bytes); `None` when it is not an ELF object, or of a type the rules
/// skip (`ET_CORE`, processor-specific types).
fn elf_header(bytes: &[u8]) -> Option<(ElfTarget, Kind)> {
    if !bytes.starts_with(ELF_MAGIC) || bytes.len() < 6 {
        return None;
    }
    let class = FileClass(bytes[4]);
    let (data, e_type, machine) = match class {
        ELFCLASS64 => header_fields::<FileHeader64<Endianness>>(bytes)?,
        ELFCLASS32 => header_fields::<FileHeader32<Endianness>>(bytes)?,
        _ => return None,
    };
    let kind = match e_type {
        ET_EXEC => Kind::Executable,
        ET_DYN => Kind::SharedObject,
        ET_REL => Kind::Relocatable,
        _ => return None,
    };
    Some((
        ElfTarget {
            class,
            data,
            machine,
        },
        kind,
    ))
}

/// `e_ident[EI_DATA]`, `e_type` and `e_machine` of a header of class `H`.
fn header_fields<H: FileHeader<Endian = Endianness>>(
    bytes: &[u8],
) -> Option<(DataEncoding, FileType, Machine)> {
    let header = H::parse(bytes).ok()?;
    let endian = header.endian().ok()?;
    Some((
        header.e_ident().data,
        header.e_type(endian),
        header.e_machine(endian),
    ))
}

#[cfg(test)]
mod tests;
