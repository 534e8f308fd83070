//! Progress on stderr: what the build is doing, per platform.
//!
//! The orchestration and the libraries report typed [`Event`]s (crate
//! `mab-events`) through the [`Reporter`] trait; this module only renders
//! them: indicatif bars on a terminal, one plain line per event in CI logs
//! (`--progress plain`), or one JSON object per line (`--progress json`,
//! [`mab_events::json_line`]; docs/progress.md).
//!
//! While a command runs, its [`Renderer`] is the active one ([`activate`]):
//! library log lines ([`crate::logging`]) and the interrupt warning go
//! through it too ([`report`]), so that nothing else writes to stderr
//! around the bars or between the JSON lines.

use std::io::Write;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::cli::Progress;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

pub use mab_events::{Event, Reporter, StagingTagsReason};

/// How the terminal is used, from the global flags: `-v` shows every
/// build log line above the bars, `-q` shows nothing but the failure
/// report, `color` whether stderr is coloured ([`crate::cli::Color`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Terminal {
    /// `-v`.
    pub verbose: bool,
    /// `-q`.
    pub quiet: bool,
    /// Whether stderr is coloured ([`Terminal::apply_color`]).
    pub color: bool,
    /// `mab build` under GitHub Actions: each platform's build log is
    /// printed in its group when its job ends ([`crate::github`]), so the
    /// plain lines leave build log lines out unless `verbose`.
    pub groups: bool,
}

impl Terminal {
    /// Makes everything that styles stderr (indicatif's bars, the lines,
    /// [`paint_report`]) colour it or not, as `color` says.
    pub fn apply_color(self) {
        console::set_colors_enabled_stderr(self.color);
    }
}

/// The renderer `--progress` asks for, shown as `terminal` says: `-q`
/// silences every renderer but `--progress json` (which a script asked
/// for by name), `-v` included.
pub fn renderer(mode: Progress, stderr_is_terminal: bool, terminal: Terminal) -> Arc<Renderer> {
    Arc::new(match mode {
        Progress::Json => Renderer::Json(JsonLines),
        _ if terminal.quiet => Renderer::Quiet,
        // indicatif draws nothing where stderr is not a terminal.
        Progress::Tty | Progress::Auto if stderr_is_terminal => {
            Renderer::Bars(Bars::new(terminal.verbose))
        }
        _ if terminal.groups && !terminal.verbose => Renderer::Grouped,
        Progress::Tty | Progress::Auto | Progress::Plain => Renderer::Lines(Lines),
    })
}

/// One of the ways of showing events.
pub enum Renderer {
    Bars(Bars),
    Lines(Lines),
    Json(JsonLines),
    /// The [`Lines`] without build log lines ([`Terminal::groups`]).
    Grouped,
    /// `-q`: nothing; the failure report alone reaches stderr.
    Quiet,
}

impl Renderer {
    /// Whether a failed command's report is printed as text after the
    /// last event. With `--progress json` it is not: the `result` event
    /// holds its message, hints and details, and stderr holds only JSON.
    pub fn prints_reports(&self) -> bool {
        !matches!(self, Renderer::Json(_))
    }
}

impl Reporter for Renderer {
    fn report(&self, event: Event) {
        for observer in observers() {
            observer.report(event.clone());
        }
        match self {
            Renderer::Bars(bars) => bars.report(event),
            Renderer::Lines(lines) => lines.report(event),
            Renderer::Json(json) => json.report(event),
            Renderer::Grouped => {
                if !matches!(event, Event::Log { .. }) {
                    Lines.report(event);
                }
            }
            Renderer::Quiet => {}
        }
    }
}

/// What hears the events besides the renderer (the build's log files,
/// its HTML report, GitHub Actions' workflow files), in the order added.
static OBSERVERS: Mutex<Vec<Arc<dyn Reporter>>> = Mutex::new(Vec::new());

/// Adds `observer`: from now on it hears every event a [`Renderer`] is
/// given, before the renderer draws it, until [`forget_observers`].
pub fn observe(observer: Arc<dyn Reporter>) {
    OBSERVERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(observer);
}

/// Removes every observer [`observe`] added.
pub fn forget_observers() {
    OBSERVERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clear();
}

/// The observers now, copied so that none is called under the lock.
fn observers() -> Vec<Arc<dyn Reporter>> {
    OBSERVERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

/// The renderer of the command that runs, if it has one.
static ACTIVE: RwLock<Option<Arc<Renderer>>> = RwLock::new(None);

/// Makes `renderer` the one [`report`] goes to until [`deactivate`].
pub fn activate(renderer: Arc<Renderer>) {
    *ACTIVE
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(renderer);
}

/// Ends [`activate`]: [`report`] writes plain lines again.
pub fn deactivate() {
    *ACTIVE
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
}

/// Whether the command's end was told ([`end`]).
static COMMAND_ENDED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Marks the command's end as told (its `result` event, or its report,
/// is the last thing on stderr): [`report`] leaves out what comes later,
/// such as the log lines of tasks dropped while the runtime shuts down.
pub fn end() {
    COMMAND_ENDED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Reports `event` to the active renderer; where none is active (commands
/// without progress, such as `mab runners check`), as a plain line.
/// Nothing once the command's end was told ([`end`]).
pub fn report(event: Event) {
    if COMMAND_ENDED.load(std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let active = ACTIVE
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    match active {
        Some(renderer) => renderer.report(event),
        None => Lines.report(event),
    }
}

/// One line per event, prefixed with platform and runner.
pub struct Lines;

impl Lines {
    /// The line for `event`; `None` for events a plain log leaves out.
    pub(crate) fn line(event: &Event) -> Option<String> {
        let at = |platform: &mab_config::Platform, runner: &str| format!("[{platform} {runner}]");
        Some(match event {
            Event::Plan {
                image,
                context_files,
                jobs,
            } => {
                let mut lines: Vec<String> = jobs
                    .iter()
                    .map(|job| format!("{} -> {}: {}", job.platform, job.runner, job.reason))
                    .collect();
                lines.push(if jobs.is_empty() {
                    // A resume that reuses every platform.
                    format!("nothing to build for {image}: every platform is reused")
                } else {
                    format!(
                        "building {image} for {} platform(s) from {context_files} file(s)",
                        jobs.len()
                    )
                });
                lines.join("\n")
            }
            Event::Waiting {
                platform,
                runner,
                jobs,
                seconds,
                holding,
            } => waiting_line(platform, runner, *jobs, *seconds, holding),
            Event::JobStarted {
                platform,
                runner,
                emulated,
            } => {
                let how = if *emulated {
                    "emulated with QEMU"
                } else {
                    "native"
                };
                format!("{} started ({how})", at(platform, runner))
            }
            // Many a second: the bars show it, plain logs leave it out.
            Event::PhaseStarted { .. } | Event::ContextSent { .. } => return None,
            Event::PhaseFinished {
                platform,
                runner,
                phase,
                seconds,
                bytes,
            } => {
                // What the bytes are depends on the phase (docs/progress.md).
                let (phase, what) = match phase {
                    mab_events::Phase::Build => ("build", " of context sent"),
                    mab_events::Phase::Push => ("push", ""),
                    mab_events::Phase::Verify => ("verify", " in the registry"),
                    mab_events::Phase::Check => ("check", " of layers read"),
                    mab_events::Phase::Test => ("test", ""),
                };
                let bytes =
                    bytes.map_or_else(String::new, |bytes| format!(", {bytes} bytes{what}"));
                format!(
                    "{} {phase} done in {seconds:.1}s{bytes}",
                    at(platform, runner)
                )
            }
            Event::Step {
                platform,
                runner,
                step,
                cached,
            } => {
                let cached = if *cached { " (cached)" } else { "" };
                format!("{} {step}{cached}", at(platform, runner))
            }
            Event::CacheSource {
                platform,
                runner,
                source,
            } => match source {
                Some(source) => format!("{} build cache from {source}", at(platform, runner)),
                // A warning said why.
                None => return None,
            },
            Event::Log {
                platform,
                runner,
                line,
            } => format!("{} | {line}", at(platform, runner)),
            Event::Pushed {
                platform,
                runner,
                digest,
            } => format!("{} pushed {digest}", at(platform, runner)),
            Event::JobFinished {
                platform,
                runner,
                seconds,
            } => format!("{} done in {seconds:.1}s", at(platform, runner)),
            Event::JobFailed {
                platform,
                runner,
                message,
                ..
            } => format!("{} FAILED: {message}", at(platform, runner)),
            Event::Retry {
                target,
                request,
                attempt,
                tries,
                delay_ms,
                error,
            } => {
                let target = match target {
                    mab_events::RetryTarget::Registry { registry } => registry.clone(),
                    mab_events::RetryTarget::Ssh { runner } => format!("sshd of runner `{runner}`"),
                    mab_events::RetryTarget::Engine { runner } => {
                        format!("engine of runner `{runner}`")
                    }
                };
                format!(
                    "warning: {target}: {request} failed (try {attempt} of {tries}): {error}; retrying in {delay_ms} ms"
                )
            }
            Event::Moved {
                platform,
                from,
                to,
                emulated,
                reason,
            } => {
                let how = if *emulated { "emulated" } else { "native" };
                format!("warning: {platform} moved from runner `{from}` to runner `{to}` ({how}): {reason}")
            }
            Event::Reused {
                platform,
                runner,
                digest,
            } => {
                let runner = runner
                    .as_ref()
                    .map(|runner| format!(" (runner `{runner}`)"))
                    .unwrap_or_default();
                format!(
                    "{platform} reused from the earlier build{runner}: {digest}, still in the registry"
                )
            }
            Event::Published {
                image,
                digest,
                tags,
                missing,
            } if missing.is_empty() => {
                format!("published {image}@{digest} as {}", tags.join(", "))
            }
            Event::Published {
                image,
                digest,
                tags,
                missing,
            } => {
                let missing: Vec<String> = missing.iter().map(ToString::to_string).collect();
                format!(
                    "published a partial list {image}@{digest} as {}, without {}",
                    tags.join(", "),
                    missing.join(", ")
                )
            }
            Event::ReadBack {
                image,
                digest,
                tags,
                platforms,
            } => format!(
                "read back {image}@{digest}: {} {} at it, {} served",
                tags.join(", "),
                if tags.len() == 1 { "points" } else { "point" },
                platforms.join(", ")
            ),
            Event::StagingTagsLeft {
                image,
                tags,
                reason,
            } => {
                let (named, remain, them, their) = match tags.len() {
                    1 => ("staging tag", "remains", "it", "its image"),
                    _ => ("staging tags", "remain", "them", "their images"),
                };
                let why = match reason {
                    StagingTagsReason::KeptForResume => {
                        format!("kept for `mab build --resume`, which reuses {their}")
                    }
                    StagingTagsReason::NotDeleted => format!("the registry did not delete {them}"),
                };
                format!(
                    "{named} {} {remain} in {image}: {why} (see docs/publishing.md#where-staging-tags-remain)",
                    tags.join(", ")
                )
            }
            Event::Warning { message } => format!("warning: {message}"),
            Event::Diagnostic { level, message } => format!("{level}: {message}"),
            // The digest is on stdout; a failure's report follows as text.
            Event::Result(outcome) if outcome.error.is_none() && outcome.no_push => {
                "built and verified every platform; nothing was pushed (--no-push)".to_owned()
            }
            Event::Result(_) => return None,
        })
    }
}

impl Reporter for Lines {
    fn report(&self, event: Event) {
        if let Some(line) = Lines::line(&event) {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "{}", paint_line(&line));
        }
    }
}

/// `line` with its leading `warning:` in yellow and a platform's `FAILED`
/// in red, where stderr is coloured.
fn paint_line(line: &str) -> String {
    if let Some(rest) = line.strip_prefix("warning:") {
        return format!("{}{rest}", console::style("warning:").yellow().for_stderr());
    }
    match line.split_once("] FAILED:") {
        Some((at, rest)) => format!(
            "{at}] {}{rest}",
            console::style("FAILED:").red().bold().for_stderr()
        ),
        None => line.to_owned(),
    }
}

/// A failure report ([`crate::failure::render`]) with `error:` in bold red
/// and each `hint:` in cyan, where stderr is coloured.
pub fn paint_report(report: &str) -> String {
    report
        .lines()
        .map(|line| {
            if let Some(rest) = line.strip_prefix("error:") {
                format!(
                    "{}{rest}",
                    console::style("error:").red().bold().for_stderr()
                )
            } else if let Some(rest) = line.strip_prefix("hint:") {
                format!("{}{rest}", console::style("hint:").cyan().for_stderr())
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The line of an [`Event::Waiting`]: `linux/ppc64le waits for a slot on
/// runner `power` (jobs = 1, its one slot is taken), 20 s so far`; with
/// `jobs = 2` and this build's `linux/amd64` on one of them, `(jobs = 2,
/// all 2 slots are taken, one by this build's linux/amd64)`.
fn waiting_line(
    platform: &mab_config::Platform,
    runner: &str,
    jobs: u32,
    seconds: u64,
    holding: &[mab_config::Platform],
) -> String {
    let mut taken = if jobs == 1 {
        "its one slot is taken".to_owned()
    } else {
        format!("all {jobs} slots are taken")
    };
    if !holding.is_empty() {
        let platforms: Vec<String> = holding.iter().map(ToString::to_string).collect();
        let count = match holding.len() {
            1 => "one".to_owned(),
            count => count.to_string(),
        };
        taken.push_str(&format!(
            ", {count} by this build's {}",
            platforms.join(", ")
        ));
    }
    let so_far = if seconds == 0 {
        String::new()
    } else {
        format!(", {seconds} s so far")
    };
    format!("{platform} waits for a slot on runner `{runner}` (jobs = {jobs}, {taken}){so_far}")
}

/// One JSON object per line, with `"schema": 1`.
pub struct JsonLines;

impl Reporter for JsonLines {
    fn report(&self, event: Event) {
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{}", mab_events::json_line(&event));
    }
}

/// The bars: a header, then one line per platform and runner (platform,
/// runner, native or emulated, the current phase, elapsed time), each cut
/// to the terminal's width so that none wraps; after the last event a
/// summary (docs/progress.md#the-terminal).
pub struct Bars {
    multi: MultiProgress,
    /// `-v`: every build log line is printed above the bars.
    verbose: bool,
    state: Mutex<BarsState>,
    echo: EchoControl,
}

/// What the bars have heard so far.
#[derive(Default)]
struct BarsState {
    /// Widths of the platform and runner columns, from the plan.
    widths: (usize, usize),
    /// The header line above the rows.
    header: Option<ProgressBar>,
    rows: Vec<Row>,
    /// The published list: its digest and tags.
    published: Option<(String, Vec<String>)>,
}

/// One platform on one runner: a platform moved to another runner gets a
/// new row below its failed one.
struct Row {
    platform: mab_config::Platform,
    runner: String,
    emulated: bool,
    bar: ProgressBar,
    /// The image manifest's digest, once pushed (or reused).
    digest: Option<String>,
    /// The job's time, once it ended well.
    seconds: Option<f64>,
    /// The checks that passed: `verify`, `check`, `test`.
    checks: Vec<&'static str>,
    /// `--resume` reused the earlier build's image: no job ran.
    reused: bool,
}

/// The template of a running row: spinner, the row's text (cut to the
/// width left), elapsed time.
const RUNNING: &str = "{spinner:.cyan} {wide_msg} {elapsed:>4}";
/// The template of an ended row and the header: a mark and the text.
const ENDED: &str = "{prefix} {wide_msg}";

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

impl Bars {
    fn new(verbose: bool) -> Bars {
        Bars {
            multi: MultiProgress::new(),
            echo: EchoControl::off(),
            verbose,
            state: Mutex::new(BarsState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BarsState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds the header and a waiting row for each planned job.
    fn plan(&self, jobs: &[mab_events::PlannedJob]) {
        let mut state = self.state();
        let platforms = jobs.iter().map(|job| job.platform.to_string().len());
        let runners = jobs.iter().map(|job| job.runner.len());
        state.widths = (
            platforms.max().unwrap_or(0).max("PLATFORM".len()),
            runners.max().unwrap_or(0).max("RUNNER".len()),
        );
        let header = self.multi.add(ProgressBar::new_spinner());
        header.set_style(style(ENDED));
        header.set_prefix(" ");
        let (platform, runner) = state.widths;
        header.set_message(format!(
            "{}",
            console::style(format!(
                "{:<platform$} {:<runner$} {:<8} PHASE",
                "PLATFORM", "RUNNER", "HOW"
            ))
            .bold()
            .for_stderr()
        ));
        header.tick();
        state.header = Some(header);
        for job in jobs {
            self.row(&mut state, &job.platform, &job.runner, job.emulated);
        }
        drop(state);
        for job in jobs {
            self.set_phase(&job.platform, &job.runner, "planned".to_owned());
        }
    }

    /// The row of `platform` on `runner`, added when there is none.
    fn row<'a>(
        &self,
        state: &'a mut BarsState,
        platform: &mab_config::Platform,
        runner: &str,
        emulated: bool,
    ) -> &'a mut Row {
        let found = state
            .rows
            .iter()
            .position(|row| row.platform == *platform && row.runner == runner);
        let index = match found {
            Some(index) => index,
            None => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(style(RUNNING));
                bar.enable_steady_tick(Duration::from_millis(120));
                state.rows.push(Row {
                    platform: platform.clone(),
                    runner: runner.to_owned(),
                    emulated,
                    bar,
                    digest: None,
                    seconds: None,
                    checks: Vec::new(),
                    reused: false,
                });
                state.rows.len() - 1
            }
        };
        &mut state.rows[index]
    }

    /// The columns of `row` before its phase.
    fn columns(widths: (usize, usize), row: &Row) -> String {
        let (platform, runner) = widths;
        let how = if row.emulated { "emulated" } else { "native" };
        format!(
            "{:<platform$} {:<runner$} {how:<8}",
            row.platform.to_string(),
            row.runner
        )
    }

    /// Shows `phase` as the current one of `platform` on `runner`.
    fn set_phase(&self, platform: &mab_config::Platform, runner: &str, phase: String) {
        let mut state = self.state();
        let widths = state.widths;
        let row = self.row(&mut state, platform, runner, false);
        row.bar
            .set_message(format!("{} {phase}", Bars::columns(widths, row)));
    }

    /// Ends the row of `platform` on `runner`: done, or failed with
    /// `message`.
    fn end(&self, platform: &mab_config::Platform, runner: &str, outcome: Result<f64, &str>) {
        let mut state = self.state();
        let widths = state.widths;
        let row = self.row(&mut state, platform, runner, false);
        row.bar.set_style(style(ENDED));
        match outcome {
            Ok(seconds) => {
                row.seconds = Some(seconds);
                let digest = row.digest.as_deref().map(short_digest).unwrap_or_default();
                let done = if row.reused {
                    "reused".to_owned()
                } else {
                    format!("done {seconds:.1}s")
                };
                row.bar
                    .set_prefix(format!("{}", console::style("✓").green().for_stderr()));
                row.bar
                    .finish_with_message(format!("{} {done} {digest}", Bars::columns(widths, row)));
            }
            Err(message) => {
                row.bar
                    .set_prefix(format!("{}", console::style("✗").red().for_stderr()));
                row.bar.abandon_with_message(format!(
                    "{} {} {message}",
                    Bars::columns(widths, row),
                    console::style("FAILED:").red().bold().for_stderr()
                ));
            }
        }
    }

    /// Prints `line` above the bars.
    fn println(&self, line: &str) {
        let _ = self.multi.println(paint_line(line));
    }
}

/// The terminal's echo of control characters (`ECHOCTL`: Ctrl-C shown as
/// `^C`) turned off while the bars draw, and back as it was after. indicatif
/// pads each line to the terminal's width, so the cursor waits past the last
/// column; an echoed `^C` there starts a line the next redraw does not know
/// of, and a copy of the top line stays behind. Nothing happens where
/// stderr is not a terminal.
struct EchoControl {
    saved: Mutex<Option<rustix::termios::Termios>>,
}

impl EchoControl {
    fn off() -> EchoControl {
        let stderr = std::io::stderr();
        let saved = rustix::termios::tcgetattr(&stderr).ok().filter(|modes| {
            let mut quiet = modes.clone();
            quiet
                .local_modes
                .remove(rustix::termios::LocalModes::ECHOCTL);
            rustix::termios::tcsetattr(&stderr, rustix::termios::OptionalActions::Now, &quiet)
                .is_ok()
        });
        EchoControl {
            saved: Mutex::new(saved),
        }
    }

    /// Puts the echo back as it was (once).
    fn restore(&self) {
        let saved = self
            .saved
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(modes) = saved {
            let _ = rustix::termios::tcsetattr(
                std::io::stderr(),
                rustix::termios::OptionalActions::Now,
                &modes,
            );
        }
    }
}

impl Drop for EchoControl {
    fn drop(&mut self) {
        self.restore();
    }
}

/// `sha256:` and the first 12 hex digits, as `docker images` shows IDs.
fn short_digest(digest: &str) -> &str {
    &digest[..digest.len().min("sha256:".len() + 12)]
}

/// The context's progress: `context 12.3/40.1 MiB` (binary units: MiB
/// is 1024² bytes); `KiB` below a MiB in all.
fn context_phase(bytes: u64, total: u64) -> String {
    let (unit, size) = if total.max(bytes) >= 1 << 20 {
        ("MiB", f64::from(1u32 << 20))
    } else {
        ("KiB", 1024.0)
    };
    // Counts far below 2^52 bytes: exact as f64.
    #[allow(clippy::cast_precision_loss)]
    let (bytes, total) = (bytes as f64 / size, total as f64 / size);
    format!("context {bytes:.1}/{total:.1} {unit}")
}

/// A BuildKit step name as a phase: `[4/9] RUN make` is `step 4/9 RUN
/// make`; other names (`[internal] load build context`) stay as they are.
fn step_phase(step: &str, cached: bool) -> String {
    let named = step
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
        .filter(|(count, _)| {
            count.contains('/')
                && count
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '/' || c == ' ')
        })
        .map(|(count, rest)| format!("step {} {rest}", count.trim()))
        .unwrap_or_else(|| step.to_owned());
    if cached {
        format!("{named} (cached)")
    } else {
        named
    }
}

impl Reporter for Bars {
    fn report(&self, event: Event) {
        match &event {
            Event::Plan { jobs, .. } => {
                // The plan's lines stay above the bars.
                if let Some(line) = Lines::line(&event) {
                    self.println(&line);
                }
                self.plan(jobs);
            }
            Event::Waiting {
                platform,
                runner,
                seconds,
                ..
            } => self.set_phase(platform, runner, format!("waiting for a slot, {seconds} s")),
            Event::JobStarted {
                platform,
                runner,
                emulated,
            } => {
                let mut state = self.state();
                let row = self.row(&mut state, platform, runner, *emulated);
                row.emulated = *emulated;
                row.bar.reset_elapsed();
                drop(state);
                self.set_phase(platform, runner, "starting".to_owned());
            }
            Event::Step {
                platform,
                runner,
                step,
                cached,
            } => self.set_phase(platform, runner, step_phase(step, *cached)),
            Event::ContextSent {
                platform,
                runner,
                bytes,
                total,
            } => self.set_phase(platform, runner, context_phase(*bytes, *total)),
            Event::PhaseStarted {
                platform,
                runner,
                phase,
            } => {
                let phase = match phase {
                    // Until the first step: the context goes to the engine.
                    mab_events::Phase::Build => "context",
                    mab_events::Phase::Push => "push",
                    mab_events::Phase::Verify => "verify",
                    mab_events::Phase::Check => "check",
                    mab_events::Phase::Test => "test",
                };
                self.set_phase(platform, runner, phase.to_owned());
            }
            Event::PhaseFinished {
                platform,
                runner,
                phase,
                ..
            } => {
                let check = match phase {
                    mab_events::Phase::Verify => "verify",
                    mab_events::Phase::Check => "check",
                    mab_events::Phase::Test => "test",
                    mab_events::Phase::Build | mab_events::Phase::Push => return,
                };
                let mut state = self.state();
                self.row(&mut state, platform, runner, false)
                    .checks
                    .push(check);
            }
            Event::Log {
                platform,
                runner,
                line,
            } => {
                if self.verbose {
                    self.println(&format!("[{platform} {runner}] | {line}"));
                }
            }
            Event::Pushed {
                platform,
                runner,
                digest,
            } => {
                let mut state = self.state();
                self.row(&mut state, platform, runner, false).digest = Some(digest.clone());
            }
            Event::JobFinished {
                platform,
                runner,
                seconds,
            } => self.end(platform, runner, Ok(*seconds)),
            Event::JobFailed {
                platform,
                runner,
                message,
                ..
            } => self.end(platform, runner, Err(message)),
            Event::Reused {
                platform,
                runner,
                digest,
            } => {
                if let Some(line) = Lines::line(&event) {
                    self.println(&line);
                }
                let runner = runner.as_deref().unwrap_or("-");
                let mut state = self.state();
                let row = self.row(&mut state, platform, runner, false);
                row.digest = Some(digest.clone());
                row.reused = true;
                drop(state);
                self.end(platform, runner, Ok(0.0));
            }
            Event::Published { digest, tags, .. } => {
                if let Some(line) = Lines::line(&event) {
                    self.println(&line);
                }
                self.state().published = Some((digest.clone(), tags.clone()));
            }
            _ => {
                if let Some(line) = Lines::line(&event) {
                    self.println(&line);
                }
                if matches!(event, Event::Result(_)) {
                    self.finish();
                }
            }
        }
    }
}

impl Bars {
    /// After the last event: every bar still running stops where it is,
    /// nothing draws any more, the last bar's line is ended, and the
    /// summary follows: each platform that ended well with its digest,
    /// time and the checks it passed, then the list's digest and tags.
    /// The failure report printed next starts on a line of its own.
    fn finish(&self) {
        let state = self.state();
        for row in state.rows.iter().filter(|row| !row.bar.is_finished()) {
            row.bar.abandon();
        }
        if let Some(header) = &state.header {
            header.abandon();
        }
        self.multi
            .set_draw_target(indicatif::ProgressDrawTarget::hidden());
        self.echo.restore();
        let mut stderr = std::io::stderr().lock();
        if state.rows.is_empty() {
            return;
        }
        // indicatif leaves the cursor at the end of the last bar.
        let _ = writeln!(stderr);
        let width = usize::from(console::Term::stderr().size().1);
        for line in summary(&state) {
            let _ = writeln!(stderr, "{}", console::truncate_str(&line, width, ""));
        }
        if let Some((digest, tags)) = &state.published {
            let _ = writeln!(stderr, "list {digest}");
            let _ = writeln!(stderr, "tags {}", tags.join(", "));
        }
    }
}

/// One line per platform that ended well: platform, runner, short digest,
/// seconds, the checks passed.
fn summary(state: &BarsState) -> Vec<String> {
    let (platform, runner) = state.widths;
    state
        .rows
        .iter()
        .filter_map(|row| {
            let seconds = row.seconds?;
            let digest = row.digest.as_deref().map_or("(not pushed)", short_digest);
            let checks = if row.reused {
                "reused from the earlier build".to_owned()
            } else if row.checks.is_empty() {
                "no checks".to_owned()
            } else {
                row.checks.join(", ")
            };
            let time = if row.reused {
                String::new()
            } else {
                format!("{seconds:.1}s")
            };
            Some(format!(
                "{:<platform$} {:<runner$} {digest:<19} {time:>7}  {checks}",
                row.platform.to_string(),
                row.runner
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mab_events::{ErrorKind, Outcome, OutcomeError, Phase, PlannedJob, RetryTarget};

    fn platform(text: &str) -> mab_config::Platform {
        text.parse().unwrap()
    }

    /// The variant's name; exhaustive, so that a new variant must be added
    /// to [`every_event`] too.
    fn variant(event: &Event) -> &'static str {
        match event {
            Event::Plan { .. } => "plan",
            Event::Waiting { .. } => "waiting",
            Event::JobStarted { .. } => "job_started",
            Event::PhaseStarted { .. } => "phase_started",
            Event::PhaseFinished { .. } => "phase_finished",
            Event::Step { .. } => "step",
            Event::CacheSource { .. } => "cache_source",
            Event::Log { .. } => "log",
            Event::ContextSent { .. } => "context_sent",
            Event::Pushed { .. } => "pushed",
            Event::JobFinished { .. } => "job_finished",
            Event::JobFailed { .. } => "job_failed",
            Event::Retry { .. } => "retry",
            Event::Moved { .. } => "moved",
            Event::Reused { .. } => "reused",
            Event::Published { .. } => "published",
            Event::ReadBack { .. } => "read_back",
            Event::StagingTagsLeft { .. } => "staging_tags_left",
            Event::Warning { .. } => "warning",
            Event::Diagnostic { .. } => "diagnostic",
            Event::Result(_) => "result",
        }
    }

    /// Every event, with its plain line (`None`: left out of plain logs)
    /// and its JSON line.
    fn every_event() -> Vec<(Event, Option<&'static str>, &'static str)> {
        let arm = || platform("linux/arm64");
        let pi = || "pi".to_owned();
        vec![
            (
                Event::Plan {
                    image: "127.0.0.1:5000/app".into(),
                    context_files: 3,
                    jobs: vec![PlannedJob {
                        platform: arm(),
                        runner: pi(),
                        emulated: false,
                        reason: "native linux/arm64 engine".into(),
                    }],
                },
                Some("linux/arm64 -> pi: native linux/arm64 engine\nbuilding 127.0.0.1:5000/app for 1 platform(s) from 3 file(s)"),
                r#"{"schema":1,"event":"plan","image":"127.0.0.1:5000/app","context_files":3,"jobs":[{"platform":"linux/arm64","runner":"pi","emulated":false,"reason":"native linux/arm64 engine"}]}"#,
            ),
            (
                Event::Waiting {
                    platform: arm(),
                    runner: pi(),
                    jobs: 1,
                    seconds: 0,
                    holding: vec![],
                },
                Some("linux/arm64 waits for a slot on runner `pi` (jobs = 1, its one slot is taken)"),
                r#"{"schema":1,"event":"waiting","platform":"linux/arm64","runner":"pi","jobs":1,"seconds":0,"holding":[]}"#,
            ),
            (
                Event::Waiting {
                    platform: arm(),
                    runner: pi(),
                    jobs: 2,
                    seconds: 20,
                    holding: vec![],
                },
                Some("linux/arm64 waits for a slot on runner `pi` (jobs = 2, all 2 slots are taken), 20 s so far"),
                r#"{"schema":1,"event":"waiting","platform":"linux/arm64","runner":"pi","jobs":2,"seconds":20,"holding":[]}"#,
            ),
            (
                Event::Waiting {
                    platform: arm(),
                    runner: pi(),
                    jobs: 2,
                    seconds: 0,
                    holding: vec!["linux/amd64".parse().unwrap()],
                },
                Some("linux/arm64 waits for a slot on runner `pi` (jobs = 2, all 2 slots are taken, one by this build's linux/amd64)"),
                r#"{"schema":1,"event":"waiting","platform":"linux/arm64","runner":"pi","jobs":2,"seconds":0,"holding":["linux/amd64"]}"#,
            ),
            (
                Event::JobStarted {
                    platform: arm(),
                    runner: pi(),
                    emulated: true,
                },
                Some("[linux/arm64 pi] started (emulated with QEMU)"),
                r#"{"schema":1,"event":"job_started","platform":"linux/arm64","runner":"pi","emulated":true}"#,
            ),
            (
                Event::PhaseStarted {
                    platform: arm(),
                    runner: pi(),
                    phase: Phase::Push,
                },
                None,
                r#"{"schema":1,"event":"phase_started","platform":"linux/arm64","runner":"pi","phase":"push"}"#,
            ),
            (
                Event::PhaseFinished {
                    platform: arm(),
                    runner: pi(),
                    phase: Phase::Build,
                    seconds: 12.34,
                    bytes: Some(2048),
                },
                Some("[linux/arm64 pi] build done in 12.3s, 2048 bytes of context sent"),
                r#"{"schema":1,"event":"phase_finished","platform":"linux/arm64","runner":"pi","phase":"build","seconds":12.34,"bytes":2048}"#,
            ),
            (
                Event::PhaseFinished {
                    platform: arm(),
                    runner: pi(),
                    phase: Phase::Push,
                    seconds: 0.5,
                    bytes: None,
                },
                Some("[linux/arm64 pi] push done in 0.5s"),
                r#"{"schema":1,"event":"phase_finished","platform":"linux/arm64","runner":"pi","phase":"push","seconds":0.5}"#,
            ),
            (
                Event::PhaseFinished {
                    platform: arm(),
                    runner: pi(),
                    phase: Phase::Test,
                    seconds: 0.61,
                    bytes: None,
                },
                Some("[linux/arm64 pi] test done in 0.6s"),
                r#"{"schema":1,"event":"phase_finished","platform":"linux/arm64","runner":"pi","phase":"test","seconds":0.61}"#,
            ),
            (
                Event::Step {
                    platform: arm(),
                    runner: pi(),
                    step: "[2/3] RUN make".into(),
                    cached: false,
                },
                Some("[linux/arm64 pi] [2/3] RUN make"),
                r#"{"schema":1,"event":"step","platform":"linux/arm64","runner":"pi","step":"[2/3] RUN make","cached":false}"#,
            ),
            (
                Event::Step {
                    platform: arm(),
                    runner: pi(),
                    step: "[1/3] COPY . /".into(),
                    cached: true,
                },
                Some("[linux/arm64 pi] [1/3] COPY . / (cached)"),
                r#"{"schema":1,"event":"step","platform":"linux/arm64","runner":"pi","step":"[1/3] COPY . /","cached":true}"#,
            ),
            (
                Event::CacheSource {
                    platform: arm(),
                    runner: pi(),
                    source: Some(format!("127.0.0.1:5000/app@sha256:{}", "a".repeat(64))),
                },
                Some("[linux/arm64 pi] build cache from 127.0.0.1:5000/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
                r#"{"schema":1,"event":"cache_source","platform":"linux/arm64","runner":"pi","source":"127.0.0.1:5000/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#,
            ),
            (
                Event::CacheSource {
                    platform: arm(),
                    runner: pi(),
                    source: None,
                },
                None,
                r#"{"schema":1,"event":"cache_source","platform":"linux/arm64","runner":"pi","source":null}"#,
            ),
            (
                Event::ContextSent {
                    platform: arm(),
                    runner: pi(),
                    bytes: 12_897_485,
                    total: 42_047_899,
                },
                None,
                r#"{"schema":1,"event":"context_sent","platform":"linux/arm64","runner":"pi","bytes":12897485,"total":42047899}"#,
            ),
            (
                Event::Log {
                    platform: arm(),
                    runner: pi(),
                    line: "cc -O2 main.c".into(),
                },
                Some("[linux/arm64 pi] | cc -O2 main.c"),
                r#"{"schema":1,"event":"log","platform":"linux/arm64","runner":"pi","line":"cc -O2 main.c"}"#,
            ),
            (
                Event::Pushed {
                    platform: arm(),
                    runner: pi(),
                    digest: "sha256:ab".into(),
                },
                Some("[linux/arm64 pi] pushed sha256:ab"),
                r#"{"schema":1,"event":"pushed","platform":"linux/arm64","runner":"pi","digest":"sha256:ab"}"#,
            ),
            (
                Event::JobFinished {
                    platform: arm(),
                    runner: pi(),
                    seconds: 61.06,
                },
                Some("[linux/arm64 pi] done in 61.1s"),
                r#"{"schema":1,"event":"job_finished","platform":"linux/arm64","runner":"pi","seconds":61.06}"#,
            ),
            (
                Event::JobFailed {
                    platform: platform("linux/ppc64le"),
                    runner: "runner-b".into(),
                    kind: ErrorKind::Build,
                    message: "exit code 1".into(),
                },
                Some("[linux/ppc64le runner-b] FAILED: exit code 1"),
                r#"{"schema":1,"event":"job_failed","platform":"linux/ppc64le","runner":"runner-b","kind":"build","message":"exit code 1"}"#,
            ),
            (
                Event::Retry {
                    target: RetryTarget::Registry {
                        registry: "127.0.0.1:5000".into(),
                    },
                    request: "PUT /v2/app/manifests/latest".into(),
                    attempt: 1,
                    tries: 3,
                    delay_ms: 250,
                    error: "the registry answered 503 Service Unavailable".into(),
                },
                Some("warning: 127.0.0.1:5000: PUT /v2/app/manifests/latest failed (try 1 of 3): the registry answered 503 Service Unavailable; retrying in 250 ms"),
                r#"{"schema":1,"event":"retry","target":{"kind":"registry","registry":"127.0.0.1:5000"},"request":"PUT /v2/app/manifests/latest","attempt":1,"tries":3,"delay_ms":250,"error":"the registry answered 503 Service Unavailable"}"#,
            ),
            (
                Event::Retry {
                    target: RetryTarget::Ssh { runner: pi() },
                    request: "SSH connection".into(),
                    attempt: 2,
                    tries: 3,
                    delay_ms: 400,
                    error: "connection reset".into(),
                },
                Some("warning: sshd of runner `pi`: SSH connection failed (try 2 of 3): connection reset; retrying in 400 ms"),
                r#"{"schema":1,"event":"retry","target":{"kind":"ssh","runner":"pi"},"request":"SSH connection","attempt":2,"tries":3,"delay_ms":400,"error":"connection reset"}"#,
            ),
            (
                Event::Retry {
                    target: RetryTarget::Engine { runner: pi() },
                    request: "GET /_ping".into(),
                    attempt: 1,
                    tries: 3,
                    delay_ms: 200,
                    error: "connection refused".into(),
                },
                Some("warning: engine of runner `pi`: GET /_ping failed (try 1 of 3): connection refused; retrying in 200 ms"),
                r#"{"schema":1,"event":"retry","target":{"kind":"engine","runner":"pi"},"request":"GET /_ping","attempt":1,"tries":3,"delay_ms":200,"error":"connection refused"}"#,
            ),
            (
                Event::Moved {
                    platform: arm(),
                    from: "a".into(),
                    to: "b".into(),
                    emulated: false,
                    reason: "connection refused".into(),
                },
                Some("warning: linux/arm64 moved from runner `a` to runner `b` (native): connection refused"),
                r#"{"schema":1,"event":"moved","platform":"linux/arm64","from":"a","to":"b","emulated":false,"reason":"connection refused"}"#,
            ),
            (
                Event::Reused {
                    platform: arm(),
                    runner: Some("pi".into()),
                    digest: "sha256:ab".into(),
                },
                Some("linux/arm64 reused from the earlier build (runner `pi`): sha256:ab, still in the registry"),
                r#"{"schema":1,"event":"reused","platform":"linux/arm64","runner":"pi","digest":"sha256:ab"}"#,
            ),
            (
                Event::Reused {
                    platform: arm(),
                    runner: None,
                    digest: "sha256:ab".into(),
                },
                Some("linux/arm64 reused from the earlier build: sha256:ab, still in the registry"),
                r#"{"schema":1,"event":"reused","platform":"linux/arm64","runner":null,"digest":"sha256:ab"}"#,
            ),
            (
                Event::Published {
                    image: "127.0.0.1:5000/app".into(),
                    digest: "sha256:cd".into(),
                    tags: vec!["1.0".into(), "latest".into()],
                    missing: Vec::new(),
                },
                Some("published 127.0.0.1:5000/app@sha256:cd as 1.0, latest"),
                r#"{"schema":1,"event":"published","image":"127.0.0.1:5000/app","digest":"sha256:cd","tags":["1.0","latest"],"missing":[]}"#,
            ),
            (
                Event::Published {
                    image: "127.0.0.1:5000/app".into(),
                    digest: "sha256:cd".into(),
                    tags: vec!["t1".into()],
                    missing: vec![arm()],
                },
                Some("published a partial list 127.0.0.1:5000/app@sha256:cd as t1, without linux/arm64"),
                r#"{"schema":1,"event":"published","image":"127.0.0.1:5000/app","digest":"sha256:cd","tags":["t1"],"missing":["linux/arm64"]}"#,
            ),
            (
                Event::ReadBack {
                    image: "127.0.0.1:5000/app".into(),
                    digest: "sha256:cd".into(),
                    tags: vec!["1.0".into(), "latest".into()],
                    platforms: vec!["linux/amd64".into(), "linux/arm64/v8".into()],
                },
                Some("read back 127.0.0.1:5000/app@sha256:cd: 1.0, latest point at it, linux/amd64, linux/arm64/v8 served"),
                r#"{"schema":1,"event":"read_back","image":"127.0.0.1:5000/app","digest":"sha256:cd","tags":["1.0","latest"],"platforms":["linux/amd64","linux/arm64/v8"]}"#,
            ),
            (
                Event::ReadBack {
                    image: "127.0.0.1:5000/app".into(),
                    digest: "sha256:cd".into(),
                    tags: vec!["1.0".into()],
                    platforms: vec!["linux/amd64".into()],
                },
                Some("read back 127.0.0.1:5000/app@sha256:cd: 1.0 points at it, linux/amd64 served"),
                r#"{"schema":1,"event":"read_back","image":"127.0.0.1:5000/app","digest":"sha256:cd","tags":["1.0"],"platforms":["linux/amd64"]}"#,
            ),
            (
                Event::StagingTagsLeft {
                    image: "127.0.0.1:5000/app".into(),
                    tags: vec!["mab-staging-linux-arm64".into()],
                    reason: StagingTagsReason::NotDeleted,
                },
                Some("staging tag mab-staging-linux-arm64 remains in 127.0.0.1:5000/app: the registry did not delete it (see docs/publishing.md#where-staging-tags-remain)"),
                r#"{"schema":1,"event":"staging_tags_left","image":"127.0.0.1:5000/app","tags":["mab-staging-linux-arm64"],"reason":"not_deleted"}"#,
            ),
            (
                Event::StagingTagsLeft {
                    image: "127.0.0.1:5000/app".into(),
                    tags: vec!["mab-staging-linux-amd64".into(), "mab-staging-linux-arm64".into()],
                    reason: StagingTagsReason::KeptForResume,
                },
                Some("staging tags mab-staging-linux-amd64, mab-staging-linux-arm64 remain in 127.0.0.1:5000/app: kept for `mab build --resume`, which reuses their images (see docs/publishing.md#where-staging-tags-remain)"),
                r#"{"schema":1,"event":"staging_tags_left","image":"127.0.0.1:5000/app","tags":["mab-staging-linux-amd64","mab-staging-linux-arm64"],"reason":"kept_for_resume"}"#,
            ),
            (
                Event::Warning {
                    message: "learnt the host key of pi".into(),
                },
                Some("warning: learnt the host key of pi"),
                r#"{"schema":1,"event":"warning","message":"learnt the host key of pi"}"#,
            ),
            (
                Event::Diagnostic {
                    level: "debug".into(),
                    message: "the engine asks for context".into(),
                },
                Some("debug: the engine asks for context"),
                r#"{"schema":1,"event":"diagnostic","level":"debug","message":"the engine asks for context"}"#,
            ),
            (
                Event::Result(Outcome {
                    exit_code: 0,
                    digest: Some("sha256:cd".into()),
                    no_push: false,
                    error: None,
                }),
                // The digest is on stdout.
                None,
                r#"{"schema":1,"event":"result","exit_code":0,"digest":"sha256:cd","no_push":false}"#,
            ),
            (
                Event::Result(Outcome {
                    exit_code: 0,
                    digest: None,
                    no_push: true,
                    error: None,
                }),
                Some("built and verified every platform; nothing was pushed (--no-push)"),
                r#"{"schema":1,"event":"result","exit_code":0,"digest":null,"no_push":true}"#,
            ),
            (
                Event::Result(Outcome {
                    exit_code: 1,
                    digest: None,
                    no_push: true,
                    error: Some(OutcomeError {
                        message: "build failed for linux/arm64 (runner pi); nothing was published".into(),
                        hints: vec!["fix the Dockerfile".into()],
                        details: vec!["linux/arm64 on pi: exit code 1".into()],
                    }),
                }),
                // The report follows as text.
                None,
                r#"{"schema":1,"event":"result","exit_code":1,"digest":null,"no_push":true,"error":{"message":"build failed for linux/arm64 (runner pi); nothing was published","hints":["fix the Dockerfile"],"details":["linux/arm64 on pi: exit code 1"]}}"#,
            ),
        ]
    }

    #[test]
    fn every_event_has_its_plain_line_and_its_json_line() {
        let events = every_event();
        let mut covered: Vec<&str> = events.iter().map(|(event, ..)| variant(event)).collect();
        covered.dedup();
        assert_eq!(
            covered,
            [
                "plan",
                "waiting",
                "job_started",
                "phase_started",
                "phase_finished",
                "step",
                "cache_source",
                "context_sent",
                "log",
                "pushed",
                "job_finished",
                "job_failed",
                "retry",
                "moved",
                "reused",
                "published",
                "read_back",
                "staging_tags_left",
                "warning",
                "diagnostic",
                "result"
            ]
        );
        for (event, plain, json) in events {
            assert_eq!(Lines::line(&event).as_deref(), plain, "{event:?}");
            assert_eq!(mab_events::json_line(&event), json, "{event:?}");
            let parsed: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(parsed["event"], variant(&event));
        }
    }

    #[test]
    fn the_bars_name_steps_and_the_context_as_phases() {
        assert_eq!(step_phase("[4/9] RUN make", false), "step 4/9 RUN make");
        assert_eq!(
            step_phase("[ 2/10] COPY . /", true),
            "step 2/10 COPY . / (cached)"
        );
        assert_eq!(
            step_phase("[internal] load build context", false),
            "[internal] load build context"
        );
        assert_eq!(
            step_phase("[build 1/2] RUN cc", false),
            "[build 1/2] RUN cc"
        );
        assert_eq!(
            context_phase(12_897_485, 42_047_899),
            "context 12.3/40.1 MiB"
        );
        assert_eq!(context_phase(512, 2048), "context 0.5/2.0 KiB");
        assert_eq!(
            short_digest(&format!("sha256:{}", "ab".repeat(32))),
            "sha256:abababababab"
        );
    }

    #[test]
    fn the_summary_has_each_platform_that_ended_well() {
        let bars = Bars::new(false);
        bars.multi
            .set_draw_target(indicatif::ProgressDrawTarget::hidden());
        let jobs: Vec<PlannedJob> = ["linux/amd64", "linux/arm64"]
            .into_iter()
            .map(|text| PlannedJob {
                platform: platform(text),
                runner: "here".into(),
                emulated: text.ends_with("arm64"),
                reason: String::new(),
            })
            .collect();
        bars.plan(&jobs);
        let amd = || platform("linux/amd64");
        for event in [
            Event::Pushed {
                platform: amd(),
                runner: "here".into(),
                digest: format!("sha256:{}", "c".repeat(64)),
            },
            Event::PhaseFinished {
                platform: amd(),
                runner: "here".into(),
                phase: Phase::Verify,
                seconds: 0.1,
                bytes: None,
            },
            Event::PhaseFinished {
                platform: amd(),
                runner: "here".into(),
                phase: Phase::Check,
                seconds: 0.1,
                bytes: None,
            },
            Event::JobFinished {
                platform: amd(),
                runner: "here".into(),
                seconds: 12.34,
            },
            Event::JobFailed {
                platform: platform("linux/arm64"),
                runner: "here".into(),
                kind: ErrorKind::Build,
                message: "exit code 1".into(),
            },
            Event::Reused {
                platform: platform("linux/ppc64le"),
                runner: Some("power".into()),
                digest: format!("sha256:{}", "d".repeat(64)),
            },
        ] {
            bars.report(event);
        }
        assert_eq!(
            summary(&bars.state()),
            [
                "linux/amd64 here   sha256:cccccccccccc   12.3s  verify, check",
                "linux/ppc64le power  sha256:dddddddddddd          reused from the earlier build"
            ]
        );
    }

    #[test]
    fn only_the_json_renderer_keeps_the_failure_report_out_of_stderr() {
        let terminal = Terminal::default();
        assert!(renderer(Progress::Plain, false, terminal).prints_reports());
        assert!(renderer(Progress::Auto, false, terminal).prints_reports());
        assert!(!renderer(Progress::Json, true, terminal).prints_reports());
    }
}
