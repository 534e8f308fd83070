//! SSH agents, forwarded to BuildKit through the build's session: the
//! `moby.sshforward.v1.SSH` service's `CheckAgent` and `ForwardAgent`,
//! which a `RUN --mount=type=ssh[,id=ID]` step calls, as with the docker
//! CLI and buildx.
//!
//! Each agent is a Unix socket on this machine (the user's `SSH_AUTH_SOCK`)
//! or an agent mab serves inside the process for key files, reached over
//! an in-memory pipe. A forwarded connection is read
//! one agent message at a time, and only requests to list identities and
//! to sign reach the agent; any other is answered with a failure, as
//! BuildKit's own provider makes the agent read-only.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bollard_buildkit_proto::moby::sshforward::v1::ssh_server::Ssh;
use bollard_buildkit_proto::moby::sshforward::v1::{
    BytesMessage, CheckAgentRequest, CheckAgentResponse,
};
use futures_util::{Stream, StreamExt};
use mab_config::secret::DEFAULT_SSH_ID;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tonic::{Request, Response, Status, Streaming};

/// The gRPC metadata key naming the agent of a `ForwardAgent` call
/// (`KeySSHID` in BuildKit's `session/sshforward`).
const ID_KEY: &str = "buildkit.ssh.id";

/// The largest agent message passed on: 256 KiB, as OpenSSH's agent.
const MAX_MESSAGE: usize = 256 * 1024;

/// `SSH_AGENT_FAILURE`, the answer to a refused request.
const AGENT_FAILURE: u8 = 5;

/// The only agent requests a build may send (draft-miller-ssh-agent):
/// `SSH_AGENTC_REQUEST_IDENTITIES` (11) and `SSH_AGENTC_SIGN_REQUEST` (13),
/// as BuildKit's `readOnlyAgent` allows only listing and signing. Every
/// other request, an empty one included, is answered with
/// `SSH_AGENT_FAILURE` without reaching the agent.
const ALLOWED: [u8; 2] = [11, 13];

/// Opens a new connection to an agent served inside this process: one end
/// of an in-memory pipe speaking the SSH agent protocol (mab's own agent
/// for key files). Errors: the agent has stopped.
pub type ConnectAgent = Arc<dyn Fn() -> io::Result<DuplexStream> + Send + Sync>;

/// Where one agent of a build answers.
#[derive(Clone)]
pub enum SshAgent {
    /// A Unix socket on this machine: the user's `SSH_AUTH_SOCK`, or the
    /// socket of `--ssh ID=SOCKET`.
    Socket(PathBuf),
    /// An agent inside this process, reached without any socket, as
    /// BuildKit's provider serves key files over an in-memory pipe.
    InProcess(ConnectAgent),
}

impl std::fmt::Debug for SshAgent {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SshAgent::Socket(path) => formatter.debug_tuple("Socket").field(path).finish(),
            SshAgent::InProcess(_) => formatter.write_str("InProcess"),
        }
    }
}

/// A connection to an agent, whichever kind.
trait AgentStream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> AgentStream for T {}

/// The agents of a build, by id (`default` for `--ssh default`); cheap to
/// clone.
#[derive(Clone, Debug, Default)]
pub struct SshAgents(Arc<BTreeMap<String, SshAgent>>);

impl SshAgents {
    /// The agents `RUN --mount=type=ssh,id=ID` steps may use, by id; a
    /// mount without `id=` uses [`DEFAULT_SSH_ID`].
    pub fn new(agents: BTreeMap<String, SshAgent>) -> SshAgents {
        SshAgents(Arc::new(agents))
    }

    /// Whether no agent was given (the build has no `--ssh`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn agent(&self, id: &str) -> Result<&SshAgent, Status> {
        let id = if id.is_empty() { DEFAULT_SSH_ID } else { id };
        self.0
            .get(id)
            .ok_or_else(|| Status::not_found(format!("no SSH agent with the id {id} was given")))
    }

    /// A new connection to the agent `id`. Errors: `NotFound` for an id
    /// not given, `Unavailable` when the agent cannot be reached.
    async fn connect(&self, id: &str) -> Result<Box<dyn AgentStream>, Status> {
        let unreachable = |error: io::Error| {
            Status::unavailable(format!("cannot reach the SSH agent {id}: {error}"))
        };
        match self.agent(id)? {
            SshAgent::Socket(socket) => {
                let stream = tokio::net::UnixStream::connect(socket)
                    .await
                    .map_err(|error| {
                        Status::unavailable(format!(
                            "cannot reach the SSH agent {id} at {}: {error}",
                            socket.display()
                        ))
                    })?;
                Ok(Box::new(stream))
            }
            SshAgent::InProcess(connect) => Ok(Box::new(connect().map_err(unreachable)?)),
        }
    }
}

/// The session's SSH service. Its forwarded connections are tasks it
/// owns: when the session ends and the service is dropped, they are
/// aborted, and their connections to the agents close.
#[derive(Clone, Debug)]
pub(crate) struct SshService {
    agents: SshAgents,
    relays: Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
}

impl SshService {
    /// The service of one session, forwarding `agents`.
    pub(crate) fn new(agents: SshAgents) -> SshService {
        SshService {
            agents,
            relays: Arc::default(),
        }
    }

    /// Runs [`relay`] as a task of this service (the finished ones reaped).
    fn spawn_relay(
        &self,
        id: String,
        incoming: impl Stream<Item = Result<BytesMessage, Status>> + Unpin + Send + 'static,
        agent: Box<dyn AgentStream>,
        sender: tokio::sync::mpsc::Sender<BytesMessage>,
    ) {
        let mut relays = self
            .relays
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while relays.try_join_next().is_some() {}
        relays.spawn(async move {
            if let Err(error) = relay(incoming, agent, &sender).await {
                tracing::debug!("SSH agent {id}: the forwarded connection ended: {error}");
            }
        });
    }
}

type Outgoing = Pin<Box<dyn Stream<Item = Result<BytesMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Ssh for SshService {
    /// Whether the agent the request names was given: `NotFound` otherwise.
    async fn check_agent(
        &self,
        request: Request<CheckAgentRequest>,
    ) -> Result<Response<CheckAgentResponse>, Status> {
        self.agents.agent(&request.into_inner().id)?;
        Ok(Response::new(CheckAgentResponse {}))
    }

    type ForwardAgentStream = Outgoing;

    /// One connection to the agent the metadata names, for as long as the
    /// engine keeps the stream open.
    async fn forward_agent(
        &self,
        request: Request<Streaming<BytesMessage>>,
    ) -> Result<Response<Outgoing>, Status> {
        let id = request
            .metadata()
            .get(ID_KEY)
            .and_then(|value| value.to_str().ok())
            .unwrap_or(DEFAULT_SSH_ID)
            .to_owned();
        let agent = self.agents.connect(&id).await?;
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let incoming = request.into_inner();
        self.spawn_relay(id, incoming, agent, sender);
        let outgoing = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|message| (Ok(message), receiver))
        });
        Ok(Response::new(Box::pin(outgoing)))
    }
}

/// Passes the engine's requests to the agent one message at a time (a
/// 4-byte big-endian length, then the message), answering one not in
/// [`ALLOWED`] itself, and each answer back.
async fn relay(
    mut incoming: impl Stream<Item = Result<BytesMessage, Status>> + Unpin,
    mut agent: Box<dyn AgentStream>,
    sender: &tokio::sync::mpsc::Sender<BytesMessage>,
) -> Result<(), String> {
    let mut pending: Vec<u8> = Vec::new();
    loop {
        while let Some(request) = take_message(&mut pending)? {
            let answer = if !request.get(4).is_some_and(|kind| ALLOWED.contains(kind)) {
                vec![0, 0, 0, 1, AGENT_FAILURE]
            } else {
                agent
                    .write_all(&request)
                    .await
                    .map_err(|error| error.to_string())?;
                read_message(&mut agent).await?
            };
            sender
                .send(BytesMessage { data: answer })
                .await
                .map_err(|_| "the engine closed the stream".to_owned())?;
        }
        match incoming.next().await {
            Some(Ok(message)) => pending.extend_from_slice(&message.data),
            Some(Err(status)) => return Err(status.to_string()),
            None => return Ok(()),
        }
    }
}

/// The first whole message of `pending` (length prefix included), taken
/// out of it; `None` until one is whole.
fn take_message(pending: &mut Vec<u8>) -> Result<Option<Vec<u8>>, String> {
    let Some(prefix) = pending.first_chunk::<4>() else {
        return Ok(None);
    };
    let length = message_length(*prefix)?;
    if pending.len() < 4 + length {
        return Ok(None);
    }
    Ok(Some(pending.drain(..4 + length).collect()))
}

/// The length an agent message's 4-byte big-endian prefix gives. Errors:
/// over [`MAX_MESSAGE`].
fn message_length(prefix: [u8; 4]) -> Result<usize, String> {
    let length = u32::from_be_bytes(prefix) as usize;
    if length > MAX_MESSAGE {
        return Err(format!("an agent message of {length} bytes"));
    }
    Ok(length)
}

/// One whole message from the agent, length prefix included.
async fn read_message(agent: &mut Box<dyn AgentStream>) -> Result<Vec<u8>, String> {
    let mut length = [0u8; 4];
    agent
        .read_exact(&mut length)
        .await
        .map_err(|error| error.to_string())?;
    let size = message_length(length)?;
    let mut message = vec![0u8; 4 + size];
    message[..4].copy_from_slice(&length);
    agent
        .read_exact(&mut message[4..])
        .await
        .map_err(|error| error.to_string())?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_taken_whole() {
        let mut pending = vec![0, 0, 0, 1, 11, 0, 0];
        assert_eq!(take_message(&mut pending), Ok(Some(vec![0, 0, 0, 1, 11])));
        assert_eq!(take_message(&mut pending), Ok(None));
        pending.extend_from_slice(&[0, 2, 17, 1]);
        assert_eq!(
            take_message(&mut pending),
            Ok(Some(vec![0, 0, 0, 2, 17, 1]))
        );
        assert!(pending.is_empty());
        let mut huge = vec![0x7f, 0, 0, 0];
        assert!(take_message(&mut huge).is_err());
    }

    /// The request types a fake agent saw (`None` for an empty request).
    type Seen = Arc<std::sync::Mutex<Vec<Option<u8>>>>;

    /// A fake agent on an in-memory pipe that records the type of each
    /// request reaching it and answers each with `SSH_AGENT_SUCCESS` (6).
    fn recording_agent() -> (Box<dyn AgentStream>, Seen) {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let mut length = [0u8; 4];
                if theirs.read_exact(&mut length).await.is_err() {
                    return;
                }
                let mut body = vec![0u8; u32::from_be_bytes(length) as usize];
                theirs.read_exact(&mut body).await.unwrap();
                record.lock().unwrap().push(body.first().copied());
                theirs.write_all(&[0, 0, 0, 1, 6]).await.unwrap();
            }
        });
        (Box::new(ours), seen)
    }

    #[tokio::test]
    async fn only_listing_and_signing_reach_the_agent() {
        let (agent, seen) = recording_agent();
        // Identities, an empty frame, sign, add, remove all, lock,
        // extension, an unknown type; the last two in one chunk.
        let requests: Vec<Vec<u8>> = vec![
            vec![0, 0, 0, 1, 11],
            vec![0, 0, 0, 0],
            vec![0, 0, 0, 2, 13, 9],
            vec![0, 0, 0, 1, 17],
            vec![0, 0, 0, 1, 19],
            vec![0, 0, 0, 1, 22],
            vec![0, 0, 0, 1, 27, 0, 0, 0, 1, 200],
        ];
        let incoming =
            futures_util::stream::iter(requests.into_iter().map(|data| Ok(BytesMessage { data })));
        let (sender, mut receiver) = tokio::sync::mpsc::channel(16);
        relay(incoming, agent, &sender).await.unwrap();
        drop(sender);
        let mut answers = Vec::new();
        while let Some(answer) = receiver.recv().await {
            answers.push(answer.data[4]);
        }
        assert_eq!(answers, [6, 5, 6, 5, 5, 5, 5, 5]);
        assert_eq!(*seen.lock().unwrap(), [Some(11), Some(13)]);
    }

    #[tokio::test]
    async fn connections_end_with_the_session() {
        let service = SshService::new(SshAgents::default());
        let (ours, mut theirs) = tokio::io::duplex(64);
        let (sender, _receiver) = tokio::sync::mpsc::channel(1);
        // The engine keeps its stream open, sending nothing.
        service.spawn_relay(
            "default".to_owned(),
            futures_util::stream::pending(),
            Box::new(ours),
            sender,
        );
        tokio::task::yield_now().await;
        drop(service);
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), theirs.read(&mut byte))
            .await
            .expect("the agent's connection closes when the session ends");
        assert_eq!(read.unwrap(), 0);
    }

    #[tokio::test]
    async fn check_agent_knows_the_ids_given() {
        let service = SshService::new(SshAgents::new(BTreeMap::from([(
            "default".to_owned(),
            SshAgent::Socket(PathBuf::from("/agent.sock")),
        )])));
        let ask = |id: &str| Request::new(CheckAgentRequest { id: id.to_owned() });
        assert!(service.check_agent(ask("")).await.is_ok());
        assert!(service.check_agent(ask("default")).await.is_ok());
        let missing = service.check_agent(ask("git")).await.unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound);
    }
}
