//! Runner slots shared across coordinators, on a spare host of the test's
//! own with `jobs = 1` in the runners file of two coordinators (two HOMEs,
//! two clones): their builds never run there at once (each build's `RUN`
//! step records the machine's uptime at its start and end into the image,
//! read back from the registry), both complete, the one that waits says
//! so, and `mab runners check` counts the slot while a build holds it; a
//! coordinator SIGKILLed while it holds the slot does not block the next.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    free_slot_files, holders_under, image_file, mab_command, mab_with_env, require_lab,
    runners_check_json, user_id, Home, Lab, Project, Run, SpareHost, SpareOptions,
    RUNNERS_CHECK_JSON,
};

/// The tag each coordinator publishes.
const TAG: &str = "slots";

/// One `mab build` user of the spare host: its own home and clone, whose
/// `RUN` step sleeps `sleep` seconds between two readings of
/// `/proc/uptime` (the one clock every lab host shares) kept in `/times`.
struct Coordinator {
    /// The name of the spare host's runner in its runners file.
    runner: String,
    home: Home,
    project: Project,
    repository: String,
    sleep: &'static str,
}

impl Coordinator {
    fn new(lab: &Lab, spare: &SpareHost, name: &str, sleep: &'static str) -> Coordinator {
        Coordinator::with_runner(lab, spare, name, sleep, "spare")
    }

    /// [`Coordinator::new`] whose runners file names the spare host's
    /// runner `runner`.
    fn with_runner(
        lab: &Lab,
        spare: &SpareHost,
        name: &str,
        sleep: &'static str,
        runner: &str,
    ) -> Coordinator {
        let home = Home::new(lab);
        spare.add_to(&home, "spare", "");
        let repository = lab.repository(name);
        let project = Project::new();
        let uptime = "/bin/busybox cut -d' ' -f1 /proc/uptime";
        project.with_busybox(lab, &["amd64"]).file(
            "Dockerfile",
            &format!(
                "FROM scratch\nCOPY busybox/amd64 /bin/busybox\nCOPY content.txt /\n\
                 RUN [\"/bin/busybox\", \"sh\", \"-c\", \"{uptime} > /times; /bin/busybox sleep {sleep}; {uptime} >> /times\"]\n"
            ),
        );
        project.amd64_image(name, &repository);
        project.file(
            "runners.toml",
            &format!(
                "[[runner]]\nname = \"{runner}\"\nhost = \"spare\"\nplatforms = [\"linux/amd64\"]\nengine = \"unix://{}\"\njobs = 1\n",
                spare.get("ENGINE_SOCKET")
            ),
        );
        Coordinator {
            runner: runner.to_owned(),
            home,
            project,
            repository,
            sleep,
        }
    }

    /// `mab build` on the spare runner, plain progress, `--tag slots`,
    /// given 2 minutes (`--deadline`: a slot never freed fails the build
    /// rather than the test's patience).
    fn command(&self) -> Command {
        self.command_within("2m")
    }

    /// [`Coordinator::command`] with `--deadline deadline`.
    fn command_within(&self, deadline: &str) -> Command {
        mab_command(
            self.home.path(),
            self.project.path(),
            &[
                "build",
                "--progress",
                "plain",
                "--runners",
                "runners.toml",
                "--network",
                "host",
                "--tag",
                TAG,
                "--deadline",
                deadline,
            ],
        )
    }

    fn spawn(&self) -> Child {
        self.command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Whether its `RUN` step runs now.
    fn step_runs(&self) -> bool {
        Command::new("pgrep")
            .args(["-f", &format!("busybox sleep {}", self.sleep)])
            .output()
            .unwrap()
            .status
            .success()
    }

    /// Waits up to 60 s for its `RUN` step to run.
    fn wait_for_step(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.step_runs() {
            assert!(
                Instant::now() < deadline,
                "the RUN step sleeping {} did not start within 60 s",
                self.sleep
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `{"jobs", "in_use"}` of `mab runners check --format json` for the
    /// spare runner.
    fn slots(&self) -> serde_json::Value {
        let run = runners_check_json(self.home.path(), self.project.path());
        assert_eq!(run.code, 0, "{run:?}");
        run.json()["runners"][0]["slots"].clone()
    }

    /// When its published image's `RUN` step started and ended, in seconds
    /// of the machine's uptime.
    fn interval(&self) -> (f64, f64) {
        let times = image_file(&format!("{}:{TAG}", self.repository), "times");
        let readings: Vec<f64> = times
            .split_whitespace()
            .map(|reading| reading.parse().unwrap())
            .collect();
        assert_eq!(readings.len(), 2, "{times:?}");
        assert!(readings[0] < readings[1], "{times:?}");
        (readings[0], readings[1])
    }
}

/// The slot directory of `spare` holds only free, empty slot files
/// (slot `0` of its engine, the only one `jobs = 1` uses), no process holds one, and no
/// process of an SSH session there runs (a slot script left behind).
fn assert_slots_free(spare: &SpareHost) {
    let directory = spare.slot_directory();
    assert_eq!(holders_under(&directory), Vec::<String>::new());
    assert_eq!(free_slot_files(&directory), [spare.slot_file(0)]);
    assert_eq!(spare.session_processes(), Vec::<String>::new());
}

/// Two coordinators build at once on a `jobs = 1` runner: the second waits
/// (its progress says for which runner, and why) until the first's build
/// ends, the `RUN` steps' intervals do not overlap, and both publish.
/// While the first holds the slot, `mab runners check` shows it in use;
/// afterwards, free.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn two_coordinators_never_share_a_one_job_runner() {
    let lab = require_lab!();
    let spare = SpareHost::start("slots-two", SpareOptions::default());
    let first = Coordinator::new(lab, &spare, "slots-first", "8.41");
    let second = Coordinator::new(lab, &spare, "slots-second", "8.42");
    take_turns(&spare, &first, &second);
}

/// Two runner entries for one host and engine under different names
/// (`spare` and `spare-twin`) share its slots: with `jobs = 1`, the
/// second waits for the first, as in
/// [`two_coordinators_never_share_a_one_job_runner`].
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn two_runner_entries_for_one_engine_share_its_slots() {
    let lab = require_lab!();
    let spare = SpareHost::start("slots-twin", SpareOptions::default());
    let first = Coordinator::new(lab, &spare, "slots-twin-first", "8.51");
    let second = Coordinator::with_runner(lab, &spare, "slots-twin-second", "8.52", "spare-twin");
    take_turns(&spare, &first, &second);
}

/// `first` builds and, once its step runs, `second` (whose runner names
/// `runner`): the second's slot script waits on the host while the first
/// holds the slot, the steps never overlap, both publish, the second says
/// it waited, and afterwards the slot is free.
fn take_turns(spare: &SpareHost, first: &Coordinator, second: &Coordinator) {
    assert_eq!(first.slots(), serde_json::json!({"jobs": 1, "in_use": 0}));
    let first_build = first.spawn();
    first.wait_for_step();
    let second_build = second.spawn();
    wait_for_a_waiting_script(spare);
    assert_eq!(first.slots(), serde_json::json!({"jobs": 1, "in_use": 1}));
    assert_eq!(second.slots(), serde_json::json!({"jobs": 1, "in_use": 1}));
    // The first's step may have ended by now on a slow machine (the
    // second's may then run); never both at once.
    assert!(
        !(second.step_runs() && first.step_runs()),
        "both RUN steps run at once"
    );
    let first_run = Run::of(first_build.wait_with_output().unwrap());
    let second_run = Run::of(second_build.wait_with_output().unwrap());
    assert_eq!(first_run.code, 0, "{first_run:?}");
    assert_eq!(second_run.code, 0, "{second_run:?}");

    let waits = format!(
        "linux/amd64 waits for a slot on runner `{}` (jobs = 1, its one slot is taken)",
        second.runner
    );
    assert!(second_run.stderr.contains(&waits), "{second_run:?}");
    assert!(
        !first_run.stderr.contains("waits for a slot"),
        "{first_run:?}"
    );
    let (first_start, first_end) = first.interval();
    let (second_start, second_end) = second.interval();
    assert!(
        first_end <= second_start,
        "the steps overlap: {first_start}..{first_end} and {second_start}..{second_end}"
    );
    assert_eq!(first.slots(), serde_json::json!({"jobs": 1, "in_use": 0}));
    assert_slots_free(spare);
}

/// A build whose `--deadline` comes while its job waits for the slot
/// fails saying so and leaves no slot script waiting on the host (within
/// 5 s); the holder's build is not disturbed.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_deadline_while_waiting_leaves_no_script_on_the_host() {
    let lab = require_lab!();
    let spare = SpareHost::start("slots-deadline", SpareOptions::default());
    let holder = Coordinator::new(lab, &spare, "slots-deadline-holder", "20.61");
    let late = Coordinator::new(lab, &spare, "slots-deadline-late", "1.62");
    let holder_build = holder.spawn();
    holder.wait_for_step();
    let late_run = Run::of(late.command_within("8s").output().unwrap());
    assert_eq!(late_run.code, 1, "{late_run:?}");
    assert!(
        late_run.stderr.contains(
            "not started: the build's deadline (--deadline 8s) came while it waited for a slot on runner `spare`"
        ),
        "{late_run:?}"
    );
    assert_no_script_waits_soon(&spare, "of a build past its deadline");
    assert!(!late.step_runs());
    let holder_run = Run::of(holder_build.wait_with_output().unwrap());
    assert_eq!(holder_run.code, 0, "{holder_run:?}");
    assert_slots_free(&spare);
}

/// Whether `spare` runs a slot script that waits (its process still the
/// script's `sh`: one that holds a slot has become `cat`).
fn script_waits(spare: &SpareHost) -> bool {
    spare
        .session_processes()
        .iter()
        .any(|process| process.contains("echo waiting"))
}

/// Waits up to 30 s until a slot script waits on `spare`.
fn wait_for_a_waiting_script(spare: &SpareHost) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !script_waits(spare) {
        assert!(
            Instant::now() < deadline,
            "no slot script waits on the host"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts that no slot script waits on `spare` within 5 s (`whose`, for
/// the message).
fn assert_no_script_waits_soon(spare: &SpareHost, whose: &str) {
    let since = Instant::now();
    while script_waits(spare) {
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "the slot script {whose} still waits: {:?}",
            spare.session_processes()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A coordinator SIGKILLed while its job waits for the slot leaves no
/// script behind on the host (within 5 s). One SIGKILLed while its build
/// holds the slot: the host's kernel frees the slot once sshd sees the
/// connection gone, so the next coordinator's build starts within seconds
/// (it never says it waited 10 s) and publishes; nothing of mab's holds
/// the slot afterwards.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_killed_coordinator_does_not_keep_its_slot() {
    let lab = require_lab!();
    let spare = SpareHost::start("slots-kill", SpareOptions::default());
    let killed = Coordinator::new(lab, &spare, "slots-killed", "300.43");
    let waiter = Coordinator::new(lab, &spare, "slots-waiter", "1.45");
    let next = Coordinator::new(lab, &spare, "slots-next", "1.44");

    let mut killed_build = killed.spawn();
    killed.wait_for_step();
    assert_eq!(killed.slots(), serde_json::json!({"jobs": 1, "in_use": 1}));

    let mut waiting_build = waiter.spawn();
    wait_for_a_waiting_script(&spare);
    waiting_build.kill().unwrap();
    waiting_build.wait().unwrap();
    assert_no_script_waits_soon(&spare, "of a killed coordinator");
    assert!(!waiter.step_runs());

    killed_build.kill().unwrap();
    killed_build.wait().unwrap();

    let started = Instant::now();
    let run = Run::of(next.command().output().unwrap());
    let took = started.elapsed();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        !run.stderr.contains("s so far"),
        "waited 10 s or more: {run:?}"
    );
    assert!(took < Duration::from_secs(60), "{took:?}: {run:?}");
    let (start, end) = next.interval();
    assert!(end - start >= 1.4, "{start}..{end}");
    assert_eq!(next.slots(), serde_json::json!({"jobs": 1, "in_use": 0}));
    assert_slots_free(&spare);
}

/// A runner whose host cannot hold a slot (here: a local runner whose
/// XDG_RUNTIME_DIR is a file, so its slot directory cannot be made) is a
/// runner failure: `mab runners check` reports it unusable (`slots`),
/// naming the runner and the directory, with a hint; `mab build` moves its
/// platform to the next runner, saying why, and publishes from there.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn a_host_that_cannot_hold_a_slot_loses_its_platform() {
    let lab = require_lab!();
    let home = Home::new(lab);
    let repository = lab.repository("slots-refused");
    let project = Project::new();
    project
        .with_busybox(lab, &["amd64"])
        .file(
            "Dockerfile",
            "FROM scratch\nCOPY busybox/amd64 /bin/busybox\nCOPY content.txt /\n",
        )
        .amd64_image("slots-refused", &repository);
    project.file(
        "runners.toml",
        &format!(
            "[[runner]]\nname = \"here\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\nengine = \"{}\"\n\n\
             [[runner]]\nname = \"a\"\nhost = \"runner-a\"\nplatforms = [\"linux/amd64\"]\nengine = \"unix://{}\"\n",
            lab.get("LOCAL_ENGINE"),
            lab.get("RUNNER_A_ENGINE_SOCKET")
        ),
    );
    let file = project.path().join("not-a-directory");
    std::fs::write(&file, "").unwrap();
    let directory = format!("{}/mab-{}", file.display(), user_id());
    let runtime = [("XDG_RUNTIME_DIR", Some(file.to_str().unwrap()))];
    let message = format!(
        "runner `here` cannot hold a build slot: the directory {directory} cannot be made or written on its host"
    );

    let check = mab_with_env(home.path(), project.path(), RUNNERS_CHECK_JSON, &runtime);
    assert_eq!(check.code, 1, "{check:?}");
    let here = &check.json()["runners"][0];
    assert_eq!(here["name"], "here");
    assert_eq!(here["ok"], false);
    assert_eq!(here["error_kind"], "slots");
    assert_eq!(here["error"], message.as_str());
    assert!(
        here["hint"]
            .as_str()
            .unwrap()
            .starts_with("let the user that builds on the host of runner `here`"),
        "{here}"
    );
    assert_eq!(check.json()["runners"][1]["ok"], true, "{check:?}");

    let build = mab_with_env(
        home.path(),
        project.path(),
        &[
            "build",
            "--progress",
            "plain",
            "--runners",
            "runners.toml",
            "--tag",
            TAG,
        ],
        &runtime,
    );
    assert_eq!(build.code, 0, "{build:?}");
    assert!(
        build.stderr.contains(&format!(
            "warning: linux/amd64 moved from runner `here` to runner `a` (native): {message}"
        )),
        "{build:?}"
    );
    assert_eq!(
        image_file(&format!("{repository}:{TAG}"), "content.txt"),
        "slots-refused\n"
    );
}
