//! mab-verify: whether the programs in an image are for its platform.
//!
//! An image's layers are read in order, as tar streams (uncompressed, gzip
//! or zstd, [`Compression`]), with the OCI image spec's whiteouts applied
//! (`layer.md`, "Whiteouts": a `.wh.NAME` entry deletes `NAME` and
//! everything under it from the layers below; a `.wh..wh..opq` entry makes
//! its directory opaque, deleting what the layers below hold in it). Every
//! regular file that starts with the ELF magic is inspected by its header
//! alone ([`object`]), so memory is bounded by the number of ELF files, not
//! by any file's or layer's size: only a verdict per path is kept.
//!
//! The rules ([`Check`]), from the platform's ELF target in mab-config's
//! one architecture table ([`Platform::elf`], [`Platform::elf_compat`]):
//! - an executable or shared object (`ET_EXEC`, `ET_DYN`) must have the
//!   platform's class, byte order and machine; one of the 32-bit
//!   compatibility target (i386 in amd64, 32-bit ARM in arm64) is a
//!   warning, since multilib images hold them legitimately;
//! - a relocatable object (`ET_REL`) counts only when its machine is a CPU
//!   of the table ([`ElfTarget::is_cpu`]): BPF or GPU objects are skipped;
//! - other types (`ET_CORE`, processor-specific ones) are skipped;
//! - variants (arm v6 or v7) are not told apart by the header;
//! - paths under the `ignore` patterns (absolute image paths, matched with
//!   `.dockerignore`'s rules, [`DockerIgnore`]) are not inspected.
//!
//! Symbolic links are not followed (their target is checked where it is a
//! file); a hard link is the file it links to and shares its verdict (so
//! it is not inspected either when that file is ignored).

use std::collections::{BTreeMap, BTreeSet};
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
const WHITEOUT: &str = ".wh.";

/// The name of the entry that makes its directory opaque.
const OPAQUE: &str = ".wh..wh..opq";

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
    /// What it is, as `file(1)` says it: `ELF 64-bit LSB x86-64 executable`.
    pub found: String,
    /// What the platform needs: `64-bit LSB ARM aarch64`.
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
    expected: Option<(ElfTarget, Option<ElfTarget>)>,
    rules: Rules,
    /// The verdicts of the layers read so far, merged, by absolute path.
    files: BTreeMap<String, Verdict>,
    note: Option<String>,
}

/// What one layer changes: its own verdicts, and what it deletes below.
#[derive(Default)]
struct LayerChanges {
    files: BTreeMap<String, Verdict>,
    /// Paths that this layer replaces or whites out, with all below them.
    removed: BTreeSet<String>,
    /// Directories made opaque: everything below them in lower layers goes.
    opaque: BTreeSet<String>,
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
    /// bytes), keeping the header bytes of ELF files only.
    pub fn layer(
        &mut self,
        layer: &str,
        mut reader: impl Read,
        compression: Compression,
    ) -> Result<(), VerifyError> {
        if self.expected.is_none() {
            return Ok(());
        }
        let failed = |source| VerifyError::Read {
            layer: layer.to_owned(),
            source,
        };
        let decoded: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(&mut reader),
            // Every member of a multi-member gzip stream, as Go's
            // compress/gzip (and so containerd) reads them.
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut reader)),
            Compression::Zstd => Box::new(
                ruzstd::decoding::StreamingDecoder::new(&mut reader)
                    .map_err(|error| failed(std::io::Error::other(error)))?,
            ),
        };
        let changes = self.read_layer(decoded).map_err(failed)?;
        // The stored bytes to their end too, past what the decompressor
        // needed, so that a reader checking a digest at the end does.
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(failed)?;
        self.apply(changes);
        Ok(())
    }

    /// [`Check::layer`] on a blocking thread (`spawn_blocking`) over an
    /// async byte stream, bridged with [`tokio_util::io::SyncIoBridge`];
    /// gives the check back for the next layer.
    pub async fn layer_async<R>(
        mut self,
        layer: String,
        reader: R,
        compression: Compression,
    ) -> Result<Check, VerifyError>
    where
        R: tokio::io::AsyncRead + Send + Unpin + 'static,
    {
        let name = layer.clone();
        let bridge = tokio_util::io::SyncIoBridge::new(reader);
        tokio::task::spawn_blocking(move || {
            self.layer(&layer, bridge, compression)?;
            Ok(self)
        })
        .await
        .map_err(|error| VerifyError::Task {
            layer: name,
            message: error.to_string(),
        })?
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
                path: path.clone(),
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

    /// One layer's entries, in archive order, to the end of the stream.
    fn read_layer(&self, reader: impl Read) -> std::io::Result<LayerChanges> {
        let mut changes = LayerChanges::default();
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = image_path(&entry.path_bytes());
            let (directory, name) = path.rsplit_once('/').unwrap_or(("", &path));
            if name == OPAQUE {
                changes.opaque.insert(directory.to_owned());
                continue;
            }
            if let Some(deleted) = name.strip_prefix(WHITEOUT) {
                changes.removed.insert(format!("{directory}/{deleted}"));
                continue;
            }
            let entry_type = entry.header().entry_type();
            if !entry_type.is_dir() {
                // A file, link or device here replaces whatever the lower
                // layers had at its path, a directory's contents included.
                changes.removed.insert(path.clone());
            }
            let verdict = if entry_type.is_hard_link() {
                entry
                    .link_name_bytes()
                    .map(|target| image_path(&target))
                    .and_then(|target| {
                        changes
                            .files
                            .get(&target)
                            .or_else(|| self.files.get(&target))
                            .copied()
                    })
            } else if entry_type.is_file() && !self.rules.ignore.is_excluded(&path) {
                self.inspect(&mut entry)?
            } else {
                None
            };
            if let Some(verdict) = verdict.filter(|_| !self.rules.ignore.is_excluded(&path)) {
                changes.files.insert(path, verdict);
            }
        }
        // Whatever follows the archive's end marker is read too, so that
        // the stream (and its digest, where the reader checks one) ends.
        std::io::copy(&mut archive.into_inner(), &mut std::io::sink())?;
        Ok(changes)
    }

    /// The verdict on a regular file, from its first bytes; `None` when it
    /// is not an ELF object the rules hold to.
    fn inspect(&self, file: &mut impl Read) -> std::io::Result<Option<Verdict>> {
        let Some((expected, compat)) = self.expected else {
            return Ok(None);
        };
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
        } else if !ElfTarget::is_cpu(target.machine) {
            // A program for a BPF VM or a GPU is no program of any platform.
            return Ok(None);
        } else {
            Verdict::Mismatch(target, kind)
        }))
    }

    /// Merges a layer over those below it.
    fn apply(&mut self, changes: LayerChanges) {
        for directory in &changes.opaque {
            remove_below(&mut self.files, directory);
        }
        for removed in &changes.removed {
            self.files.remove(removed);
            remove_below(&mut self.files, removed);
        }
        self.files.extend(changes.files);
    }
}

/// Removes the paths below `directory` from `files`: the keys from
/// `directory/` up to `directory0` (`0` follows `/` in byte order), found
/// by the map's order rather than by visiting every path.
fn remove_below(files: &mut BTreeMap<String, Verdict>, directory: &str) {
    let below: Vec<String> = files
        .range(format!("{directory}/")..format!("{directory}0"))
        .map(|(path, _)| path.clone())
        .collect();
    for path in below {
        files.remove(&path);
    }
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
    let failed = |source: std::io::Error| VerifyError::Read {
        layer: "the exported image".to_owned(),
        source,
    };
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
        if path == "/manifest.json" {
            entry.read_to_string(&mut manifest).map_err(failed)?;
        } else if entry_type.is_symlink() || entry_type.is_hard_link() {
            if let Some(target) = entry.link_name_bytes() {
                let target = String::from_utf8_lossy(&target).into_owned();
                let directory = path.rsplit_once('/').map_or("", |(directory, _)| directory);
                let resolved = if entry_type.is_symlink() && !target.starts_with('/') {
                    normalise(&format!("{directory}/{target}"))
                } else {
                    image_path(target.as_bytes())
                };
                links.insert(path, resolved);
            }
        } else if entry_type.is_file() {
            files.insert(path, (entry.raw_file_position(), entry.size()));
        }
    }
    let layers = saved_layers(&manifest).ok_or_else(|| {
        failed(std::io::Error::other(
            "its manifest.json does not name the image's layers",
        ))
    })?;
    for layer in layers {
        let mut path = image_path(layer.as_bytes());
        for _ in 0..8 {
            match links.get(&path) {
                Some(target) => path = target.clone(),
                None => break,
            }
        }
        let Some(&(offset, size)) = files.get(&path) else {
            return Err(failed(std::io::Error::other(format!(
                "its manifest.json names layer {layer}, which it does not hold"
            ))));
        };
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

/// The `Layers` of the first image of a `docker save` `manifest.json`.
fn saved_layers(manifest: &str) -> Option<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Saved {
        #[serde(rename = "Layers")]
        layers: Vec<String>,
    }
    let saved: Vec<Saved> = serde_json::from_str(manifest).ok()?;
    saved.into_iter().next().map(|saved| saved.layers)
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

/// A tar entry's name as an absolute image path: `./bin/sh`, `bin/sh` and
/// `/bin/sh` are `/bin/sh`; a directory's trailing `/` is dropped.
fn image_path(name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    let trimmed = name.trim_start_matches("./").trim_matches('/');
    format!("/{trimmed}")
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
