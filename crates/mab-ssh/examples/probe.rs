//! Connects to a host the way mab does and exercises a session.
//!
//! `cargo run -p mab-ssh --example probe -- SPEC HOME [SOCKET]`
//!
//! Runs `uname -m`; with SOCKET (a remote unix socket that echoes what it
//! reads), also pushes data through several streams at once, each sending
//! and receiving at the same time, and checks what comes back.
//! With `PROBE_IDLE_SECS=N`, leaves the session idle for N seconds and uses it again.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use mab_ssh::{Destination, Session, SshError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[expect(
    clippy::print_stderr,
    reason = "a command-line example reports on stderr"
)]
fn report(line: &str) {
    eprintln!("{line}");
}

/// Sends `size` bytes through a fresh stream while reading the echo back.
async fn echo(session: &Session, socket: &str, size: usize, seed: u8) -> Result<(), String> {
    let stream = session
        .open_unix_stream(socket)
        .await
        .map_err(|error| error.to_string())?;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let payload: Vec<u8> = (0..size)
        .map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let sent = payload.clone();
    let write = async move {
        writer.write_all(&sent).await?;
        // EOF to the remote side; the echo server then closes its end.
        writer.shutdown().await
    };
    let read = async move {
        let mut received = Vec::new();
        reader.read_to_end(&mut received).await.map(|_| received)
    };
    let (written, received) = tokio::join!(write, read);
    written.map_err(|error| format!("write: {error}"))?;
    let received = received.map_err(|error| format!("read: {error}"))?;
    if received != payload {
        return Err(format!(
            "echo differs: sent {} bytes, got {}",
            payload.len(),
            received.len()
        ));
    }
    Ok(())
}

async fn run(spec: &str, home: &Path, socket: Option<&str>) -> Result<(), String> {
    let explain = |error: SshError| {
        let hint = error
            .hint()
            .map(|hint| format!("\nhint: {hint}"))
            .unwrap_or_default();
        format!("error[{}]: {error}{hint}", error.kind())
    };
    let destination = Destination::resolve(spec, home).map_err(explain)?;
    report(&format!("destination: {destination:?}"));
    let started = Instant::now();
    let retries = mab_ssh::Retries {
        runner: spec,
        reporter: &mab_events::Silent,
    };
    let session = Session::connect(&destination, home, retries)
        .await
        .map_err(explain)?;
    report(&format!("connected in {:?}", started.elapsed()));

    let output = session.exec("uname -m").await.map_err(explain)?;
    report(&format!(
        "uname -m: status {} stdout {:?} stderr {:?}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ));
    let failing = session
        .exec("echo oops >&2; exit 3")
        .await
        .map_err(explain)?;
    report(&format!(
        "failing command: status {} stderr {:?}",
        failing.status,
        String::from_utf8_lossy(&failing.stderr)
    ));

    if let Some(seconds) = std::env::var("PROBE_IDLE_SECS")
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
    {
        tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
        let output = session.exec("true").await.map_err(explain)?;
        report(&format!(
            "after {seconds} s idle: status {}, closed: {}",
            output.status,
            session.is_closed()
        ));
    }

    if let Some(socket) = socket {
        let started = Instant::now();
        let sizes = [5, 70_000, 8 << 20];
        let results = futures_join(&session, socket, &sizes).await;
        for (size, result) in sizes.iter().zip(results) {
            report(&format!("echo of {size} bytes: {result:?}"));
        }
        report(&format!("streams done in {:?}", started.elapsed()));
        match session.open_unix_stream("/nonexistent/socket").await {
            Ok(_) => report("unexpected: a stream to a missing socket opened"),
            Err(error) => report(&explain(error)),
        }
    }
    Ok(())
}

/// Runs one echo per size at the same time on the one session.
async fn futures_join(session: &Session, socket: &str, sizes: &[usize]) -> Vec<Result<(), String>> {
    let tasks: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(index, &size)| {
            let session = session.clone();
            let socket = socket.to_string();
            tokio::spawn(async move { echo(&session, &socket, size, index as u8).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap_or_else(|error| Err(error.to_string())));
    }
    results
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(spec), Some(home)) = (args.first(), args.get(1)) else {
        report("usage: probe SPEC HOME [SOCKET]");
        return ExitCode::from(2);
    };
    match run(spec, Path::new(home), args.get(2).map(String::as_str)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            report(&message);
            ExitCode::FAILURE
        }
    }
}
