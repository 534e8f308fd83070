use std::io::Cursor;

use object::elf::{FileType, Machine, EM_386, EM_AARCH64, EM_BPF, EM_X86_64, ET_CORE};

use super::*;

/// What one entry of a crafted layer is.
enum Entry<'a> {
    File(&'a str, Vec<u8>),
    Directory(&'a str),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
}

/// An ELF header (and a little body) of `class` (32 or 64), little- or
/// big-endian, with `e_type` and `e_machine`.
fn elf(bits: u8, little: bool, e_type: FileType, machine: Machine) -> Vec<u8> {
    let mut bytes = vec![0u8; 128];
    bytes[..4].copy_from_slice(ELF_MAGIC);
    bytes[4] = if bits == 64 { 2 } else { 1 };
    bytes[5] = if little { 1 } else { 2 };
    bytes[6] = 1;
    let half = |value: u16| {
        if little {
            value.to_le_bytes()
        } else {
            value.to_be_bytes()
        }
    };
    bytes[16..18].copy_from_slice(&half(e_type.0));
    bytes[18..20].copy_from_slice(&half(machine.0));
    bytes[20] = if little { 1 } else { 0 };
    bytes[23] = if little { 0 } else { 1 };
    bytes
}

fn x86_64(e_type: FileType) -> Vec<u8> {
    elf(64, true, e_type, EM_X86_64)
}

fn aarch64(e_type: FileType) -> Vec<u8> {
    elf(64, true, e_type, EM_AARCH64)
}

/// A tar layer of `entries`, compressed as `compression`.
fn layer(entries: &[Entry], compression: Compression) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o755);
        match entry {
            Entry::File(path, bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(bytes.len() as u64);
                builder
                    .append_data(&mut header, path, bytes.as_slice())
                    .unwrap();
            }
            Entry::Directory(path) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder
                    .append_data(&mut header, path, std::io::empty())
                    .unwrap();
            }
            Entry::Symlink(path, target) | Entry::HardLink(path, target) => {
                header.set_entry_type(if matches!(entry, Entry::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                header.set_size(0);
                builder.append_link(&mut header, path, target).unwrap();
            }
        }
    }
    let tar = builder.into_inner().unwrap();
    match compression {
        Compression::None => tar,
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut encoder, &tar).unwrap();
            encoder.finish().unwrap()
        }
        Compression::Zstd => ruzstd::encoding::compress_to_vec(
            tar.as_slice(),
            ruzstd::encoding::CompressionLevel::Fastest,
        ),
    }
}

/// The report of `layers` (plain tar) checked for `platform`.
fn check(platform: &str, ignore: &[&str], layers: &[Vec<Entry>]) -> Report {
    let rules = Rules::ignoring(ignore, Path::new("mab.toml")).unwrap();
    let mut check = Check::new(&platform.parse().unwrap(), rules);
    for (index, entries) in layers.iter().enumerate() {
        let bytes = layer(entries, Compression::None);
        check
            .layer(
                &format!("layer {index}"),
                Cursor::new(bytes),
                Compression::None,
            )
            .unwrap();
    }
    check.report()
}

fn paths(findings: &[Finding]) -> Vec<&str> {
    findings
        .iter()
        .map(|finding| finding.path.as_str())
        .collect()
}

#[test]
fn a_host_binary_in_an_arm64_image_is_named_in_every_compression() {
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let bytes = layer(
            &[
                Entry::Directory("bin/"),
                Entry::File("bin/busybox", x86_64(ET_EXEC)),
                Entry::File("./etc/passwd", b"root:x:0:0::/root:/bin/sh\n".to_vec()),
            ],
            compression,
        );
        let mut check = Check::new(&"linux/arm64".parse().unwrap(), Rules::default());
        check
            .layer("sha256:abc", Cursor::new(bytes), compression)
            .unwrap();
        let report = check.report();
        assert_eq!(report.checked, 1, "{compression:?}");
        assert_eq!(
            report.mismatches,
            [Finding {
                path: "/bin/busybox".to_owned(),
                found: "ELF 64-bit LSB x86-64 executable".to_owned(),
                expected: "64-bit LSB AArch64".to_owned(),
            }],
            "{compression:?}"
        );
        assert!(report.warnings.is_empty());
    }
}

#[test]
fn a_broken_layer_is_an_error_naming_it() {
    let mut bytes = layer(&[Entry::File("bin/a", x86_64(ET_EXEC))], Compression::Gzip);
    bytes.truncate(bytes.len() / 2);
    let mut check = Check::new(&"linux/arm64".parse().unwrap(), Rules::default());
    let error = check
        .layer("sha256:abc", Cursor::new(bytes), Compression::Gzip)
        .unwrap_err();
    assert!(
        error.to_string().starts_with("reading layer sha256:abc: "),
        "{error}"
    );
}

#[test]
fn whiteouts_delete_files_of_lower_layers() {
    // (layers, the mismatched paths left)
    let cases: Vec<(Vec<Vec<Entry>>, Vec<&str>)> = vec![
        // Added, then deleted by a later layer (`RUN rm`).
        (
            vec![
                vec![Entry::File("bin/tool", x86_64(ET_EXEC))],
                vec![Entry::File("bin/.wh.tool", Vec::new())],
            ],
            vec![],
        ),
        // A whiteout deletes lower layers' files only, not its own layer's.
        (
            vec![vec![
                Entry::File("bin/.wh.tool", Vec::new()),
                Entry::File("bin/tool", x86_64(ET_EXEC)),
            ]],
            vec!["/bin/tool"],
        ),
        // A whited-out directory takes everything below it.
        (
            vec![
                vec![
                    Entry::File("opt/x/a", x86_64(ET_EXEC)),
                    Entry::File("opt/xb", x86_64(ET_EXEC)),
                ],
                vec![Entry::File("opt/.wh.x", Vec::new())],
            ],
            vec!["/opt/xb"],
        ),
        // An opaque directory hides what lower layers hold in it, not
        // what its own layer puts there.
        (
            vec![
                vec![
                    Entry::File("opt/tools/old", x86_64(ET_EXEC)),
                    Entry::File("opt/other", x86_64(ET_DYN)),
                ],
                vec![
                    Entry::File("opt/tools/new", x86_64(ET_EXEC)),
                    Entry::File("opt/tools/.wh..wh..opq", Vec::new()),
                ],
            ],
            vec!["/opt/other", "/opt/tools/new"],
        ),
        // A later file that is not ELF replaces one that was.
        (
            vec![
                vec![Entry::File("bin/tool", x86_64(ET_EXEC))],
                vec![Entry::File("bin/tool", b"#!/bin/sh\n".to_vec())],
            ],
            vec![],
        ),
        // A file replacing a directory takes its contents.
        (
            vec![
                vec![Entry::File("lib/x/a.so", x86_64(ET_DYN))],
                vec![Entry::Symlink("lib/x", "/usr/lib")],
            ],
            vec![],
        ),
    ];
    for (layers, expected) in cases {
        let report = check("linux/arm64", &[], &layers);
        assert_eq!(paths(&report.mismatches), expected);
        assert_eq!(report.checked, expected.len() as u64);
    }
}

#[test]
fn links_are_not_followed_but_hard_links_are_the_file() {
    let report = check(
        "linux/arm64",
        &[],
        &[
            vec![Entry::File("bin/busybox", x86_64(ET_EXEC))],
            vec![
                Entry::File("usr/bin/tool", x86_64(ET_EXEC)),
                Entry::HardLink("usr/bin/tool2", "usr/bin/tool"),
                Entry::HardLink("bin/sh", "bin/busybox"),
                Entry::Symlink("bin/ls", "busybox"),
                Entry::Symlink("bin/x86", "/usr/bin/tool"),
            ],
        ],
    );
    assert_eq!(
        paths(&report.mismatches),
        ["/bin/busybox", "/bin/sh", "/usr/bin/tool", "/usr/bin/tool2"]
    );
    assert_eq!(report.checked, 4);
}

#[test]
fn object_types_and_machines_follow_the_rules() {
    // (object, platform, checked, mismatched, warned)
    let cases = [
        (aarch64(ET_DYN), "linux/arm64", 1, false, false),
        (aarch64(ET_EXEC), "linux/arm64/v8", 1, false, false),
        (x86_64(ET_DYN), "linux/arm64", 1, true, false),
        // Relocatable objects count when their machine is a CPU.
        (x86_64(ET_REL), "linux/arm64", 1, true, false),
        (aarch64(ET_REL), "linux/arm64", 1, false, false),
        (
            elf(64, true, ET_REL, EM_BPF),
            "linux/arm64",
            0,
            false,
            false,
        ),
        // Programs for another machine (a BPF VM) are none of a platform.
        (
            elf(64, true, ET_EXEC, EM_BPF),
            "linux/amd64",
            0,
            false,
            false,
        ),
        // Core dumps are skipped.
        (x86_64(ET_CORE), "linux/arm64", 0, false, false),
        // The 32-bit compatibility target warns.
        (
            elf(32, true, ET_EXEC, EM_386),
            "linux/amd64",
            1,
            false,
            true,
        ),
        (
            elf(32, true, ET_DYN, Machine(40)),
            "linux/arm64",
            1,
            false,
            true,
        ),
        (
            elf(32, true, ET_EXEC, Machine(40)),
            "linux/arm/v7",
            1,
            false,
            false,
        ),
        (
            elf(32, true, ET_EXEC, Machine(40)),
            "linux/arm/v6",
            1,
            false,
            false,
        ),
        (
            elf(32, true, ET_EXEC, EM_386),
            "linux/arm64",
            1,
            true,
            false,
        ),
        // Class and byte order count, not only the machine.
        (
            elf(32, true, ET_EXEC, EM_X86_64),
            "linux/amd64",
            1,
            true,
            false,
        ),
        (
            elf(64, false, ET_EXEC, Machine(22)),
            "linux/s390x",
            1,
            false,
            false,
        ),
        (
            elf(64, true, ET_EXEC, Machine(21)),
            "linux/ppc64le",
            1,
            false,
            false,
        ),
        (
            elf(64, false, ET_EXEC, Machine(21)),
            "linux/ppc64le",
            1,
            true,
            false,
        ),
        // A program of a machine outside mab's table is a mismatch: 32-bit
        // PowerPC in a ppc64le image, SPARC in an amd64 one ...
        (
            elf(32, false, ET_EXEC, Machine(20)),
            "linux/ppc64le",
            1,
            true,
            false,
        ),
        (
            elf(64, false, ET_DYN, Machine(43)),
            "linux/amd64",
            1,
            true,
            false,
        ),
        // ... but GPU code, or none, is no program of a platform.
        (
            elf(64, true, ET_EXEC, Machine(190)),
            "linux/amd64",
            0,
            false,
            false,
        ),
        (
            elf(64, true, ET_DYN, Machine(224)),
            "linux/amd64",
            0,
            false,
            false,
        ),
        (
            elf(64, true, ET_EXEC, Machine(0)),
            "linux/amd64",
            0,
            false,
            false,
        ),
        // Not ELF at all, or cut short after the magic.
        (b"\x7fELF\x02".to_vec(), "linux/arm64", 0, false, false),
        (b"#!/bin/sh\n".to_vec(), "linux/arm64", 0, false, false),
    ];
    for (bytes, platform, checked, mismatched, warned) in cases {
        let report = check(platform, &[], &[vec![Entry::File("x", bytes)]]);
        assert_eq!(report.checked, checked, "{platform}");
        assert_eq!(!report.mismatches.is_empty(), mismatched, "{platform}");
        assert_eq!(!report.warnings.is_empty(), warned, "{platform}");
    }
}

#[test]
fn a_compatibility_warning_says_what_it_found_and_the_target() {
    let report = check(
        "linux/amd64",
        &[],
        &[vec![Entry::File(
            "usr/lib32/libc.so.6",
            elf(32, true, ET_DYN, EM_386),
        )]],
    );
    assert_eq!(
        report.warnings,
        [Finding {
            path: "/usr/lib32/libc.so.6".to_owned(),
            found: "ELF 32-bit LSB Intel 80386 shared object".to_owned(),
            expected: "32-bit LSB Intel 80386".to_owned(),
        }]
    );
}

#[test]
fn ignored_paths_follow_dockerignore_rules() {
    let layers = vec![vec![
        Entry::File("usr/share/qemu/a/qemu-x", x86_64(ET_EXEC)),
        Entry::File("bin/busybox", x86_64(ET_EXEC)),
        Entry::HardLink("bin/sh", "bin/busybox"),
        Entry::File("opt/keep", x86_64(ET_EXEC)),
    ]];
    // (patterns, mismatched paths)
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &[],
            &[
                "/bin/busybox",
                "/bin/sh",
                "/opt/keep",
                "/usr/share/qemu/a/qemu-x",
            ],
        ),
        (
            &["/usr/share/qemu/**", "/bin/busybox"],
            // The hard link is the ignored file.
            &["/opt/keep"],
        ),
        (&["/bin"], &["/opt/keep", "/usr/share/qemu/a/qemu-x"]),
        (&["/**", "!/opt/keep"], &["/opt/keep"]),
    ];
    for (patterns, expected) in cases {
        let report = check("linux/arm64", patterns, &layers);
        assert_eq!(paths(&report.mismatches), expected, "{patterns:?}");
        assert_eq!(report.checked, expected.len() as u64);
    }
}

#[test]
fn platforms_without_elf_programs_check_nothing_with_a_note() {
    let report = check(
        "windows/amd64",
        &[],
        &[vec![Entry::File("x", x86_64(ET_EXEC))]],
    );
    assert_eq!(report.checked, 0);
    assert!(report.mismatches.is_empty());
    assert_eq!(
        report.note.as_deref(),
        Some("windows/amd64 programs are not ELF objects: their architecture is not checked")
    );
}

#[test]
fn media_types_tell_the_compression() {
    let cases = [
        (
            "application/vnd.oci.image.layer.v1.tar",
            Some(Compression::None),
        ),
        (
            "application/vnd.oci.image.layer.v1.tar+gzip",
            Some(Compression::Gzip),
        ),
        (
            "application/vnd.oci.image.layer.v1.tar+zstd",
            Some(Compression::Zstd),
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            Some(Compression::Gzip),
        ),
        (
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            Some(Compression::Gzip),
        ),
        (
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            Some(Compression::Gzip),
        ),
        (
            "application/vnd.docker.image.rootfs.diff.tar.zstd",
            Some(Compression::Zstd),
        ),
        ("application/vnd.in-toto+json", None),
        ("application/vnd.oci.image.layer.v1.tar+bzip2", None),
    ];
    for (media_type, expected) in cases {
        assert_eq!(
            Compression::of_media_type(media_type),
            expected,
            "{media_type}"
        );
    }
}

#[tokio::test]
async fn layers_read_from_an_async_stream_on_a_blocking_thread() {
    let mut check = Check::new(&"linux/arm64".parse().unwrap(), Rules::default());
    for entries in [
        vec![Entry::File("bin/a", x86_64(ET_EXEC))],
        vec![Entry::File("bin/b", aarch64(ET_EXEC))],
    ] {
        let bytes = layer(&entries, Compression::Zstd);
        check = check
            .layer_async(
                "sha256:abc".to_owned(),
                Cursor::new(bytes),
                Compression::Zstd,
            )
            .await
            .unwrap();
    }
    let report = check.report();
    assert_eq!(report.checked, 2);
    assert_eq!(paths(&report.mismatches), ["/bin/a"]);
}

/// A `docker save` archive: layers first, one a symbolic link to another's
/// file, one gzip-compressed (as an OCI layout may hold it), and
/// `manifest.json` last, as the engine writes it.
#[test]
fn a_saved_image_is_read_in_its_manifests_order() {
    let first = layer(
        &[Entry::File("bin/tool", x86_64(ET_EXEC))],
        Compression::None,
    );
    let second = layer(
        &[
            Entry::File("bin/.wh.tool", Vec::new()),
            Entry::File("bin/ok", aarch64(ET_EXEC)),
        ],
        Compression::Gzip,
    );
    let manifest = r#"[{"Config":"c.json","RepoTags":["x:1"],"Layers":["1111/layer.tar","blobs/sha256/2222","3333/layer.tar"]}]"#;
    let mut builder = tar::Builder::new(Vec::new());
    let mut append = |path: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, path, bytes).unwrap();
    };
    append("1111/layer.tar", &first);
    append("blobs/sha256/2222", &second);
    append("c.json", br#"{"os":"linux","architecture":"arm64"}"#);
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    builder
        .append_link(&mut header, "3333/layer.tar", "../1111/layer.tar")
        .unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_size(manifest.len() as u64);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, "manifest.json", manifest.as_bytes())
        .unwrap();
    let mut file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut file, &builder.into_inner().unwrap()).unwrap();

    let check = Check::new(&"linux/arm64".parse().unwrap(), Rules::default());
    let report = check_saved(&file, check).unwrap();
    // The tool deleted by the second layer is back with the third.
    assert_eq!(paths(&report.mismatches), ["/bin/tool"]);
    assert_eq!(report.checked, 2);

    let mut empty = tempfile::tempfile().unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(2);
    builder
        .append_data(&mut header, "manifest.json", &b"[]"[..])
        .unwrap();
    std::io::Write::write_all(&mut empty, &builder.into_inner().unwrap()).unwrap();
    let check = Check::new(&"linux/arm64".parse().unwrap(), Rules::default());
    let error = check_saved(&empty, check).unwrap_err();
    assert_eq!(
        error.to_string(),
        "reading the exported image: its manifest.json does not name the image's config and layers"
    );
    // A config of another platform is refused.
    let check = Check::new(&"linux/amd64".parse().unwrap(), Rules::default());
    assert_eq!(
        check_saved(&file, check).unwrap_err().to_string(),
        "the exported image is linux/arm64, not linux/amd64: the engine's store gave another image under its name"
    );
}

/// A reader that fails once its bytes are read, as a blob whose digest
/// differs does at its end.
struct FailsAtEnd(Cursor<Vec<u8>>);

impl Read for FailsAtEnd {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read(buffer)? {
            0 => Err(std::io::Error::other("the digest differs")),
            read => Ok(read),
        }
    }
}

#[test]
fn a_layer_is_read_to_the_end_of_its_stored_bytes() {
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let bytes = layer(&[Entry::File("bin/a", aarch64(ET_EXEC))], compression);
        let mut check = Check::new(&"linux/arm64".parse().unwrap(), Rules::default());
        let error = check
            .layer("sha256:abc", FailsAtEnd(Cursor::new(bytes)), compression)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "reading layer sha256:abc: the digest differs",
            "{compression:?}"
        );
    }
}

#[test]
fn every_frame_of_a_zstd_layer_and_every_member_of_a_gzip_one_is_read() {
    let first = layer(&[Entry::File("bin/a", aarch64(ET_EXEC))], Compression::None);
    let second = layer(&[Entry::File("bin/b", x86_64(ET_EXEC))], Compression::None);
    // The archive split after the first one's entries: its end marker
    // (two zero blocks) is only in the second part.
    let split = first.len() - 1024;
    let (head, tail) = (&first[..split], &second[..]);
    let mut joined = head.to_vec();
    joined.extend_from_slice(tail);
    let zstd = |bytes: &[u8]| {
        ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
    };
    // Two frames with a skippable frame (magic 0x184D2A5?, a length, its
    // bytes) between them.
    let mut frames = zstd(head);
    frames.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
    frames.extend_from_slice(&5u32.to_le_bytes());
    frames.extend_from_slice(b"skip!");
    frames.extend_from_slice(&zstd(tail));
    let gzip = |bytes: &[u8]| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut encoder, bytes).unwrap();
        encoder.finish().unwrap()
    };
    let mut members = gzip(head);
    members.extend_from_slice(&gzip(tail));
    for (bytes, compression) in [(frames, Compression::Zstd), (members, Compression::Gzip)] {
        let mut check = Check::new(&"linux/arm64".parse().unwrap(), Rules::default());
        check
            .layer("sha256:abc", Cursor::new(bytes), compression)
            .unwrap();
        let report = check.report();
        assert_eq!(report.checked, 2, "{compression:?}");
        assert_eq!(paths(&report.mismatches), ["/bin/b"], "{compression:?}");
    }
    // A stream cut inside its second frame is an error, not a short read.
    let mut cut = zstd(head);
    let second_frame = zstd(tail);
    cut.extend_from_slice(&second_frame[..second_frame.len() / 2]);
    let mut check = Check::new(&"linux/arm64".parse().unwrap(), Rules::default());
    assert!(check
        .layer("sha256:abc", Cursor::new(cut), Compression::Zstd)
        .is_err());
}

/// Layers, the mismatched paths left, how many files were checked.
type Case<'a> = (Vec<Vec<Entry<'a>>>, Vec<&'a str>, u64);

#[test]
fn entries_apply_in_order_within_a_layer() {
    let long = format!("opt/{}/tool", "d".repeat(120));
    let long_path = format!("/{long}");
    // (layers, the mismatched paths left, how many files were checked)
    let cases: Vec<Case> = vec![
        // The same path twice in one layer: the last entry is the file.
        (
            vec![vec![
                Entry::File("bin/tool", x86_64(ET_EXEC)),
                Entry::File("bin/tool", b"#!/bin/sh\n".to_vec()),
            ]],
            vec![],
            0,
        ),
        // A lower file replaced by a directory of the same name.
        (
            vec![
                vec![Entry::File("x", x86_64(ET_EXEC))],
                vec![Entry::Directory("x/"), Entry::File("x/a", x86_64(ET_DYN))],
            ],
            vec!["/x/a"],
            1,
        ),
        // A hard link to a path this layer replaced earlier is the new file.
        (
            vec![
                vec![Entry::File("bin/tool", x86_64(ET_EXEC))],
                vec![
                    Entry::File("bin/tool", aarch64(ET_EXEC)),
                    Entry::HardLink("bin/tool2", "bin/tool"),
                ],
            ],
            vec![],
            2,
        ),
        // ... and to one it replaced with a file that is not ELF.
        (
            vec![
                vec![Entry::File("bin/tool", x86_64(ET_EXEC))],
                vec![
                    Entry::File("bin/tool", b"#!/bin/sh\n".to_vec()),
                    Entry::HardLink("bin/tool2", "bin/tool"),
                ],
            ],
            vec![],
            0,
        ),
        // `./bin/tool` and `bin/.wh.tool` name one path; the whiteout does
        // not delete its own layer's file.
        (
            vec![vec![
                Entry::File("./bin/tool", x86_64(ET_EXEC)),
                Entry::File("bin/.wh.tool", Vec::new()),
            ]],
            vec!["/bin/tool"],
            1,
        ),
        // A name longer than the header's 100 bytes (a GNU long name).
        (
            vec![vec![Entry::File(&long, x86_64(ET_EXEC))]],
            vec![&long_path],
            1,
        ),
    ];
    for (layers, expected, checked) in cases {
        let report = check("linux/arm64", &[], &layers);
        assert_eq!(paths(&report.mismatches), expected);
        assert_eq!(report.checked, checked, "{expected:?}");
    }
}

/// A ustar layer whose one file is named by a PAX `path` record.
fn pax_layer(path: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_pax_extensions([("path", path)]).unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_path("short").unwrap();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o755);
    header.set_cksum();
    builder.append(&header, bytes).unwrap();
    builder.into_inner().unwrap()
}

#[test]
fn pax_paths_and_names_that_are_not_utf8_are_their_own_paths() {
    let long = format!("/opt/{}/tool", "p".repeat(150));
    let mut check = Check::new(&"linux/arm64".parse().unwrap(), Rules::default());
    for name in [long.as_bytes(), b"bin/\xff", b"bin/\xfe"] {
        check
            .layer(
                "sha256:abc",
                Cursor::new(pax_layer(name, &x86_64(ET_EXEC))),
                Compression::None,
            )
            .unwrap();
    }
    let report = check.report();
    // Two names whose bytes differ are two files, though both show as
    // U+FFFD.
    assert_eq!(report.checked, 3);
    assert_eq!(
        paths(&report.mismatches),
        ["/bin/\u{fffd}", "/bin/\u{fffd}", long.as_str()]
    );
}

#[test]
fn a_layer_that_fails_midway_leaves_the_check_as_it_was() {
    let mut check = Check::new(&"linux/arm64".parse().unwrap(), Rules::default());
    let first = layer(
        &[Entry::File("bin/tool", x86_64(ET_EXEC))],
        Compression::None,
    );
    check
        .layer("sha256:1", Cursor::new(first), Compression::None)
        .unwrap();
    let second = layer(
        &[
            Entry::File("bin/.wh.tool", Vec::new()),
            Entry::File("bin/new", x86_64(ET_EXEC)),
        ],
        Compression::Gzip,
    );
    let broken = second[..second.len() - 20].to_vec();
    assert!(check
        .layer("sha256:2", Cursor::new(broken), Compression::Gzip)
        .is_err());
    assert_eq!(
        paths(&check_report_of(&check)),
        ["/bin/tool"],
        "the whiteout of the broken layer is undone"
    );
    check
        .layer("sha256:2", Cursor::new(second), Compression::Gzip)
        .unwrap();
    assert_eq!(paths(&check.report().mismatches), ["/bin/new"]);
}

/// The mismatches of `check` so far, leaving it to read on.
fn check_report_of(check: &Check) -> Vec<Finding> {
    let copy = Check {
        platform: check.platform.clone(),
        expected: check.expected,
        rules: check.rules.clone(),
        files: check.files.clone(),
        note: None,
    };
    copy.report().mismatches
}

#[tokio::test]
async fn a_failed_layer_gives_the_check_back_and_a_dropped_one_stops() {
    let check = Check::new(&"linux/arm64".parse().unwrap(), Rules::default());
    let bytes = layer(&[Entry::File("bin/a", x86_64(ET_EXEC))], Compression::Gzip);
    let failed = check
        .layer_async(
            "sha256:abc".to_owned(),
            Cursor::new(bytes[..bytes.len() / 2].to_vec()),
            Compression::Gzip,
        )
        .await
        .unwrap_err();
    let check = *failed.check.expect("the check comes back");
    assert_eq!(check.files.len(), 0);
    // Once the future is dropped, the reader on the blocking thread fails
    // its next read.
    let cancelled = Cancelled::default();
    let mut reader = Cancellable {
        reader: Cursor::new(vec![0u8; 16]),
        cancelled: cancelled.0.clone(),
    };
    let mut buffer = [0u8; 8];
    assert_eq!(reader.read(&mut buffer).unwrap(), 8);
    drop(cancelled);
    assert_eq!(
        reader.read(&mut buffer).unwrap_err().kind(),
        std::io::ErrorKind::Interrupted
    );
}
