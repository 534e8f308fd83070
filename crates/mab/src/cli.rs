//! The command line, as clap sees it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "mab",
    version,
    about = "Build one container image for many CPU architectures on native runner hosts",
    long_about = "mab splits a multi-platform image build into one job per platform, sends each \
                  job over SSH to a runner host whose CPU is that architecture (or to a QEMU-emulated \
                  builder when no native host exists), and publishes one manifest list under the \
                  release tags."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Show every line of every build step's output (above the bars on a terminal; plain lines show them anyway).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Print only errors on stderr and the result on stdout (the published IMAGE@DIGEST): no progress, no warnings; over -v. `--progress json` still writes its events.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// When to colour stderr: `auto` colours a terminal unless NO_COLOR is set and not empty (no-color.org); `always` and `never` win over NO_COLOR.
    #[arg(long, value_enum, global = true, value_name = "WHEN", default_value_t = Color::Auto)]
    pub color: Color,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    /// Colour when stderr is a terminal and NO_COLOR is unset or empty.
    Auto,
    /// Always colour, even into a file or pipe.
    Always,
    /// Never colour.
    Never,
}

impl Color {
    /// Whether stderr is coloured: `auto` on a terminal without a
    /// non-empty `NO_COLOR` (no-color.org), else as the flag says.
    pub fn enabled(self, stderr_is_terminal: bool, no_color: bool) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => stderr_is_terminal && !no_color,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Plan, build every platform, check and test each image, publish one manifest list.
    ///
    /// Each platform's image is built on its runner, pushed under a staging tag and read
    /// back, then checked: its programs must be of the platform's architecture (the binary
    /// check, on by default; `[verify]` in mab.toml, docs/verify.md), and with a `[test]`
    /// table in mab.toml it runs that command on its runner as a smoke test
    /// (docs/publishing.md#the-smoke-test; --no-test skips it). The list is published only
    /// when every platform passes.
    ///
    /// Registry credentials come from DOCKER_AUTH_CONFIG, then $DOCKER_CONFIG/config.json
    /// (default ~/.docker/config.json), in every form docker writes: auth,
    /// username/password, identitytoken, credsStore, credHelpers (docs/publishing.md).
    Build(Box<BuildArgs>),
    /// Show which runner builds which platform and why, its fallbacks, and the platforms moved off an unreachable runner; nothing is built.
    Plan(PlanArgs),
    /// Manage and probe the runner hosts.
    Runners {
        #[command(subcommand)]
        command: RunnersCommand,
    },
    /// Write a starting mab.toml for the Dockerfile in this directory.
    ///
    /// The file names the image and its platforms and, commented out, the Dockerfile's
    /// stages and build arguments, the binary check and a smoke test. Without --image its
    /// image name is registry.example.com/CHANGE-ME/<directory>, which every command
    /// refuses until it is edited.
    ///
    /// The keys of mab.toml:
    ///   [image]
    ///   name        the repository to publish to, registry[:port]/namespace/name (required)
    ///   platforms   os/arch[/variant] list, ["linux/amd64", "linux/arm64"] (required)
    ///   context     the build context, relative to mab.toml (default ".")
    ///   dockerfile  relative to the context (default Dockerfile, else dockerfile)
    ///   target      the stage to build (default the last)
    ///   emulation   false: build natively or not at all (default true)
    ///   fallback    false: a platform never leaves its planned runner (default true)
    ///   timeout     how long one platform's job may run, "90m" (default none)
    ///   [image.args]     NAME = "VALUE" build arguments; --build-arg adds or overrides
    ///   [image.secrets]  ID = { env = "VARIABLE" } or { src = "FILE" }, for
    ///                    RUN --mount=type=secret,id=ID; --secret replaces one
    ///   [tags]      extra = ["edge"]: tags added to the computed ones
    ///   [labels]    "org.example.team" = "build": labels on every image, beside the
    ///               org.opencontainers.image.* ones mab computes from git
    ///   [annotations]  "org.example.id" = "7": annotations of the list, when it is an
    ///               OCI index (a Docker manifest list has none)
    ///   [verify]    binaries = "error" | "warn" | "off": programs of another architecture;
    ///               ignore = ["/usr/share/qemu/**"]: image paths not inspected
    ///   [cache]     from = "registry": build each platform with the cache of its image in
    ///               the last published list; ref = "REF": that list (default: the first tag's)
    ///   [test]      run = ["/app/server", "--version"]: a command each image runs on its
    ///               runner before anything is published; expect = 'regex' its stdout
    ///               must match; timeout = "60s"
    ///
    /// Runners are registered with `mab runners add` (`mab runners add --help`).
    #[command(verbatim_doc_comment)]
    Init(InitArgs),
    /// Show a published list or image: media type, digest, annotations, and per platform the digest, sizes and creation time.
    ///
    /// A manifest list (or OCI image index) shows its media type, digest and annotations,
    /// then one row per entry: platform (os/architecture/variant), image manifest digest,
    /// the manifest's size and the image's size (config and layers, compressed) in bytes,
    /// and the config's created time. A single image shows one row.
    /// Registry credentials are read as for `mab build` (DOCKER_AUTH_CONFIG, then
    /// $DOCKER_CONFIG/config.json; docs/publishing.md).
    Inspect {
        /// The image reference, such as registry.example.com/team/app:1.0:
        /// [registry[:port]/]path[:tag] or path@sha256:DIGEST, read by Docker's
        /// reference grammar (no tag means latest).
        reference: String,
        /// Output format: human (lines for people), or json (one JSON document on stdout; docs/publishing.md shows its shape).
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Print the manifest or list exactly as the registry serves it, nothing else.
        #[arg(long, conflicts_with = "format")]
        raw: bool,
    },
    /// Print a shell completion script for mab on stdout (docs/install.md says where it goes).
    Completions {
        /// The shell the script is for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print mab's manual page (roff, for man(1)) on stdout, or write one page per command.
    Man {
        /// Write mab.1 and one page per command (mab-build.1, mab-runners-add.1, ...) into
        /// this directory instead, which must exist.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunnersCommand {
    /// List the registered runners.
    List {
        /// The runners file (default: MAB_RUNNERS, runners.toml beside mab.toml, ~/.config/mab/runners.toml).
        #[arg(long, value_name = "FILE")]
        runners: Option<PathBuf>,
        /// Output format: human (a table), or json (JSON on stdout; warnings stay text on stderr).
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Register a runner host (the file keeps its comments and layout).
    Add(RunnersAddArgs),
    /// Retire a runner.
    Remove {
        /// The runner's name.
        name: String,
        /// The runners file (default: MAB_RUNNERS, runners.toml beside mab.toml, ~/.config/mab/runners.toml).
        #[arg(long, value_name = "FILE")]
        runners: Option<PathBuf>,
    },
    /// Connect to each runner at once and report what it can build; exit 1 when any is unusable.
    Check {
        /// Check only these runners (default: all).
        names: Vec<String>,
        /// The runners file (default: MAB_RUNNERS, runners.toml beside mab.toml, ~/.config/mab/runners.toml).
        #[arg(long, value_name = "FILE")]
        runners: Option<PathBuf>,
        /// Output format: human (a table), or json (one JSON document on stdout with each runner's status, engine, platforms and slots, docs/runners.md); warnings, errors and hints stay text on stderr.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
}

#[derive(Debug, Args)]
pub struct RunnersAddArgs {
    /// A unique name for the runner.
    pub name: String,
    /// `local`, `[user@]host[:port]`, or a Host alias from ~/.ssh/config; an
    /// IPv6 address alone (`fe80::1`) or in brackets with a port
    /// (`[fe80::1]:22`).
    #[arg(long, allow_hyphen_values = true)]
    pub host: String,
    /// A platform the runner serves (repeatable or comma-separated).
    #[arg(
        long = "platform",
        value_name = "P[,P]",
        value_delimiter = ',',
        required = true
    )]
    pub platforms: Vec<String>,
    /// The engine's socket on that host (default: unix:///var/run/docker.sock when it is there, else the first of Podman's and rootless Docker's usual sockets, docs/runners.md).
    #[arg(long, value_name = "URL")]
    pub engine: Option<String>,
    /// Builds at once on this runner (default 1).
    #[arg(long, value_name = "N")]
    pub jobs: Option<u32>,
    /// Network mode of RUN steps: default, host or none.
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// The runners file to edit (default: the one in use, else ~/.config/mab/runners.toml, created).
    #[arg(long, value_name = "FILE")]
    pub runners: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Run as if started in DIR.
    #[arg(short = 'C', value_name = "DIR")]
    pub directory: Option<PathBuf>,
    /// The repository to publish to (default: registry.example.com/CHANGE-ME/<directory name>, a placeholder every command refuses until it is edited).
    #[arg(long, value_name = "NAME")]
    pub image: Option<String>,
    /// Platforms to build (default: linux/amd64,linux/arm64).
    #[arg(long = "platform", value_name = "P[,P]", value_delimiter = ',')]
    pub platforms: Vec<String>,
}

/// Where the project and runners are.
#[derive(Debug, Args, Clone, Default)]
pub struct ProjectArgs {
    /// Run as if started in DIR.
    #[arg(short = 'C', value_name = "DIR")]
    pub directory: Option<PathBuf>,
    /// Path to mab.toml (default: found in the current directory or the nearest parent).
    #[arg(long, value_name = "FILE")]
    pub manifest_path: Option<PathBuf>,
    /// The runners file (default: MAB_RUNNERS, runners.toml beside mab.toml, ~/.config/mab/runners.toml).
    #[arg(long, value_name = "FILE")]
    pub runners: Option<PathBuf>,
    /// Build these platforms instead of those in mab.toml (comma-separated or repeated); `mab build` of fewer platforms than mab.toml lists needs --tag or --no-push.
    #[arg(long = "platform", value_name = "P[,P]", value_delimiter = ',')]
    pub platforms: Vec<String>,
    /// Build every platform natively or not at all: a platform that only QEMU emulation could build is refused (exit 2; exit 1 when a runner listed for it is unreachable). As `emulation = false` under [image].
    #[arg(long)]
    pub native_only: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Publish under exactly these tags (repeatable), instead of the computed ones.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// A build argument (repeatable), over [image.args]: NAME=VALUE, or NAME alone to take the value of the variable NAME from the environment, as `docker build` does (no effect when NAME is unset).
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    pub build_args: Vec<String>,
    /// A secret for `RUN --mount=type=secret,id=ID` steps (repeatable), as `docker buildx build --secret`: id=ID,src=FILE (relative to the current directory, `~/` the home) or id=ID,env=VARIABLE (also type=file|env); id=ID alone reads the variable ID when set, else the file ID. Over [image.secrets] for the same id. Read once before anything is built (a missing file or unset variable is exit 2), served to each runner's BuildKit through the build's session (on a Podman runner, a file in the host's /dev/shm for the build's duration: docs/podman.md), never written into the image, the output or the metadata.
    #[arg(long = "secret", value_name = "id=ID,src=FILE|env=VAR")]
    pub secrets: Vec<String>,
    /// An SSH agent for `RUN --mount=type=ssh[,id=ID]` steps (repeatable), as `docker buildx build --ssh`: `default` (or ID) alone forwards the agent of SSH_AUTH_SOCK; ID=KEYFILE[,KEYFILE...] serves those unencrypted private keys from an agent of mab's own (ID=SOCKET forwards that agent). Forwarded through the build's session, read-only (requests that add or remove keys are refused); checked before anything is built (exit 2). Podman runners cannot forward an agent: the plan passes over them, and a platform only Podman runners list is refused before anything is built (exit 2, docs/podman.md).
    #[arg(long = "ssh", value_name = "default|ID[=PATH[,PATH...]]")]
    pub ssh: Vec<String>,
    /// The build stage to build (a name from `FROM IMAGE AS NAME`, checked before building), overriding mab.toml.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Network mode of RUN steps for this build (default, host or none), over each runner's `network`.
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// How long one platform's job may run once it has its runner slot, such as `90m` or `1h 30m` (over `timeout` under [image]; default no limit); a job over it is stopped and fails the build.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// How long the whole build may take, such as `2h`: connecting, planning and the jobs; when it passes, running jobs are stopped and nothing is published (a publish already started finishes).
    #[arg(long, value_name = "DURATION")]
    pub deadline: Option<String>,
    /// Keep every platform on the runner the plan prefers: when that runner is unreachable, or fails before its build starts, the build fails (exit 1) naming it, instead of moving the platform to the next runner that lists it. As `fallback = false` under [image].
    #[arg(long)]
    pub no_fallback: bool,
    /// When some platforms fail and at least one succeeds, publish the list of those that succeeded under the --tag tags (required), warn naming each missing platform, record them in the metadata (`missing`) and exit 1; nothing is published when every platform fails.
    #[arg(long)]
    pub allow_partial: bool,
    /// Finish an earlier build that failed or was stopped (Ctrl-C, SIGTERM): rebuild only its platforms that were not pushed and verified, reuse the others by digest (checked in the registry first; one that is gone is rebuilt, their runners are not contacted), and publish the full list under this run's tags. Alone it resumes this project's last build (state in $XDG_STATE_HOME/mab, default ~/.local/state/mab); with FILE, the build whose --metadata-file that is (a CI re-run in a fresh clone). Refused (exit 2) when the files sent, the Dockerfile, build args, target or platforms changed since, and with --no-push, as a resume publishes (docs/publishing.md#resuming-a-failed-build).
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    pub resume: Option<Option<PathBuf>>,
    /// Build each platform with the build cache of its image in the published list (or image) REF, as `[cache] from = "registry"` with `ref = REF` in mab.toml (over it): REF is [registry[:port]/]path[:tag] or path@sha256:DIGEST; its image of each platform is imported by digest, and every image is pushed with inline cache metadata (BUILDKIT_INLINE_CACHE=1). A REF with nothing under it, a platform it lacks or a registry that does not answer is a warning: that platform builds without it (docs/configuration.md#cache). Podman runners read no registry cache (a warning says so).
    #[arg(long, value_name = "REF")]
    pub cache_from: Option<String>,
    /// Build and verify each platform on its runner; write nothing to the registry (which then need not answer: without --no-push, mab first checks that it answers and accepts a push).
    #[arg(long)]
    pub no_push: bool,
    /// Skip the smoke run of mab.toml's [test] for this build: no platform's image runs its command, and the metadata records no `test` (docs/publishing.md#the-smoke-test).
    #[arg(long)]
    pub no_test: bool,
    /// How progress is shown on stderr; `json` writes one event per line, each with `"schema": 1`, the last one `result` holding the exit code, the digest and a failure's report (docs/progress.md).
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// Write the build's result as JSON to FILE, also when the build fails or is stopped by Ctrl-C or SIGTERM after FILE's path was checked (each platform's state and error; a bad flag or mab.toml stops the build before that). FILE is emptied when its path is checked (left as it is when it is the --resume FILE), so that a killed build never leaves an older build's document there; the result is written atomically (a temporary file renamed over FILE).
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Write the build's HTML report to FILE (relative to -C DIR): one self-contained page with a timeline of every platform's phases, the critical path, the list digest and tags, each platform's log and the failure, if any. Written when the build ends, also when it fails or is stopped; a copy is always kept in mab's state directory (history/, the last 20 builds; docs/report.md). A report that cannot be written is a warning.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Plan as `mab build --no-fallback` would: no fallbacks, and a platform whose preferred runner is unreachable fails the plan (exit 1) with the error the build would give. As `fallback = false` under [image].
    #[arg(long)]
    pub no_fallback: bool,
    /// Output format: human (a table), or json (one JSON document on stdout).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// Bars on a terminal, plain lines otherwise.
    Auto,
    /// Bars (one per platform); plain lines when stderr is not a terminal, where bars cannot be drawn.
    Tty,
    /// One line per event.
    Plain,
    /// One JSON object per line and event, with `"schema": 1`; nothing else on stderr.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Lines and tables for people.
    Human,
    /// JSON on stdout, for programs.
    Json,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// `-v`, `-q` and `--color` go before or after the command;
    /// `NO_COLOR` turns `auto` off only.
    #[test]
    fn the_terminal_flags_are_global_and_no_color_yields_to_always() {
        let cli = Cli::try_parse_from(["mab", "build", "-q", "--color", "never"]).unwrap();
        assert!(cli.quiet && !cli.verbose);
        assert_eq!(cli.color, Color::Never);
        let cli = Cli::try_parse_from(["mab", "-v", "plan"]).unwrap();
        assert!(cli.verbose && cli.color == Color::Auto);
        // (flag, stderr is a terminal, NO_COLOR set) -> coloured
        for (color, terminal, no_color, coloured) in [
            (Color::Auto, true, false, true),
            (Color::Auto, true, true, false),
            (Color::Auto, false, false, false),
            (Color::Always, false, true, true),
            (Color::Never, true, false, false),
        ] {
            assert_eq!(color.enabled(terminal, no_color), coloured, "{color:?}");
        }
    }

    /// `mab --help` says that a build checks and tests each image, and
    /// `mab build --help` names where both are configured and documented.
    #[test]
    fn build_help_names_the_binary_check_and_the_smoke_test() {
        let mut command = Cli::command();
        let short = command.render_help().to_string();
        assert!(short.contains("check and test each image"), "{short}");
        let build = command.find_subcommand_mut("build").unwrap();
        let long = build.render_long_help().to_string();
        for part in [
            "`[verify]` in mab.toml, docs/verify.md",
            "`[test]`",
            "--no-test skips it",
        ] {
            assert!(long.contains(part), "{part}: {long}");
        }
    }
}

#[cfg(test)]
mod every_flag {
    use clap::CommandFactory;

    use super::*;

    /// Each command and each of its arguments, as `mab build --tag`.
    fn described(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        if command.get_about().is_none() && !path.is_empty() {
            missing.push(format!("the command `{path}`"));
        }
        for argument in command.get_arguments() {
            let id = argument.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if argument.get_help().is_none() && argument.get_long_help().is_none() {
                missing.push(format!("`{id}` of `mab {path}`"));
            }
        }
        for sub in command.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            let sub_path = format!("{path} {}", sub.get_name()).trim().to_owned();
            described(sub, &sub_path, missing);
        }
    }

    /// Every command and every flag and argument of every command has a
    /// description in `--help`.
    #[test]
    fn every_command_and_flag_is_described() {
        let mut missing = Vec::new();
        described(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "without a description: {missing:#?}");
    }
}
