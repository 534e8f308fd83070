//! Build secrets and SSH agents a build may use: where each comes from, as
//! `--secret`, `--ssh` and `[image.secrets]` name it. Only the sources are
//! read here (flag text, the manifest); reading the values is the caller's.

use std::path::PathBuf;

/// The largest secret BuildKit accepts from a client (`MaxSecretSize` of
/// BuildKit's secrets provider): 500 KiB.
pub const MAX_SECRET_SIZE: u64 = 500 * 1024;

/// Where a secret's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// A file's contents. As written: it may start with `~/` (the home)
    /// or be relative (to the directory of `mab.toml` for
    /// `[image.secrets]`, to the current directory for `--secret`).
    File(PathBuf),
    /// The value of an environment variable of mab's.
    Env(String),
}

/// A secret of `[image.secrets]`: its source and where the manifest
/// names it, for errors about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestSecret {
    /// Where the value comes from (`src = FILE` or `env = VARIABLE`).
    pub source: SecretSource,
    /// The secret's entry in `mab.toml` (`npm = { env = "NPM_TOKEN" }`).
    pub location: crate::Location,
}

/// One `--secret`: an id and its source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretSpec {
    /// The id `RUN --mount=type=secret,id=ID` names.
    pub id: String,
    /// Where the value comes from (`src=FILE`, `env=VARIABLE`, or `id=`
    /// alone read as [`parse_secret_flag`] says).
    pub source: SecretSource,
}

/// What to write for `--secret`, for the hint of a bad one.
pub const SECRET_FLAG_HINT: &str =
    "write it as --secret id=NAME,src=FILE or --secret id=NAME,env=VARIABLE";

/// Parses the value of one `--secret`, by the grammar of `docker buildx
/// build --secret` (buildx `util/buildflags/secrets.go`): one CSV record
/// (a field in double quotes may hold commas: `"src=a,b"`) of `key=value`
/// fields (keys case-insensitive), `id=NAME`, `src=FILE` (or
/// `source=FILE`), `env=VARIABLE`, and `type=file|env` (`type=env,src=X`
/// reads the variable `X`; `type=file` changes nothing else, as buildx
/// ignores it). `id` is required, as BuildKit's secrets store requires it
/// ("secret missing ID"). Where a variable and a file are both given, the
/// variable wins, as in BuildKit's store; with neither, the variable `NAME`
/// is read when the environment has it, else the file `NAME`, as the store
/// does: `env_has` tells whether a variable is set. Errors: a field without
/// `=`, an unknown key or type, an empty source, text that is not one CSV
/// record. The error is one sentence, without the flag's name; it names
/// fields by key or position and never holds a field's value (the flag may
/// carry a token: `--secret id=tok,env=$TOKEN` by mistake).
pub fn parse_secret_flag(text: &str, env_has: impl Fn(&str) -> bool) -> Result<SecretSpec, String> {
    let mut id = None;
    let mut file = None;
    let mut variable = None;
    let mut kind = None;
    let fields = csv_fields(text)?;
    for (index, field) in fields.iter().enumerate() {
        let Some((key, value)) = field.split_once('=') else {
            return Err(format!(
                "its {} field is not a key=value pair",
                ordinal(index + 1)
            ));
        };
        match key.to_ascii_lowercase().as_str() {
            "id" => id = Some(value),
            "src" | "source" => file = Some(value),
            "env" => variable = Some(value),
            "type" => match value {
                "file" | "env" => kind = Some(value),
                _ => return Err("its `type` is neither file nor env".to_owned()),
            },
            _ => return Err(format!("unknown key `{key}` (id, src, env or type)")),
        }
    }
    let id = match id {
        Some(id) if !id.trim().is_empty() => id.to_owned(),
        _ => return Err("no `id`".to_owned()),
    };
    if kind == Some("env") && variable.is_none() {
        variable = file.take();
    }
    let source = match (file, variable) {
        (_, Some("")) | (Some(""), None) => return Err("an empty source".to_owned()),
        (_, Some(variable)) => SecretSource::Env(variable.to_owned()),
        (Some(file), None) => SecretSource::File(PathBuf::from(file)),
        (None, None) if env_has(&id) => SecretSource::Env(id.clone()),
        (None, None) => SecretSource::File(PathBuf::from(&id)),
    };
    Ok(SecretSpec { id, source })
}

/// The fields of `text` read as one CSV record, as Go's `encoding/csv`
/// reads buildx's flags. Errors: no record, or more than one.
fn csv_fields(text: &str) -> Result<Vec<String>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let not_one = || "it is not one line of comma-separated fields".to_owned();
    let record = records.next().ok_or_else(not_one)?.map_err(|_| not_one())?;
    if records.next().is_some() {
        return Err(not_one());
    }
    Ok(record.iter().map(str::to_owned).collect())
}

/// `n` as an English ordinal: `1st`, `2nd`, `3rd`, `4th`, `11th`, `21st`;
/// for naming a repeated flag or a field by its position.
pub fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// BuildKit's id for the agent of a `RUN --mount=type=ssh` that names
/// none (`DefaultID` in BuildKit's `session/sshforward`).
pub const DEFAULT_SSH_ID: &str = "default";

/// One `--ssh`: an agent id and what serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshSpec {
    /// The id `RUN --mount=type=ssh,id=ID` names (`default` when it names
    /// none).
    pub id: String,
    /// Key files (or one agent socket) as written; empty for the agent of
    /// `SSH_AUTH_SOCK`.
    pub paths: Vec<PathBuf>,
}

/// What to write for `--ssh`, for the hint of a bad one.
pub const SSH_FLAG_HINT: &str =
    "write it as --ssh default (the agent of SSH_AUTH_SOCK) or --ssh ID=KEYFILE[,KEYFILE...]";

/// Parses the value of one `--ssh`, by the grammar of `docker buildx build
/// --ssh` (buildx `util/buildflags/ssh.go`): `ID` or `ID=PATH[,PATH...]`
/// (split at commas, no quoting); an empty id is `default`, and `ID=` (an
/// empty list) is the agent of `SSH_AUTH_SOCK` as `ID` alone, as BuildKit's
/// agent provider reads them. Errors: an empty path among others.
pub fn parse_ssh_flag(text: &str) -> Result<SshSpec, String> {
    let (id, paths) = match text.split_once('=') {
        Some((id, paths)) => (id, paths),
        None => (text, ""),
    };
    let id = if id.is_empty() { DEFAULT_SSH_ID } else { id };
    let paths = match paths {
        "" => Vec::new(),
        paths => paths
            .split(',')
            .map(|path| {
                if path.is_empty() {
                    Err("an empty path in the list".to_owned())
                } else {
                    Ok(PathBuf::from(path))
                }
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(SshSpec {
        id: id.to_owned(),
        paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: &str, path: &str) -> SecretSpec {
        SecretSpec {
            id: id.to_owned(),
            source: SecretSource::File(PathBuf::from(path)),
        }
    }

    fn env(id: &str, variable: &str) -> SecretSpec {
        SecretSpec {
            id: id.to_owned(),
            source: SecretSource::Env(variable.to_owned()),
        }
    }

    #[test]
    fn secret_flags_read_as_buildx_reads_them() {
        let env_has = |name: &str| name == "SET";
        let cases = [
            ("id=npm,src=.npmrc", file("npm", ".npmrc")),
            ("id=npm,source=~/.npmrc", file("npm", "~/.npmrc")),
            ("ID=npm,SRC=a=b", file("npm", "a=b")),
            ("id=tok,env=TOKEN", env("tok", "TOKEN")),
            ("type=env,id=tok,src=TOKEN", env("tok", "TOKEN")),
            ("type=file,id=tok,src=f", file("tok", "f")),
            ("id=SET", env("SET", "SET")),
            ("id=UNSET", file("UNSET", "UNSET")),
            // buildx ignores `type=file`; BuildKit reads the variable.
            ("type=file,id=SET", env("SET", "SET")),
            // Both: the variable wins, as in BuildKit's store.
            ("id=a,src=x,env=Y", env("a", "Y")),
            // One CSV record: a quoted field may hold commas and quotes.
            ("id=a,\"src=b,c\"", file("a", "b,c")),
            ("\"id=a\",\"src=say \"\"hi\"\"\"", file("a", "say \"hi\"")),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_secret_flag(text, env_has), Ok(expected), "{text}");
        }
        let bad = [
            ("src=.npmrc", "no `id`"),
            ("id=,src=x", "no `id`"),
            ("id=a,src", "its 2nd field is not a key=value pair"),
            ("id=a,s3cr3t", "its 2nd field is not a key=value pair"),
            ("id=a,path=x", "unknown key `path` (id, src, env or type)"),
            ("id=a,type=ssh", "its `type` is neither file nor env"),
            ("", "it is not one line of comma-separated fields"),
            (
                "id=a\nsrc=b",
                "it is not one line of comma-separated fields",
            ),
            ("id=a,src=", "an empty source"),
        ];
        for (text, message) in bad {
            assert_eq!(
                parse_secret_flag(text, env_has),
                Err(message.to_owned()),
                "{text}"
            );
        }
    }

    #[test]
    fn ordinals() {
        let written: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            written,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
    }

    #[test]
    fn ssh_flags_read_as_buildx_reads_them() {
        let cases: [(&str, &str, &[&str]); 6] = [
            ("default", "default", &[]),
            ("", "default", &[]),
            ("git=", "git", &[]),
            ("=", "default", &[]),
            ("git=~/.ssh/id", "git", &["~/.ssh/id"]),
            ("git=a,b", "git", &["a", "b"]),
        ];
        for (text, id, paths) in cases {
            let parsed = parse_ssh_flag(text).unwrap();
            assert_eq!(parsed.id, id, "{text}");
            assert_eq!(
                parsed.paths,
                paths.iter().map(PathBuf::from).collect::<Vec<_>>()
            );
        }
        assert!(parse_ssh_flag("git=a,,b").is_err());
        assert!(parse_ssh_flag("git=a,").is_err());
    }
}
