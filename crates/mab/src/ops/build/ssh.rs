//! `--ssh`: the SSH agents a build forwards to `RUN --mount=type=ssh`
//! steps, checked and started before anything is contacted.

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;

use mab_config::secret::{parse_ssh_flag, SSH_FLAG_HINT};
use mab_engine::{SshAgent, SshAgents};
use mab_ssh::agent::{load_key_file, KeyAgent};

use super::secrets::resolve;
use crate::environment::Environment;
use crate::failure::Failure;

/// Reads each `--ssh` as buildx does (`ID` or `ID=PATH[,PATH...]`, see
/// [`parse_ssh_flag`]): without paths, the agent of `SSH_AUTH_SOCK`; with
/// one path that is a Unix socket, that agent; else the key files, served
/// by an agent of mab's own inside the process ([`KeyAgent`], no socket),
/// which stops when the last clone of the returned agents is dropped. A relative path is relative to
/// the current directory, `~/` is the home. Errors (exit 2, naming the
/// flag): a bad flag, an id given twice, `SSH_AUTH_SOCK` unset or not a
/// socket, an agent's socket where nothing answers, a socket among key files (BuildKit's "invalid combination of
/// keys and sockets"), a key file that is missing, unreadable, encrypted or
/// not a key.
pub(super) async fn start_agents(
    flags: &[String],
    environment: &Environment,
) -> Result<SshAgents, Failure> {
    let mut agents = BTreeMap::new();
    for flag in flags {
        let bad = |message: String, hint: &str| {
            Failure::usage(format!("--ssh `{flag}`: {message}"), Some(hint))
        };
        let spec = parse_ssh_flag(flag).map_err(|message| bad(message, SSH_FLAG_HINT))?;
        if agents.contains_key(&spec.id) {
            return Err(bad(
                format!("the id `{}` is given twice", spec.id),
                "give each agent one --ssh; ids name the agents RUN --mount=type=ssh,id=ID uses",
            ));
        }
        let paths: Vec<PathBuf> = spec
            .paths
            .iter()
            .map(|path| resolve(path, &environment.current_dir, &environment.home))
            .collect();
        let agent = match paths.as_slice() {
            [] => {
                let Some(socket) = environment
                    .variable("SSH_AUTH_SOCK")
                    .filter(|value| !value.is_empty())
                else {
                    return Err(bad(
                        "SSH_AUTH_SOCK is not set: there is no agent to forward".to_owned(),
                        "start ssh-agent and add your key (ssh-add), or name key files: --ssh ID=KEYFILE",
                    ));
                };
                let socket = PathBuf::from(socket);
                if !is_socket(&socket) {
                    return Err(bad(
                        format!(
                            "SSH_AUTH_SOCK names {}, which is not a socket",
                            socket.display()
                        ),
                        "start ssh-agent and set SSH_AUTH_SOCK to its socket, or name key files: --ssh ID=KEYFILE",
                    ));
                }
                answering(&socket).map_err(|reason| {
                    bad(
                        format!("nothing answers at SSH_AUTH_SOCK {}: {reason}", socket.display()),
                        "start ssh-agent again and set SSH_AUTH_SOCK to its socket (eval $(ssh-agent)), or name key files: --ssh ID=KEYFILE",
                    )
                })?;
                SshAgent::Socket(socket)
            }
            [socket] if is_socket(socket) => {
                answering(socket).map_err(|reason| {
                    bad(
                        format!(
                            "nothing answers at the socket {}: {reason}",
                            socket.display()
                        ),
                        "start the agent of that socket again, or name key files: --ssh ID=KEYFILE",
                    )
                })?;
                SshAgent::Socket(socket.clone())
            }
            keys => {
                if let Some(socket) = keys.iter().find(|path| is_socket(path)) {
                    return Err(bad(
                        format!(
                            "{} is an agent's socket, given with key files: one --ssh is either one agent or key files",
                            socket.display()
                        ),
                        "give the socket and the key files each their own --ssh ID=..., as BuildKit refuses a combination of keys and sockets",
                    ));
                }
                let mut loaded = Vec::new();
                for path in keys {
                    let key = load_key_file(path)
                        .map_err(|error| bad(error.to_string(), error.hint()))?;
                    loaded.push(key);
                }
                let agent = KeyAgent::start(loaded).await.map_err(|error| {
                    bad(
                        format!("cannot start an SSH agent for its keys: {error}"),
                        "check that each key is of a type OpenSSH supports",
                    )
                })?;
                let agent = std::sync::Arc::new(agent);
                SshAgent::InProcess(std::sync::Arc::new(move || agent.connect()))
            }
        };
        agents.insert(spec.id, agent);
    }
    Ok(SshAgents::new(agents))
}

/// Whether something accepts a connection on the Unix socket at `path`
/// (an agent left behind by an ended session leaves its socket file); the
/// connection is closed at once. Errors: the connection's, in words.
fn answering(path: &std::path::Path) -> Result<(), String> {
    std::os::unix::net::UnixStream::connect(path)
        .map(drop)
        .map_err(|error| mab_config::io_message(&error))
}

fn is_socket(path: &std::path::Path) -> bool {
    std::fs::metadata(path).is_ok_and(|metadata| metadata.file_type().is_socket())
}
