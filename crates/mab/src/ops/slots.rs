//! Runner slots shared across coordinators: a build holds one of its
//! runner's `jobs` slots on the runner host itself, as a `flock` on a file
//! there, for as long as it builds (docs/runners.md, "Slots").
//!
//! The lock is held by a command that runs over the runner host's SSH
//! connection ([`mab_ssh::Session::exec_held`]), or here with a piped stdin
//! for a local runner, so that the host's kernel frees it when that command
//! ends: when mab closes the channel, or when the connection dies (a
//! SIGKILLed coordinator, a crashed machine; a connection cut off without
//! a word only once sshd notices it is dead, by its `ClientAliveInterval`
//! or TCP's timeouts, docs/runners.md). The slot files are
//! `slot-KEY-0`, `slot-KEY-1`, … (KEY the engine's, [`engine_key`]) in
//! `${XDG_RUNTIME_DIR:-/tmp}/mab-$(id -u)` on the
//! host: the SSH user's runtime directory, else `/tmp`, one per user id.

use std::process::Stdio;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use crate::ops::connect::Connected;

/// The start of both slot scripts ([`TAKE_SCRIPT`], [`PROBE_SCRIPT`]), so
/// that they agree on what a host needs: sets `d`, the slot directory;
/// prints `no-flock` without `flock`, or `no-directory DIR` when the slot
/// directory is not a writable directory and cannot be made as one by
/// `mkdir -p` (the nearest of it and its parents that exists is not a
/// writable directory), and exits 1. It writes nothing.
macro_rules! slot_preamble {
    () => {
        r#"p="${XDG_RUNTIME_DIR:-/tmp}"; d="$p/mab-$(id -u)"
command -v flock >/dev/null 2>&1 || { echo no-flock; exit 1; }
a="$d"; while [ ! -e "$a" ]; do a=$(dirname "$a"); done; { [ -d "$a" ] && [ -w "$a" ]; } || { echo "no-directory $d"; exit 1; }
"#
    };
}

/// The script that takes a slot (POSIX `sh`; `JOBS` is replaced by the
/// runner's `jobs`, `KEY` by its [`engine_key`]: the slot files are
/// `slot-KEY-0` to `slot-KEY-(JOBS - 1)`). After the checks of what the
/// host needs (the shared preamble), it makes the slot directory (mode
/// 700). Then `t N FLAGS` tries slot `N` with `flock FLAGS`: a slot it
/// locks it touches (so that a cleaner of old files in `/tmp` keeps it)
/// and checks that the file it locked is still the one at that path (`-ef`
/// against `/proc/$$/fd/9`; another build may have locked a file made anew
/// after this one was removed), else it drops the lock; then it prints
/// `slot N` and becomes `cat`, holding the lock (fd 9) until its stdin
/// closes. A `flock` that fails otherwise than on a taken lock (status 1;
/// for instance `ENOLCK`) makes it print `flock-failed STATUS FILE` and
/// exit 1. Each round tries slots `0` to `JOBS - 1` with `flock -n`,
/// prints `waiting` when all are taken, and then waits in the kernel for
/// one of them, in turn, for a second (`flock -w 1`), so that a freed slot
/// goes to a waiting build before a new take (a print to a closed channel
/// ends the script, so a waiting script outlives its coordinator by a
/// second at most).
pub const TAKE_SCRIPT: &str = concat!(
    slot_preamble!(),
    r#"{ mkdir -p "$d" && chmod 700 "$d"; } 2>/dev/null || { echo "no-directory $d"; exit 1; }
t() {
  exec 9>>"$d/slot-KEY-$1"
  flock $2 9; s=$?
  if [ "$s" -eq 0 ] && touch "$d/slot-KEY-$1" && [ "$d/slot-KEY-$1" -ef /proc/$$/fd/9 ]; then echo "slot $1"; exec cat >/dev/null; fi
  [ "$s" -le 1 ] || { echo "flock-failed $s $d/slot-KEY-$1"; exit 1; }
  exec 9>&-
}
k=0
while :; do
  i=0
  while [ "$i" -lt JOBS ]; do t "$i" -n; i=$((i + 1)); done
  echo waiting
  t "$k" "-w 1"
  k=$(((k + 1) % JOBS))
done"#
);

/// The read-only probe `mab runners check` runs (POSIX `sh`; `KEY` is
/// replaced by the runner's [`engine_key`]): after the shared preamble's
/// checks, prints `in-use N`, the slot files of the engine (every
/// `slot-KEY-*`, whatever its number) that a build holds now. A file is
/// held when the kernel's table of locks, `/proc/locks`, has a granted
/// `FLOCK` (not a waiter's `->` line) on its device and inode, which it
/// shows as `MAJOR:MINOR:INODE`, the device numbers in hex (`fs/locks.c`);
/// the probe takes no lock itself, so it neither holds a slot a build is
/// about to take nor counts another probe.
pub const PROBE_SCRIPT: &str = concat!(
    slot_preamble!(),
    r#"n=0
for f in "$d"/slot-KEY-*; do [ -f "$f" ] || continue; set -- $(stat -c "%d %i" "$f"); l=$(printf "%02x:%02x:%s" $((($1 >> 8) & 4095)) $((($1 & 255) | (($1 >> 12) & 1048320))) "$2"); grep -v -e "->" /proc/locks | grep -q " FLOCK .* $l " && n=$((n + 1)); done
echo "in-use $n""#
);

/// The part of a slot file's name that stands for the engine the slots
/// are for: `engine`'s address without its scheme, every character but
/// ASCII letters, digits, `.` and `-` made `_` (`unix:///var/run/docker.sock`
/// gives `_var_run_docker.sock`). So runners of one host and SSH user share
/// slots when they name the same engine, and do not when they name two
/// (a rootful and a rootless engine).
pub fn engine_key(engine: &str) -> String {
    let endpoint = engine.split_once("://").map_or(engine, |(_, rest)| rest);
    endpoint
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// [`TAKE_SCRIPT`] for a runner of `jobs` slots of the engine `key`
/// ([`engine_key`]), as one `sh -c '…'` command line on one line (the
/// script holds no single quote), so that the SSH user's login shell need
/// not be POSIX: csh and fish take it as well.
pub fn take_command(jobs: u32, key: &str) -> String {
    shell_command(&take_script(jobs, key))
}

fn take_script(jobs: u32, key: &str) -> String {
    one_line(
        &TAKE_SCRIPT
            .replace("JOBS", &jobs.max(1).to_string())
            .replace("KEY", key),
    )
}

/// [`PROBE_SCRIPT`] for the slots of the engine `key`, on one line.
fn probe_script(key: &str) -> String {
    one_line(&PROBE_SCRIPT.replace("KEY", key))
}

/// `script` on one line, as every shell takes it inside quotes (csh and
/// tcsh, a login shell mab may meet, reject a quoted newline): its lines,
/// trimmed, joined with `; `, or with a space after a line that opens a
/// block (ends with `{`, `do` or `then`), where `;` would be a syntax
/// error.
fn one_line(script: &str) -> String {
    let mut joined = String::new();
    for line in script
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
    {
        if !joined.is_empty() {
            let opens = ["{", " do", " then"]
                .iter()
                .any(|end| joined.ends_with(end));
            joined.push_str(if opens { " " } else { "; " });
        }
        joined.push_str(line);
    }
    joined
}

/// How slot errors name the host of a local runner.
const LOCAL_HOST: &str = "`local` (this machine)";

/// `script` as one `sh -c '…'` command line.
fn shell_command(script: &str) -> String {
    debug_assert!(!script.contains('\''));
    format!("sh -c '{script}'")
}

/// Why a runner cannot hold a slot.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("runner `{runner}` cannot hold a build slot: its host has no `flock` command (util-linux), which mab uses to share the runner's `jobs` with other builds")]
    NoFlock { runner: String },
    #[error("runner `{runner}` cannot hold a build slot: the directory {directory} cannot be made or written on its host")]
    NoDirectory { runner: String, directory: String },
    #[error("runner `{runner}` cannot hold a build slot: `flock` failed on {file} on its host (exit status {status})")]
    FlockFailed {
        runner: String,
        file: String,
        status: String,
    },
    #[error("runner `{runner}`: the probe of its build slots failed on host {host}: {reason}")]
    Probe {
        runner: String,
        /// The host, as [`SlotError::Lost`] names it.
        host: String,
        reason: String,
    },
    #[error("runner `{runner}` lost its build slot on host {host}: {reason}")]
    Lost {
        runner: String,
        /// The host, as [`mab_ssh::HostRef`] shows it, or `` `local` (this machine) ``.
        host: String,
        reason: String,
    },
}

impl SlotError {
    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            SlotError::NoFlock { runner } => format!(
                "install util-linux on the host of runner `{runner}` (it provides `flock`; Debian and Ubuntu have it, Alpine: apk add util-linux), or build elsewhere"
            ),
            SlotError::NoDirectory { runner, .. } => format!(
                "let the user that builds on the host of runner `{runner}` (its SSH user; for a local runner, yours) write to its $XDG_RUNTIME_DIR, or to /tmp when that is unset (see docs/runners.md)"
            ),
            SlotError::FlockFailed { runner, .. } => format!(
                "the file system of the slot directory on the host of runner `{runner}` may not support locks (an NFS mount without a lock daemon gives ENOLCK): set XDG_RUNTIME_DIR for its user to a local directory, or build elsewhere"
            ),
            SlotError::Probe { runner, .. } => format!(
                "the probe (docs/runners.md, \"What runs and what stays on the host\") needs `sh`, `id`, `dirname`, `stat`, `grep` and `/proc/locks` on the host of runner `{runner}`; run it there by hand as the SSH user to see what fails"
            ),
            SlotError::Lost { runner, .. } => format!(
                "the command that holds the slot on the host ended, or the SSH connection to it closed; check runner `{runner}` with `mab runners check` (and the host's sshd log) and run `mab build` again"
            ),
        }
    }

    /// The error of a protocol line the scripts print for a missing need
    /// or a failed lock (`no-flock`, `no-directory DIR`, `flock-failed
    /// STATUS FILE`); `None` for other lines.
    fn of_line(runner: &str, line: &str) -> Option<SlotError> {
        if line == "no-flock" {
            return Some(SlotError::NoFlock {
                runner: runner.to_owned(),
            });
        }
        if let Some((status, file)) = line
            .strip_prefix("flock-failed ")
            .and_then(|rest| rest.split_once(' '))
        {
            return Some(SlotError::FlockFailed {
                runner: runner.to_owned(),
                file: file.to_owned(),
                status: status.to_owned(),
            });
        }
        line.strip_prefix("no-directory ")
            .map(|directory| SlotError::NoDirectory {
                runner: runner.to_owned(),
                directory: directory.to_owned(),
            })
    }
}

/// A slot held on a runner host; dropping it frees the slot (the channel
/// closes, or the local command is killed).
#[derive(Debug)]
pub struct HeldSlot {
    /// The slot's number, `0` to `jobs - 1`.
    pub number: u32,
    runner: String,
    /// The host, as [`SlotError::Lost`] names it.
    host: String,
    holder: Holder,
}

impl HeldSlot {
    /// Resolves when the slot is lost while held: the command holding it
    /// ended (killed on the host) or its channel or connection closed. It
    /// never resolves while the slot is held (the holding `cat` prints
    /// nothing).
    pub async fn lost(&mut self) -> SlotError {
        loop {
            if let Err(reason) = self.holder.next_line().await {
                return SlotError::Lost {
                    runner: self.runner.clone(),
                    host: self.host.clone(),
                    reason,
                };
            }
        }
    }
}

impl HeldSlot {
    /// Frees the slot and waits until the host has freed it: over SSH,
    /// until the holding command has exited after its stdin closed
    /// ([`mab_ssh::HeldCommand::release`]); here, until the killed command
    /// is reaped. At most [`mab_ssh::RELEASE_WAIT`] either way; a slot
    /// not freed by then is freed when its channel closes.
    pub async fn release(self) {
        match self.holder {
            Holder::Remote(held) => held.release().await,
            Holder::Local { mut child, .. } => {
                let _ = tokio::time::timeout(mab_ssh::RELEASE_WAIT, child.kill()).await;
            }
        }
    }
}

impl crate::ops::jobs::HostSlot for HeldSlot {
    fn lost(&mut self) -> BoxFuture<'_, SlotError> {
        Box::pin(HeldSlot::lost(self))
    }

    fn release(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(HeldSlot::release(*self))
    }
}

/// The command that holds a slot, and reads its lines.
#[derive(Debug)]
enum Holder {
    Remote(mab_ssh::HeldCommand),
    Local {
        /// Killed when dropped (`kill_on_drop`).
        child: Child,
        /// Its stdin, kept open here (not in `child`, whose `wait` would
        /// close it and so end the holding `cat`).
        _stdin: Option<tokio::process::ChildStdin>,
        lines: Lines<BufReader<ChildStdout>>,
    },
}

impl Holder {
    /// The script's next line; `Err` with the reason when it ended first.
    async fn next_line(&mut self) -> Result<String, String> {
        match self {
            Holder::Remote(held) => held.next_line().await.map_err(|error| match error {
                mab_ssh::SshError::Exec { reason, .. } => reason,
                error => error.to_string(),
            }),
            // The holding `cat` writes to /dev/null: the end of stdout is
            // no end of the command, which is waited for.
            Holder::Local { child, lines, .. } => match lines.next_line().await {
                Ok(Some(line)) => Ok(line),
                Ok(None) => Err(match child.wait().await {
                    Ok(status) => format!("the slot command ended ({status})"),
                    Err(error) => format!("the slot command ended: {error}"),
                }),
                Err(error) => Err(format!("reading the slot command's output failed: {error}")),
            },
        }
    }
}

/// The `PATH` of a local runner's slot script: this process's, then
/// `/usr/bin` and `/bin`, where `flock` and the rest are found even when
/// mab runs with a `PATH` that leaves them out.
fn local_path() -> std::ffi::OsString {
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    path.push(":/usr/bin:/bin");
    path
}

/// `script` to run here under `/bin/sh`, with the `PATH` of
/// [`local_path`] and then the environment variables `environment` on top
/// of this process's: how both slot scripts run for a local runner.
fn local_sh(script: &str, environment: &[(&str, &std::ffi::OsStr)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("/bin/sh");
    command
        .args(["-c", script])
        .env("PATH", local_path())
        .envs(environment.iter().copied());
    command
}

/// Runs `script` here ([`local_sh`]), stdin and stdout piped, killed when
/// dropped.
fn local_holder(script: &str, environment: &[(&str, &std::ffi::OsStr)]) -> std::io::Result<Holder> {
    let mut child = local_sh(script, environment)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().expect("stdout is piped");
    Ok(Holder::Local {
        _stdin: child.stdin.take(),
        child,
        lines: BufReader::new(stdout).lines(),
    })
}

/// Reads `holder`'s lines until it holds a slot (calling `busy` on each
/// `waiting`), or fails.
async fn hold(
    mut holder: Holder,
    runner: &str,
    host: &str,
    busy: &(dyn Fn() + Sync),
) -> Result<HeldSlot, SlotError> {
    loop {
        let line = holder.next_line().await.map_err(|reason| SlotError::Lost {
            runner: runner.to_owned(),
            host: host.to_owned(),
            reason,
        })?;
        if line == "waiting" {
            busy();
        } else if let Some(number) = line
            .strip_prefix("slot ")
            .and_then(|number| number.parse().ok())
        {
            return Ok(HeldSlot {
                number,
                runner: runner.to_owned(),
                host: host.to_owned(),
                holder,
            });
        } else if let Some(error) = SlotError::of_line(runner, &line) {
            return Err(error);
        }
    }
}

impl Connected {
    /// Takes one of the `jobs` slots of runner `runner` on its host (over
    /// its SSH connection, or here for a local runner), waiting while all
    /// are taken; `busy` is called each time the host says so (about once
    /// a second). Dropping the future ends the script, and dropping the
    /// [`HeldSlot`] frees the slot.
    pub async fn hold_slot(
        &self,
        runner: &str,
        jobs: u32,
        busy: &(dyn Fn() + Sync),
    ) -> Result<HeldSlot, SlotError> {
        let host = self.host();
        let key = engine_key(&self.engine_address);
        let lost = |reason: String| SlotError::Lost {
            runner: runner.to_owned(),
            host: host.clone(),
            reason,
        };
        let holder = match &self.session {
            Some(session) => Holder::Remote(
                session
                    .exec_held(&take_command(jobs, &key))
                    .await
                    .map_err(|error| lost(error.to_string()))?,
            ),
            None => local_holder(&take_script(jobs, &key), &[])
                .map_err(|error| lost(format!("cannot run sh here: {error}")))?,
        };
        hold(holder, runner, &host, busy).await
    }

    /// The runner's host as slot errors name it: its SSH destination, or
    /// `` `local` (this machine) `` for a local runner.
    fn host(&self) -> String {
        match &self.session {
            Some(session) => session.destination().host_ref().to_string(),
            None => LOCAL_HOST.to_owned(),
        }
    }

    /// The slots of this runner's engine on its host that builds hold now
    /// (every `slot-KEY-*` file of its engine that is locked), by
    /// [`PROBE_SCRIPT`], run over its SSH connection or here as the slot
    /// script is.
    pub async fn slots_in_use(&self, runner: &str) -> Result<u32, SlotError> {
        let script = probe_script(&engine_key(&self.engine_address));
        let failed = |reason: String| SlotError::Probe {
            runner: runner.to_owned(),
            host: self.host(),
            reason,
        };
        let (status, stdout, stderr) = match &self.session {
            Some(session) => {
                let output = session
                    .exec(&shell_command(&script))
                    .await
                    .map_err(|error| failed(error.to_string()))?;
                (Some(output.status as i32), output.stdout, output.stderr)
            }
            None => {
                let output = local_sh(&script, &[])
                    .output()
                    .await
                    .map_err(|error| failed(format!("cannot run /bin/sh here: {error}")))?;
                (output.status.code(), output.stdout, output.stderr)
            }
        };
        let stdout = String::from_utf8_lossy(&stdout);
        let stderr = String::from_utf8_lossy(&stderr);
        parse_probe(runner, status, &stdout).map_err(|reason| {
            let stderr = stderr.trim();
            failed(if stderr.is_empty() {
                reason
            } else {
                format!("{reason}; it said: {stderr}")
            })
        })?
    }
}

/// The count of [`PROBE_SCRIPT`]'s output, or the need it found missing;
/// the outer `Err` is why the output is not the probe's (`status`, its
/// exit status, `None` for a signal).
fn parse_probe(
    runner: &str,
    status: Option<i32>,
    output: &str,
) -> Result<Result<u32, SlotError>, String> {
    for line in output.lines().map(str::trim) {
        if let Some(error) = SlotError::of_line(runner, line) {
            return Ok(Err(error));
        }
    }
    let count = output
        .lines()
        .find_map(|line| line.trim().strip_prefix("in-use "))
        .and_then(|count| count.parse().ok());
    match (status, count) {
        (Some(0), Some(count)) => Ok(Ok(count)),
        (Some(0), None) => Err(format!("it printed {output:?}")),
        (Some(status), _) => Err(format!("it exited with status {status}")),
        (None, _) => Err("it was killed by a signal".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_counts_or_names_what_is_missing() {
        assert_eq!(parse_probe("p", Some(0), "in-use 2\n"), Ok(Ok(2)));
        assert_eq!(
            parse_probe("p", Some(1), "no-flock\n"),
            Ok(Err(SlotError::NoFlock { runner: "p".into() }))
        );
        assert_eq!(
            parse_probe("p", Some(1), "no-directory /tmp/mab-0\n"),
            Ok(Err(SlotError::NoDirectory {
                runner: "p".into(),
                directory: "/tmp/mab-0".into()
            }))
        );
        assert_eq!(
            parse_probe("p", Some(0), "garbage"),
            Err("it printed \"garbage\"".to_owned())
        );
        assert_eq!(
            parse_probe("p", Some(2), "in-use 1\n"),
            Err("it exited with status 2".to_owned())
        );
    }

    #[test]
    fn the_scripts_are_one_quoted_posix_command() {
        let command = take_command(3, "e");
        assert!(command.starts_with("sh -c '") && command.ends_with('\''));
        assert_eq!(command.matches('\'').count(), 2);
        assert!(!command.contains('\n'), "one line, for csh");
        assert!(!probe_script("e").contains('\n'));
        assert!(
            command.contains("t() { exec 9>>"),
            "no `;` after an opening brace"
        );
        assert!(command.contains("while :; do i=0;"));
        assert!(command.contains("[ \"$i\" -lt 3 ]"));
        assert!(command.contains("% 3))"));
        assert!(!PROBE_SCRIPT.contains('\''));
        assert!(
            take_command(0, "e").contains("-lt 1 ]"),
            "at least one slot"
        );
    }

    /// docs/runners.md quotes every command mab runs on a runner host
    /// verbatim, line by line.
    #[test]
    fn the_docs_quote_every_command_run_on_a_host() {
        let docs = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/runners.md"),
        )
        .unwrap();
        let quoted: Vec<&str> = docs.lines().map(str::trim).collect();
        for script in [TAKE_SCRIPT, PROBE_SCRIPT, crate::ops::connect::BINFMT_PROBE] {
            let lines: Vec<&str> = script.lines().map(str::trim).collect();
            let first = format!("sh -c '{}", lines[0]);
            let last = format!("{}'", lines[lines.len() - 1]);
            for (index, line) in lines.iter().enumerate() {
                let found = quoted.contains(line)
                    || (index == 0 && quoted.contains(&first.as_str()))
                    || (index == lines.len() - 1 && quoted.contains(&last.as_str()));
                assert!(found, "docs/runners.md does not quote: {line}");
            }
        }
    }

    /// A host without `flock` (a PATH that has the rest), or whose slot
    /// directory cannot be made (XDG_RUNTIME_DIR is a file), refuses, naming
    /// the runner and what is missing.
    #[tokio::test]
    async fn a_host_without_what_slots_need_is_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let bin = scratch.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for tool in ["sh", "id", "mkdir", "chmod", "cat", "sleep"] {
            let found = ["/bin", "/usr/bin"]
                .iter()
                .map(|directory| std::path::Path::new(directory).join(tool))
                .find(|path| path.exists())
                .unwrap();
            std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
        }
        let file = scratch.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let never = || panic!("nothing to wait for");
        let cases: [(&[(&str, &std::ffi::OsStr)], SlotError); 2] = [
            (
                &[
                    ("PATH", bin.as_os_str()),
                    ("XDG_RUNTIME_DIR", scratch.path().as_os_str()),
                ],
                SlotError::NoFlock {
                    runner: "power".into(),
                },
            ),
            (
                &[("XDG_RUNTIME_DIR", file.as_os_str())],
                SlotError::NoDirectory {
                    runner: "power".into(),
                    directory: format!("{}/mab-{}", file.display(), nix_uid()),
                },
            ),
        ];
        for (environment, expected) in cases {
            let holder = local_holder(&take_script(1, "e"), environment).unwrap();
            let error = hold(holder, "power", LOCAL_HOST, &never).await.unwrap_err();
            assert_eq!(error, expected);
        }
        assert_eq!(
            SlotError::NoFlock { runner: "power".into() }.to_string(),
            "runner `power` cannot hold a build slot: its host has no `flock` command (util-linux), which mab uses to share the runner's `jobs` with other builds"
        );
        assert!(SlotError::NoFlock {
            runner: "power".into()
        }
        .hint()
        .starts_with("install util-linux on the host of runner `power`"));
    }

    fn nix_uid() -> String {
        let output = std::process::Command::new("id").arg("-u").output().unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Takes one of `jobs` slots of engine `key` here, in `runtime` as
    /// `XDG_RUNTIME_DIR`.
    fn take_here(
        runtime: &std::path::Path,
        jobs: u32,
        key: &str,
        busy: &'static (dyn Fn() + Sync),
    ) -> impl std::future::Future<Output = Result<HeldSlot, SlotError>> + 'static {
        let runtime = ("XDG_RUNTIME_DIR", runtime.as_os_str());
        let holder = local_holder(&take_script(jobs, key), &[runtime]).unwrap();
        hold(holder, "here", LOCAL_HOST, busy)
    }

    /// Runs the real script here with `XDG_RUNTIME_DIR` set to a fresh
    /// directory: two slots of `jobs = 2` are taken, a third take waits
    /// (saying so) until one is dropped, and the probe counts the holders.
    #[tokio::test]
    async fn local_slots_are_taken_waited_for_and_freed() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::Duration;
        let runtime = tempfile::tempdir().unwrap();
        let take = |busy| take_here(runtime.path(), 2, "e", busy);
        let in_use = || {
            let output = std::process::Command::new("sh")
                .args(["-c", &probe_script("e")])
                .env("XDG_RUNTIME_DIR", runtime.path())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            parse_probe("here", output.status.code(), &stdout)
        };
        static NEVER: fn() = || panic!("a free slot is not waited for");
        static WAITS: AtomicUsize = AtomicUsize::new(0);
        static COUNT: fn() = || {
            WAITS.fetch_add(1, Ordering::SeqCst);
        };
        let first = take(&NEVER).await.unwrap();
        let second = take(&NEVER).await.unwrap();
        let mut numbers = [first.number, second.number];
        numbers.sort();
        assert_eq!(numbers, [0, 1]);
        assert_eq!(in_use(), Ok(Ok(2)));

        let third = take(&COUNT);
        tokio::pin!(third);
        let early = tokio::time::timeout(Duration::from_millis(1500), &mut third).await;
        assert!(early.is_err(), "no slot is free");
        assert!(WAITS.load(Ordering::SeqCst) >= 1, "the wait is told");
        assert_eq!(in_use(), Ok(Ok(2)), "a waiting take is not counted");
        let freed = first.number;
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("a freed slot is taken within seconds")
            .unwrap();
        assert_eq!(third.number, freed);
        drop(second);
        drop(third);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(in_use(), Ok(Ok(0)));
        let directory = std::fs::read_dir(runtime.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert!(directory.file_name().to_string_lossy().starts_with("mab-"));
        let mut files: Vec<String> = std::fs::read_dir(directory.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, ["slot-e-0", "slot-e-1"], "the slot files stay");
    }

    /// A `PATH` whose first directory (the returned one, kept while it
    /// lives) has a `flock` that runs `body` (POSIX `sh`; `$REAL` is the
    /// real `flock`), then the directories of [`local_path`].
    fn fake_flock(body: &str) -> (tempfile::TempDir, std::ffi::OsString) {
        use std::os::unix::fs::PermissionsExt;
        let bin = tempfile::tempdir().unwrap();
        let real = ["/usr/bin/flock", "/bin/flock"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists())
            .unwrap();
        let wrapper = bin.path().join("flock");
        std::fs::write(&wrapper, format!("#!/bin/sh\nREAL={real}\n{body}\n")).unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut path = bin.path().as_os_str().to_owned();
        path.push(":");
        path.push(local_path());
        (bin, path)
    }

    /// A slot file replaced between the script's open and its lock (a
    /// cleaner of `/tmp` removed it and another build made it anew) is
    /// not a slot: the lock on the removed file is dropped and the take
    /// goes on waiting. Here a `flock` first on `PATH` replaces the file
    /// just before it locks, every time.
    #[tokio::test]
    async fn a_replaced_slot_file_is_not_held() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::Duration;
        let runtime = tempfile::tempdir().unwrap();
        let file = runtime.path().join(format!("mab-{}/slot-e-0", nix_uid()));
        let (_bin, path) = fake_flock(&format!(
            "rm -f '{0}'; : > '{0}'; exec $REAL \"$@\"",
            file.display()
        ));
        static WAITS: AtomicUsize = AtomicUsize::new(0);
        static COUNT: fn() = || {
            WAITS.fetch_add(1, Ordering::SeqCst);
        };
        let runtime_dir = ("XDG_RUNTIME_DIR", runtime.path().as_os_str());
        let holder = local_holder(&take_script(1, "e"), &[runtime_dir, ("PATH", &path)]).unwrap();
        let take = hold(holder, "here", LOCAL_HOST, &COUNT);
        let early = tokio::time::timeout(Duration::from_millis(2500), take).await;
        assert!(early.is_err(), "a lock on a removed file is no slot");
        assert!(WAITS.load(Ordering::SeqCst) >= 1, "it waits");
        // With the real `flock`, the file now there is locked.
        let holder = local_holder(&take_script(1, "e"), &[runtime_dir]).unwrap();
        let held = hold(holder, "here", LOCAL_HOST, &|| panic!("free"))
            .await
            .unwrap();
        assert_eq!(held.number, 0);
    }

    /// A `flock` that fails otherwise than on a taken lock (here exit
    /// status 71, as util-linux's `flock` exits on ENOLCK) is an error
    /// naming the file and status, not a wait.
    #[tokio::test]
    async fn a_failing_flock_is_an_error_not_a_wait() {
        let runtime = tempfile::tempdir().unwrap();
        let (_bin, path) = fake_flock("exit 71");
        let runtime_dir = ("XDG_RUNTIME_DIR", runtime.path().as_os_str());
        let holder = local_holder(&take_script(2, "e"), &[runtime_dir, ("PATH", &path)]).unwrap();
        let error = hold(holder, "power", LOCAL_HOST, &|| panic!("no wait"))
            .await
            .unwrap_err();
        let file = format!("{}/mab-{}/slot-e-0", runtime.path().display(), nix_uid());
        assert_eq!(
            error,
            SlotError::FlockFailed {
                runner: "power".into(),
                file: file.clone(),
                status: "71".into()
            }
        );
        assert_eq!(
            error.to_string(),
            format!("runner `power` cannot hold a build slot: `flock` failed on {file} on its host (exit status 71)")
        );
        assert!(error.hint().contains("ENOLCK"));
    }

    /// A build that waits gets a freed slot before a take that starts just
    /// after the slot is freed (a coordinator freeing and taking again at
    /// once): the waiter waits in the kernel.
    #[tokio::test]
    async fn a_freed_slot_goes_to_the_build_that_waits() {
        use std::time::Duration;
        let runtime = tempfile::tempdir().unwrap();
        let take = |busy| take_here(runtime.path(), 1, "e", busy);
        static QUIET: fn() = || {};
        let first = take(&QUIET).await.unwrap();
        let waiter = take(&QUIET);
        tokio::pin!(waiter);
        let early = tokio::time::timeout(Duration::from_millis(1500), &mut waiter).await;
        assert!(early.is_err(), "the slot is taken");
        first.release().await;
        let again = take(&QUIET);
        tokio::pin!(again);
        tokio::select! {
            held = &mut waiter => assert_eq!(held.unwrap().number, 0),
            _ = &mut again => panic!("the new take got the slot before the build that waits"),
            () = tokio::time::sleep(Duration::from_secs(3)) => panic!("the freed slot was not taken"),
        }
    }

    /// The slot files are per engine: the key keeps letters, digits, `.`
    /// and `-` of the address without its scheme.
    #[test]
    fn engine_keys_name_the_engine() {
        assert_eq!(
            engine_key("unix:///var/run/docker.sock"),
            "_var_run_docker.sock"
        );
        assert_eq!(
            engine_key("unix:///run/user/1000/docker.sock"),
            "_run_user_1000_docker.sock"
        );
        assert_eq!(engine_key("tcp://10.0.0.5:2376"), "10.0.0.5_2376");
        assert!(take_command(2, "_var_run_docker.sock").contains("slot-_var_run_docker.sock-$1"));
    }

    /// Two runners of one host and user share slots when they name the
    /// same engine and do not when they name two: with `jobs = 1` each,
    /// a take for the other engine gets its slot at once, a second take
    /// for the same engine waits.
    #[tokio::test]
    async fn slots_are_shared_per_engine() {
        use std::time::Duration;
        let runtime = tempfile::tempdir().unwrap();
        static NEVER: fn() = || panic!("a free slot is not waited for");
        static QUIET: fn() = || {};
        let rootful = take_here(runtime.path(), 1, "_var_run_docker.sock", &NEVER)
            .await
            .unwrap();
        let rootless = take_here(runtime.path(), 1, "_run_user_1000_docker.sock", &NEVER)
            .await
            .unwrap();
        assert_eq!((rootful.number, rootless.number), (0, 0));
        let same = take_here(runtime.path(), 1, "_var_run_docker.sock", &QUIET);
        let early = tokio::time::timeout(Duration::from_millis(1500), same).await;
        assert!(early.is_err(), "the same engine's one slot is taken");
    }

    /// A slot held here is not lost while its `cat` runs (whose stdout,
    /// /dev/null, ends at once), and is lost, naming runner and host,
    /// when the `cat` is killed.
    #[tokio::test]
    async fn a_local_slot_is_lost_only_when_its_holder_ends() {
        use std::time::Duration;
        let runtime = tempfile::tempdir().unwrap();
        let mut held = take_here(runtime.path(), 1, "e", &|| panic!("free"))
            .await
            .unwrap();
        let early = tokio::time::timeout(Duration::from_millis(1500), held.lost()).await;
        assert!(early.is_err(), "held, not lost");
        let Holder::Local { child, .. } = &held.holder else {
            panic!("a local holder")
        };
        let pid = child.id().unwrap().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        let lost = tokio::time::timeout(Duration::from_secs(5), held.lost())
            .await
            .expect("lost within seconds");
        assert_eq!(
            lost.to_string(),
            "runner `here` lost its build slot on host `local` (this machine): the slot command ended (signal: 9 (SIGKILL))"
        );
    }

    /// The probe and the take agree on the slot directory: one that is
    /// missing with its parent (`mkdir -p` makes both) is usable to both;
    /// one under a file is refused by both.
    #[tokio::test]
    async fn the_probe_and_the_take_agree_on_the_directory() {
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let missing = scratch.path().join("missing/run");
        let probe = |runtime: &std::path::Path| {
            let output = std::process::Command::new("sh")
                .args(["-c", &probe_script("e")])
                .env("XDG_RUNTIME_DIR", runtime)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            parse_probe("here", output.status.code(), &stdout)
        };
        assert_eq!(probe(&missing), Ok(Ok(0)));
        let held = take_here(&missing, 1, "e", &|| panic!("free")).await;
        assert_eq!(held.unwrap().number, 0);
        let refused = SlotError::NoDirectory {
            runner: "here".into(),
            directory: format!("{}/mab-{}", file.display(), nix_uid()),
        };
        assert_eq!(probe(&file), Ok(Err(refused.clone())));
        let error = take_here(&file, 1, "e", &|| panic!("refused"))
            .await
            .unwrap_err();
        assert_eq!(error, refused);
    }

    /// Two coordinators that give one host different `jobs` (1 and 3), as
    /// docs/runners.md says: each takes slot numbers below its own `jobs`,
    /// so the one with `jobs = 1` waits while slot `0` is held even though
    /// slots `1` and `2` are free, and the one with `jobs = 3` takes the
    /// next free one.
    #[tokio::test]
    async fn different_jobs_for_one_host_take_their_own_slot_numbers() {
        use std::time::Duration;
        let runtime = tempfile::tempdir().unwrap();
        static NEVER: fn() = || panic!("a free slot is not waited for");
        static QUIET: fn() = || {};
        let three = take_here(runtime.path(), 3, "e", &NEVER).await.unwrap();
        assert_eq!(three.number, 0);
        let one = take_here(runtime.path(), 1, "e", &QUIET);
        tokio::pin!(one);
        let early = tokio::time::timeout(Duration::from_millis(1500), &mut one).await;
        assert!(early.is_err(), "jobs = 1 uses slot 0 only");
        let another = take_here(runtime.path(), 3, "e", &NEVER).await.unwrap();
        assert_eq!(another.number, 1);
        drop(three);
        let one = tokio::time::timeout(Duration::from_secs(3), one)
            .await
            .expect("slot 0 freed is taken")
            .unwrap();
        assert_eq!(one.number, 0);
    }
}
