//! The build's HTML report (`mab build --report FILE.html`, and a copy in
//! the build's history directory, [`crate::history::BuildRecord::report_path`]).
//!
//! [`Report`] is an observer ([`crate::progress::observe`]): it keeps each
//! event with the time it heard it (from its creation), and when it hears
//! [`Event::Result`], the last event of every command, it writes one
//! self-contained page (inline CSS, no script, nothing fetched): the
//! failure, if any, at the top; the list digest and tags; a timeline with a
//! row per platform (runner, native or emulated) and its phases on one
//! shared time axis; the critical path marked; each platform's log folded
//! under its row (docs/report.md). A page that cannot be written is a
//! warning, never a failed build.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use mab_config::Platform;
use mab_events::{Event, Outcome, Phase, Reporter};

/// How many log lines the page keeps per platform: the last ones. The full
/// log is in the build's history directory.
pub const LOG_LINES: usize = 5000;

/// The observer that writes the report when the build ends.
pub struct Report {
    /// Where the page goes: the `--report` file (if given), then the copy
    /// in the build's history directory.
    paths: Vec<PathBuf>,
    /// When the observer was made: the time axis starts there.
    started: Instant,
    collected: Mutex<Collected>,
}

impl Report {
    /// A report that will be written to each of `paths` when the build
    /// ends; `started_at` (wall clock) is printed in its header.
    pub fn new(paths: Vec<PathBuf>, started_at: SystemTime) -> Report {
        Report {
            paths,
            started: Instant::now(),
            collected: Mutex::new(Collected::new(started_at)),
        }
    }

    /// Writes `page` to every path; each failure is a warning naming the
    /// file.
    fn write(&self, page: &str) {
        for path in &self.paths {
            if let Err(error) = std::fs::write(path, page) {
                crate::progress::report(Event::Warning {
                    message: format!(
                        "cannot write the build report {}: {error}; the build's result is not affected",
                        path.display()
                    ),
                });
            }
        }
    }
}

impl Reporter for Report {
    fn report(&self, event: Event) {
        let at = self.started.elapsed();
        let page = {
            let mut collected = self
                .collected
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let last = matches!(event, Event::Result(_));
            collected.record(event, at);
            last.then(|| render(&collected))
        };
        // Written outside the lock: a warning comes back here.
        if let Some(page) = page {
            self.write(&page);
        }
    }
}

/// A span of time on the axis, from the observer's start.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Span {
    start: Duration,
    end: Duration,
}

/// One bar of a row: a phase, a build step, or a wait.
#[derive(Clone, Debug, PartialEq)]
struct Bar {
    /// The CSS class: `phase-build`, `step`, `wait`…
    class: &'static str,
    label: String,
    span: Span,
}

/// What the report knows of one platform.
#[derive(Debug)]
struct Row {
    platform: Platform,
    /// The runners that held the job, in order (more than one after a
    /// failover).
    runners: Vec<String>,
    emulated: bool,
    /// Why the plan chose the runner.
    reason: String,
    /// When the job got its slot (the last start, after a move).
    job_start: Option<Duration>,
    /// When the job ended, well or not.
    job_end: Option<Duration>,
    bars: Vec<Bar>,
    /// Phases started and not yet finished.
    open: Vec<(Phase, Duration)>,
    /// The running build step.
    step: Option<(String, Duration)>,
    log: VecDeque<String>,
    /// Log lines dropped beyond [`LOG_LINES`].
    dropped: usize,
    digest: Option<String>,
    failures: Vec<String>,
    reused: bool,
    /// With a registry cache, the image whose build cache its build
    /// imported, `REPO@sha256:…`; `Some(None)` when it had none (a warning
    /// says why); `None` when not told (no registry cache, no build).
    cache: Option<Option<String>>,
}

impl Row {
    fn new(platform: Platform, runner: Option<String>, emulated: bool) -> Row {
        Row {
            platform,
            runners: runner.into_iter().collect(),
            emulated,
            reason: String::new(),
            job_start: None,
            job_end: None,
            bars: Vec::new(),
            open: Vec::new(),
            step: None,
            log: VecDeque::new(),
            dropped: 0,
            digest: None,
            failures: Vec::new(),
            reused: false,
            cache: None,
        }
    }

    fn runner(&mut self, runner: &str) {
        if self.runners.last().map(String::as_str) != Some(runner) {
            self.runners.push(runner.to_owned());
        }
    }

    /// Ends the running step at `at`.
    fn end_step(&mut self, at: Duration) {
        if let Some((label, start)) = self.step.take() {
            self.bars.push(Bar {
                class: "step",
                label,
                span: Span { start, end: at },
            });
        }
    }

    /// Before the first step of a build: from the build phase's start to
    /// `at`, the engine's session opening and the build request sent.
    fn session(&mut self, at: Duration) {
        let Some(start) = self
            .open
            .iter()
            .find(|(phase, _)| *phase == Phase::Build)
            .map(|(_, start)| *start)
        else {
            return;
        };
        let stepped = self
            .bars
            .iter()
            .any(|bar| bar.class.starts_with("step") && bar.span.start >= start);
        if !stepped && at > start {
            self.bars.push(Bar {
                class: "step session",
                label: "session".to_owned(),
                span: Span { start, end: at },
            });
        }
    }

    /// Ends every open phase and step at `at` (a failed or stopped job).
    fn close(&mut self, at: Duration, class: &'static str) {
        self.end_step(at);
        for (phase, start) in std::mem::take(&mut self.open) {
            self.bars.push(Bar {
                class,
                label: format!("{} (did not finish)", phase_name(phase)),
                span: Span { start, end: at },
            });
        }
    }

    /// When the row's last bar ends.
    fn end(&self) -> Option<Duration> {
        self.job_end
            .into_iter()
            .chain(self.bars.iter().map(|bar| bar.span.end))
            .max()
    }
}

/// Everything heard, ready to render.
#[derive(Debug)]
struct Collected {
    started_at: SystemTime,
    image: String,
    /// Until the plan: connecting to the runners and planning.
    planned: Option<Duration>,
    rows: Vec<Row>,
    published: Option<(Duration, String, Vec<String>)>,
    read_back: Option<Duration>,
    warnings: Vec<String>,
    outcome: Option<(Duration, Outcome)>,
}

impl Collected {
    fn new(started_at: SystemTime) -> Collected {
        Collected {
            started_at,
            image: String::new(),
            planned: None,
            rows: Vec::new(),
            published: None,
            read_back: None,
            warnings: Vec::new(),
            outcome: None,
        }
    }

    /// The row of `platform`, added when new.
    fn row(&mut self, platform: &Platform) -> &mut Row {
        let index = match self.rows.iter().position(|row| &row.platform == platform) {
            Some(index) => index,
            None => {
                self.rows.push(Row::new(platform.clone(), None, false));
                self.rows.len() - 1
            }
        };
        &mut self.rows[index]
    }

    /// Takes `event`, heard `at` from the start.
    fn record(&mut self, event: Event, at: Duration) {
        match event {
            Event::Plan { image, jobs, .. } => {
                self.image = image;
                self.planned = Some(at);
                for job in jobs {
                    let row = self.row(&job.platform);
                    row.runner(&job.runner);
                    row.emulated = job.emulated;
                    row.reason = job.reason;
                }
            }
            Event::JobStarted {
                platform,
                runner,
                emulated,
            } => {
                let planned = self.planned;
                let row = self.row(&platform);
                row.runner(&runner);
                row.emulated = emulated;
                let waited_from = row.job_end.or(planned);
                if let Some(from) = waited_from.filter(|from| at > *from) {
                    row.bars.push(Bar {
                        class: "wait",
                        label: "waiting for a slot".to_owned(),
                        span: Span {
                            start: from,
                            end: at,
                        },
                    });
                }
                row.job_start = Some(at);
                row.job_end = None;
            }
            Event::PhaseStarted {
                platform,
                runner,
                phase,
            } => {
                let row = self.row(&platform);
                row.runner(&runner);
                row.open.push((phase, at));
            }
            Event::PhaseFinished {
                platform, phase, ..
            } => {
                let row = self.row(&platform);
                if phase == Phase::Build {
                    row.end_step(at);
                }
                let start = row
                    .open
                    .iter()
                    .position(|(open, _)| *open == phase)
                    .map(|index| row.open.remove(index).1)
                    .or(row.job_start)
                    .unwrap_or(at);
                row.bars.push(Bar {
                    class: phase_class(phase),
                    label: phase_name(phase).to_owned(),
                    span: Span { start, end: at },
                });
            }
            Event::Step {
                platform,
                step,
                cached,
                ..
            } => {
                let row = self.row(&platform);
                row.end_step(at);
                row.session(at);
                let label = if cached {
                    format!("{step} (cached)")
                } else {
                    step
                };
                row.step = Some((label, at));
            }
            Event::CacheSource {
                platform, source, ..
            } => self.row(&platform).cache = Some(source),
            Event::Log { platform, line, .. } => {
                let row = self.row(&platform);
                row.log.push_back(line);
                if row.log.len() > LOG_LINES {
                    row.log.pop_front();
                    row.dropped += 1;
                }
            }
            Event::Pushed {
                platform, digest, ..
            } => self.row(&platform).digest = Some(digest),
            Event::JobFinished { platform, .. } => {
                let row = self.row(&platform);
                row.close(at, "failed");
                row.job_end = Some(at);
            }
            Event::JobFailed {
                platform,
                runner,
                message,
                ..
            } => {
                let row = self.row(&platform);
                row.close(at, "failed");
                row.job_end = Some(at);
                row.failures.push(format!("on {runner}: {message}"));
            }
            Event::Moved {
                platform,
                from,
                to,
                emulated,
                reason,
            } => {
                let row = self.row(&platform);
                row.failures
                    .push(format!("moved from {from} to {to}: {reason}"));
                row.runner(&to);
                row.emulated = emulated;
            }
            Event::Reused {
                platform,
                runner,
                digest,
            } => {
                let row = self.row(&platform);
                row.reused = true;
                row.digest = Some(digest);
                if let Some(runner) = runner {
                    row.runner(&runner);
                }
            }
            Event::Published {
                image,
                digest,
                tags,
                ..
            } => {
                self.image = image;
                self.published = Some((at, digest, tags));
            }
            Event::ReadBack { .. } => self.read_back = Some(at),
            Event::Warning { message } => self.warnings.push(message),
            Event::Result(outcome) => {
                for row in &mut self.rows {
                    row.close(at, "failed");
                }
                self.outcome = Some((at, outcome));
            }
            Event::Waiting { .. }
            | Event::ContextSent { .. }
            | Event::Retry { .. }
            | Event::StagingTagsLeft { .. }
            | Event::Diagnostic { .. } => {}
        }
    }

    /// The platform whose job ends last: the build waits for it.
    fn critical(&self) -> Option<usize> {
        self.rows
            .iter()
            .enumerate()
            .filter_map(|(index, row)| row.end().map(|end| (index, end)))
            .max_by_key(|(_, end)| *end)
            .map(|(index, _)| index)
    }

    /// The end of the axis: the last thing heard.
    fn total(&self) -> Duration {
        let rows = self.rows.iter().filter_map(Row::end);
        let ends = [
            self.planned,
            self.published.as_ref().map(|published| published.0),
            self.read_back,
            self.outcome.as_ref().map(|outcome| outcome.0),
        ];
        rows.chain(ends.into_iter().flatten())
            .max()
            .unwrap_or_default()
    }
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Build => "build",
        Phase::Push => "push",
        Phase::Verify => "verify",
        Phase::Check => "check",
        Phase::Test => "smoke test",
    }
}

fn phase_class(phase: Phase) -> &'static str {
    match phase {
        Phase::Build => "phase-build",
        Phase::Push => "phase-push",
        Phase::Verify => "phase-verify",
        Phase::Check => "phase-check",
        Phase::Test => "phase-test",
    }
}

/// Where a bar of `span` sits on an axis of `total`: its left edge and its
/// width, in percent of the axis, each rounded to 0.01 %. A bar is at
/// least 0.2 % wide, so that an instant stays visible, and never runs past
/// the axis' end. An empty axis puts every bar at 0.
fn position(span: Span, total: Duration) -> (f64, f64) {
    let total = total.as_secs_f64();
    if total <= 0.0 {
        return (0.0, 0.2);
    }
    let percent = |time: Duration| (time.as_secs_f64() / total * 100.0).clamp(0.0, 100.0);
    let round = |value: f64| (value * 100.0).round() / 100.0;
    let left = percent(span.start);
    let width = (percent(span.end) - left).max(0.2).min(100.0 - left);
    (round(left), round(width.max(0.0)))
}

/// A step of the time axis' ticks for an axis of `total`: the smallest of
/// 1, 2, 5, 10, 15, 30 s, 1, 2, 5, 10, 15, 30 min, 1 h that gives at most 10
/// ticks.
fn tick_step(total: Duration) -> u64 {
    const STEPS: [u64; 13] = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
    let seconds = total.as_secs_f64();
    STEPS
        .into_iter()
        .find(|step| seconds / *step as f64 <= 10.0)
        .unwrap_or_else(|| (seconds / 10.0).ceil() as u64)
}

/// `seconds` as the axis writes it: `45s`, `2m 05s`.
fn clock(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds}s"),
        _ => format!("{}m {:02}s", seconds / 60, seconds % 60),
    }
}

/// `text` with the five characters that HTML gives a meaning (`&`, `<`,
/// `>`, `"`, `'`) written as character references, safe in text and in
/// quoted attribute values (HTML Living Standard, 13.1.2 and 13.1.4).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

const STYLE: &str = "
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em;color:#1d1d1f;background:#fff}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.2em 0 .4em}
code,pre,.mono{font-family:ui-monospace,'SFMono-Regular',Menlo,Consolas,monospace;font-size:12px}
.meta{color:#555}
.failure{border:2px solid #c62828;background:#fdecea;padding:.6em 1em;border-radius:6px}
.failure h2{color:#c62828;margin-top:0}
.failure pre{white-space:pre-wrap;margin:.4em 0}
dl.result{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}dl.result dt{font-weight:600}dl.result dd{margin:0}
ul.tags{margin:0;padding-left:1.2em}
.timeline{border-top:1px solid #ddd}
.row,.axis{display:grid;grid-template-columns:16em 1fr;align-items:center;border-bottom:1px solid #eee}
.label{padding:.3em .5em .3em 0}.label .runner{font-weight:600}.label .how{color:#555}
.track{position:relative;height:30px}
.bar{position:absolute;top:5px;height:20px;border-radius:3px;overflow:hidden;white-space:nowrap;font-size:11px;line-height:20px;padding:0 2px;box-sizing:border-box;color:#fff}
.step{top:8px;height:14px;line-height:14px;background:#90caf9;color:#0d2a44;border-left:1px solid #fff}.session{background:#cfd8dc}
.phase-build{background:#1e88e5}.phase-push{background:#8e24aa}.phase-verify{background:#00897b}.phase-check{background:#43a047}.phase-test{background:#f9a825;color:#222}
.wait{background:#bdbdbd;color:#222}.failed{background:#c62828}.connect{background:#6d4c41}.publish{background:#3949ab}
.critical .label{border-left:4px solid #d81b60;padding-left:.4em}.critical .bar:not(.step){box-shadow:0 0 0 2px #d81b60}
.axis .track{height:20px;background:none}.tick{position:absolute;top:2px;font-size:11px;color:#555;border-left:1px solid #bbb;padding-left:2px}
details.log{margin:0 0 .3em 16em}details.log pre{max-height:30em;overflow:auto;background:#f7f7f7;padding:.5em;margin:.3em 0}
.legend span{display:inline-block;margin-right:1em}.legend i{display:inline-block;width:1em;height:.8em;margin-right:.3em;border-radius:2px;vertical-align:middle}
.platform-failures{color:#c62828;margin:0 0 .3em 16em;padding-left:1.2em}
.cache{margin:0 0 .3em 16em;color:#555}
";

/// The page for what `collected` holds.
fn render(collected: &Collected) -> String {
    let total = collected.total();
    let title = if collected.image.is_empty() {
        "mab build".to_owned()
    } else {
        format!("mab build of {}", collected.image)
    };
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title),
    );
    let started = humantime::format_rfc3339_seconds(collected.started_at);
    let exit = collected
        .outcome
        .as_ref()
        .map_or_else(String::new, |(_, outcome)| {
            format!(", exit code {}", outcome.exit_code)
        });
    let _ = writeln!(
        page,
        "<p class=\"meta\">started {started}, took {:.1}s{exit}</p>",
        total.as_secs_f64()
    );
    render_failure(&mut page, collected);
    render_result(&mut page, collected);
    render_timeline(&mut page, collected, total);
    if !collected.warnings.is_empty() {
        page.push_str("<h2>Warnings</h2>\n<ul id=\"warnings\">\n");
        for warning in &collected.warnings {
            let _ = writeln!(page, "<li>{}</li>", escape(warning));
        }
        page.push_str("</ul>\n");
    }
    page.push_str("</body>\n</html>\n");
    page
}

fn render_failure(page: &mut String, collected: &Collected) {
    let Some(error) = collected
        .outcome
        .as_ref()
        .and_then(|(_, outcome)| outcome.error.as_ref())
    else {
        return;
    };
    let _ = writeln!(
        page,
        "<section class=\"failure\" id=\"failure\">\n<h2>The build failed</h2>\n<p class=\"message\">{}</p>",
        escape(&error.message)
    );
    if !error.details.is_empty() {
        let _ = writeln!(page, "<pre>{}</pre>", escape(&error.details.join("\n")));
    }
    for hint in &error.hints {
        let _ = writeln!(page, "<p class=\"hint\">hint: {}</p>", escape(hint));
    }
    page.push_str("</section>\n");
}

fn render_result(page: &mut String, collected: &Collected) {
    page.push_str("<h2>Result</h2>\n<dl class=\"result\">\n");
    let _ = writeln!(
        page,
        "<dt>Image</dt><dd class=\"mono\">{}</dd>",
        escape(&collected.image)
    );
    let digest = collected
        .published
        .as_ref()
        .map(|(_, digest, _)| digest.as_str())
        .or_else(|| {
            collected
                .outcome
                .as_ref()
                .and_then(|(_, outcome)| outcome.digest.as_deref())
        });
    match digest {
        Some(digest) => {
            let _ = writeln!(
                page,
                "<dt>List digest</dt><dd class=\"mono\" id=\"list-digest\">{}</dd>",
                escape(digest)
            );
        }
        None => page.push_str("<dt>List digest</dt><dd>nothing was published</dd>\n"),
    }
    if let Some((_, _, tags)) = &collected.published {
        page.push_str("<dt>Tags</dt><dd><ul class=\"tags\" id=\"tags\">");
        for tag in tags {
            let _ = write!(page, "<li class=\"mono\">{}</li>", escape(tag));
        }
        page.push_str("</ul></dd>\n");
    }
    page.push_str("</dl>\n");
}

fn render_timeline(page: &mut String, collected: &Collected, total: Duration) {
    page.push_str("<h2>Timeline</h2>\n<div class=\"timeline\" id=\"timeline\">\n");
    // The axis.
    page.push_str("<div class=\"axis\"><div class=\"label\">time</div><div class=\"track\">");
    let step = tick_step(total);
    let mut tick = 0;
    while Duration::from_secs(tick) <= total {
        let (left, _) = position(
            Span {
                start: Duration::from_secs(tick),
                end: Duration::from_secs(tick),
            },
            total,
        );
        let _ = write!(
            page,
            "<span class=\"tick\" style=\"left:{left}%\">{}</span>",
            clock(tick)
        );
        tick += step;
    }
    page.push_str("</div></div>\n");
    // Connecting and planning, before any job.
    if let Some(planned) = collected.planned {
        let bar = Bar {
            class: "connect",
            label: "connect and plan".to_owned(),
            span: Span {
                start: Duration::ZERO,
                end: planned,
            },
        };
        render_row(page, "build", "connect and plan", "", &[bar], total);
    }
    let critical = collected.critical();
    for (index, row) in collected.rows.iter().enumerate() {
        render_platform(page, row, critical == Some(index), total);
    }
    if let Some((published, _, _)) = &collected.published {
        let from = collected
            .rows
            .iter()
            .filter_map(Row::end)
            .max()
            .unwrap_or_default();
        let mut bars = vec![Bar {
            class: "publish",
            label: "publish".to_owned(),
            span: Span {
                start: from,
                end: *published,
            },
        }];
        if let Some(read_back) = collected.read_back {
            bars.push(Bar {
                class: "phase-verify",
                label: "read back".to_owned(),
                span: Span {
                    start: *published,
                    end: read_back,
                },
            });
        }
        render_row(page, "list", "manifest list", "", &bars, total);
    }
    page.push_str("</div>\n<p class=\"legend\">");
    for (class, name) in [
        ("connect", "connect and plan"),
        ("wait", "waiting for a slot"),
        ("phase-build", "build"),
        ("step session", "engine session, before the first step"),
        ("step", "build step"),
        ("phase-push", "push"),
        ("phase-verify", "verify"),
        ("phase-check", "check"),
        ("phase-test", "smoke test"),
        ("publish", "publish"),
        ("failed", "failed"),
    ] {
        let _ = write!(page, "<span><i class=\"{class}\"></i>{name}</span>");
    }
    page.push_str(
        "<span>a pink edge marks the critical path: the platform whose job ends last</span></p>\n",
    );
}

fn render_platform(page: &mut String, row: &Row, critical: bool, total: Duration) {
    let how = match (row.reused, row.emulated) {
        (true, _) => "reused",
        (false, true) => "emulated",
        (false, false) => "native",
    };
    let runner = row.runners.last().map(String::as_str).unwrap_or("");
    let runners = escape(&row.runners.join(" → "));
    let platform = escape(&row.platform.to_string());
    let class = if critical {
        "row platform critical"
    } else {
        "row platform"
    };
    let title = if row.reason.is_empty() {
        String::new()
    } else {
        format!(" title=\"{}\"", escape(&row.reason))
    };
    let _ = write!(
        page,
        "<div class=\"{class}\" data-platform=\"{platform}\" data-runner=\"{}\" data-emulated=\"{}\"><div class=\"label\"{title}><span class=\"platform-name\">{platform}</span><br><span class=\"runner\">{runners}</span> <span class=\"how\">{how}</span></div><div class=\"track\">",
        escape(runner),
        row.emulated,
    );
    // Phases first, steps over them.
    let step = |bar: &&Bar| bar.class.starts_with("step");
    let mut bars: Vec<&Bar> = row.bars.iter().filter(|bar| !step(bar)).collect();
    bars.extend(row.bars.iter().filter(step));
    for bar in bars {
        render_bar(page, bar, total);
    }
    page.push_str("</div></div>\n");
    if !row.failures.is_empty() {
        page.push_str("<ul class=\"platform-failures\">");
        for failure in &row.failures {
            let _ = write!(page, "<li>{}</li>", escape(failure));
        }
        page.push_str("</ul>\n");
    }
    match &row.cache {
        Some(Some(source)) => {
            let _ = writeln!(
                page,
                "<p class=\"cache\" data-platform=\"{platform}\">build cache from <span class=\"mono\">{}</span></p>",
                escape(source)
            );
        }
        Some(None) => {
            let _ = writeln!(
                page,
                "<p class=\"cache\" data-platform=\"{platform}\">built without a cache source (the warnings say why)</p>"
            );
        }
        None => {}
    }
    let dropped = if row.dropped > 0 {
        format!(
            "… {} earlier lines left out (the full log is in mab's state directory)\n",
            row.dropped
        )
    } else {
        String::new()
    };
    let lines = row.log.len() + row.dropped;
    let _ = writeln!(
        page,
        "<details class=\"log\" data-platform=\"{platform}\"><summary>log of {platform} ({lines} {})</summary><pre>{}{}</pre></details>",
        if lines == 1 { "line" } else { "lines" },
        escape(&dropped),
        escape(&row.log.iter().map(String::as_str).collect::<Vec<_>>().join("\n")),
    );
}

/// A row that is not a platform's: connecting, publishing.
fn render_row(page: &mut String, id: &str, label: &str, how: &str, bars: &[Bar], total: Duration) {
    let _ = write!(
        page,
        "<div class=\"row\" id=\"row-{id}\"><div class=\"label\">{} <span class=\"how\">{how}</span></div><div class=\"track\">",
        escape(label)
    );
    for bar in bars {
        render_bar(page, bar, total);
    }
    page.push_str("</div></div>\n");
}

fn render_bar(page: &mut String, bar: &Bar, total: Duration) {
    let (left, width) = position(bar.span, total);
    let seconds = bar.span.end.saturating_sub(bar.span.start).as_secs_f64();
    let label = escape(&bar.label);
    let _ = write!(
        page,
        "<span class=\"bar {}\" style=\"left:{left}%;width:{width}%\" title=\"{label}: {seconds:.1}s (from {:.1}s)\">{label}</span>",
        bar.class,
        bar.span.start.as_secs_f64(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use mab_events::{OutcomeError, PlannedJob};

    fn platform(text: &str) -> Platform {
        text.parse().unwrap()
    }

    fn secs(seconds: f64) -> Duration {
        Duration::from_secs_f64(seconds)
    }

    #[test]
    fn bars_are_placed_by_their_times_on_the_shared_axis() {
        let span = |start, end| Span {
            start: secs(start),
            end: secs(end),
        };
        assert_eq!(position(span(0.0, 50.0), secs(100.0)), (0.0, 50.0));
        assert_eq!(position(span(25.0, 40.0), secs(200.0)), (12.5, 7.5));
        assert_eq!(position(span(1.0, 2.0), secs(3.0)), (33.33, 33.33));
        // An instant stays visible; nothing runs past the end.
        assert_eq!(position(span(10.0, 10.0), secs(100.0)), (10.0, 0.2));
        assert_eq!(position(span(100.0, 100.0), secs(100.0)), (100.0, 0.0));
        assert_eq!(position(span(90.0, 120.0), secs(100.0)), (90.0, 10.0));
        assert_eq!(position(span(0.0, 1.0), Duration::ZERO), (0.0, 0.2));
        assert_eq!(tick_step(secs(8.0)), 1);
        assert_eq!(tick_step(secs(45.0)), 5);
        assert_eq!(tick_step(secs(400.0)), 60);
        assert_eq!(clock(125), "2m 05s");
    }

    fn phase(platform: &Platform, runner: &str, phase: Phase, started: bool) -> Event {
        if started {
            Event::PhaseStarted {
                platform: platform.clone(),
                runner: runner.to_owned(),
                phase,
            }
        } else {
            Event::PhaseFinished {
                platform: platform.clone(),
                runner: runner.to_owned(),
                phase,
                seconds: 0.0,
                bytes: None,
            }
        }
    }

    /// Two platforms: amd64 on `local` from 2 s to 10 s, arm64 emulated on
    /// `runner-a` from 2 s to 30 s, then the list published at 32 s.
    fn two_platforms() -> Collected {
        let amd64 = platform("linux/amd64");
        let arm64 = platform("linux/arm64");
        let mut collected = Collected::new(SystemTime::UNIX_EPOCH);
        let plan = Event::Plan {
            image: "127.0.0.1:5000/app".to_owned(),
            context_files: 3,
            jobs: vec![
                PlannedJob {
                    platform: amd64.clone(),
                    runner: "local".to_owned(),
                    emulated: false,
                    reason: "native".to_owned(),
                },
                PlannedJob {
                    platform: arm64.clone(),
                    runner: "runner-a".to_owned(),
                    emulated: true,
                    reason: "emulated".to_owned(),
                },
            ],
        };
        let events = [
            (
                0.0,
                Event::Warning {
                    message: "<b>careful</b>".to_owned(),
                },
            ),
            (2.0, plan),
            (
                2.0,
                Event::JobStarted {
                    platform: amd64.clone(),
                    runner: "local".to_owned(),
                    emulated: false,
                },
            ),
            (2.0, phase(&amd64, "local", Phase::Build, true)),
            (
                3.0,
                Event::Step {
                    platform: amd64.clone(),
                    runner: "local".to_owned(),
                    step: "[1/2] COPY a /".to_owned(),
                    cached: false,
                },
            ),
            (
                4.0,
                Event::Log {
                    platform: amd64.clone(),
                    runner: "local".to_owned(),
                    line: "<script>alert(1)</script>".to_owned(),
                },
            ),
            (
                5.0,
                Event::Step {
                    platform: amd64.clone(),
                    runner: "local".to_owned(),
                    step: "[2/2] RUN x".to_owned(),
                    cached: false,
                },
            ),
            (8.0, phase(&amd64, "local", Phase::Build, false)),
            (8.0, phase(&amd64, "local", Phase::Push, true)),
            (10.0, phase(&amd64, "local", Phase::Push, false)),
            (
                10.0,
                Event::JobFinished {
                    platform: amd64.clone(),
                    runner: "local".to_owned(),
                    seconds: 8.0,
                },
            ),
            (
                4.0,
                Event::JobStarted {
                    platform: arm64.clone(),
                    runner: "runner-a".to_owned(),
                    emulated: true,
                },
            ),
            (4.0, phase(&arm64, "runner-a", Phase::Build, true)),
            (30.0, phase(&arm64, "runner-a", Phase::Build, false)),
            (
                30.0,
                Event::JobFinished {
                    platform: arm64.clone(),
                    runner: "runner-a".to_owned(),
                    seconds: 26.0,
                },
            ),
            (
                32.0,
                Event::Published {
                    image: "127.0.0.1:5000/app".to_owned(),
                    digest: "sha256:abc".to_owned(),
                    tags: vec!["1.0".to_owned(), "latest".to_owned()],
                    missing: vec![],
                },
            ),
            (
                40.0,
                Event::Result(Outcome {
                    exit_code: 0,
                    digest: Some("sha256:abc".to_owned()),
                    no_push: false,
                    error: None,
                }),
            ),
        ];
        for (at, event) in events {
            collected.record(event, secs(at));
        }
        collected
    }

    /// The bars of `row` as (class, label, start, end), in seconds.
    fn bars(row: &Row) -> Vec<(&str, &str, f64, f64)> {
        row.bars
            .iter()
            .map(|bar| {
                (
                    bar.class,
                    bar.label.as_str(),
                    bar.span.start.as_secs_f64(),
                    bar.span.end.as_secs_f64(),
                )
            })
            .collect()
    }

    #[test]
    fn phases_and_steps_take_their_times_and_the_last_job_is_critical() {
        let collected = two_platforms();
        let amd64 = &collected.rows[0];
        assert_eq!(
            bars(amd64),
            [
                ("step session", "session", 2.0, 3.0),
                ("step", "[1/2] COPY a /", 3.0, 5.0),
                ("step", "[2/2] RUN x", 5.0, 8.0),
                ("phase-build", "build", 2.0, 8.0),
                ("phase-push", "push", 8.0, 10.0),
            ]
        );
        let arm64 = &collected.rows[1];
        assert_eq!(arm64.bars[0].class, "wait", "from the plan to the slot");
        assert_eq!(
            arm64.bars[0].span,
            Span {
                start: secs(2.0),
                end: secs(4.0)
            }
        );
        assert_eq!(collected.critical(), Some(1));
        assert_eq!(collected.total(), secs(40.0));

        let page = render(&collected);
        assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
        // arm64's build: 4 s to 30 s of 40 s.
        assert!(
            page.contains("<span class=\"bar phase-build\" style=\"left:10%;width:65%\""),
            "{page}"
        );
        assert!(
            page.contains("<div class=\"row platform critical\" data-platform=\"linux/arm64\" data-runner=\"runner-a\" data-emulated=\"true\">"),
            "{page}"
        );
        assert!(page.contains(
            "data-platform=\"linux/amd64\" data-runner=\"local\" data-emulated=\"false\""
        ));
        assert!(page.contains("<dd class=\"mono\" id=\"list-digest\">sha256:abc</dd>"));
        assert!(page.contains("<summary>log of linux/amd64 (1 line)</summary>"));
        assert!(page.contains("<summary>log of linux/arm64 (0 lines)</summary>"));
        assert!(page.contains("<li class=\"mono\">1.0</li><li class=\"mono\">latest</li>"));
        assert!(!page.contains("id=\"failure\""));
        // Nothing is fetched and nothing runs.
        for outside in ["<script", "http://", "https://", "src=", "@import", "url("] {
            assert!(!page.contains(outside), "{outside} in {page}");
        }
    }

    #[test]
    fn text_from_the_build_is_escaped_and_the_failure_comes_first() {
        let mut collected = two_platforms();
        collected.outcome = Some((
            secs(40.0),
            Outcome {
                exit_code: 1,
                digest: None,
                no_push: false,
                error: Some(OutcomeError {
                    message: "build failed for linux/arm64 (runner \"a\" & 'b')".to_owned(),
                    hints: vec!["fix <Dockerfile>".to_owned()],
                    details: vec!["RUN false".to_owned()],
                }),
            },
        ));
        let page = render(&collected);
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page}"
        );
        assert!(page.contains("<li>&lt;b&gt;careful&lt;/b&gt;</li>"));
        assert!(
            page.contains("build failed for linux/arm64 (runner &quot;a&quot; &amp; &#39;b&#39;)")
        );
        assert!(page.contains("hint: fix &lt;Dockerfile&gt;"));
        assert!(!page.contains("<script"));
        let failure = page.find("id=\"failure\"").unwrap();
        assert!(failure < page.find("id=\"timeline\"").unwrap());
        assert!(failure < page.find("id=\"list-digest\"").unwrap());
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn a_failed_job_ends_its_open_phases_and_a_moved_one_names_both_runners() {
        let arm = platform("linux/arm/v7");
        let mut collected = Collected::new(SystemTime::UNIX_EPOCH);
        let started = |runner: &str| Event::JobStarted {
            platform: arm.clone(),
            runner: runner.to_owned(),
            emulated: runner == "b",
        };
        let events = [
            (1.0, started("a")),
            (1.0, phase(&arm, "a", Phase::Build, true)),
            (
                2.0,
                Event::Step {
                    platform: arm.clone(),
                    runner: "a".to_owned(),
                    step: "[1/1] RUN x".to_owned(),
                    cached: true,
                },
            ),
            (
                6.0,
                Event::JobFailed {
                    platform: arm.clone(),
                    runner: "a".to_owned(),
                    kind: mab_events::ErrorKind::Runner,
                    message: "engine gone".to_owned(),
                },
            ),
            (
                6.0,
                Event::Moved {
                    platform: arm.clone(),
                    from: "a".to_owned(),
                    to: "b".to_owned(),
                    emulated: true,
                    reason: "engine gone".to_owned(),
                },
            ),
            (7.0, started("b")),
        ];
        for (at, event) in events {
            collected.record(event, secs(at));
        }
        for line in 0..LOG_LINES + 2 {
            collected.record(
                Event::Log {
                    platform: arm.clone(),
                    runner: "b".to_owned(),
                    line: line.to_string(),
                },
                secs(8.0),
            );
        }
        let row = &collected.rows[0];
        assert_eq!(
            bars(row),
            [
                ("step session", "session", 1.0, 2.0),
                ("step", "[1/1] RUN x (cached)", 2.0, 6.0),
                ("failed", "build (did not finish)", 1.0, 6.0),
                ("wait", "waiting for a slot", 6.0, 7.0),
            ]
        );
        assert_eq!(row.runners, ["a", "b"]);
        assert_eq!(
            row.failures,
            ["on a: engine gone", "moved from a to b: engine gone"]
        );
        assert_eq!((row.log.len(), row.dropped), (LOG_LINES, 2));
        assert_eq!(row.log.front().map(String::as_str), Some("2"));
        let page = render(&collected);
        assert!(
            page.contains(
                "<span class=\"runner\">a → b</span> <span class=\"how\">emulated</span>"
            ),
            "{page}"
        );
        assert!(page.contains("… 2 earlier lines left out"), "{page}");
    }

    #[test]
    fn each_platform_names_its_cache_source_or_that_it_had_none() {
        let mut collected = two_platforms();
        let source = format!("127.0.0.1:5000/app@sha256:{}", "a".repeat(64));
        collected.record(
            Event::CacheSource {
                platform: platform("linux/amd64"),
                runner: "local".to_owned(),
                source: Some(source.clone()),
            },
            secs(9.0),
        );
        collected.record(
            Event::CacheSource {
                platform: platform("linux/arm64"),
                runner: "runner-a".to_owned(),
                source: None,
            },
            secs(29.0),
        );
        let page = render(&collected);
        assert!(
            page.contains(&format!(
                "<p class=\"cache\" data-platform=\"linux/amd64\">build cache from <span class=\"mono\">{source}</span></p>"
            )),
            "{page}"
        );
        assert!(
            page.contains("<p class=\"cache\" data-platform=\"linux/arm64\">built without a cache source (the warnings say why)</p>"),
            "{page}"
        );
        // Without a registry cache nothing is told, and nothing is shown.
        assert!(!render(&two_platforms()).contains("class=\"cache\""));
    }

    #[test]
    fn the_page_is_written_to_every_path_when_the_result_is_heard() {
        let directory = tempfile::tempdir().unwrap();
        let paths = vec![
            directory.path().join("a.html"),
            directory.path().join("b.html"),
        ];
        let report = Report::new(paths.clone(), SystemTime::now());
        report.report(Event::Warning {
            message: "one".to_owned(),
        });
        assert!(!paths[0].exists(), "only the result writes");
        report.report(Event::Result(Outcome {
            exit_code: 130,
            digest: None,
            no_push: false,
            error: Some(OutcomeError {
                message: "interrupted; nothing was published".to_owned(),
                hints: vec![],
                details: vec![],
            }),
        }));
        let first = std::fs::read_to_string(&paths[0]).unwrap();
        assert!(first.contains("interrupted; nothing was published"));
        assert_eq!(first, std::fs::read_to_string(&paths[1]).unwrap());
    }
}
