//! HTTP to a Docker engine over any byte stream.
//!
//! bollard sends each request through a closure; this module gives it one
//! that opens a fresh stream (a unix socket, a TCP connection, or an SSH
//! stream-local channel), speaks HTTP/1.1 on it and keeps upgrades working,
//! which BuildKit's session needs.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use bollard::BollardRequest;
use http::header::HOST;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream to an engine's API socket.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// The future a [`Connect`] returns.
pub type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<Box<dyn Io>>> + Send>>;

/// Opens a new stream to the engine; called once per HTTP request. An
/// error of kind `NotConnected` says that no later call can succeed either
/// (what carries the streams has ended), so the request is not retried.
pub type Connect = Arc<dyn Fn() -> ConnectFuture + Send + Sync>;

/// Connects to a unix socket on this machine.
pub fn unix_connector(path: impl Into<std::path::PathBuf>) -> Connect {
    let path = path.into();
    Arc::new(move || {
        let path = path.clone();
        Box::pin(async move {
            let stream = tokio::net::UnixStream::connect(&path).await?;
            Ok(Box::new(stream) as Box<dyn Io>)
        })
    })
}

/// Connects to `host:port` over plain TCP (a `tcp://` DOCKER_HOST).
pub fn tcp_connector(address: impl Into<String>) -> Connect {
    let address = address.into();
    Arc::new(move || {
        let address = address.clone();
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(&address).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as Box<dyn Io>)
        })
    })
}

/// The whole body of an answer (an error's JSON, a short reply); empty
/// when the stream broke off before its end.
pub(crate) async fn body_bytes(body: Incoming) -> bytes::Bytes {
    use http_body_util::BodyExt;
    body.collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default()
}

/// Sends one request on a new stream. The request's URI is rewritten to
/// origin form with an explicit `Host` header, as the engine expects on a
/// socket.
pub(crate) async fn send<B>(
    connect: &Connect,
    request: Request<B>,
) -> Result<Response<Incoming>, bollard::errors::Error>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut parts, body) = request.into_parts();
    let origin_form = parts
        .uri
        .path_and_query()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    parts.uri = origin_form.parse::<Uri>()?;
    parts
        .headers
        .insert(HOST, http::HeaderValue::from_static("docker"));

    let stream = connect().await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!("engine connection ended: {error}");
        }
    });
    Ok(sender
        .send_request(Request::from_parts(parts, body))
        .await?)
}

/// What the transport closure returns for one request.
type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<Incoming>, bollard::errors::Error>> + Send>>;

/// The closure bollard calls for every request.
pub(crate) fn bollard_transport(
    connect: Connect,
) -> impl Fn(BollardRequest) -> ResponseFuture + Send + Sync + 'static {
    move |request: BollardRequest| {
        let connect = connect.clone();
        Box::pin(async move { send(&connect, request).await })
    }
}
