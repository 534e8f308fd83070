//! The terminal (docs/progress.md#the-terminal): `mab build` driven in a
//! pseudo-terminal of tmux (a server of the test's own) of a fixed size,
//! its final screen read back with `capture-pane`; `-q`; colour with
//! `--color` and `NO_COLOR`; a failed platform's last 40 log lines and
//! its full log file.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{mab, mab_with_env, require_lab, sha256, skopeo_raw, ssh_lock, Home, Project};

/// A tmux server of the test's own (`tmux -L NAME`), with one window of
/// `width` x `height` running a shell command; killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` (a `sh -c` line) in a detached session.
    fn start(socket: &str, width: u16, height: u16, command: &str) -> Tmux {
        let tmux = Tmux {
            socket: format!("mab-test-{socket}-{}", std::process::id()),
        };
        let status = tmux
            .tmux()
            .args(["new-session", "-d", "-s", "t"])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            // The command's own screen: no status bar taking a line.
            // bash carries on after a child that handled Ctrl-C exited.
            .args(["bash", "-c", command])
            .status()
            .expect("tmux runs (the lab's packages install it)");
        assert!(status.success());
        let status = tmux
            .tmux()
            .args(["set-option", "-t", "t", "status", "off"])
            .status()
            .unwrap();
        assert!(status.success());
        tmux
    }

    fn tmux(&self) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket, "-f", "/dev/null"]);
        command
    }

    /// The window's screen as text; `joined`: lines the terminal wrapped
    /// joined again (`-J`); `escapes`: with the colours and attributes as
    /// escape sequences (`-e`).
    fn screen(&self, joined: bool, escapes: bool) -> String {
        let mut command = self.tmux();
        command.args(["capture-pane", "-p", "-t", "t"]);
        if joined {
            command.arg("-J");
        }
        if escapes {
            command.arg("-e");
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    /// Waits (up to 5 minutes) for the screen to show `needle`.
    fn wait_for(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen(true, false);
            if screen.contains(needle) {
                return screen;
            }
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "no {needle:?} on the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").status();
    }
}

/// The shell line that runs mab with `arguments` in `project` with `home`
/// as its HOME and a clean environment (`variables` added), stdout into
/// `out.txt` of the project, then prints `mab exited N` and whether the
/// terminal echoes control characters (`modes: echoctl`, as it did
/// before, or `modes: -echoctl`), and waits.
fn mab_line(home: &Path, project: &Path, arguments: &str, variables: &str) -> String {
    format!(
        "cd {project} && env -i PATH=/usr/bin:/bin HOME={home} XDG_RUNTIME_DIR={home}/run TERM=xterm-256color {variables} {mab} {arguments} >out.txt; echo \"mab exited $?\"; echo \"modes: $(stty -a | grep -o -- '-*echoctl')\"; sleep 600",
        project = project.display(),
        home = home.display(),
        mab = env!("CARGO_BIN_EXE_mab"),
    )
}

/// Characters of `line` as the terminal counts them (one per char: the
/// screen holds no wide characters).
fn columns(line: &str) -> usize {
    line.trim_end().chars().count()
}

/// The two-platform project of the terminal tests: linux/amd64 on the
/// local engine (runner `here`), linux/arm64 on runner-a (runner `arm`),
/// with files of the test's own so that no cache holds its steps.
fn project(lab: &crate::support::Lab, repository: &str, name: &str) -> Project {
    let project = Project::new();
    let stamp = format!("{name} {:?}\n", std::time::SystemTime::now());
    project
        .file(
            "Dockerfile",
            "FROM scratch\nCOPY one.txt /\nCOPY two.txt /\n",
        )
        .file("one.txt", &stamp)
        .file("two.txt", &stamp)
        .two_platforms(lab, repository);
    project
}

/// At 100 and at 50 columns, the final screen has the header, one ended
/// line per platform (platform, runner, native, done) that the terminal
/// did not wrap, the summary line of each platform with the digest the
/// list names for it, and the list digest skopeo reads for the tag.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_build_in_a_terminal_ends_with_one_line_per_platform_and_the_list_digest() {
    let lab = require_lab!();
    let _ssh = ssh_lock();
    for width in [100u16, 50] {
        let repository = lab.repository(&format!("terminal-{width}"));
        let project = project(lab, &repository, &format!("terminal {width}"));
        let home = Home::new(lab);
        let tmux = Tmux::start(
            &format!("screen-{width}"),
            width,
            30,
            &mab_line(home.path(), project.path(), "build --tag t1", ""),
        );
        let screen = tmux.wait_for("mab exited");
        assert!(screen.contains("mab exited 0"), "{screen}");
        let stdout = std::fs::read_to_string(project.path().join("out.txt")).unwrap();
        let list = skopeo_raw(&format!("{repository}:t1"));
        let digest = sha256(&list);
        assert_eq!(stdout, format!("{repository}@{digest}\n"), "{screen}");
        let list: serde_json::Value = serde_json::from_slice(&list).unwrap();

        // Row by row as the terminal shows them: a line the bars drew
        // that the terminal wrapped would end on the next row.
        let rows = tmux.screen(false, false);
        let lines: Vec<&str> = rows.lines().collect();
        assert!(
            lines.iter().all(|row| columns(row) <= usize::from(width)),
            "{rows}"
        );
        let header: Vec<&&str> = lines
            .iter()
            .filter(|line| line.trim_start().starts_with("PLATFORM"))
            .collect();
        assert_eq!(header.len(), 1, "one header:\n{rows}");
        assert!(header[0].contains("RUNNER"), "{rows}");
        // runner-a's engine is an amd64 machine's: arm64 is emulated there.
        for (platform, runner, how, architecture) in [
            ("linux/amd64", "here", "native", "amd64"),
            ("linux/arm64", "arm", "emulated", "arm64"),
        ] {
            // The ended line, once (a redraw of a wrapped line would leave
            // copies behind), with its end on the same row.
            let ended: Vec<&&str> = lines
                .iter()
                .filter(|line| line.starts_with(&format!("✓ {platform} ")))
                .collect();
            assert_eq!(ended.len(), 1, "{platform} at {width} columns:\n{rows}");
            let words: Vec<&str> = ended[0].split_whitespace().collect();
            assert_eq!(&words[..4], ["✓", platform, runner, how], "{rows}");
            assert_eq!(words.get(4), Some(&"done"), "{rows}");
            assert!(
                words.get(5).is_some_and(|time| time.ends_with('s')),
                "{rows}"
            );
            // The summary names the image the list holds for it.
            let child = list["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .find(|child| child["platform"]["architecture"] == architecture)
                .unwrap();
            let short = &child["digest"].as_str().unwrap()[..19];
            let summary: Vec<&&str> = lines
                .iter()
                .filter(|line| line.starts_with(&format!("{platform} {runner} ")))
                .collect();
            assert_eq!(summary.len(), 1, "{platform} summary:\n{rows}");
            assert!(summary[0].contains(short), "{short}: {rows}");
            if width >= 80 {
                assert!(summary[0].contains("verify, check"), "{rows}");
            }
        }
        // The list digest, on a row of its own, which a narrow terminal
        // continues on the next.
        let at = lines
            .iter()
            .position(|line| line.starts_with("list sha256:"))
            .unwrap_or_else(|| panic!("no list digest:\n{rows}"));
        let joined = format!("{}{}", lines[at].trim_end(), lines[at + 1].trim_end());
        assert_eq!(
            &joined[.."list sha256:".len() + 64],
            format!("list {digest}"),
            "{rows}"
        );
    }
}

/// `-v` prints the build's output lines above the bars; Ctrl-C leaves a
/// clean terminal: the cursor shown, the platform's line once, saying it
/// was stopped, nothing drawn twice (the terminal's `^C` echo included),
/// the report on lines of its own below it, exit 130.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn verbose_shows_the_log_and_ctrl_c_leaves_a_clean_terminal() {
    let lab = require_lab!();
    let repository = lab.repository("terminal-interrupt");
    let project = Project::new();
    project
        .with_busybox(lab, &["amd64"])
        .file(
            "Dockerfile",
            "FROM scratch\nCOPY busybox/amd64 /bin/busybox\nCOPY stamp.txt /\n\
             RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox echo said-hello; /bin/busybox sleep 60\"]\n",
        )
        .file("stamp.txt", &format!("{:?}\n", std::time::SystemTime::now()))
        .file(
            "mab.toml",
            &format!("[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\"]\n"),
        );
    let home = Home::new(lab);
    let tmux = Tmux::start(
        "interrupt",
        100,
        30,
        &mab_line(home.path(), project.path(), "-v build --no-push", ""),
    );
    let running = tmux.wait_for("said-hello");
    assert!(
        running.contains("[linux/amd64 local] | said-hello"),
        "-v shows the output line: {running}"
    );
    assert!(running.contains("step 3/3 RUN"), "{running}");
    let status = tmux
        .tmux()
        .args(["send-keys", "-t", "t", "C-c"])
        .status()
        .unwrap();
    assert!(status.success());
    // The line after mab's exit reports the terminal's modes: wait for it,
    // not only for the exit, so that a slow shell is not taken for a
    // terminal left without echoctl.
    let screen = tmux.wait_for("modes:");
    assert!(screen.contains("mab exited 130"), "{screen}");
    let lines: Vec<&str> = screen.lines().collect();
    let rows: Vec<&&str> = lines
        .iter()
        .filter(|line| line.contains("linux/amd64 local  native"))
        .collect();
    assert_eq!(rows.len(), 1, "one line for the platform:\n{screen}");
    // The job was stopped in its step: its line says so.
    assert!(rows[0].contains("FAILED: stopped"), "{screen}");
    assert!(rows[0].contains("interrupted (Ctrl-C)"), "{screen}");
    let headers = lines
        .iter()
        .filter(|line| line.contains("PLATFORM"))
        .count();
    assert_eq!(headers, 1, "nothing drawn twice:\n{screen}");
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("error: interrupted; nothing was published")),
        "{screen}"
    );
    assert!(
        screen.contains("modes: echoctl"),
        "the echo of ^C is back: {screen}"
    );
    let cursor = tmux
        .tmux()
        .args(["display-message", "-p", "-t", "t", "#{cursor_flag}"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&cursor.stdout).trim(),
        "1",
        "the cursor is shown"
    );
}

/// A single-platform project on the local engine, with a file of its own.
fn local_project(lab: &crate::support::Lab, repository: &str, name: &str) -> Project {
    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\nCOPY content.txt /\n")
        .amd64_image(
            &format!("{name} {:?}", std::time::SystemTime::now()),
            repository,
        );
    let _ = lab;
    project
}

/// `-q`: stdout holds only the published reference (the digest skopeo
/// reads for the tag), stderr nothing.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn quiet_prints_only_the_reference() {
    let lab = require_lab!();
    let repository = lab.repository("terminal-quiet");
    let project = local_project(lab, &repository, "quiet");
    let home = Home::new(lab);
    let run = mab(home.path(), project.path(), &["-q", "build", "--tag", "q1"]);
    assert_eq!(run.code, 0, "{run:?}");
    let digest = sha256(&skopeo_raw(&format!("{repository}:q1")));
    assert_eq!(run.stdout, format!("{repository}@{digest}\n"));
    assert_eq!(run.stderr, "", "{run:?}");
}

/// The escape sequence every colour and attribute (SGR) starts with.
const CSI: &str = "\u{1b}[";

/// Colour: on a terminal by default, not with `NO_COLOR` (read from the
/// screen's attributes, `capture-pane -e`), and `--color always` wins
/// over `NO_COLOR`; into a pipe, a failure report is coloured with
/// `--color always` only.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn no_color_and_color_never_write_no_escape_sequences() {
    let lab = require_lab!();
    let repository = lab.repository("terminal-color");
    let project = local_project(lab, &repository, "color");
    let home = Home::new(lab);
    for (name, arguments, variables, coloured) in [
        ("auto", "build --no-push", "", true),
        ("no-color", "build --no-push", "NO_COLOR=1", false),
        ("never", "--color never build --no-push", "", false),
        (
            "always",
            "build --no-push --color always",
            "NO_COLOR=1",
            true,
        ),
    ] {
        let tmux = Tmux::start(
            &format!("color-{name}"),
            100,
            30,
            &mab_line(home.path(), project.path(), arguments, variables),
        );
        let text = tmux.wait_for("mab exited");
        assert!(text.contains("mab exited 0"), "{name}: {text}");
        assert!(text.contains("✓ linux/amd64"), "{name}: {text}");
        let screen = tmux.screen(false, true);
        assert_eq!(screen.contains(CSI), coloured, "{name}: {screen:?}");
    }

    // Into a pipe: a Dockerfile that fails, with its report.
    project.file("Dockerfile", "FROM scratch\nCOPY missing.txt /\n");
    for (arguments, variables, coloured) in [
        (&["--color", "always"][..], &[][..], true),
        (
            &["--color", "always"][..],
            &[("NO_COLOR", Some("1"))][..],
            true,
        ),
        (&["--color", "never"][..], &[][..], false),
        (&[][..], &[][..], false),
    ] {
        let mut all = arguments.to_vec();
        all.extend(["build", "--no-push", "--progress", "plain"]);
        let run = mab_with_env(home.path(), project.path(), &all, variables);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(run.stderr.contains("error:"), "{run:?}");
        assert_eq!(run.stderr.contains(CSI), coloured, "{all:?}: {run:?}");
    }
}

/// A platform whose step fails prints the last 40 lines of its log (not
/// the earlier ones), its runner, and the path of its full log in the
/// state directory, which holds every line.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_failed_platform_shows_its_last_40_lines_and_its_full_log() {
    let lab = require_lab!();
    let repository = lab.repository("terminal-failed");
    let project = Project::new();
    project
        .with_busybox(lab, &["amd64"])
        .file(
            "Dockerfile",
            "FROM scratch\nCOPY busybox/amd64 /bin/busybox\n\
             RUN [\"/bin/busybox\", \"sh\", \"-c\", \"for i in $(/bin/busybox seq 1 60); do echo line-$i; done; exit 3\"]\n",
        )
        .file(
            "mab.toml",
            &format!("[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\"]\n"),
        );
    let home = Home::new(lab);
    let run = mab(
        home.path(),
        project.path(),
        &["build", "--no-push", "--progress", "plain"],
    );
    assert_eq!(run.code, 1, "{run:?}");
    let report = &run.stderr[run.stderr.find("error:").expect("a report")..];
    assert!(report.contains("linux/amd64 (runner local)"), "{report}");
    let shown: Vec<u32> = report
        .lines()
        .filter_map(|line| line.trim_start_matches("  |").trim().strip_prefix("line-"))
        .map(|number| number.parse().unwrap())
        .collect();
    assert!(!shown.is_empty() && shown.len() <= 40, "{report}");
    assert_eq!(*shown.last().unwrap(), 60, "{report}");
    assert!(!shown.contains(&1), "only the last lines: {report}");
    let prefix = "full log of linux/amd64 (runner local): ";
    let path = report
        .lines()
        .find_map(|line| line.split_once(prefix).map(|(_, path)| path.trim()))
        .unwrap_or_else(|| panic!("no full log path: {report}"));
    let state = home.path().join(".local/state/mab/history");
    assert!(Path::new(path).starts_with(&state), "{path}");
    assert!(path.ends_with("/logs/linux-amd64.log"), "{path}");
    let log = std::fs::read_to_string(path).unwrap();
    for number in 1..=60 {
        assert!(
            log.lines()
                .any(|line| line.ends_with(&format!("line-{number}"))),
            "line-{number} in {log}"
        );
    }
    assert!(log.contains("# FAILED on runner local"), "{log}");
}
