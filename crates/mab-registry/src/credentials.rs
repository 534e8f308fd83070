//! Registry credentials in every form the docker CLI writes, looked up the
//! way docker and the GitLab runner look them up.
//!
//! Sources, in order (the GitLab runner's order): the `DOCKER_AUTH_CONFIG`
//! variable (the JSON of a `config.json` in a variable), then the Docker
//! configuration file (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`). The first source that has credentials for a
//! registry gives them; a source without an entry for it passes to the next.
//!
//! Within one source, as the docker CLI (`cli/config/configfile`): the
//! registry's `credHelpers` entry (its exact key), else `credsStore`, else
//! the `auths` entry (its exact key, else a key whose host is the
//! registry: `identitytoken`, else `auth`, else `username`/`password`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde::Deserialize;

use crate::RegistryError;

/// The key docker uses for Docker Hub in `auths`, `credHelpers` and on a
/// credential helper's stdin (`registry.IndexServer` in docker).
pub const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// How long a credential helper may take to answer before it is killed
/// and the lookup fails ([`RegistryError::CredentialHelper`]).
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// The hint of a configuration that is not JSON or not a Docker
/// configuration.
const CONFIG_HINT: &str = "write it as docker writes config.json: {\"auths\": {\"REGISTRY\": {\"auth\": \"BASE64(user:password)\"}}}";

/// What a credential helper prints on stdout, exiting 1, when it has no
/// credentials for the registry (docker-credential-helpers'
/// `credentials.errCredentialsNotFound`); docker then goes on anonymously.
const HELPER_NOT_FOUND: &str = "credentials not found in native keychain";

/// Registry credentials from a Docker configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The registry they were looked up for: its host\[:port\]
    /// (`127.0.0.1:5001`), or [`DOCKER_HUB_SERVER`] for Docker Hub; what
    /// docker sends as the `serveraddress` (not the configuration's key,
    /// which may be a URL).
    pub server: String,
    /// The user name; with an identity token, the one stored beside it, if
    /// any.
    pub username: Option<String>,
    /// The password of a username/password entry; `None` with a token.
    pub password: Option<String>,
    /// The identity (OAuth2 refresh) token, as `docker login` stores it for
    /// registries such as ACR; `None` with a username/password.
    pub identity_token: Option<String>,
    /// Where they came from, for messages: `DOCKER_AUTH_CONFIG`, the
    /// configuration file's path, or `docker-credential-NAME (credsStore in
    /// …)`.
    pub origin: String,
}

impl Credentials {
    fn found(
        server: &str,
        origin: &str,
        username: Option<String>,
        password: Option<String>,
        identity_token: Option<String>,
    ) -> Credentials {
        Credentials {
            server: server.to_owned(),
            username,
            password,
            identity_token,
            origin: origin.to_owned(),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Credentials")
            .field("server", &self.server)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// The places credentials are read from, each already parsed, in the order
/// they are asked (see the module documentation). Cheap to clone; the
/// credential helpers they name run at each [`CredentialSources::lookup`].
#[derive(Clone, Default)]
pub struct CredentialSources {
    sources: Vec<Source>,
}

/// Shows where the sources are, never what they hold.
impl std::fmt::Debug for CredentialSources {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_list()
            .entries(self.sources.iter().map(|source| &source.origin))
            .finish()
    }
}

#[derive(Clone)]
struct Source {
    /// `DOCKER_AUTH_CONFIG` or the file's path.
    origin: String,
    config: ConfigFile,
}

/// The credential part of a Docker `config.json` (docker's
/// `configfile.ConfigFile`); other keys are ignored.
#[derive(Clone, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: Option<BTreeMap<String, AuthEntry>>,
    #[serde(rename = "credsStore", default)]
    creds_store: Option<String>,
    #[serde(rename = "credHelpers", default)]
    cred_helpers: Option<BTreeMap<String, String>>,
}

/// One `auths` entry (docker's `types.AuthConfig` as stored).
#[derive(Clone, Default, Deserialize)]
struct AuthEntry {
    /// base64 of `username:password`.
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// What a credential helper prints for `get` (docker-credential-helpers'
/// `credentials.Credentials`).
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

impl CredentialSources {
    /// Reads the sources: `auth_config`, the value of `DOCKER_AUTH_CONFIG`
    /// when set, then the file `config_json` when it exists.
    ///
    /// Errors ([`RegistryError::CredentialsConfig`]): `DOCKER_AUTH_CONFIG`
    /// or the file is not JSON or not shaped as a Docker configuration,
    /// or the file cannot be read. The message gives the line and column,
    /// never the text, which may hold secrets.
    pub fn load(
        auth_config: Option<&str>,
        config_json: &Path,
    ) -> Result<CredentialSources, RegistryError> {
        let mut sources = Vec::new();
        if let Some(text) = auth_config {
            sources.push(Source::parse("DOCKER_AUTH_CONFIG", text.as_bytes())?);
        }
        let origin = config_json.display().to_string();
        match std::fs::read(config_json) {
            Ok(bytes) => sources.push(Source::parse(&origin, &bytes)?),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(RegistryError::CredentialsConfig {
                    origin,
                    message: format!("cannot be read: {error}"),
                    hint: "make the file readable by the user mab runs as, or point DOCKER_CONFIG at a directory whose config.json is",
                })
            }
        }
        Ok(CredentialSources { sources })
    }

    /// The credentials for `registry` (a host\[:port\] as
    /// [`crate::registry_of`] gives it; Docker Hub's names are looked up as
    /// [`DOCKER_HUB_SERVER`]), or `None` when no source has any: the
    /// registry is then used anonymously, as docker does. May run a
    /// credential helper (`docker-credential-NAME get`, the server on
    /// stdin): call it off the async threads.
    ///
    /// Errors: [`RegistryError::Credentials`] when the helper is not on
    /// `PATH` or prints something that is not its JSON answer, or an
    /// `auth` value is not base64 of `user:password`;
    /// [`RegistryError::CredentialHelper`] when the helper fails or does
    /// not answer within [`HELPER_TIMEOUT`] (it is killed).
    pub fn lookup(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        // The names BuildKit and image references give Docker Hub, looked
        // up as docker does (`registry.IndexServer`).
        let server = match registry {
            "index.docker.io" | "docker.io" | "registry-1.docker.io" => DOCKER_HUB_SERVER,
            _ => registry,
        };
        for source in &self.sources {
            if let Some(credentials) = source.lookup(server)? {
                return Ok(Some(credentials));
            }
        }
        Ok(None)
    }
}

impl Source {
    fn parse(origin: &str, bytes: &[u8]) -> Result<Source, RegistryError> {
        let config = serde_json::from_slice::<ConfigFile>(bytes).map_err(|error| {
            let what = match error.classify() {
                serde_json::error::Category::Data => {
                    "is not a Docker configuration (a value of the wrong type"
                }
                _ => "is not JSON (an error",
            };
            RegistryError::CredentialsConfig {
                origin: origin.to_owned(),
                message: format!(
                    "{what} at line {}, column {})",
                    error.line(),
                    error.column()
                ),
                hint: CONFIG_HINT,
            }
        })?;
        Ok(Source {
            origin: origin.to_owned(),
            config,
        })
    }

    fn lookup(&self, server: &str) -> Result<Option<Credentials>, RegistryError> {
        let helper = (self.config.cred_helpers.as_ref())
            .and_then(|helpers| helpers.get(server))
            .map(|name| (name, "credHelpers"))
            .or(self
                .config
                .creds_store
                .as_ref()
                .map(|name| (name, "credsStore")))
            .filter(|(name, _)| !name.is_empty());
        if let Some((name, key)) = helper {
            let origin = format!("docker-credential-{name} ({key} in {})", self.origin);
            return run_helper(
                &format!("docker-credential-{name}"),
                server,
                &origin,
                HELPER_TIMEOUT,
            );
        }
        let Some(stored) = entry(self.config.auths.as_ref(), server) else {
            return Ok(None);
        };
        let non_empty = |value: &Option<String>| value.clone().filter(|value| !value.is_empty());
        let credentials = |username, password, identity_token| {
            Credentials::found(server, &self.origin, username, password, identity_token)
        };
        let decoded = match non_empty(&stored.auth) {
            Some(auth) => Some(decode_auth(&auth).ok_or_else(|| RegistryError::Credentials {
                registry: server.to_owned(),
                message: format!(
                    "the `auth` of its entry in {} is not base64 (padded) of user:password with a user name",
                    self.origin
                ),
                hint: "write `auth` as base64 of user:password, or log in again with `docker login`",
            })?),
            None => None,
        };
        if let Some(token) = non_empty(&stored.identitytoken) {
            let username = decoded
                .map(|(username, _)| username)
                .or(non_empty(&stored.username));
            return Ok(Some(credentials(username, None, Some(token))));
        }
        let pair = decoded.or(non_empty(&stored.username).zip(non_empty(&stored.password)));
        Ok(pair.map(|(username, password)| credentials(Some(username), Some(password), None)))
    }
}

/// The `auths` entry for `server`: its own key, else the first key whose
/// host is `server`, as docker's file store (`credentials/file_store.go`:
/// `serverAddress == ConvertToHostname(key)`). Docker Hub's
/// [`DOCKER_HUB_SERVER`] is not a host, so it matches only its own key.
fn entry<'a, T>(map: Option<&'a BTreeMap<String, T>>, server: &str) -> Option<&'a T> {
    let map = map?;
    map.get(server).or_else(|| {
        map.iter()
            .find(|(key, _)| convert_to_hostname(key) == server)
            .map(|(_, value)| value)
    })
}

/// A registry key as a host\[:port\], as docker's `ConvertToHostname`:
/// the scheme (`https://`, `http://`) and any path dropped.
fn convert_to_hostname(key: &str) -> &str {
    let host = key.split_once("://").map_or(key, |(_, rest)| rest);
    host.split('/').next().unwrap_or(host)
}

/// `user:password` from an `auth` value, as docker's `decodeAuth`: base64
/// with the standard alphabet and its padding, a non-empty user name, NUL
/// bytes trimmed from the password's ends; `None` when it is not that.
fn decode_auth(auth: &str) -> Option<(String, String)> {
    let decoded = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(auth)
            .ok()?,
    )
    .ok()?;
    let (username, password) = decoded.split_once(':')?;
    if username.is_empty() {
        return None;
    }
    Some((username.to_owned(), password.trim_matches('\0').to_owned()))
}

/// Whether a failed helper's output may be shown: not when it parses as
/// JSON or names a `Secret` (an answer printed before failing), which may
/// hold the secret.
fn quotable(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_err()
        && !text.to_ascii_lowercase().contains("secret")
}

/// Runs `program get` (`docker-credential-NAME`, looked up on `PATH`) with
/// `server` on stdin, as docker's credential-helper client does: JSON
/// `{"Username","Secret"}` on stdout, a `<token>` user name meaning an
/// identity token; exit 1 printing [`HELPER_NOT_FOUND`] means no
/// credentials. A helper still running after `timeout` is killed.
fn run_helper(
    program: &str,
    server: &str,
    origin: &str,
    timeout: Duration,
) -> Result<Option<Credentials>, RegistryError> {
    let failed = |message: String| {
        RegistryError::Credentials {
        registry: server.to_owned(),
        message: format!("the credential helper {origin} {message}"),
        hint: "check that the helper is installed and logged in (`docker login` with it), or remove it from the Docker configuration",
    }
    };
    let gave_up = |message: String, hint: String| RegistryError::CredentialHelper {
        registry: server.to_owned(),
        message: format!("the credential helper {origin} {message}"),
        hint,
    };
    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => {
                failed(format!("is not on PATH (no `{program}` found)"))
            }
            _ => failed(format!("could not be started: {error}")),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is judged by its answer.
        let _ = stdin.write_all(server.as_bytes());
    }
    // Read on threads, so that a helper filling a pipe is not stuck, and
    // the wait can give up.
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = read(child.stdout.take().map(|pipe| Box::new(pipe) as _));
    let stderr = read(child.stderr.take().map(|pipe| Box::new(pipe) as _));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(gave_up(
                    format!(
                        "gave no answer within {} s and was stopped",
                        timeout.as_secs_f32()
                    ),
                    format!(
                        "check that `echo {server} | {program} get` answers at once (a keychain waiting to be unlocked, a secret service that is not running), then build again"
                    ),
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(error) => return Err(failed(format!("could not be waited for: {error}"))),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let output = std::process::Output {
        status,
        stdout,
        stderr,
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        if stdout.trim() == HELPER_NOT_FOUND {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Helpers print their errors on stdout (docker-credential-helpers'
        // `credentials.Get`), some on stderr; a line is quoted only when it
        // cannot be an answer holding the secret.
        let said = [stdout.trim(), stderr.trim()]
            .into_iter()
            .find(|text| !text.is_empty() && quotable(text))
            .and_then(|text| text.lines().next())
            .map(|line| format!(": {}", line.chars().take(200).collect::<String>()))
            .unwrap_or_default();
        return Err(gave_up(
            format!("failed ({}){said}", output.status),
            format!(
                "check that `echo {server} | {program} get` answers (the helper installed, logged in with `docker login`, its keychain unlocked), or remove it from the Docker configuration"
            ),
        ));
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout).map_err(|_| {
        failed("did not print its JSON answer ({\"Username\": …, \"Secret\": …})".to_owned())
    })?;
    let (username, password, identity_token) = if answer.username == "<token>" {
        (None, None, Some(answer.secret))
    } else {
        (Some(answer.username), Some(answer.secret), None)
    };
    Ok(Some(Credentials::found(
        server,
        origin,
        username,
        password,
        identity_token,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(auth_config: Option<&str>, file: Option<&str>) -> CredentialSources {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("config.json");
        if let Some(file) = file {
            std::fs::write(&path, file).unwrap();
        }
        CredentialSources::load(auth_config, &path).unwrap()
    }

    fn pair(credentials: Option<Credentials>) -> (Option<String>, Option<String>, Option<String>) {
        let credentials = credentials.expect("credentials");
        (
            credentials.username,
            credentials.password,
            credentials.identity_token,
        )
    }

    fn some(username: &str, password: &str) -> (Option<String>, Option<String>, Option<String>) {
        (Some(username.into()), Some(password.into()), None)
    }

    #[test]
    fn reads_each_auths_form() {
        // base64("mab:mab-secret"), base64("mab:mab-secret\0\0")
        let file = r#"{"auths":{
            "127.0.0.1:5001":{"auth":"bWFiOm1hYi1zZWNyZXQ="},
            "127.0.0.1:5002":{"username":"u","password":"p"},
            "https://127.0.0.1:5003/v2/":{"auth":"bWFiOm1hYi1zZWNyZXQAAA=="},
            "127.0.0.1:5004":{"auth":"","identitytoken":"refresh"},
            "https://index.docker.io/v1/":{"auth":"aHViOmh1Yg=="},
            "127.0.0.1:5005":{}
        }}"#;
        let sources = sources(None, Some(file));
        let found = |registry| sources.lookup(registry).unwrap();
        assert_eq!(pair(found("127.0.0.1:5001")), some("mab", "mab-secret"));
        assert_eq!(pair(found("127.0.0.1:5002")), some("u", "p"));
        assert_eq!(pair(found("127.0.0.1:5003")), some("mab", "mab-secret"));
        assert_eq!(
            pair(found("127.0.0.1:5004")),
            (None, None, Some("refresh".into()))
        );
        for hub in ["index.docker.io", "docker.io", "registry-1.docker.io"] {
            let credentials = found(hub).unwrap();
            assert_eq!(credentials.server, DOCKER_HUB_SERVER);
            assert_eq!(credentials.password.as_deref(), Some("hub"));
        }
        assert!(found("127.0.0.1:5005").is_none());
        // Docker Hub's other names are not keys docker reads.
        let aliases = super::tests::sources(
            None,
            Some(
                r#"{"auths":{"docker.io":{"auth":"aHViOmh1Yg=="},"https://registry-1.docker.io/v2/":{"auth":"aHViOmh1Yg=="}}}"#,
            ),
        );
        assert!(aliases.lookup("docker.io").unwrap().is_none());
        assert!(found("127.0.0.1:5000").is_none());
        assert!(!format!("{:?}", found("127.0.0.1:5001")).contains("mab-secret"));
    }

    #[test]
    fn docker_auth_config_comes_first_and_falls_through() {
        let variable = r#"{"auths":{"127.0.0.1:5001":{"username":"ci","password":"from-ci"}}}"#;
        let file = r#"{"auths":{"127.0.0.1:5001":{"username":"me","password":"mine"},
                                 "127.0.0.1:5002":{"username":"me","password":"mine"}}}"#;
        let sources = sources(Some(variable), Some(file));
        let first = sources.lookup("127.0.0.1:5001").unwrap().unwrap();
        assert_eq!(first.password.as_deref(), Some("from-ci"));
        assert_eq!(first.origin, "DOCKER_AUTH_CONFIG");
        let second = sources.lookup("127.0.0.1:5002").unwrap().unwrap();
        assert_eq!(second.password.as_deref(), Some("mine"));
        assert!(second.origin.ends_with("config.json"));
    }

    #[test]
    fn unreadable_configurations_never_echo_their_text() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("config.json");
        for text in ["not json s3cret", r#"{"auths":"s3cret"}"#] {
            let error = CredentialSources::load(Some(text), &path)
                .expect_err(text)
                .to_string();
            assert!(error.contains("DOCKER_AUTH_CONFIG"), "{error}");
            assert!(!error.contains("s3cret"), "{error}");
        }
        let sources = sources(None, Some(r#"{"auths":{"r":{"auth":"!!s3cret"}}}"#));
        let error = sources.lookup("r").unwrap_err().to_string();
        assert!(
            error.contains("not base64") && !error.contains("s3cret"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_helper_is_named() {
        let file = r#"{"auths":{"r":{"auth":"bWFiOm1hYi1zZWNyZXQ="}},
                       "credHelpers":{"r":"mab-no-such-helper"}}"#;
        let error = sources(None, Some(file))
            .lookup("r")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("docker-credential-mab-no-such-helper (credHelpers in")
                && error.contains("is not on PATH")
                && error.contains("for r"),
            "{error}"
        );
    }

    /// `run_helper` with a helper script whose body is `script`.
    fn helper(script: &str) -> Result<Option<Credentials>, RegistryError> {
        let directory = tempfile::tempdir().unwrap();
        let program = directory.path().join("docker-credential-test");
        std::fs::write(&program, format!("#!/bin/sh\nread -r server\n{script}\n")).unwrap();
        std::fs::set_permissions(
            &program,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        run_helper(
            program.to_str().unwrap(),
            "r",
            "docker-credential-test",
            Duration::from_millis(500),
        )
    }

    /// The helper protocol's answers: credentials, an identity token
    /// (`<token>`), none (`credentials not found`), and failures, whose
    /// plain error text is quoted but never an answer holding a secret.
    #[test]
    fn helpers_answer_as_docker_credential_helpers() {
        let found = helper(r#"echo '{"ServerURL":"r","Username":"u","Secret":"p"}'"#);
        assert_eq!(pair(found.unwrap()), some("u", "p"));
        let token = helper(r#"echo '{"ServerURL":"r","Username":"<token>","Secret":"t"}'"#);
        assert_eq!(pair(token.unwrap()), (None, None, Some("t".into())));
        let none = helper("echo 'credentials not found in native keychain'; exit 1");
        assert!(none.unwrap().is_none());
        let locked = helper("echo 'the keychain is locked'; exit 1")
            .unwrap_err()
            .to_string();
        assert!(
            locked.ends_with("failed (exit status: 1): the keychain is locked"),
            "{locked}"
        );
        for leaking in [
            r#"echo '{"Username":"u","Secret":"s3cret"}'; exit 1"#,
            r#"echo 'Secret: s3cret'; exit 1"#,
            r#"echo '{"Username":"u","Secret":"s3cret"}' >&2; exit 1"#,
        ] {
            let error = helper(leaking).unwrap_err().to_string();
            assert!(
                error.ends_with("failed (exit status: 1)") && !error.contains("s3cret"),
                "{error}"
            );
        }
        let started = Instant::now();
        let hung = helper("sleep 20").unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{hung}");
        assert!(
            matches!(&hung, RegistryError::CredentialHelper { hint, .. } if hint.contains("docker-credential-test get"))
                && hung
                    .to_string()
                    .ends_with("gave no answer within 0.5 s and was stopped"),
            "{hung}"
        );
    }

    /// `auth` as docker's `decodeAuth` reads it: padding required, a user
    /// name required.
    #[test]
    fn auth_values_are_decoded_as_docker_does() {
        // base64("mab:mab-secret") unpadded, base64(":secret")
        for auth in ["bWFiOm1hYi1zZWNyZXQ", "OnNlY3JldA=="] {
            let file = format!(r#"{{"auths":{{"r":{{"auth":"{auth}"}}}}}}"#);
            let error = sources(None, Some(&file)).lookup("r").unwrap_err();
            assert!(
                error.to_string().contains("is not base64"),
                "{auth}: {error}"
            );
        }
    }

    /// Which helper is asked: the registry's `credHelpers` entry (its exact
    /// key only) before `credsStore`; none for a key that is only the same
    /// host, where the `auths` entry is used.
    #[test]
    fn cred_helpers_match_their_exact_key_and_win_over_creds_store() {
        let file = r#"{"credHelpers":{"r":"mab-helper-a"},"credsStore":"mab-store-b"}"#;
        let error = sources(None, Some(file))
            .lookup("r")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("docker-credential-mab-helper-a (credHelpers in"),
            "{error}"
        );
        let error = sources(None, Some(file))
            .lookup("s")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("docker-credential-mab-store-b (credsStore in"),
            "{error}"
        );
        let by_url = r#"{"credHelpers":{"https://r/v2/":"mab-helper-a"},
                         "auths":{"https://r/v2/":{"username":"u","password":"p"}}}"#;
        assert_eq!(
            pair(sources(None, Some(by_url)).lookup("r").unwrap()),
            some("u", "p")
        );
    }
}
