//! Host key verification against the user's `known_hosts` files.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{parse_public_key_base64, Algorithm, HashAlg, PublicKey};
use sha1::Sha1;

/// Serialises [`learn`] within the process: several runners may be
/// connected to at once, and one host must be recorded only once.
static LEARNING: Mutex<()> = Mutex::new(());

/// What the `known_hosts` files say about a server's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The key is recorded for this host.
    Known,
    /// No key of this algorithm is recorded for this host.
    Unknown,
    /// A different key of the same algorithm is recorded at `file`:`line`.
    Changed { file: PathBuf, line: usize },
    /// A file could not be read, or a line for this host is malformed.
    Unreadable { file: PathBuf, message: String },
}

/// Checks `key` for `host`:`port` against every file (hashed names and
/// `[host]:port` entries included). A match in any file wins; otherwise the
/// first recorded key of the same algorithm makes it a changed key.
pub(crate) fn verify(host: &str, port: u16, key: &PublicKey, files: &[PathBuf]) -> Verdict {
    let mut changed = None;
    for file in files {
        let recorded = match read_file(file, host, port) {
            Ok(recorded) => recorded,
            Err(message) => {
                return Verdict::Unreadable {
                    file: file.clone(),
                    message,
                }
            }
        };
        for (line, recorded_key) in recorded {
            if recorded_key.key_data() == key.key_data() {
                return Verdict::Known;
            }
            if changed.is_none() && recorded_key.algorithm() == key.algorithm() {
                changed = Some(Verdict::Changed {
                    file: file.clone(),
                    line,
                });
            }
        }
    }
    changed.unwrap_or(Verdict::Unknown)
}

/// [`recorded_keys`] of the known_hosts file at `file`; a file that does
/// not exist records nothing. Errors: the file cannot be read (or is not
/// UTF-8), or [`recorded_keys`]'s.
fn read_file(file: &Path, host: &str, port: u16) -> Result<Vec<(usize, PublicKey)>, String> {
    match std::fs::read_to_string(file) {
        Ok(text) => recorded_keys(&text, host, port),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(error.to_string()),
    }
}

/// The keys the text of a known_hosts file records for `host`:`port`, each
/// with its line (from 1, comment and blank lines counted, as an editor
/// shows them), in file order.
///
/// OpenSSH's format (sshd(8), "SSH_KNOWN_HOSTS FILE FORMAT"): one entry a
/// line, `NAMES KEYTYPE BASE64-KEY [COMMENT]`, fields separated by spaces or
/// tabs; `#` starts a comment line. `NAMES` is a comma-separated list of
/// names as ssh writes them, `host` or `[host]:port` when the port is not 22
/// ([`known_hosts_name`]), or hashed names `|1|SALT|HASH` (HMAC-SHA1 of
/// that name keyed by the salt, both base64, as `ssh-keygen -H` writes).
/// The key is read from its base64 (the `KEYTYPE` field is not compared).
/// Not interpreted, so never matching: wildcard and `!` patterns, and
/// lines with a marker (`@cert-authority`, `@revoked`); mab checks plain
/// host keys only.
///
/// Errors: a line that names the host but whose key is not a valid SSH
/// public key, as `line N: ...`; lines for other hosts are not checked.
pub(crate) fn recorded_keys(
    text: &str,
    host: &str,
    port: u16,
) -> Result<Vec<(usize, PublicKey)>, String> {
    let name = known_hosts_name(host, port);
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let mut fields = line.split_whitespace();
        let (Some(names), Some(_key_type), Some(base64)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if names.starts_with('#') || !names_match(names, &name) {
            continue;
        }
        let key = parse_public_key_base64(base64).map_err(|error| {
            format!(
                "line {}: the key recorded for {names} is not an SSH public key ({error})",
                index + 1
            )
        })?;
        keys.push((index + 1, key));
    }
    Ok(keys)
}

/// Whether the `NAMES` field of a known_hosts line lists `name`, plainly or
/// hashed.
fn names_match(names: &str, name: &str) -> bool {
    names
        .split(',')
        .any(|entry| match entry.strip_prefix("|1|") {
            Some(hashed) => hashed_name_matches(hashed, name),
            None => entry == name,
        })
}

/// `SALT|HASH` of a hashed name: whether HMAC-SHA1(SALT, `name`) is HASH.
/// A malformed one matches nothing, as in OpenSSH.
fn hashed_name_matches(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (BASE64.decode(salt), BASE64.decode(hash)) else {
        return false;
    };
    Hmac::<Sha1>::new_from_slice(&salt).is_ok_and(|mac| {
        mac.chain_update(name.as_bytes())
            .verify_slice(&hash)
            .is_ok()
    })
}

/// The algorithms of the keys recorded for `host`:`port`, so that the key
/// exchange can ask the server for a key the user already trusts.
pub(crate) fn recorded_algorithms(host: &str, port: u16, files: &[PathBuf]) -> Vec<Algorithm> {
    let mut algorithms = Vec::new();
    for file in files {
        for (_, key) in read_file(file, host, port).unwrap_or_default() {
            let algorithm = key.algorithm();
            if !algorithms.contains(&algorithm) {
                algorithms.push(algorithm);
            }
        }
    }
    algorithms
}

/// Orders `preferred` host key algorithms so that those recorded in
/// `known_hosts` come first (all RSA signature variants count for an RSA key).
pub(crate) fn prefer_recorded(preferred: &[Algorithm], recorded: &[Algorithm]) -> Vec<Algorithm> {
    let is_recorded = |algorithm: &Algorithm| {
        recorded.iter().any(|known| {
            known == algorithm || (known.clone().is_rsa() && algorithm.clone().is_rsa())
        })
    };
    let (mut first, rest): (Vec<_>, Vec<_>) = preferred
        .iter()
        .cloned()
        .partition(|algorithm| is_recorded(algorithm));
    first.extend(rest);
    first
}

/// How a host is named in known_hosts: `host`, or `[host]:port` when the
/// port is not 22.
pub(crate) fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Appends `key` for `host`:`port` to `file` in OpenSSH's format, creating
/// the file (mode 0600) and its directory (mode 0700) when missing.
/// Returns `false` when the file already records the key.
pub(crate) fn learn(file: &Path, host: &str, port: u16, key: &PublicKey) -> std::io::Result<bool> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

    let _guard = LEARNING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if verify(host, port, key, &[file.to_path_buf()]) == Verdict::Known {
        return Ok(false);
    }
    if let Some(directory) = file.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(directory)?;
    }
    let mut handle = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(file)?;
    // A last line without its newline must not swallow the new entry.
    let mut last = [0u8; 1];
    let length = handle.seek(SeekFrom::End(0))?;
    let needs_newline = length > 0 && {
        handle.seek(SeekFrom::End(-1))?;
        handle.read_exact(&mut last)?;
        last[0] != b'\n'
    };
    let public = PublicKey::new(key.key_data().clone(), "")
        .to_openssh()
        .map_err(std::io::Error::other)?;
    let line = format!(
        "{}{} {public}\n",
        if needs_newline { "\n" } else { "" },
        known_hosts_name(host, port)
    );
    handle.write_all(line.as_bytes())?;
    handle.sync_all()?;
    Ok(true)
}

/// `ssh-ed25519` and `SHA256:…`, as OpenSSH shows a key.
pub(crate) fn describe(key: &PublicKey) -> (String, String) {
    (
        key.algorithm().as_str().to_string(),
        key.fingerprint(HashAlg::Sha256).to_string(),
    )
}

/// `path` as the user would type it: `~/…` when it lies under `home`.
pub(crate) fn shown_path(path: &Path, home: &Path) -> String {
    match path.strip_prefix(home) {
        Ok(rest) => format!("~/{}", rest.display()),
        Err(_) => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Keys made with `ssh-keygen -t ed25519` / `-t ecdsa` for these tests only.
    const ED_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIALhTKmvu8V3wV3hjue892lxPCF9OQwPDf2RA6JYoRLs";
    const ED_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIC8MfFXCtgnYy0Uhrz9Fd1xtbE2RdhxPscxhPk1h4LdF";
    const ECDSA: &str = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMS4z7tDjpyyoWx3wH6Twyy+Wphp4kya9BroojSZxKAKialTkXShOw2u43u782Gt+E2NJrv4aD0sl7HEmnhXIFY=";
    // `|1|salt|hash` of `[127.0.0.2]:2222`, made with `ssh-keygen -H`.
    const HASHED_LAB2: &str = "|1|nL7DTaASGgCy0AyP0meIO6ywJ7s=|TGGkYW2dayp42JWSEul+aJkw2rc=";

    fn key(base64: &str) -> PublicKey {
        parse_public_key_base64(base64).expect("test key")
    }

    #[test]
    fn verdicts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write known_hosts");
            path
        };
        let plain = write(
            "plain",
            format!(
                "# comment\n\
                 example.org ssh-ed25519 {ED_A}\n\
                 [127.0.0.2]:2222 ssh-ed25519 {ED_A}\n\
                 other.org,10.0.0.1 ssh-ed25519 {ED_B}\n\
                 ecdsa.org ecdsa-sha2-nistp256 {ECDSA}\n"
            ),
        );
        let hashed = write("hashed", format!("{HASHED_LAB2} ssh-ed25519 {ED_B}\n"));
        let rotated = write(
            "rotated",
            format!(
                "# old key first\nexample.org ssh-ed25519 {ED_B}\n\
                 # new key\nexample.org ssh-ed25519 {ED_A}\n"
            ),
        );
        let commented = write(
            "commented",
            format!("# a\n\n# b\n#c\nlab3 ssh-ed25519 {ED_B}\n"),
        );
        let missing = dir.path().join("missing");

        let cases: Vec<(&str, u16, &str, Vec<PathBuf>, Verdict)> = vec![
            ("example.org", 22, ED_A, vec![plain.clone()], Verdict::Known),
            ("127.0.0.2", 2222, ED_A, vec![plain.clone()], Verdict::Known),
            // The port matters: `[host]:port` entries are not plain host entries.
            ("127.0.0.2", 22, ED_A, vec![plain.clone()], Verdict::Unknown),
            ("10.0.0.1", 22, ED_B, vec![plain.clone()], Verdict::Known),
            (
                "example.org",
                22,
                ED_B,
                vec![plain.clone()],
                Verdict::Changed {
                    file: plain.clone(),
                    line: 2,
                },
            ),
            // A key of another algorithm is merely unknown.
            ("ecdsa.org", 22, ED_A, vec![plain.clone()], Verdict::Unknown),
            (
                "nowhere.org",
                22,
                ED_A,
                vec![plain.clone()],
                Verdict::Unknown,
            ),
            (
                "127.0.0.2",
                2222,
                ED_B,
                vec![hashed.clone()],
                Verdict::Known,
            ),
            (
                "127.0.0.2",
                2222,
                ED_A,
                vec![hashed.clone()],
                Verdict::Changed {
                    file: hashed.clone(),
                    line: 1,
                },
            ),
            // A match in a later file beats a changed key in an earlier one.
            (
                "127.0.0.2",
                2222,
                ED_B,
                vec![plain.clone(), hashed.clone()],
                Verdict::Known,
            ),
            // Two keys for one host: either matches.
            (
                "example.org",
                22,
                ED_A,
                vec![rotated.clone()],
                Verdict::Known,
            ),
            // Line numbers count comment and blank lines, as an editor does.
            (
                "lab3",
                22,
                ED_A,
                vec![commented.clone()],
                Verdict::Changed {
                    file: commented.clone(),
                    line: 5,
                },
            ),
            (
                "example.org",
                22,
                ED_A,
                vec![missing.clone()],
                Verdict::Unknown,
            ),
        ];
        for (host, port, server_key, files, expected) in cases {
            assert_eq!(
                verify(host, port, &key(server_key), &files),
                expected,
                "{host}:{port} {files:?}"
            );
        }
    }

    #[test]
    fn a_malformed_line_for_the_host_is_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("known_hosts");
        std::fs::write(
            &file,
            format!("example.org ssh-ed25519 not*base64\nother.org ssh-ed25519 {ED_A}\n"),
        )
        .expect("write");
        match verify("example.org", 22, &key(ED_A), std::slice::from_ref(&file)) {
            Verdict::Unreadable { file: reported, .. } => assert_eq!(reported, file),
            other => panic!("expected an unreadable file, got {other:?}"),
        }
        // Lines for other hosts are not looked at.
        assert_eq!(verify("other.org", 22, &key(ED_A), &[file]), Verdict::Known);
    }

    #[test]
    fn reads_known_hosts_text_as_openssh_writes_it() {
        let text = format!(
            "# comment\n\
             \n\
             example.org\tssh-ed25519\t{ED_A} tabs are separators\n\
             @revoked example.org ssh-ed25519 {ED_B}\n\
             *.org ssh-ed25519 {ED_B}\n\
             |1|not-base64|x,example.org ssh-ed25519 {ED_B}\n\
             |1|only-salt example.org\n\
             {HASHED_LAB2} ssh-ed25519 {ED_A}\n"
        );
        let lines = |host: &str, port: u16| -> Vec<usize> {
            recorded_keys(&text, host, port)
                .expect("readable")
                .into_iter()
                .map(|(line, _)| line)
                .collect()
        };
        // Markers and wildcards are not interpreted; a malformed hashed
        // name does not hide the plain name beside it.
        assert_eq!(lines("example.org", 22), [3, 6]);
        assert_eq!(lines("127.0.0.2", 2222), [8]);
        assert!(lines("other.org", 22).is_empty());
        let error = recorded_keys("a,b ssh-ed25519 AAAA!\n", "b", 22).expect_err("bad key");
        assert!(
            error.starts_with("line 1: the key recorded for a,b is not an SSH public key"),
            "{error}"
        );
    }

    #[test]
    fn recorded_algorithms_come_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("known_hosts");
        std::fs::write(&file, format!("ecdsa.org ecdsa-sha2-nistp256 {ECDSA}\n")).expect("write");
        let recorded = recorded_algorithms("ecdsa.org", 22, &[file]);
        let default = russh::Preferred::DEFAULT.key.to_vec();
        let ordered = prefer_recorded(&default, &recorded);
        assert_eq!(ordered.first(), recorded.first());
        assert_eq!(ordered.len(), default.len());
        assert_eq!(prefer_recorded(&default, &[]), default);
        let rsa = prefer_recorded(&default, &[Algorithm::Rsa { hash: None }]);
        assert!(rsa
            .iter()
            .take(3)
            .all(|algorithm| algorithm.clone().is_rsa()));
    }

    #[test]
    fn learns_keys_in_openssh_format() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().expect("temp dir");
        let home = dir.path();
        let mode = |path: &Path| {
            std::fs::metadata(path)
                .expect("metadata")
                .permissions()
                .mode()
                & 0o777
        };
        // A missing .ssh is created 0700 and the file 0600.
        let file = home.join(".ssh/known_hosts");
        assert!(learn(&file, "127.0.0.20", 2300, &key(ED_A)).expect("learn"));
        assert_eq!(mode(&home.join(".ssh")), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert!(learn(&file, "example.org", 22, &key(ED_B)).expect("learn"));
        // Learning a key that is already there adds nothing.
        assert!(!learn(&file, "example.org", 22, &key(ED_B)).expect("learn"));
        assert_eq!(
            std::fs::read_to_string(&file).expect("read"),
            format!("[127.0.0.20]:2300 ssh-ed25519 {ED_A}\nexample.org ssh-ed25519 {ED_B}\n")
        );
        assert_eq!(
            verify("127.0.0.20", 2300, &key(ED_A), std::slice::from_ref(&file)),
            Verdict::Known
        );

        // A file whose last line has no newline keeps its line whole.
        let other = home.join("elsewhere/known_hosts");
        std::fs::create_dir_all(other.parent().expect("parent")).expect("mkdir");
        std::fs::write(&other, format!("old.org ssh-ed25519 {ED_B}")).expect("write");
        assert!(learn(&other, "ecdsa.org", 2222, &key(ECDSA)).expect("learn"));
        assert_eq!(
            std::fs::read_to_string(&other).expect("read"),
            format!("old.org ssh-ed25519 {ED_B}\n[ecdsa.org]:2222 ecdsa-sha2-nistp256 {ECDSA}\n")
        );
        for (host, port, server_key) in [("old.org", 22, ED_B), ("ecdsa.org", 2222, ECDSA)] {
            assert_eq!(
                verify(host, port, &key(server_key), std::slice::from_ref(&other)),
                Verdict::Known,
                "{host}"
            );
        }
    }

    #[test]
    fn describes_keys_like_openssh() {
        let (key_type, fingerprint) = describe(&key(ED_A));
        assert_eq!(key_type, "ssh-ed25519");
        // As printed by `ssh-keygen -lf`.
        assert_eq!(
            fingerprint,
            "SHA256:n/5Y4aiKvTa0vb7H59haJ0DE19Q4LE0BpmH/+km0eCM"
        );
        assert_eq!(
            shown_path(Path::new("/h/.ssh/known_hosts"), Path::new("/h")),
            "~/.ssh/known_hosts"
        );
        assert_eq!(shown_path(Path::new("/etc/kh"), Path::new("/h")), "/etc/kh");
    }
}
