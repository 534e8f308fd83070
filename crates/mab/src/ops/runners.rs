//! `mab runners list | add | remove | check`: the runner registry for
//! cluster admins.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::future::join_all;
use mab_config::{NewRunner, Platform, Runner, RunnerHost, RunnersFile};
use mab_plan::Support;
use serde::Serialize;

use crate::cli::{Format, RunnersAddArgs};
use crate::environment::Environment;
use crate::failure::Failure;
use crate::ops::connect::{self, connect, Connected, Hosts, Unreachable};
use crate::ops::prepare;
use crate::progress::{Event, Lines, Reporter};

/// The runners file these commands use: `--runners`, else PRODUCT.md's
/// lookup order (with `mab.toml` searched from the current directory).
fn locate(flag: Option<&Path>, environment: &Environment) -> Option<PathBuf> {
    let manifest_dir = mab_config::find_manifest(&environment.current_dir)
        .and_then(|manifest| manifest.parent().map(Path::to_owned));
    mab_config::locate_runners(
        flag.map(|path| environment.current_dir.join(path))
            .as_deref(),
        environment.mab_runners.as_deref(),
        manifest_dir.as_deref(),
        environment.xdg_config_home.as_deref(),
        &environment.home,
    )
}

/// Where `mab runners add` creates the file when none exists.
fn default_path(environment: &Environment) -> PathBuf {
    let config_home = environment
        .xdg_config_home
        .clone()
        .filter(|directory| directory.is_absolute())
        .unwrap_or_else(|| environment.home.join(".config"));
    config_home
        .join("mab")
        .join(mab_config::runners::RUNNERS_FILE_NAME)
}

fn load(flag: Option<&Path>, environment: &Environment) -> Result<Option<RunnersFile>, Failure> {
    let Some(path) = locate(flag, environment) else {
        return Ok(None);
    };
    let file = mab_config::load_runners(&path)?;
    for warning in &file.warnings {
        Lines.report(Event::Warning {
            message: warning.clone(),
        });
    }
    Ok(Some(file))
}

fn platform_list(platforms: &[Platform]) -> Vec<String> {
    platforms.iter().map(Platform::to_string).collect()
}

#[derive(Serialize)]
struct ListJson {
    file: Option<String>,
    runners: Vec<ListedRunner>,
}

#[derive(Serialize)]
struct ListedRunner {
    name: String,
    host: String,
    platforms: Vec<String>,
    engine: Option<String>,
    jobs: u32,
    network: String,
}

/// What the ENGINE column of `mab runners list` shows for a runner whose
/// `engine` is not set: `unix:///var/run/docker.sock` on an SSH host, and
/// `DOCKER_HOST` or that socket for `local` (docs/runners.md).
const DEFAULT_ENGINE_SHOWN: &str = "default";

/// `mab runners list`: the runners file's path, then a table with a row per
/// runner (NAME, HOST, PLATFORMS, ENGINE, NETWORK, JOBS); with
/// `--format json`, the same facts as one document.
pub fn list(
    flag: Option<&Path>,
    format: Format,
    environment: &Environment,
) -> Result<String, Failure> {
    let file = load(flag, environment)?;
    let json = ListJson {
        file: file
            .as_ref()
            .and_then(|file| file.path.as_ref())
            .map(|path| path.display().to_string()),
        runners: file
            .iter()
            .flat_map(|file| &file.runners)
            .map(|runner| ListedRunner {
                name: runner.name.clone(),
                host: runner.host.to_string(),
                platforms: platform_list(&runner.platforms),
                engine: runner.engine.clone(),
                jobs: runner.jobs,
                network: runner.network.as_str().to_owned(),
            })
            .collect(),
    };
    if format == Format::Json {
        return Ok(serde_json::to_string_pretty(&json).expect("a list always serialises") + "\n");
    }
    let Some(path) = &json.file else {
        return Ok(format!(
            "no runners file (looked for --runners, MAB_RUNNERS, runners.toml beside mab.toml, {});\n\
             builds use the implicit `local` runner: this machine's engine, emulating foreign platforms\n",
            default_path(environment).display()
        ));
    };
    let mut rows = vec![[
        "NAME".to_owned(),
        "HOST".to_owned(),
        "PLATFORMS".to_owned(),
        "ENGINE".to_owned(),
        "NETWORK".to_owned(),
        "JOBS".to_owned(),
    ]];
    for runner in &json.runners {
        rows.push([
            runner.name.clone(),
            runner.host.clone(),
            runner.platforms.join(","),
            runner
                .engine
                .clone()
                .unwrap_or_else(|| DEFAULT_ENGINE_SHOWN.to_owned()),
            runner.network.clone(),
            runner.jobs.to_string(),
        ]);
    }
    Ok(format!("{}\n{}", path, table(&rows)))
}

/// Columns padded to their widest cell.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `mab runners add`
pub fn add(args: &RunnersAddArgs, environment: &Environment) -> Result<String, Failure> {
    let platforms = super::platform_flags(&args.platforms, &mut Vec::new())?;
    if platforms.is_empty() {
        return Err(Failure::usage(
            format!("runner `{}` needs at least one platform", args.name),
            Some("add --platform linux/arm64 (repeatable) for the platforms this host builds"),
        ));
    }
    if args.jobs == Some(0) {
        return Err(Failure::usage(
            "--jobs must be at least 1",
            Some("--jobs is how many builds run at once on this runner"),
        ));
    }
    let network = super::network_flag(args.network.as_deref())?;
    // The loader checks the edited file with the same parser; checking the
    // flag first names the flag instead of a line not yet written.
    RunnerHost::parse(&args.host).map_err(|error| {
        Failure::usage(
            format!("--host `{}` {error}", args.host),
            Some(&error.hint()),
        )
    })?;
    let path =
        locate(args.runners.as_deref(), environment).unwrap_or_else(|| default_path(environment));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => {
            return Err(Failure::runtime(
                format!("could not read {}: {error}", path.display()),
                None,
            ))
        }
    };
    let runner = NewRunner {
        name: args.name.clone(),
        host: args.host.clone(),
        platforms,
        engine: args.engine.clone(),
        jobs: args.jobs,
        network,
    };
    let edited = mab_config::add_runner(&path, &text, &runner)?;
    write(&path, &edited)?;
    Ok(format!(
        "added runner `{}` to {}\n",
        runner.name,
        path.display()
    ))
}

/// `mab runners remove`
pub fn remove(
    name: &str,
    flag: Option<&Path>,
    environment: &Environment,
) -> Result<String, Failure> {
    let Some(path) = locate(flag, environment) else {
        return Err(Failure::usage(
            format!("there is no runner named `{name}`: no runners file exists"),
            Some("add runners with `mab runners add`, or point --runners at the file"),
        ));
    };
    let text = std::fs::read_to_string(&path).map_err(|error| {
        Failure::usage(format!("could not read {}: {error}", path.display()), None)
    })?;
    let edited = mab_config::remove_runner(&path, &text, name)?;
    write(&path, &edited)?;
    Ok(format!("removed runner `{name}` from {}\n", path.display()))
}

fn write(path: &Path, text: &str) -> Result<(), Failure> {
    let failed = |error: std::io::Error| {
        Failure::runtime(format!("could not write {}: {error}", path.display()), None)
    };
    // Edit the file a symlink points to, not the link.
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let directory = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(directory).map_err(failed)?;
    // Write a new file beside it and rename it over the old one, so that a
    // failure never leaves half a file; keep the old file's permissions.
    let mut temporary = tempfile::NamedTempFile::new_in(directory).map_err(failed)?;
    std::io::Write::write_all(&mut temporary, text.as_bytes()).map_err(failed)?;
    if let Ok(metadata) = std::fs::metadata(&path) {
        temporary
            .as_file()
            .set_permissions(metadata.permissions())
            .map_err(failed)?;
    }
    temporary
        .persist(&path)
        .map_err(|error| failed(error.error))?;
    Ok(())
}

/// What `mab runners check` reports per runner (PRODUCT.md's keys, plus a hint).
#[derive(Serialize)]
struct Report {
    name: String,
    ok: bool,
    error: Option<String>,
    error_kind: Option<&'static str>,
    hint: Option<String>,
    latency_ms: Option<f64>,
    arch: Option<String>,
    /// `docker` or `podman` ([`mab_engine::EngineKind`]); `None` when the
    /// runner could not be asked.
    engine_kind: Option<&'static str>,
    engine_version: Option<String>,
    api_version: Option<String>,
    disk_free_bytes: Option<u64>,
    platforms: BTreeMap<Platform, &'static str>,
    /// The runner's build slots on its host (docs/runners.md, "Slots");
    /// `None` when the host could not be asked.
    slots: Option<SlotsJson>,
}

/// `"slots": {"jobs": N, "in_use": M}`: the runner's `jobs` in this
/// runners file, and the slot files on its host that builds hold now
/// (every one, also those numbered beyond this file's `jobs`, which
/// another coordinator's runners file may allow).
#[derive(Serialize)]
struct SlotsJson {
    jobs: u32,
    in_use: u32,
}

#[derive(Serialize)]
struct CheckJson {
    runners: Vec<Report>,
}

/// `mab runners check`: returns stdout, or a failure (exit 1) carrying the
/// same report when any runner is unusable.
/// Checks the runners; retried handshakes and engine requests go to
/// `reporter` (plain lines on stderr), and with `verbose` (`-v`) each
/// reachable runner's engine address, and whether it was found by
/// looking ([`connect::engine_sockets`]).
pub async fn check(
    names: &[String],
    flag: Option<&Path>,
    format: Format,
    verbose: bool,
    environment: &Environment,
    reporter: &std::sync::Arc<dyn crate::progress::Reporter>,
) -> Result<String, Failure> {
    let file = load(flag, environment)?;
    let runners: Vec<Runner> = match &file {
        Some(file) => file.runners.clone(),
        None => mab_config::implicit_runners(&[]).runners,
    };
    for name in names {
        if !runners.iter().any(|runner| &runner.name == name) {
            let known: Vec<&str> = runners.iter().map(|runner| runner.name.as_str()).collect();
            return Err(Failure::usage(
                format!("there is no runner named `{name}`"),
                Some(&format!("the runners are {}", known.join(", "))),
            ));
        }
    }
    let chosen: Vec<&Runner> = runners
        .iter()
        .filter(|runner| names.is_empty() || names.contains(&runner.name))
        .collect();
    // One SSH connection per host, however many entries name it.
    let hosts = Hosts::default();
    let reports = join_all(
        chosen
            .iter()
            .map(|runner| check_one(runner, verbose, environment, reporter, &hosts)),
    )
    .await;
    connect::warn_crowded(&hosts, &chosen, reporter.as_ref());
    let failed = reports.iter().filter(|report| !report.ok).count();
    let total = reports.len();
    let problems = problems(&reports);
    let output = match format {
        Format::Json => {
            serde_json::to_string_pretty(&CheckJson { runners: reports })
                .expect("reports serialise")
                + "\n"
        }
        Format::Human => human_report(&reports),
    };
    if failed == 0 {
        Ok(output)
    } else {
        let mut failure = Failure::runtime_with_output(
            output,
            &format!("{failed} of {total} runner(s) cannot be used"),
        );
        failure.report = format!("{problems}{}", failure.report);
        Err(failure)
    }
}

async fn check_one(
    runner: &Runner,
    verbose: bool,
    environment: &Environment,
    reporter: &std::sync::Arc<dyn crate::progress::Reporter>,
    hosts: &Hosts,
) -> Report {
    let mut report = Report {
        name: runner.name.clone(),
        ok: false,
        error: None,
        error_kind: None,
        hint: None,
        latency_ms: None,
        arch: None,
        engine_kind: None,
        engine_version: None,
        api_version: None,
        disk_free_bytes: None,
        platforms: BTreeMap::new(),
        slots: None,
    };
    let connected = match connect(runner, environment, reporter, hosts).await {
        Ok(connected) => connected,
        Err(Unreachable {
            kind,
            message,
            hint,
        }) => {
            report.error = Some(message);
            report.error_kind = Some(kind.as_str());
            report.hint = hint;
            for platform in &runner.platforms {
                report
                    .platforms
                    .insert(platform.clone(), Support::Unavailable.as_str());
            }
            return report;
        }
    };
    if verbose {
        reporter.report(Event::Diagnostic {
            level: "info".to_owned(),
            message: engine_line(&runner.name, &connected),
        });
    }
    report.latency_ms = latency_ms(&connected).await;
    let capabilities = prepare::capabilities(&connected);
    report.arch = Some(capabilities.own.as_ref().map_or_else(
        || connected.info.architecture.clone(),
        |own| own.architecture().to_owned(),
    ));
    report.engine_kind = Some(connected.info.kind.as_str());
    report.engine_version = Some(connected.info.version.clone());
    report.api_version = Some(connected.info.api_version.clone());
    report.disk_free_bytes = disk_free(&connected).await;
    // The implicit runner lists nothing: show what it can build.
    let listed: Vec<Platform> = if runner.platforms.is_empty() {
        capabilities.buildable()
    } else {
        runner.platforms.clone()
    };
    let mut unavailable = Vec::new();
    for platform in &listed {
        let support = capabilities.support(platform);
        if support == Support::Unavailable {
            unavailable.push(platform);
        }
        report.platforms.insert(platform.clone(), support.as_str());
    }
    if !unavailable.is_empty() {
        let reasons: Vec<String> = unavailable
            .iter()
            .map(|platform| {
                format!(
                    "lists {platform} but {}",
                    capabilities.why_unavailable(platform)
                )
            })
            .collect();
        report.error = Some(format!("runner `{}` {}", runner.name, reasons.join("; ")));
        report.error_kind = Some("engine");
        report.hint = Some(unavailable_hint(&unavailable));
    }
    check_slots(&connected, runner, &mut report).await;
    report.ok = report.error.is_none();
    report
}

/// Fills in `report`'s `slots` from the slot probe of the runner's host
/// ([`Connected::slots_in_use`]); when the probe finds a need missing or
/// fails, that is the runner's error (kind `slots`), unless it has one
/// already, to which it is added.
async fn check_slots(connected: &Connected, runner: &Runner, report: &mut Report) {
    match connected.slots_in_use(&runner.name).await {
        Ok(in_use) => {
            report.slots = Some(SlotsJson {
                jobs: runner.jobs,
                in_use,
            })
        }
        Err(error) => match (&mut report.error, &mut report.hint) {
            (Some(message), Some(hint)) => {
                message.push_str(&format!("; {error}"));
                hint.push_str(&format!("\nhint: {}", error.hint()));
            }
            _ => {
                report.error = Some(error.to_string());
                report.error_kind = Some("slots");
                report.hint = Some(error.hint());
            }
        },
    }
}

/// The `hint:` for platforms a runner lists but cannot build: the QEMU
/// handlers they need, each named once and sorted (every arm variant needs
/// the same `qemu-arm`), or a native runner when no handler would do.
fn unavailable_hint(unavailable: &[&Platform]) -> String {
    let handlers: BTreeSet<&str> = unavailable
        .iter()
        .filter_map(|platform| platform.qemu_handler())
        .collect();
    if handlers.is_empty() {
        return "add a native runner for it, or remove the platform from the runner".to_owned();
    }
    let handlers: Vec<&str> = handlers.into_iter().collect();
    format!(
        "register the QEMU handler(s) {} on that host (Debian: apt-get install qemu-user-static binfmt-support), or remove the platform from the runner",
        handlers.join(", ")
    )
}

/// Round trip of an engine ping through the runner's connection.
async fn latency_ms(connected: &Connected) -> Option<f64> {
    let started = Instant::now();
    connected.engine.ping().await.ok()?;
    Some((started.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0)
}

/// What `mab runners check -v` says of a runner's engine address: where
/// it came from when mab looked for it.
fn engine_line(runner: &str, connected: &Connected) -> String {
    let found = match connected.engine_found {
        true => ", found by looking: the runner sets no `engine` and the default socket does not exist (docs/runners.md, \"Preparing a host\")",
        false => "",
    };
    format!(
        "runner `{runner}`: {} engine at {}{found}",
        connected.info.kind, connected.engine_address
    )
}

/// Free bytes on the filesystem of the engine's data root, from `df`.
async fn disk_free(connected: &Connected) -> Option<u64> {
    let root = connected.info.root_dir.as_deref()?;
    if !root.starts_with('/') || root.contains(['\'', '\n']) {
        return None;
    }
    let output = connected.probe(&format!("df -Pk '{root}'")).await?;
    parse_df_available(&output)
}

/// The `Available` column (KiB) of `df -Pk` output, in bytes.
fn parse_df_available(output: &str) -> Option<u64> {
    let line = output.lines().nth(1)?;
    let kibibytes: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    Some(kibibytes * 1024)
}

fn human_report(reports: &[Report]) -> String {
    let mut rows = vec![[
        "RUNNER".to_owned(),
        "STATUS".to_owned(),
        "LATENCY".to_owned(),
        "ENGINE".to_owned(),
        "ARCH".to_owned(),
        "DISK FREE".to_owned(),
        "SLOTS".to_owned(),
        "PLATFORMS".to_owned(),
    ]];
    for report in reports {
        let platforms: Vec<String> = report
            .platforms
            .iter()
            .map(|(platform, support)| format!("{platform} {support}"))
            .collect();
        rows.push([
            report.name.clone(),
            match (report.ok, report.error_kind) {
                (true, _) => "ok".to_owned(),
                // The cause, as `--format json` names it in `error_kind`.
                (false, Some(kind)) => format!("FAILED ({kind})"),
                (false, None) => "FAILED".to_owned(),
            },
            report
                .latency_ms
                .map_or("-".to_owned(), |latency| format!("{latency:.1} ms")),
            engine_column(report),
            report.arch.clone().unwrap_or_else(|| "-".to_owned()),
            report.disk_free_bytes.map_or("-".to_owned(), gibibytes),
            report.slots.as_ref().map_or("-".to_owned(), |slots| {
                format!("{} of {} in use", slots.in_use, slots.jobs)
            }),
            platforms.join(", "),
        ]);
    }
    table(&rows)
}

/// The ENGINE column of `mab runners check`: the engine's kind, version
/// and API version (`podman 4.3.1 (API 1.41)`), `-` when the runner could
/// not be asked.
fn engine_column(report: &Report) -> String {
    match (
        report.engine_kind,
        &report.engine_version,
        &report.api_version,
    ) {
        (Some(kind), Some(version), Some(api)) => format!("{kind} {version} (API {api})"),
        _ => "-".to_owned(),
    }
}

/// Each unusable runner's error and hint, for stderr.
fn problems(reports: &[Report]) -> String {
    let mut out = String::new();
    for report in reports.iter().filter(|report| !report.ok) {
        if let Some(error) = &report.error {
            out.push_str(&format!("error: {}: {error}\n", report.name));
        }
        if let Some(hint) = &report.hint {
            out.push_str(&format!("hint: {hint}\n"));
        }
    }
    out
}

fn gibibytes(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1024.0 * 1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_available_space_from_df() {
        let output = "Filesystem     1024-blocks      Used Available Capacity Mounted on\n/dev/vda         263174212  11523400 251634428       5% /\n";
        assert_eq!(parse_df_available(output), Some(251_634_428 * 1024));
        assert_eq!(parse_df_available("garbage"), None);
    }

    #[test]
    fn the_hint_names_each_missing_handler_once_in_order() {
        let platforms: Vec<Platform> = [
            "linux/s390x",
            "linux/arm/v7",
            "linux/arm/v6",
            "linux/arm64",
            "linux/arm/v5",
        ]
        .iter()
        .map(|text| text.parse().unwrap())
        .collect();
        let unavailable: Vec<&Platform> = platforms.iter().collect();
        assert_eq!(
            unavailable_hint(&unavailable),
            "register the QEMU handler(s) qemu-aarch64, qemu-arm, qemu-s390x on that host \
             (Debian: apt-get install qemu-user-static binfmt-support), \
             or remove the platform from the runner"
        );
        let wasm: Platform = "linux/wasm".parse().unwrap();
        assert_eq!(
            unavailable_hint(&[&wasm]),
            "add a native runner for it, or remove the platform from the runner"
        );
    }

    #[test]
    fn the_engine_column_names_the_kind_version_and_api() {
        let report = |kind, version: Option<&str>| Report {
            name: "p".to_owned(),
            ok: version.is_some(),
            error: None,
            error_kind: None,
            hint: None,
            latency_ms: None,
            arch: None,
            engine_kind: kind,
            engine_version: version.map(str::to_owned),
            api_version: version.map(|_| "1.41".to_owned()),
            disk_free_bytes: None,
            platforms: BTreeMap::new(),
            slots: None,
        };
        let podman = report(Some("podman"), Some("4.3.1"));
        assert_eq!(engine_column(&podman), "podman 4.3.1 (API 1.41)");
        let docker = report(Some("docker"), Some("20.10.24+dfsg1"));
        assert_eq!(engine_column(&docker), "docker 20.10.24+dfsg1 (API 1.41)");
        assert_eq!(engine_column(&report(None, None)), "-");
        // JSON carries the kind next to the version, null when not asked.
        let json = serde_json::to_value(&podman).unwrap();
        assert_eq!(json["engine_kind"], "podman");
        let json = serde_json::to_value(report(None, None)).unwrap();
        assert_eq!(json["engine_kind"], serde_json::Value::Null);
    }

    #[test]
    fn tables_pad_columns() {
        let rows = [
            ["NAME".to_owned(), "HOST".to_owned()],
            ["power9-01".to_owned(), "p9".to_owned()],
        ];
        assert_eq!(table(&rows), "NAME       HOST\npower9-01  p9\n");
    }
}
