//! Public key authentication: ssh-agent, then `IdentityFile`s, then the default keys.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::{self, AuthResult};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey};
use tracing::debug;

use crate::destination::Destination;
use crate::error::{HostRef, SshError};
use crate::known_hosts::shown_path;

/// The keys OpenSSH tries when the config names none, in its order.
const DEFAULT_KEYS: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// What was offered so far, for the error message when nothing worked.
#[derive(Default)]
struct Attempts {
    tried: Vec<String>,
    skipped: Vec<String>,
    offered: Vec<KeyData>,
    /// The best RSA signature hash the server accepts, once asked.
    rsa_hash: Option<Option<HashAlg>>,
}

impl Attempts {
    async fn rsa_hash<H: client::Handler>(
        &mut self,
        handle: &client::Handle<H>,
        key: &PublicKey,
    ) -> Option<HashAlg> {
        if !key.algorithm().is_rsa() {
            return None;
        }
        if let Some(hash) = self.rsa_hash {
            return hash;
        }
        let hash = match handle.best_supported_rsa_hash().await {
            Ok(Some(hash)) => hash,
            // The server did not say; SHA-256 is what current servers accept.
            Ok(None) => Some(HashAlg::Sha256),
            Err(error) => {
                debug!("could not learn the server's RSA signature algorithms: {error}");
                Some(HashAlg::Sha256)
            }
        };
        self.rsa_hash = Some(hash);
        hash
    }
}

/// The files to try after the agent: `IdentityFile`s, then the default keys
/// (unless `IdentitiesOnly` restricts the list to the configured files).
fn key_files(dest: &Destination, home: &Path) -> Vec<PathBuf> {
    let mut files = dest.identity_files.clone();
    if !dest.identities_only || dest.identity_files.is_empty() {
        for name in DEFAULT_KEYS {
            let path = home.join(".ssh").join(name);
            if !files.contains(&path) {
                files.push(path);
            }
        }
    }
    files
}

/// The public key in `FILE.pub` next to the private key `FILE`.
fn public_key_beside(path: &Path) -> Option<PublicKey> {
    let mut public = path.as_os_str().to_owned();
    public.push(".pub");
    russh::keys::load_public_key(&public).ok()
}

/// The public halves of the configured `IdentityFile`s, from `FILE.pub` or
/// from an unencrypted private key.
fn configured_public_keys(dest: &Destination) -> Vec<KeyData> {
    dest.identity_files
        .iter()
        .filter_map(|path| {
            public_key_beside(path)
                .or_else(|| {
                    russh::keys::load_secret_key(path, None)
                        .ok()
                        .map(|key| key.public_key().clone())
                })
                .map(|key| key.key_data().clone())
        })
        .collect()
}

/// Authenticates `handle` as `dest.user`, trying every available key in order;
/// `host` is how errors name the host.
pub(crate) async fn authenticate<H: client::Handler>(
    handle: &mut client::Handle<H>,
    dest: &Destination,
    host: &HostRef,
    home: &Path,
) -> Result<(), SshError> {
    let mut attempts = Attempts::default();
    if try_agent(handle, dest, &mut attempts).await?
        || try_files(handle, dest, home, &mut attempts).await?
    {
        return Ok(());
    }
    let host = Box::new(host.clone());
    let user = dest.user.clone();
    Err(if attempts.tried.is_empty() {
        SshError::NoKeys {
            host,
            user,
            skipped: attempts.skipped,
        }
    } else {
        SshError::Auth {
            host,
            user,
            tried: attempts.tried,
            skipped: attempts.skipped,
        }
    })
}

/// Whether the connection is gone (the server stops after `MaxAuthTries`).
fn closed<H: client::Handler>(handle: &client::Handle<H>, attempts: &mut Attempts) -> bool {
    if handle.is_closed() {
        attempts
            .skipped
            .push("the rest (the host closed the connection after too many attempts)".to_string());
        return true;
    }
    false
}

async fn try_agent<H: client::Handler>(
    handle: &mut client::Handle<H>,
    dest: &Destination,
    attempts: &mut Attempts,
) -> Result<bool, SshError> {
    let Some(socket) = std::env::var_os("SSH_AUTH_SOCK").filter(|socket| !socket.is_empty()) else {
        return Ok(false);
    };
    let mut agent = match AgentClient::connect_uds(&socket).await {
        Ok(agent) => agent,
        Err(error) => {
            debug!("ssh-agent at {socket:?} is not reachable: {error}");
            return Ok(false);
        }
    };
    let identities = match agent.request_identities().await {
        Ok(identities) => identities,
        Err(error) => {
            debug!("ssh-agent did not list its keys: {error}");
            return Ok(false);
        }
    };
    let allowed = dest.identities_only.then(|| configured_public_keys(dest));
    let mut offered = 0;
    for identity in identities {
        let AgentIdentity::PublicKey { key, comment } = identity else {
            debug!("skipping a certificate held by ssh-agent");
            continue;
        };
        if allowed
            .as_ref()
            .is_some_and(|allowed| !allowed.contains(key.key_data()))
        {
            debug!("IdentitiesOnly: skipping agent key {comment}");
            continue;
        }
        if closed(handle, attempts) {
            break;
        }
        offered += 1;
        attempts.offered.push(key.key_data().clone());
        let hash = attempts.rsa_hash(handle, &key).await;
        match handle
            .authenticate_publickey_with(&dest.user, key, hash, &mut agent)
            .await
        {
            Ok(AuthResult::Success) => return Ok(true),
            Ok(_) => debug!("the host refused agent key {comment}"),
            Err(error) => debug!("agent key {comment} could not be used: {error}"),
        }
    }
    if offered > 0 {
        let plural = if offered == 1 { "" } else { "s" };
        attempts
            .tried
            .push(format!("ssh-agent ({offered} key{plural})"));
    }
    Ok(false)
}

async fn try_files<H: client::Handler>(
    handle: &mut client::Handle<H>,
    dest: &Destination,
    home: &Path,
    attempts: &mut Attempts,
) -> Result<bool, SshError> {
    for path in key_files(dest, home) {
        let shown = shown_path(&path, home);
        let configured = dest.identity_files.contains(&path);
        if let Some(public) = public_key_beside(&path) {
            if attempts.offered.contains(public.key_data()) {
                debug!("{shown} was already offered through ssh-agent");
                continue;
            }
        }
        let key = match russh::keys::load_secret_key(&path, None) {
            Ok(key) => key,
            Err(russh::keys::Error::IO(error)) if error.kind() == std::io::ErrorKind::NotFound => {
                if configured {
                    attempts.skipped.push(format!("{shown} (no such file)"));
                }
                continue;
            }
            Err(russh::keys::Error::KeyIsEncrypted) => {
                debug!("{shown} is encrypted and no passphrase can be asked for; skipping it");
                attempts
                    .skipped
                    .push(format!("{shown} (encrypted; add it to ssh-agent)"));
                continue;
            }
            Err(error) => {
                debug!("cannot load {shown}: {error}");
                attempts
                    .skipped
                    .push(format!("{shown} (unreadable: {error})"));
                continue;
            }
        };
        let public = key.public_key().clone();
        if attempts.offered.contains(public.key_data()) {
            debug!("{shown} was already offered through ssh-agent");
            continue;
        }
        if closed(handle, attempts) {
            break;
        }
        attempts.offered.push(public.key_data().clone());
        let hash = attempts.rsa_hash(handle, &public).await;
        attempts.tried.push(shown.clone());
        match handle
            .authenticate_publickey(&dest.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
        {
            Ok(AuthResult::Success) => return Ok(true),
            Ok(_) => debug!("the host refused {shown}"),
            Err(error) => debug!("offering {shown} failed: {error}"),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_order() {
        let home = Path::new("/h");
        let base = Destination {
            alias: "a".into(),
            host_name: "a".into(),
            port: 22,
            user: "u".into(),
            identity_files: vec![],
            identities_only: false,
            known_hosts_files: vec![],
            connect_timeout: None,
            strict_host_key_checking: Default::default(),
            server_alive: Default::default(),
            jumps: vec![],
        };
        let defaults: Vec<PathBuf> = DEFAULT_KEYS
            .iter()
            .map(|name| home.join(".ssh").join(name))
            .collect();
        let lab = PathBuf::from("/keys/lab");
        let cases = [
            (vec![], false, defaults.clone()),
            // IdentitiesOnly without any IdentityFile still means the defaults.
            (vec![], true, defaults.clone()),
            (
                vec![lab.clone()],
                false,
                [vec![lab.clone()], defaults.clone()].concat(),
            ),
            (vec![lab.clone()], true, vec![lab.clone()]),
            // A default key named explicitly is tried once, first.
            (
                vec![defaults[2].clone()],
                false,
                vec![
                    defaults[2].clone(),
                    defaults[0].clone(),
                    defaults[1].clone(),
                ],
            ),
        ];
        for (identity_files, identities_only, expected) in cases {
            let dest = Destination {
                identity_files: identity_files.clone(),
                identities_only,
                ..base.clone()
            };
            assert_eq!(
                key_files(&dest, home),
                expected,
                "{identity_files:?} {identities_only}"
            );
        }
    }
}
