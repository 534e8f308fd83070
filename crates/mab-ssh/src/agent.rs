//! An SSH agent of mab's own, for `mab build --ssh ID=KEYFILE[,KEYFILE...]`:
//! it holds the given private keys in memory and answers over in-memory
//! pipes inside this process, never on a socket another user or process
//! could reach, as BuildKit's agent provider serves key files.

use std::io;
use std::path::{Path, PathBuf};

use russh::keys::agent::client::AgentClient;
use russh::keys::PrivateKey;

/// Why a key file cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file cannot be opened or read (missing, permissions).
    #[error("the key file {} cannot be read: {}", .path.display(), mab_config::io_message(.error))]
    Unreadable {
        /// The key file, as resolved.
        path: PathBuf,
        /// Why it cannot be read.
        error: io::Error,
    },
    /// The key has a passphrase: mab asks for none (no terminal prompts).
    #[error("the key file {} is encrypted, and mab cannot ask for its passphrase", .path.display())]
    Encrypted {
        /// The key file, as resolved.
        path: PathBuf,
    },
    /// The file is neither an OpenSSH nor a PEM private key.
    #[error("the file {} is not an SSH private key: {message}", .path.display())]
    NotAKey {
        /// The file, as resolved.
        path: PathBuf,
        /// What the key parser found wrong.
        message: String,
    },
}

impl KeyFileError {
    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            KeyFileError::Unreadable { .. } => "name an existing private key file, such as ~/.ssh/id_ed25519",
            KeyFileError::Encrypted { .. } => {
                "add the key to ssh-agent (ssh-add KEYFILE) and use --ssh default, or name an unencrypted key"
            }
            KeyFileError::NotAKey { .. } => "name a private key in OpenSSH or PEM format",
        }
    }
}

/// Loads an unencrypted private key file (OpenSSH or PEM format).
pub fn load_key_file(path: &Path) -> Result<PrivateKey, KeyFileError> {
    match russh::keys::load_secret_key(path, None) {
        Ok(key) => Ok(key),
        Err(russh::keys::Error::IO(error)) => Err(KeyFileError::Unreadable {
            path: path.to_owned(),
            error,
        }),
        Err(russh::keys::Error::KeyIsEncrypted) => Err(KeyFileError::Encrypted {
            path: path.to_owned(),
        }),
        Err(error) => Err(KeyFileError::NotAKey {
            path: path.to_owned(),
            message: error.to_string(),
        }),
    }
}

/// The buffer of each in-memory connection to a [`KeyAgent`]: 64 KiB; a
/// longer message waits for the other side to read.
const PIPE_BUFFER: usize = 64 * 1024;

/// A running agent holding some keys, served inside this process without
/// any socket (as BuildKit's agent provider serves key files over an
/// in-memory pipe): each [`KeyAgent::connect`] is one connection. It stops
/// when dropped: no new connection is taken, and one still open ends when
/// its end from [`KeyAgent::connect`] is dropped.
pub struct KeyAgent {
    connections: tokio::sync::mpsc::UnboundedSender<tokio::io::DuplexStream>,
    task: tokio::task::JoinHandle<()>,
}

impl KeyAgent {
    /// Starts an agent holding `keys` (loaded with [`load_key_file`]).
    /// Errors: the agent does not take a key.
    pub async fn start(keys: Vec<PrivateKey>) -> io::Result<KeyAgent> {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let connections = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let stream = receiver.recv().await?;
            Some((Ok(stream), receiver))
        });
        let task = tokio::spawn(async move {
            let _ = russh::keys::agent::server::serve(Box::pin(connections), ()).await;
        });
        let agent = KeyAgent {
            connections: sender,
            task,
        };
        let mut client = AgentClient::connect(agent.connect()?);
        for key in keys {
            client
                .add_identity(&key, &[])
                .await
                .map_err(io::Error::other)?;
        }
        Ok(agent)
    }

    /// A new connection to the agent: one end of an in-memory pipe that
    /// speaks the SSH agent protocol (draft-miller-ssh-agent). Errors: the
    /// agent has stopped.
    pub fn connect(&self) -> io::Result<tokio::io::DuplexStream> {
        let (ours, theirs) = tokio::io::duplex(PIPE_BUFFER);
        self.connections
            .send(theirs)
            .map_err(|_| io::Error::other("the SSH agent has stopped"))?;
        Ok(ours)
    }
}

impl Drop for KeyAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key made by ssh-keygen with `passphrase`, at `directory/name`.
    fn keygen(directory: &Path, name: &str, passphrase: &str) -> PathBuf {
        let path = directory.join(name);
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-C", name, "-N", passphrase, "-f"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        path
    }

    #[tokio::test]
    async fn serves_the_keys_it_was_given() {
        let directory = tempfile::tempdir().unwrap();
        let key = load_key_file(&keygen(directory.path(), "plain", "")).unwrap();
        let public = key.public_key().clone();
        let agent = KeyAgent::start(vec![key]).await.unwrap();
        let mut client = AgentClient::connect(agent.connect().unwrap());
        let identities = client.request_identities().await.unwrap();
        assert_eq!(identities.len(), 1);
        assert_eq!(identities[0].public_key().key_data(), public.key_data());

        let encrypted = load_key_file(&keygen(directory.path(), "locked", "pass")).unwrap_err();
        assert!(
            matches!(encrypted, KeyFileError::Encrypted { .. }),
            "{encrypted}"
        );
        let missing = load_key_file(&directory.path().join("none")).unwrap_err();
        assert!(
            matches!(missing, KeyFileError::Unreadable { .. }),
            "{missing}"
        );
        std::fs::write(directory.path().join("text"), "not a key").unwrap();
        let text = load_key_file(&directory.path().join("text")).unwrap_err();
        assert!(matches!(text, KeyFileError::NotAKey { .. }), "{text}");
    }
}
